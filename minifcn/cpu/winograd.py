"""numba kernels of Winograd's F(2x2, 3x3) (the math and the contracts: functions/winograd.py).

    winograd_input   V[c, ab, t] = (B^T d B)[ab], d the 4x4 input patch of tile t
    winograd_output  y's 2x2 block of tile t = A^T M[k, :, t] A + bias[k]

B^T d B and A^T M A are written out as sums (B^T and A^T hold only 0 and +-1): first
down the columns, then along the rows, each row of sums kept in four locals.

Loop mapping: prange over channels (input channels c for the input transform, output
channels k for the output transform): each thread writes its own rows of V, or its
own output plane, so there are no write races. Within a channel, tile by tile in the
order of t (row-major over the band), so each of the 16 rows of V or M is walked
contiguously (functions/winograd.py pads their length so that the 16 rows do not
fall into the same cache sets).
"""
from numba import njit, prange


@njit(inline="always")
def _pixel(plane, row, col):
    """plane[row, col], or 0 in the padding."""
    if 0 <= row < plane.shape[0] and 0 <= col < plane.shape[1]:
        return plane[row, col]
    return plane.dtype.type(0)


@njit(inline="always")
def _column_of_b_t_d(plane, top, col, inside):
    """B^T applied to the patch column plane[top : top + 4, col]; `inside`: all four
    pixels are in the plane, so none needs checking (the common case)."""
    if inside:
        d0, d1, d2, d3 = plane[top, col], plane[top + 1, col], plane[top + 2, col], plane[top + 3, col]
    else:
        d0, d1 = _pixel(plane, top, col), _pixel(plane, top + 1, col)
        d2, d3 = _pixel(plane, top + 2, col), _pixel(plane, top + 3, col)
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@njit(parallel=True, cache=True)
def winograd_input(x, ph, pw, first, rows, v):
    channels, height, width = x.shape
    tile_cols = (width + 2 * pw - 1) // 2  # ceil((width + 2 pw - 2) / 2)
    for c in prange(channels):
        plane = x[c]
        for r in range(rows):
            top = 2 * (first + r) - ph
            rows_inside = top >= 0 and top + 3 < height
            for s in range(tile_cols):
                t, left = r * tile_cols + s, 2 * s - pw
                inside = rows_inside and left >= 0 and left + 3 < width
                # e_j = B^T d[:, j]; then row a of B^T d B is (e0 - e2, e1 + e2, e2 - e1, e1 - e3)[a]
                e00, e01, e02, e03 = _column_of_b_t_d(plane, top, left, inside)
                e10, e11, e12, e13 = _column_of_b_t_d(plane, top, left + 1, inside)
                e20, e21, e22, e23 = _column_of_b_t_d(plane, top, left + 2, inside)
                e30, e31, e32, e33 = _column_of_b_t_d(plane, top, left + 3, inside)
                v[c, 0, t], v[c, 1, t] = e00 - e20, e10 + e20
                v[c, 2, t], v[c, 3, t] = e20 - e10, e10 - e30
                v[c, 4, t], v[c, 5, t] = e01 - e21, e11 + e21
                v[c, 6, t], v[c, 7, t] = e21 - e11, e11 - e31
                v[c, 8, t], v[c, 9, t] = e02 - e22, e12 + e22
                v[c, 10, t], v[c, 11, t] = e22 - e12, e12 - e32
                v[c, 12, t], v[c, 13, t] = e03 - e23, e13 + e23
                v[c, 14, t], v[c, 15, t] = e23 - e13, e13 - e33


@njit(parallel=True, cache=True)
def winograd_output(m, first, rows, bias, y):
    out_channels, out_h, out_w = y.shape
    tile_cols = (out_w + 1) // 2
    for k in prange(out_channels):
        b = bias[k]
        for r in range(rows):
            row = 2 * (first + r)
            for s in range(tile_cols):
                t, col = r * tile_cols + s, 2 * s
                # A^T M: rows 0 and 1 of the 2x4 product, then each times A
                p0 = m[k, 0, t] + m[k, 4, t] + m[k, 8, t]
                p1 = m[k, 1, t] + m[k, 5, t] + m[k, 9, t]
                p2 = m[k, 2, t] + m[k, 6, t] + m[k, 10, t]
                p3 = m[k, 3, t] + m[k, 7, t] + m[k, 11, t]
                q0 = m[k, 4, t] - m[k, 8, t] - m[k, 12, t]
                q1 = m[k, 5, t] - m[k, 9, t] - m[k, 13, t]
                q2 = m[k, 6, t] - m[k, 10, t] - m[k, 14, t]
                q3 = m[k, 7, t] - m[k, 11, t] - m[k, 15, t]
                y[k, row, col] = p0 + p1 + p2 + b
                if col + 1 < out_w:
                    y[k, row, col + 1] = p1 - p2 - p3 + b
                if row + 1 < out_h:
                    y[k, row + 1, col] = q0 + q1 + q2 + b
                    if col + 1 < out_w:
                        y[k, row + 1, col + 1] = q1 - q2 - q3 + b
