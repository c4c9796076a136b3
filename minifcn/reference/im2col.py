"""im2col and col2im: the data movement that turns a convolution into one GEMM.

For one image x (C, H, W) and a kh x kw window with stride s, padding p, dilation d:

    col[c, i, j, y, x] = xpad[c, y*s + i*d, x*s + j*d]        (im2col)

so that conv(x, W)[o, y, x] = sum_{c,i,j} W[o, c, i, j] col[c, i, j, y, x], a product
of W (C_out, C*kh*kw) and col (C*kh*kw, out_h*out_w). col2im is its adjoint: it adds
every column entry back to the pixel it came from (the gradient of im2col), and is
also the forward pass of a transposed convolution.

A blocked convolution (conv.py) needs the columns of a band of output rows at a time,
[first_row, first_row + rows): `im2col_tile` writes them into a buffer it is given and
`col2im_tile` adds them back onto an image, so one tile's windows that overlap the
previous tile's rows simply add up there. The whole-image `im2col`/`col2im` (the
contract every kernel set implements, the CUDA one included) are the tile functions
with first_row = 0 and rows = out_h.

These NumPy versions copy one strided slice per window offset (kh*kw copies, never a
Python loop over pixels). Padding is never materialised: for each offset only the
taps inside the image are copied and the border strips that fall in the padding are
zeroed. They are the NumPy kernel set's (reference/__init__.py); the numba set
(cpu/im2col.py) and the CUDA one (kernels/im2col.cu) implement the same contract.
Written against the array API, the whole-image versions also run on CuPy arrays.
"""
from ..backend import get_array_module


def conv_output_size(size, kernel, stride, pad, dilation=1):
    """Rows (or columns) a convolution produces: floor((H + 2p - d(k-1) - 1)/s) + 1."""
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def _inside(out_size, offset, stride, size):
    """The outputs o in [lo, hi) whose tap o * stride + offset lies in [0, size), and the
    slice of input pixels they read."""
    lo = min(max(0, -(offset // stride)), out_size)  # ceil(-offset / stride)
    hi = min(max(lo, -((offset - size) // stride)), out_size)  # ceil((size - offset) / stride)
    return lo, hi, slice(lo * stride + offset, (hi - 1) * stride + offset + 1, stride)


def _tap_slices(shape, col_shape, first_row, sy, sx, ph, pw, dy, dx, i, j):
    """For window offset (i, j): the slices of col[:, i, j] (rows, cols) that read real
    pixels, and the slices of the image they read."""
    height, width = shape
    rows, out_w = col_shape
    row_lo, row_hi, image_rows = _inside(rows, first_row * sy - ph + i * dy, sy, height)
    col_lo, col_hi, image_cols = _inside(out_w, j * dx - pw, sx, width)
    return (row_lo, row_hi, col_lo, col_hi), (image_rows, image_cols)


def im2col_tile_numpy(x, kh, kw, sy, sx, ph, pw, dy, dx, first_row, col):
    """Write the columns of output rows [first_row, first_row + col.shape[3]) of
    x (C, H, W) into col (C, kh, kw, rows, out_w)."""
    for i in range(kh):
        for j in range(kw):
            (row_lo, row_hi, col_lo, col_hi), (image_rows, image_cols) = _tap_slices(
                x.shape[1:], col.shape[3:], first_row, sy, sx, ph, pw, dy, dx, i, j)
            taps = col[:, i, j]
            taps[:, :row_lo] = 0  # the border strips that fall in the padding
            taps[:, row_hi:] = 0
            taps[:, row_lo:row_hi, :col_lo] = 0
            taps[:, row_lo:row_hi, col_hi:] = 0
            if row_lo < row_hi and col_lo < col_hi:
                taps[:, row_lo:row_hi, col_lo:col_hi] = x[:, image_rows, image_cols]
    return col


def col2im_tile_numpy(col, first_row, sy, sx, ph, pw, dy, dx, image):
    """Add col (C, kh, kw, rows, out_w), the columns of output rows [first_row, ...),
    onto image (C, H, W) in place (entries from the padding are dropped)."""
    kh, kw = col.shape[1:3]
    for i in range(kh):
        for j in range(kw):
            (row_lo, row_hi, col_lo, col_hi), (image_rows, image_cols) = _tap_slices(
                image.shape[1:], col.shape[3:], first_row, sy, sx, ph, pw, dy, dx, i, j)
            if row_lo < row_hi and col_lo < col_hi:
                image[:, image_rows, image_cols] += col[:, i, j, row_lo:row_hi, col_lo:col_hi]
    return image


def im2col_numpy(x, kh, kw, sy, sx, ph, pw, dy, dx, out_h, out_w):
    """x (C, H, W) -> col (C, kh, kw, out_h, out_w)."""
    xp = get_array_module(x)
    col = xp.empty((x.shape[0], kh, kw, out_h, out_w), dtype=x.dtype)
    return im2col_tile_numpy(x, kh, kw, sy, sx, ph, pw, dy, dx, 0, col)


def col2im_numpy(col, height, width, sy, sx, ph, pw, dy, dx):
    """col (C, kh, kw, out_h, out_w) -> x (C, H, W), summing overlapping entries."""
    xp = get_array_module(col)
    image = xp.zeros((col.shape[0], height, width), dtype=col.dtype)
    return col2im_tile_numpy(col, 0, sy, sx, ph, pw, dy, dx, image)
