"""im2col and col2im: the data movement that turns a convolution into one GEMM.

For one image x (C, H, W) and a kh x kw window with stride s, padding p, dilation d:

    col[c, i, j, y, x] = xpad[c, y*s + i*d, x*s + j*d]        (im2col)

so that conv(x, W)[o, y, x] = sum_{c,i,j} W[o, c, i, j] col[c, i, j, y, x], a product
of W (C_out, C*kh*kw) and col (C*kh*kw, out_h*out_w). col2im is its adjoint: it adds
every column entry back to the pixel it came from (the gradient of im2col), and is
also the forward pass of a transposed convolution.

The NumPy versions below copy one strided slice per window offset (kh*kw copies,
never a Python loop over pixels). `im2col`/`col2im` dispatch to the numba kernels on
the CPU or the CUDA kernels on the GPU when those are active (see backend.py).
"""
from .. import backend


def conv_output_size(size, kernel, stride, pad, dilation=1):
    """Rows (or columns) a convolution produces: floor((H + 2p - d(k-1) - 1)/s) + 1."""
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def im2col_numpy(x, kh, kw, sy, sx, ph, pw, dy, dx, out_h, out_w):
    """x (C, H, W) -> col (C, kh, kw, out_h, out_w)."""
    xp = backend.get_array_module(x)
    channels = x.shape[0]
    xpad = xp.pad(x, ((0, 0), (ph, ph), (pw, pw))) if ph or pw else x
    col = xp.empty((channels, kh, kw, out_h, out_w), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            col[:, i, j] = xpad[:, i * dy: i * dy + sy * out_h: sy,
                                   j * dx: j * dx + sx * out_w: sx]
    return col


def col2im_numpy(col, height, width, sy, sx, ph, pw, dy, dx):
    """col (C, kh, kw, out_h, out_w) -> x (C, H, W), summing overlapping entries."""
    xp = backend.get_array_module(col)
    channels, kh, kw, out_h, out_w = col.shape
    # Room for every window, also one that runs past the padded edge (floor rounding
    # leaves those cells unused, they are cropped away below).
    padded_h = max(height + 2 * ph, (out_h - 1) * sy + (kh - 1) * dy + 1)
    padded_w = max(width + 2 * pw, (out_w - 1) * sx + (kw - 1) * dx + 1)
    xpad = xp.zeros((channels, padded_h, padded_w), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            xpad[:, i * dy: i * dy + sy * out_h: sy,
                    j * dx: j * dx + sx * out_w: sx] += col[:, i, j]
    return xp.ascontiguousarray(xpad[:, ph: ph + height, pw: pw + width])


def im2col(x, kh, kw, sy, sx, ph, pw, dy, dx, out_h, out_w):
    """Dispatch im2col to the active kernel set; same contract as im2col_numpy."""
    return backend.kernel("im2col", x, im2col_numpy)(x, kh, kw, sy, sx, ph, pw, dy, dx, out_h, out_w)


def col2im(col, height, width, sy, sx, ph, pw, dy, dx):
    """Dispatch col2im to the active kernel set; same contract as col2im_numpy."""
    return backend.kernel("col2im", col, col2im_numpy)(col, height, width, sy, sx, ph, pw, dy, dx)

