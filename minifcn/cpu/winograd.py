"""numba kernels of Winograd's F(2x2, 3x3) (the math and the contracts: functions/winograd.py;
the NumPy versions: reference/winograd.py).

    winograd_input   V[c, ab, t] = (B^T d B)[ab], d the 4x4 input patch of tile t
    winograd_output  y's 2x2 block of tile t = A^T M[k, :, t] A + bias[k]
    winograd_gy      dM[k, :, t] = A g A^T, g the 2x2 block of gy of tile t

B^T d B, A^T M A and A g A^T are sums (B^T and A^T hold only 0 and +-1): reference/
winograd.py's b_t, a_t and a, compiled here. The input transform takes a whole row
of tiles at a time: B^T down the columns of the four
input rows it reads (padding copied in as zeros, so no pixel is bounds-checked), then
B along each row of that, tile after tile: loops over contiguous rows that the
compiler can vectorize.

Loop mapping: prange over channels (input channels c for the input transform, output
channels k for the output and gy transforms): each thread writes its own rows of V or
dM, or its own output plane, so there are no write races. Within a channel, tile by tile in the
order of t (row-major over the band), so each of the 16 rows of V or M is walked
contiguously (functions/winograd.py pads their length so that the 16 rows do not
fall into the same cache sets).
"""
import numpy
from numba import njit, prange

from ..reference import winograd

b_t = njit(inline="always")(winograd.b_t)  # the same sums as the NumPy kernels'
a_t = njit(inline="always")(winograd.a_t)
a = njit(inline="always")(winograd.a)


@njit(parallel=True, cache=True)
def winograd_input(x, ph, pw, first, rows, v):
    channels, height, width = x.shape
    tile_cols = (width + 2 * pw - 1) // 2  # ceil((width + 2 pw - 2) / 2)
    span = 2 * tile_cols + 2  # the padded columns a row of patches reads
    for c in prange(channels):
        padded = numpy.zeros((4, span), x.dtype)  # the 4 input rows of a tile row, padding included
        b_t_d = numpy.empty((4, span), x.dtype)   # B^T of them: row a of B^T d for every column
        for r in range(rows):
            top = 2 * (first + r) - ph
            for i in range(4):
                inside = 0 <= top + i < height
                for col in range(width):
                    padded[i, pw + col] = x[c, top + i, col] if inside else 0
            for q in range(span):
                b_t_d[0, q], b_t_d[1, q], b_t_d[2, q], b_t_d[3, q] = b_t(
                    padded[0, q], padded[1, q], padded[2, q], padded[3, q])
            first_tile = r * tile_cols
            for a in range(4):  # row a of (B^T d) B, tile by tile: columns 2s .. 2s + 3
                e, ab = b_t_d[a], 4 * a
                for s in range(tile_cols):
                    t = first_tile + s
                    v[c, ab, t], v[c, ab + 1, t], v[c, ab + 2, t], v[c, ab + 3, t] = b_t(
                        e[2 * s], e[2 * s + 1], e[2 * s + 2], e[2 * s + 3])


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
                # A^T M column by column (rows 0 and 1), then each row of it times A
                p0, q0 = a_t(m[k, 0, t], m[k, 4, t], m[k, 8, t], m[k, 12, t])
                p1, q1 = a_t(m[k, 1, t], m[k, 5, t], m[k, 9, t], m[k, 13, t])
                p2, q2 = a_t(m[k, 2, t], m[k, 6, t], m[k, 10, t], m[k, 14, t])
                p3, q3 = a_t(m[k, 3, t], m[k, 7, t], m[k, 11, t], m[k, 15, t])
                y00, y01 = a_t(p0, p1, p2, p3)
                y10, y11 = a_t(q0, q1, q2, q3)
                y[k, row, col] = y00 + b
                if col + 1 < out_w:
                    y[k, row, col + 1] = y01 + b
                if row + 1 < out_h:
                    y[k, row + 1, col] = y10 + b
                    if col + 1 < out_w:
                        y[k, row + 1, col + 1] = y11 + b


@njit(parallel=True, cache=True)
def winograd_gy(gy, first, rows, dm):
    out_channels, out_h, out_w = gy.shape
    tile_cols = (out_w + 1) // 2
    zero = gy.dtype.type(0)
    for k in prange(out_channels):
        for r in range(rows):
            row = 2 * (first + r)
            for s in range(tile_cols):
                t, col = r * tile_cols + s, 2 * s
                # the 2x2 block, zeros beyond gy's edge
                right, below = col + 1 < out_w, row + 1 < out_h
                g00 = gy[k, row, col]
                g01 = gy[k, row, col + 1] if right else zero
                g10 = gy[k, row + 1, col] if below else zero
                g11 = gy[k, row + 1, col + 1] if right and below else zero
                c00, c01, c02, c03 = a(g00, g10)  # A g, column 0
                c10, c11, c12, c13 = a(g01, g11)  # A g, column 1
                dm[k, 0, t], dm[k, 1, t], dm[k, 2, t], dm[k, 3, t] = a(c00, c10)
                dm[k, 4, t], dm[k, 5, t], dm[k, 6, t], dm[k, 7, t] = a(c01, c11)
                dm[k, 8, t], dm[k, 9, t], dm[k, 10, t], dm[k, 11, t] = a(c02, c12)
                dm[k, 12, t], dm[k, 13, t], dm[k, 14, t], dm[k, 15, t] = a(c03, c13)
