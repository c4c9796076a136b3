"""numba im2col and col2im over a band of output rows (a tile of a blocked convolution).

For one image x (C, H, W), a kh x kw window with stride s, padding p, dilation d, and
the output rows [first_row, first_row + rows):

    col[c, i, j, r, ox] = x[c, (first_row + r) s_y - p_y + i d_y, ox s_x - p_x + j d_x]

with 0 wherever that pixel falls in the padding: padding is never materialised, each
row of taps splits into [zeros | a strided copy of one input row | zeros]. col2im_tile
is the adjoint: it adds each column entry back onto the pixel it was read from.

Loop mapping:
    im2col_tile   prange over (c, i, j), the C*kh*kw rows of the column matrix: each
                  writes its own (rows, out_w) slab, reading one input plane.
    col2im_tile   prange over channels c: a channel's pixels receive entries from every
                  (i, j), so only a whole plane per thread is free of write races.
                  Within a plane, image row by image row (it stays in cache while the
                  kw taps of each window row add into it); each pixel still sums its
                  entries in (i, j) order, as the NumPy version does (same bits).

The whole-image contracts `im2col` and `col2im` (shared with reference/im2col.py and
cuda.py) are these with first_row = 0 and rows = out_h.
"""
import numpy
from numba import njit, prange


@njit(inline="always")
def _inside(out_size, offset, stride, size):
    """Outputs o in [lo, hi) whose tap o * stride + offset falls inside [0, size)."""
    lo = min(max(0, -(offset // stride)), out_size)  # ceil(-offset / stride)
    hi = min(max(lo, -((offset - size) // stride)), out_size)  # ceil((size - offset) / stride)
    return lo, hi


# The innermost loops live in these two helpers, over 1-D arrays that start at the first
# element touched, so every index is k >= 0. Indexing x[ox * s + offset] directly, with
# an offset numba cannot prove non-negative, adds a wraparound check per element that
# keeps LLVM from vectorizing; and array slice arithmetic (a[...] += b) makes temporaries.
# Stride 1 gets its own loop so that it compiles to packed SIMD loads and stores.
@njit(inline="always")
def _copy_row(target, source, stride):
    """target[k] = source[k * stride] for k < len(target)."""
    if stride == 1:
        for k in range(target.shape[0]):
            target[k] = source[k]
    else:
        for k in range(target.shape[0]):
            target[k] = source[k * stride]


@njit(inline="always")
def _add_row(target, source, stride):
    """target[k * stride] += source[k] for k < len(source)."""
    if stride == 1:
        for k in range(source.shape[0]):
            target[k] += source[k]
    else:
        for k in range(source.shape[0]):
            target[k * stride] += source[k]


@njit(parallel=True, cache=True)
def im2col_tile(x, kh, kw, sy, sx, ph, pw, dy, dx, first_row, col):
    """Write the columns of output rows [first_row, first_row + col.shape[3]) into col
    (C, kh, kw, rows, out_w)."""
    channels, height, width = x.shape
    rows, out_w = col.shape[3], col.shape[4]
    for slab in prange(channels * kh * kw):
        c, i, j = slab // (kh * kw), slab // kw % kh, slab % kw
        offset_y = first_row * sy - ph + i * dy
        offset_x = j * dx - pw
        row_lo, row_hi = _inside(rows, offset_y, sy, height)
        col_lo, col_hi = _inside(out_w, offset_x, sx, width)
        col[c, i, j, :row_lo] = 0
        col[c, i, j, row_hi:] = 0
        for r in range(row_lo, row_hi):
            target = col[c, i, j, r]
            target[:col_lo] = 0
            _copy_row(target[col_lo:col_hi], x[c, r * sy + offset_y, col_lo * sx + offset_x:], sx)
            target[col_hi:] = 0


@njit(parallel=True, cache=True)
def col2im_tile(col, first_row, sy, sx, ph, pw, dy, dx, image):
    """Add the columns col (C, kh, kw, rows, out_w) of output rows [first_row, ...) onto
    image (C, H, W), in place."""
    channels, kh, kw, rows, out_w = col.shape
    height, width = image.shape[1], image.shape[2]
    for c in prange(channels):
        for i in range(kh):
            offset_y = first_row * sy - ph + i * dy
            row_lo, row_hi = _inside(rows, offset_y, sy, height)
            for r in range(row_lo, row_hi):
                # one image row, in cache, takes the kw entries of window row i
                target = image[c, r * sy + offset_y]
                for j in range(kw):
                    offset_x = j * dx - pw
                    col_lo, col_hi = _inside(out_w, offset_x, sx, width)
                    _add_row(target[col_lo * sx + offset_x:], col[c, i, j, r, col_lo:col_hi], sx)


def im2col(x, kh, kw, sy, sx, ph, pw, dy, dx, out_h, out_w):
    """x (C, H, W) -> col (C, kh, kw, out_h, out_w)."""
    col = numpy.empty((x.shape[0], kh, kw, out_h, out_w), dtype=x.dtype)
    im2col_tile(numpy.ascontiguousarray(x), kh, kw, sy, sx, ph, pw, dy, dx, 0, col)
    return col


def col2im(col, height, width, sy, sx, ph, pw, dy, dx):
    """col (C, kh, kw, out_h, out_w) -> x (C, height, width), overlapping entries summed."""
    image = numpy.zeros((col.shape[0], height, width), dtype=col.dtype)
    col2im_tile(numpy.ascontiguousarray(col), 0, sy, sx, ph, pw, dy, dx, image)
    return image
