"""Winograd F(2x2, 3x3)'s transforms in NumPy: the reference kernels (the math, the
band layout and the contracts: functions/winograd.py).

b_t, a_t and a are B^T, A^T and A as sums: what each makes of the values stacked along
one axis of a patch or tile (rows or columns; pixels or whole arrays of them).
cpu/winograd.py compiles these same functions for its kernels. CPU only: the bands
are NumPy arrays (the CUDA set has no Winograd path, see kernel_set.py).
"""
import numpy


def b_t(p0, p1, p2, p3):
    """B^T (p0, p1, p2, p3)."""
    return p0 - p2, p1 + p2, p2 - p1, p1 - p3


def a_t(p0, p1, p2, p3):
    """A^T (p0, p1, p2, p3)."""
    return p0 + p1 + p2, p1 - p2 - p3


def a(p0, p1):
    """A (p0, p1), A^T's transpose: the adjoint of a_t."""
    return p0, p0 + p1, p0 - p1, -p1


def winograd_input_numpy(x, ph, pw, first, rows, v):
    """V[:, :, :rows * cols] = B^T d B for the tiles of rows [first, first + rows)."""
    channels, height, width = x.shape
    tile_cols = -(-(width + 2 * pw - 2) // 2)
    # the band's padded input: 2 rows + 2 and 2 cols + 2, zeros outside x
    patch_h, patch_w = 2 * rows + 2, 2 * tile_cols + 2
    top, left = 2 * first - ph, -pw
    band = numpy.zeros((channels, patch_h, patch_w), x.dtype)
    r0, r1 = max(top, 0), min(top + patch_h, height)
    c0, c1 = max(left, 0), min(left + patch_w, width)
    band[:, r0 - top: r1 - top, c0 - left: c1 - left] = x[:, r0:r1, c0:c1]
    # d[i][j]: entry (i, j) of every tile's patch, (C, rows, cols)
    d = [[band[:, i: i + 2 * rows: 2, j: j + 2 * tile_cols: 2] for j in range(4)] for i in range(4)]
    columns = [b_t(d[0][j], d[1][j], d[2][j], d[3][j]) for j in range(4)]  # B^T d, by column
    for a in range(4):
        row = b_t(*(columns[j][a] for j in range(4)))  # row a of (B^T d) B
        for b in range(4):
            v[:, 4 * a + b, : rows * tile_cols] = row[b].reshape(channels, -1)
    return v


def winograd_output_numpy(m, first, rows, bias, y):
    """y's rows [2 first, 2 first + 2 rows) = A^T M A + bias (the last row and column
    of tiles may hang over y's edge by one: that half is dropped)."""
    out_h, out_w = y.shape[1:]
    tile_cols = -(-out_w // 2)
    tiles = m[:, :, : rows * tile_cols].reshape(-1, 4, 4, rows, tile_cols)
    columns = [a_t(*(tiles[:, i, j] for i in range(4))) for j in range(4)]  # A^T M, by column
    out = numpy.empty((m.shape[0], 2 * rows, 2 * tile_cols), m.dtype)
    for a in range(2):
        row = a_t(*(columns[j][a] for j in range(4)))  # row a of (A^T M) A
        for b in range(2):
            out[:, a::2, b::2] = row[b]
    top, bottom = 2 * first, min(2 * (first + rows), out_h)
    y[:, top:bottom] = out[:, : bottom - top, :out_w] + bias[:, None, None]
    return y


def winograd_gy_numpy(gy, first, rows, dm):
    """dM[:, :, :rows * cols] = A g A^T for the 2x2 blocks g of gy (C_out, out_h, out_w)
    in tile rows [first, first + rows), zeros beyond gy's edge."""
    channels, out_h, out_w = gy.shape
    tile_cols = -(-out_w // 2)
    band = numpy.zeros((channels, 2 * rows, 2 * tile_cols), gy.dtype)
    top, bottom = 2 * first, min(2 * (first + rows), out_h)
    band[:, : bottom - top, :out_w] = gy[:, top:bottom]
    g = [[band[:, i::2, j::2] for j in range(2)] for i in range(2)]  # (C, rows, cols) each
    columns = [a(g[0][j], g[1][j]) for j in range(2)]  # A g, by column
    for i in range(4):
        row = a(columns[0][i], columns[1][i])  # row i of (A g) A^T
        for j in range(4):
            dm[:, 4 * i + j, : rows * tile_cols] = row[j].reshape(channels, -1)
    return dm
