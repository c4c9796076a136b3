"""Slow, obviously-correct reference implementations of every op, in plain loops.

These are written from the definitions (Caffe's layer code, the formulas in API.md),
not from minifcn's implementation: convolution and pooling loop over output pixels,
transposed convolution scatters input pixels, LRN and the loss loop over channels
and pixels. Use them on small shapes only. Other test files (numba / CUDA kernel
tests) import them as `from functions.reference import conv2d_ref` (tests/ is on
sys.path through tests/conftest.py).

Every function takes and returns NumPy arrays and computes in float64.
"""
import math

import numpy


def as_pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


# ------------------------------------------------------------------------ sizes
def conv_out_size(size, kernel, stride=1, pad=0, dilation=1):
    """Rows a convolution produces, counted by sliding the window one step at a time."""
    extent = dilation * (kernel - 1) + 1
    count, start = 0, 0
    while start + extent <= size + 2 * pad:
        count += 1
        start += stride
    return count


def caffe_pool_out_size(size, kernel, stride, pad, ceil_mode):
    """Caffe PoolingLayer::Reshape (ceil) or the floor rule, as written in API.md."""
    if not ceil_mode:
        return (size + 2 * pad - kernel) // stride + 1
    out = int(math.ceil(float(size + 2 * pad - kernel) / stride)) + 1
    if (out - 1) * stride >= size + pad:  # the last window would start in the padding
        out -= 1
    return out


def torch_pool_out_size(size, kernel, stride, pad, ceil_mode, dilation=1):
    """PyTorch's documented MaxPool2d/AvgPool2d output size, as integer arithmetic
    (pooling_output_shape): floor((H + 2p - d(k-1) - 1 + (s-1 if ceil)) / s) + 1, then one
    less when ceil mode makes the last window start in the right padding."""
    numerator = size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = numerator // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


# ------------------------------------------------------------------ convolution
def conv2d_ref(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """y[n, o, r, c] = b[o] + sum_{ci in group(o), i, j} w[o, ci, i, j] *
    x[n, g*cin_g + ci, r*sy - ph + i*dy, c*sx - pw + j*dx]  (0 outside x)."""
    x, weight = numpy.asarray(x, numpy.float64), numpy.asarray(weight, numpy.float64)
    sy, sx = as_pair(stride)
    ph, pw = as_pair(padding)
    dy, dx = as_pair(dilation)
    n_img, c_in, height, width = x.shape
    c_out, cin_g, kh, kw = weight.shape
    cout_g = c_out // groups
    out_h = conv_out_size(height, kh, sy, ph, dy)
    out_w = conv_out_size(width, kw, sx, pw, dx)
    y = numpy.zeros((n_img, c_out, out_h, out_w))
    for n in range(n_img):
        for o in range(c_out):
            first_channel = (o // cout_g) * cin_g
            for r in range(out_h):
                for c in range(out_w):
                    total = 0.0 if bias is None else float(bias[o])
                    for ci in range(cin_g):
                        for i in range(kh):
                            for j in range(kw):
                                row, col = r * sy - ph + i * dy, c * sx - pw + j * dx
                                if 0 <= row < height and 0 <= col < width:
                                    total += weight[o, ci, i, j] * x[n, first_channel + ci, row, col]
                    y[n, o, r, c] = total
    return y


def conv_transpose2d_ref(x, weight, bias=None, stride=1, padding=0, groups=1, dilation=1,
                         output_size=None):
    """Scatter: every input pixel x[n, ci, r, c] adds x * w[ci, co, i, j] to output
    pixel (r*sy - ph + i*dy, c*sx - pw + j*dx); out = (H-1)s - 2p + d(k-1) + 1, or
    `output_size` (h, w) when given: with the conv's input size, this is conv2d's
    gradient with respect to its input (rows the floor rounding left unused get 0)."""
    x, weight = numpy.asarray(x, numpy.float64), numpy.asarray(weight, numpy.float64)
    sy, sx = as_pair(stride)
    ph, pw = as_pair(padding)
    dy, dx = as_pair(dilation)
    n_img, c_in, height, width = x.shape
    _, cout_g, kh, kw = weight.shape
    cin_g = c_in // groups
    out_h = (height - 1) * sy - 2 * ph + dy * (kh - 1) + 1
    out_w = (width - 1) * sx - 2 * pw + dx * (kw - 1) + 1
    if output_size is not None:
        out_h, out_w = output_size
    y = numpy.zeros((n_img, cout_g * groups, out_h, out_w))
    for n in range(n_img):
        for ci in range(c_in):
            group = ci // cin_g
            for r in range(height):
                for c in range(width):
                    for co in range(cout_g):
                        for i in range(kh):
                            for j in range(kw):
                                row, col = r * sy - ph + i * dy, c * sx - pw + j * dx
                                if 0 <= row < out_h and 0 <= col < out_w:
                                    y[n, group * cout_g + co, row, col] += (
                                        x[n, ci, r, c] * weight[ci, co, i, j])
    if bias is not None:
        for co in range(y.shape[1]):
            y[:, co] += bias[co]
    return y


def linear_ref(x, weight, bias=None):
    x = numpy.asarray(x, numpy.float64).reshape(len(x), -1)
    n_out, n_in = weight.shape
    y = numpy.zeros((len(x), n_out))
    for n in range(len(x)):
        for m in range(n_out):
            y[n, m] = sum(float(x[n, k]) * float(weight[m, k]) for k in range(n_in))
            if bias is not None:
                y[n, m] += bias[m]
    return y


# ---------------------------------------------------------------------- pooling
def max_pool2d_ref(x, kernel, stride=None, padding=0, ceil_mode=False):
    """(y, argmax): y the max over each window's real pixels (padding never wins), argmax
    (N, C, out_h, out_w, 2) the (row, col) of the FIRST maximum in scan order (Caffe's
    strict `>`), which is where the window's gradient goes. NaN counts as the largest
    value (PyTorch's rule: a NaN is never hidden; the first NaN takes the gradient)."""
    x = numpy.asarray(x, numpy.float64)
    kh, kw = as_pair(kernel)
    stride = kernel if stride is None else stride
    n_img, channels, height, width = x.shape
    sy, sx = as_pair(stride)
    ph, pw = as_pair(padding)
    out_h = caffe_pool_out_size(height, kh, sy, ph, ceil_mode)
    out_w = caffe_pool_out_size(width, kw, sx, pw, ceil_mode)
    y = numpy.zeros((n_img, channels, out_h, out_w))
    argmax = numpy.zeros((n_img, channels, out_h, out_w, 2), dtype=int)
    for n in range(n_img):
        for ch in range(channels):
            for r in range(out_h):
                for c in range(out_w):
                    row0, col0 = r * sy - ph, c * sx - pw
                    best, where = -math.inf, None
                    for row in range(max(row0, 0), min(row0 + kh, height)):
                        for col in range(max(col0, 0), min(col0 + kw, width)):
                            value = x[n, ch, row, col]
                            if (where is None or value > best
                                    or (math.isnan(value) and not math.isnan(best))):
                                best, where = value, (row, col)
                    y[n, ch, r, c] = best
                    argmax[n, ch, r, c] = where
    return y, argmax


def max_pool2d_backward_ref(gy, argmax, x_shape):
    gx = numpy.zeros(x_shape)
    n_img, channels, out_h, out_w = gy.shape
    for n in range(n_img):
        for ch in range(channels):
            for r in range(out_h):
                for c in range(out_w):
                    row, col = argmax[n, ch, r, c]
                    gx[n, ch, row, col] += gy[n, ch, r, c]
    return gx


def avg_pool2d_ref(x, kernel, stride=None, padding=0, ceil_mode=False):
    """Caffe AVE pooling: the sum of the window's real pixels divided by the window
    clipped to the padded input [-p, H + p) (padded cells count, ceil overhang does not)."""
    x = numpy.asarray(x, numpy.float64)
    kh, kw = as_pair(kernel)
    stride = kernel if stride is None else stride
    n_img, channels, height, width = x.shape
    sy, sx = as_pair(stride)
    ph, pw = as_pair(padding)
    out_h = caffe_pool_out_size(height, kh, sy, ph, ceil_mode)
    out_w = caffe_pool_out_size(width, kw, sx, pw, ceil_mode)
    y = numpy.zeros((n_img, channels, out_h, out_w))
    for r in range(out_h):
        for c in range(out_w):
            hstart, wstart = r * sy - ph, c * sx - pw
            hend, wend = min(hstart + kh, height + ph), min(wstart + kw, width + pw)
            pool_size = (hend - hstart) * (wend - wstart)
            hstart, wstart = max(hstart, 0), max(wstart, 0)
            hend, wend = min(hend, height), min(wend, width)
            for n in range(n_img):
                for ch in range(channels):
                    total = 0.0
                    for row in range(hstart, hend):
                        for col in range(wstart, wend):
                            total += x[n, ch, row, col]
                    y[n, ch, r, c] = total / pool_size
    return y


# ------------------------------------------------------------------------ norms
def lrn_ref(x, size=5, alpha=1e-4, beta=0.75, k=1.0):
    """Caffe LRN ACROSS_CHANNELS: scale_c = k + alpha/size * sum of x^2 over channels
    [c - (size-1)//2, c - (size-1)//2 + size) that exist; y = x * scale^-beta."""
    x = numpy.asarray(x, numpy.float64)
    channels = x.shape[1]
    pre_pad = (size - 1) // 2
    y = numpy.empty_like(x)
    for c in range(channels):
        squares = numpy.zeros(x.shape[:1] + x.shape[2:])
        for other in range(c - pre_pad, c - pre_pad + size):
            if 0 <= other < channels:
                squares += x[:, other] ** 2
        y[:, c] = x[:, c] / (k + alpha / size * squares) ** beta
    return y


# ------------------------------------------------------------------------- loss
def softmax_cross_entropy_ref(score, target, ignore_index=255, normalize=True):
    """(loss, d loss / d score) by a loop over pixels: -log p_t with p = softmax over C."""
    score = numpy.asarray(score, numpy.float64)
    n_img, n_class, height, width = score.shape
    loss, counted = 0.0, 0
    grad = numpy.zeros_like(score)
    for n in range(n_img):
        for r in range(height):
            for c in range(width):
                label = int(target[n, r, c])
                if label == ignore_index:
                    continue
                logits = [float(v) for v in score[n, :, r, c]]
                peak = max(logits)
                weights = [math.exp(v - peak) for v in logits]
                total = math.fsum(weights)
                loss -= math.log(weights[label] / total)
                for cls in range(n_class):
                    grad[n, cls, r, c] = weights[cls] / total - (cls == label)
                counted += 1
    divisor = max(counted, 1) if normalize else n_img
    return loss / divisor, grad / divisor
