"""Convolution, transposed convolution (Caffe "Deconvolution") and linear layers.

conv2d, cross-correlation with weight W (C_out, C_in/g, kh, kw), per image and group:

    forward      y   = W_mat @ im2col(x) + b             (C_out/g, out_h*out_w)
    backward x   gx  = col2im(W_mat^T @ gy)              the adjoint of the forward
    backward W   gW  = sum_images gy @ im2col(x)^T      (often computed transposed)
    backward b   gb  = gy summed over N, H, W

conv_transpose2d is that adjoint run forwards, so its passes are the same three
primitives with the roles swapped (Chainer's way):

    forward      y   = col2im(W_mat^T @ x)               = _correlate_adjoint(x)
    backward x   gx  = W_mat @ im2col(gy)                = _correlate(gy)
    backward W   gW  = sum_images x @ im2col(gy)^T       = _weight_grad(gy, x)

The weight layouts line up: a transposed convolution's W (C_in, C_out/g, kh, kw) is
exactly the weight of the convolution it is the adjoint of, from C_out to C_in channels.

Blocking. The column matrix of a whole image is large (FCN's conv1_2 at 500x500: 576 x
698*698 floats, 1.1 GB), so on the CPU each primitive walks one image in tiles, bands
of output rows (`_RowTiles`): each tile's columns go into one small reused buffer
and its GEMM writes straight into its slice of the output (np.matmul(..., out=)):

    _correlate           y[:, tile]  = W_mat @ im2col_tile(x)  (+ b, while it is in cache)
    _correlate_adjoint   x          += col2im_tile(W_mat^T @ y[:, tile])
    _weight_grad         gW         += gy[:, tile] @ im2col_tile(x)^T

Windows of neighbouring tiles overlap input rows; col2im_tile adds into the image, so
those rows simply collect both tiles' sums. The input is saved for backward and its
columns recomputed there, tile by tile (never kept: they are kh*kw times the input).
Every kernel comes from the kernel set of the input, `backend.kernels_for(x)`
(kernel_set.py), and what the set can do is the one thing that differs between
devices: without `row_tiles` (the CUDA set) a tile is the whole image, as the CUDA
kernels take whole images; without `winograd` that path is never taken.

Winograd. With a kernel set that has it (the CPU ones), a 3x3 stride-1 convolution
with at least 64 channels on both sides (all of VGG16's but conv1_1) runs all three
primitives through winograd.py's F(2x2, 3x3) instead, with 2.25x fewer multiplications.

bf16 (precision.py). A convolution on the GPU takes a bf16 x (under autocast a float32
x is cast first) with float32 weight and bias, the master weights: the forward casts
the weight to a bf16 copy (kept for the input gradient), every GEMM reads bf16
operands and accumulates in float32, the output and the input gradient are stored
bf16, the weight gradient's GEMM writes float32 directly, and the bias is added and
its gradient summed by kernels, in float32.

linear is a plain matrix product: y = x W^T + b, gx = gy W, gW = gy^T x.
"""
import math
import numbers
from collections import namedtuple

import numpy

from ..autograd import Function
from .. import backend, bfloat16, precision
from ..reference.im2col import conv_output_size
from . import winograd
from .validate import float_tensor, pair, same_device, same_dtype

Geometry = namedtuple("Geometry", "kh kw sy sx ph pw dy dx groups")

# Tile size of the blocked convolution. A tile's column matrix takes about
# `column_buffer_bytes`. Smaller tiles stay in the last-level cache between im2col
# writing them and the GEMM reading them; larger ones need fewer GEMM calls (each a fork
# and join of the BLAS threads). On the 2-core development machine (32 MiB of L3, shared
# with other tenants) FCN-32s trained and inferred as fast with 4 MiB as with 64 MiB
# tiles: the fastest of five runs within 5% of each other, the medians inside the
# machine's noise; 2 MiB had the slowest medians (benchmarks/conv_tiles.py,
# results/conv-tiles-*). 16 MiB sits in that flat range and bounds the buffer's memory.
# A tile also holds at least `min_tile_pixels` output pixels: below that the GEMMs get
# thin, and the weight gradient, which adds one weight-sized product per tile, would
# spend more time adding than multiplying (fc6's weight is 411 MB, its output 256 px:
# one tile). `tile_rows`, when set, fixes the tile height (tests force tiny tiles).
column_buffer_bytes = 16 * 2**20
min_tile_pixels = 1024
tile_rows = None


class _RowTiles:
    """The bands of output rows [first, first + rows) one image is processed in, with
    the column buffer they share, and im2col / col2im of one tile.

    `k_rows` is the column matrix's height (C_in * kh * kw, all groups). A kernel set
    without `row_tiles` (the CUDA one) gets one tile, the whole image, and no buffer."""

    def __init__(self, kernels, array, k_rows, out_h, out_w, geo):
        self.kernels, self.geo, self.out_w = kernels, geo, out_w
        self.banded = kernels.row_tiles
        if not self.banded:
            rows = out_h
        elif tile_rows is not None:
            rows = tile_rows
        else:
            by_buffer = column_buffer_bytes // (k_rows * out_w * array.itemsize)
            rows = max(by_buffer, math.ceil(min_tile_pixels / out_w))
        rows = max(1, min(rows, out_h))
        self.bounds = [(first, min(rows, out_h - first)) for first in range(0, out_h, rows)]
        self.k_rows = k_rows
        self.buffer = numpy.empty(k_rows * rows * out_w, array.dtype) if self.banded else None

    def __iter__(self):
        return iter(self.bounds)

    def pixels(self, first, rows):
        """The tile's slice of a flattened (..., out_h * out_w) output plane."""
        return slice(first * self.out_w, (first + rows) * self.out_w)

    def scratch(self, rows):
        """The column buffer, as a (k_rows, rows * out_w) matrix (row tiles only)."""
        return self.buffer[: self.k_rows * rows * self.out_w].reshape(self.k_rows, -1)

    def columns(self, image, first, rows):
        """im2col of the tile's output rows: (C, kh, kw, rows, out_w), in the buffer."""
        g, kernels = self.geo, self.kernels
        if not self.banded:
            return kernels.im2col(image, g.kh, g.kw, g.sy, g.sx, g.ph, g.pw, g.dy, g.dx,
                                  rows, self.out_w)
        col = self.scratch(rows).reshape(image.shape[0], g.kh, g.kw, rows, self.out_w)
        kernels.im2col_tile(image, g.kh, g.kw, g.sy, g.sx, g.ph, g.pw, g.dy, g.dx, first, col)
        return col

    def add_columns(self, col, first, image):
        """image += col2im of the tile's columns col (C, kh, kw, rows, out_w)."""
        g, kernels = self.geo, self.kernels
        if not self.banded:  # the only tile: the whole image
            image[...] = kernels.col2im(col, *image.shape[1:], g.sy, g.sx, g.ph, g.pw, g.dy, g.dx)
        else:
            kernels.col2im_tile(col, first, g.sy, g.sx, g.ph, g.pw, g.dy, g.dx, image)


def _matmul_grouped(a, b, out=None):
    """a (G, m, k) @ b (G, k, n); a plain 2-D GEMM when there is one group."""
    xp = backend.get_array_module(a)
    if a.shape[0] == 1:
        return xp.matmul(a[0], b[0], out=None if out is None else out[0])[None]
    return xp.matmul(a, b, out=out)


def _correlate(x, weight, geo, bias=None):
    """Convolution: x (N, C, H, W) -> (N, C_out, out_h, out_w), plus bias if given."""
    kernels = backend.kernels_for(x)
    if winograd.applies(kernels, weight.shape, geo):
        return winograd.correlate(kernels, x, weight, geo.ph, geo.pw, bias, column_buffer_bytes)
    if not kernels.row_tiles:
        return _correlate_batched(kernels, x, weight, geo, bias)
    xp = backend.get_array_module(x)
    x = xp.ascontiguousarray(x)  # im2col reads whole rows; no copy unless x is a view
    n_images, c_in, height, width = x.shape
    c_out, groups = weight.shape[0], geo.groups
    out_h = conv_output_size(height, geo.kh, geo.sy, geo.ph, geo.dy)
    out_w = conv_output_size(width, geo.kw, geo.sx, geo.pw, geo.dx)
    w_mat = weight.reshape(groups, c_out // groups, -1)
    tiles = _RowTiles(kernels, x, c_in * geo.kh * geo.kw, out_h, out_w, geo)
    y = xp.empty((n_images, c_out, out_h, out_w), dtype=x.dtype)
    for n in range(n_images):
        y_groups = y[n].reshape(groups, c_out // groups, out_h * out_w)
        for first, rows in tiles:
            col = tiles.columns(x[n], first, rows).reshape(groups, w_mat.shape[2], -1)
            y_tile = y_groups[:, :, tiles.pixels(first, rows)]
            _matmul_grouped(w_mat, col, out=y_tile)
            if bias is not None:
                y_tile += bias.reshape(groups, -1, 1)
    return y


def _correlate_adjoint(y, weight, geo, height, width):
    """The adjoint of _correlate: y (N, C_out, out_h, out_w) -> (N, C_in, height, width)."""
    kernels = backend.kernels_for(y)
    if winograd.applies(kernels, weight.shape, geo):  # a correlation with the flipped weight
        return winograd.correlate(kernels, y, winograd.adjoint_weight(weight), 2 - geo.ph,
                                  2 - geo.pw, band_bytes=column_buffer_bytes)
    if not kernels.row_tiles:
        return _correlate_adjoint_batched(kernels, y, weight, geo, height, width)
    xp = backend.get_array_module(y)
    n_images, c_out, out_h, out_w = y.shape
    groups = geo.groups
    c_in = weight.shape[1] * groups
    w_mat_t = weight.reshape(groups, c_out // groups, -1).transpose(0, 2, 1)
    tiles = _RowTiles(kernels, y, c_in * geo.kh * geo.kw, out_h, out_w, geo)
    x = xp.zeros((n_images, c_in, height, width), dtype=y.dtype)
    for n in range(n_images):
        y_groups = y[n].reshape(groups, c_out // groups, out_h * out_w)
        for first, rows in tiles:
            y_tile = y_groups[:, :, tiles.pixels(first, rows)]
            col = (tiles.scratch(rows).reshape(groups, w_mat_t.shape[1], -1)
                   if tiles.banded else None)
            col = _matmul_grouped(w_mat_t, y_tile, out=col)
            tiles.add_columns(col.reshape(c_in, geo.kh, geo.kw, rows, out_w), first, x[n])
    return x


def _weight_grad(x, gy, geo):
    """d(sum gy * _correlate(x, W))/dW, shape (C_out, C_in/g, kh, kw).

    Per tile the term is gy @ im2col(x)^T, whose inner dimension is the tile's pixels.
    OpenBLAS handles that long inner dimension badly: the transposed product
    im2col(x) @ gy^T runs 1.6x faster for the default small net's conv1_2 (8 output
    channels) and up to 10% faster at VGG16's shapes (benchmarks/cpu_ops.py, "gW" rows). So
    gW^T is accumulated instead, and transposed once at the end, whenever the columns
    outweigh the weight (the tile has more pixels than the layer has output channels);
    for fc6 and fc7 (256 pixels, 4096 channels) that last copy would cost a weight-sized
    buffer (411 MB for fc6) and gain nothing."""
    kernels = backend.kernels_for(x)
    if winograd.applies(kernels, (gy.shape[1], x.shape[1], geo.kh, geo.kw), geo):
        return winograd.weight_grad(kernels, x, gy, geo.ph, geo.pw, column_buffer_bytes)
    if not kernels.row_tiles:
        return _weight_grad_batched(kernels, x, gy, geo)
    xp = backend.get_array_module(x)
    x = xp.ascontiguousarray(x)
    n_images, c_in = x.shape[:2]
    _, c_out, out_h, out_w = gy.shape
    groups = geo.groups
    tiles = _RowTiles(kernels, x, c_in * geo.kh * geo.kw, out_h, out_w, geo)
    m, k = c_out // groups, c_in // groups * geo.kh * geo.kw
    transposed = tiles.bounds[0][1] * out_w > m

    def term(col, gy_tile, out):
        if transposed:
            return _matmul_grouped(col, gy_tile.transpose(0, 2, 1), out=out)
        return _matmul_grouped(gy_tile, col.transpose(0, 2, 1), out=out)

    grad = xp.empty((groups, k, m) if transposed else (groups, m, k), dtype=x.dtype)
    product = None  # one tile's term, when there is more than one to add up
    for n in range(n_images):
        gy_groups = gy[n].reshape(groups, m, out_h * out_w)
        for first, rows in tiles:
            col = tiles.columns(x[n], first, rows).reshape(groups, k, -1)
            gy_tile = gy_groups[:, :, tiles.pixels(first, rows)]
            if n == 0 and first == 0:
                term(col, gy_tile, out=grad)
                continue
            if product is None:
                product = xp.empty_like(grad)
            grad += term(col, gy_tile, out=product)
    if transposed:
        grad = xp.ascontiguousarray(grad.transpose(0, 2, 1))
    return grad.reshape(c_out, c_in // groups, geo.kh, geo.kw)


# ------------------------------------------------------- whole batches (the CUDA set)
# Without row tiles (the GPU) each primitive works on whole images, several at a time:
# the columns of `images` images are built by ONE im2col launch (the batch's channels
# taken as one long channel axis: x (n, C, H, W) is (n*C, H, W) to the kernel, and its
# columns (n*C, kh, kw, oh, ow) are (n, G, k, P) matrices), and each group's GEMM runs
# over all those images as ONE strided-batched cuBLAS call (`_gemm`; the weight's batch
# stride is 0). A 1x1 stride-1 unpadded convolution (fc7, the score layers) needs no
# im2col at all: the input already is its column matrix, and the adjoint's columns are
# the input gradient itself (no col2im). The host then issues a handful of calls per
# layer instead of a few per image and group, which is what bounds the default small
# net's GPU step (the host time of ../shared/gpu-results/2026-11-30/cprofile.txt).
# `batch_column_bytes` caps the columns built at once: FCN-32s' conv1_2 at 500x500
# already needs 1.1 GB for one image, which then runs alone, as before.
batch_column_bytes = 256 * 2**20
# Implicit GEMM (kernels/implicit_gemm.cu): the forward pass in one kernel that builds
# each column tile in shared memory, never in memory. It saves the columns' write and
# read but runs its multiply-adds on CUDA cores, not cuBLAS's (TF32) tensor cores, so it
# is taken only for the layer shapes a GPU measured it faster on
# (benchmarks/gpu_cases.py, "conv_implicit_gemm" rows): (C_in, C_out, kh, kw, sy, sx,
# ph, pw, dy, dx) keys, none until a GPU run has measured them.
implicit_gemm_layers = frozenset()


def _pointwise(geo):
    """A 1x1, stride-1, unpadded convolution: its input is its own column matrix."""
    return (geo.kh, geo.kw, geo.sy, geo.sx, geo.ph, geo.pw) == (1, 1, 1, 1, 0, 0)


def _image_chunks(n_images, image_column_bytes):
    """(first, count) of the runs of images whose columns are built at once."""
    per_chunk = max(1, batch_column_bytes // max(1, image_column_bytes))
    return [(first, min(per_chunk, n_images - first)) for first in range(0, n_images, per_chunk)]


def _batch_columns(kernels, x, geo, out_h, out_w):
    """The column matrices of the images x (n, C, H, W): (n, G, C/G*kh*kw, out_h*out_w)."""
    n, channels = x.shape[:2]
    if _pointwise(geo):
        return x.reshape(n, geo.groups, channels // geo.groups, out_h * out_w)
    col = kernels.im2col(x.reshape(n * channels, *x.shape[2:]), geo.kh, geo.kw, geo.sy, geo.sx,
                         geo.ph, geo.pw, geo.dy, geo.dx, out_h, out_w)
    return col.reshape(n, geo.groups, -1, out_h * out_w)


def _correlate_batched(kernels, x, weight, geo, bias):
    xp = backend.get_array_module(x)
    x = xp.ascontiguousarray(x)
    n_images, c_in, height, width = x.shape
    c_out, groups = weight.shape[0], geo.groups
    out_h = conv_output_size(height, geo.kh, geo.sy, geo.ph, geo.dy)
    out_w = conv_output_size(width, geo.kw, geo.sx, geo.pw, geo.dx)
    if groups == 1 and (c_in, c_out, *geo[:-1]) in implicit_gemm_layers and \
            not bfloat16.is_bfloat16(x):
        return _add_bias(kernels.conv_implicit_gemm(
            x, weight, geo.sy, geo.sx, geo.ph, geo.pw, geo.dy, geo.dx, out_h, out_w), bias)
    w_mat = weight.reshape(groups, c_out // groups, -1)
    y = xp.empty((n_images, c_out, out_h, out_w), dtype=x.dtype)
    y_mat = y.reshape(n_images, groups, c_out // groups, out_h * out_w)
    column_bytes = c_in * geo.kh * geo.kw * out_h * out_w * x.itemsize
    for first, count in _image_chunks(n_images, column_bytes):
        col = _batch_columns(kernels, x[first:first + count], geo, out_h, out_w)
        for g in range(groups):
            _gemm(w_mat[g][None], col[:, g], y_mat[first:first + count, g])
    return _add_bias(y, bias)


def _correlate_adjoint_batched(kernels, y, weight, geo, height, width):
    xp = backend.get_array_module(y)
    y = xp.ascontiguousarray(y)
    n_images, c_out, out_h, out_w = y.shape
    groups = geo.groups
    c_in = weight.shape[1] * groups
    w_mat_t = weight.reshape(groups, c_out // groups, -1).transpose(0, 2, 1)
    y_mat = y.reshape(n_images, groups, c_out // groups, out_h * out_w)
    if _pointwise(geo):  # the columns are the input gradient itself
        x = xp.empty((n_images, c_in, height, width), dtype=y.dtype)
        x_mat = x.reshape(n_images, groups, c_in // groups, height * width)
        for g in range(groups):
            _gemm(w_mat_t[g][None], y_mat[:, g], x_mat[:, g])
        return x
    column_bytes = c_in * geo.kh * geo.kw * out_h * out_w * y.itemsize
    chunks = _image_chunks(n_images, column_bytes)
    x = None if len(chunks) == 1 else xp.empty((n_images, c_in, height, width), dtype=y.dtype)
    for first, count in chunks:
        col = xp.empty((count, groups, w_mat_t.shape[1], out_h * out_w), dtype=y.dtype)
        for g in range(groups):
            _gemm(w_mat_t[g][None], y_mat[first:first + count, g], col[:, g])
        images = kernels.col2im(col.reshape(count * c_in, geo.kh, geo.kw, out_h, out_w), height,
                                width, geo.sy, geo.sx, geo.ph, geo.pw, geo.dy, geo.dx)
        images = images.reshape(count, c_in, height, width)
        if x is None:
            return images
        x[first:first + count] = images
    return x


def _weight_grad_batched(kernels, x, gy, geo):
    """sum over images of gy_n @ col_n^T, each image's GEMM accumulating into the one
    weight-sized result (cuBLAS's beta = 1): no per-image product, no separate sum."""
    xp = backend.get_array_module(x)
    x, gy = xp.ascontiguousarray(x), xp.ascontiguousarray(gy)
    n_images, c_in = x.shape[:2]
    _, c_out, out_h, out_w = gy.shape
    groups = geo.groups
    m, k = c_out // groups, c_in // groups * geo.kh * geo.kw
    gy_mat = gy.reshape(n_images, groups, m, out_h * out_w)
    grad = xp.empty((groups, m, k), dtype=_weight_dtype(x))
    column_bytes = c_in * geo.kh * geo.kw * out_h * out_w * x.itemsize
    for first, count in _image_chunks(n_images, column_bytes):
        col = _batch_columns(kernels, x[first:first + count], geo, out_h, out_w)
        for image in range(count):
            for g in range(groups):
                _gemm(gy_mat[first + image, g][None], col[image, g].T[None], grad[g][None],
                      accumulate=first + image > 0)
    return grad.reshape(c_out, c_in // groups, geo.kh, geo.kw)


def _gemm(a, b, out, accumulate=False):
    """out (B, M, N) = a (B, M, K) @ b (B, K, N) (+= with accumulate): ONE strided-batched
    GEMM. A batch of 1 in a is broadcast (batch stride 0); a, b may be transposed views
    (their last two axes swapped), which cuBLAS reads as they lie, with no copy.

    CuPy's own batched matmul ignores its float32 compute type (only its 2-D products
    honour CUPY_TF32 / cuda.allow_tf32), so this calls cuBLAS's gemmStridedBatchedEx
    itself, with CUBLAS_COMPUTE_32F_FAST_TF32 exactly when `cuda.tf32_allowed()`.
    bf16 operands (uint16 storage, CUDA_R_16BF) accumulate in float32
    (CUBLAS_COMPUTE_32F) into a bf16 or a float32 `out` (the weight gradient)."""
    from .. import cuda
    cupy = backend.cupy_or_none()
    cublas, runtime = cupy.cuda.cublas, cupy.cuda.runtime
    batch, m, n = out.shape
    k = a.shape[2]
    if a.shape[1:] != (m, k) or b.shape[1:] != (k, n) or b.shape[0] != batch or \
            a.shape[0] not in (1, batch):
        raise ValueError(f"_gemm: shapes {a.shape} @ {b.shape} -> {out.shape} do not match")
    if out.strides[2] != out.itemsize:
        raise ValueError(f"_gemm: the output's rows must be contiguous, strides {out.strides}")
    in_type, out_type = a.dtype, out.dtype
    bf16_in = bfloat16.is_bfloat16(a)
    if b.dtype != in_type or out_type not in ((in_type, numpy.float32) if bf16_in else (in_type,)):
        raise TypeError(f"_gemm: operands {a.dtype} @ {b.dtype} -> {out.dtype}: the operands "
                        f"share one dtype, and only bf16 ones may give float32")
    if out_type == numpy.float64:
        compute, scalar = cublas.CUBLAS_COMPUTE_64F, numpy.float64
    elif bf16_in:
        compute, scalar = cublas.CUBLAS_COMPUTE_32F, numpy.float32
    else:
        compute, scalar = (cublas.CUBLAS_COMPUTE_32F_FAST_TF32 if cuda.tf32_allowed()
                           else cublas.CUBLAS_COMPUTE_32F), numpy.float32
    # Row-major out = a @ b is column-major out^T = b^T a^T: cuBLAS's first operand is b.
    b, op_b, ld_b = _column_major(b)
    a, op_a, ld_a = _column_major(a)
    one, beta = numpy.ones((), scalar), numpy.array(1 if accumulate else 0, scalar)
    ab_type, item = _cuda_data_type(runtime, in_type), out.itemsize
    cublas.gemmStridedBatchedEx(
        cupy.cuda.device.get_cublas_handle(), op_b, op_a, n, m, k, one.ctypes.data,
        b.data.ptr, ab_type, ld_b, b.strides[0] // b.itemsize,
        a.data.ptr, ab_type, ld_a, 0 if a.shape[0] == 1 else a.strides[0] // a.itemsize,
        beta.ctypes.data, out.data.ptr, _cuda_data_type(runtime, out_type),
        max(out.strides[1] // item, n), out.strides[0] // item,
        batch, compute, cublas.CUBLAS_GEMM_DEFAULT)
    return out


CUDA_R_16BF = 14  # cudaDataType's bfloat16 (library_types.h), where CuPy does not name it


def _cuda_data_type(runtime, dtype):
    """cuBLAS's name (cudaDataType) of the storage `dtype`: float32, float64 or bf16."""
    if dtype == bfloat16.DTYPE:
        return getattr(runtime, "CUDA_R_16BF", CUDA_R_16BF)
    return runtime.CUDA_R_64F if dtype == numpy.float64 else runtime.CUDA_R_32F


def _column_major(matrices):
    """A stack of row-major (R, S) matrices as cuBLAS reads it: the stack (copied only if
    neither axis is contiguous), the operation (0: none, 1: transpose) that makes the
    column-major matrix in memory the (S, R) transpose, and its leading dimension."""
    item = matrices.itemsize
    rows, cols = matrices.shape[1:]
    row_stride, col_stride = matrices.strides[1] // item, matrices.strides[2] // item
    if col_stride == 1 or cols == 1:  # contiguous rows: in memory, column-major (S, R)
        return matrices, 0, max(row_stride if rows > 1 else 1, cols)
    if row_stride == 1 or rows == 1:  # a transposed view: in memory, column-major (R, S)
        return matrices, 1, max(col_stride if cols > 1 else 1, rows)
    return _column_major(backend.get_array_module(matrices).ascontiguousarray(matrices))


def _add_bias(y, bias):
    """y += bias per channel, in place; for a bf16 y by a kernel (kernels_for(y).add_bias,
    the bias float32)."""
    if bias is not None:
        if bfloat16.is_bfloat16(y):
            return backend.kernels_for(y).add_bias(y, bias)
        y += bias.reshape(1, -1, 1, 1)
    return y


def _weight_dtype(x):
    """The dtype a weight gradient is made in from input x: float32 for bf16 (the master
    weights' own), else x's."""
    return numpy.dtype(numpy.float32) if bfloat16.is_bfloat16(x) else x.dtype


def _compute_weight(x, weight):
    """The weight the GEMMs read with input x: a bf16 copy for a bf16 x (one cast kernel
    per forward, outside autograd), else the weight itself."""
    if bfloat16.is_bfloat16(x) and not bfloat16.is_bfloat16(weight):
        return backend.kernels_for(weight).cast(weight, bfloat16.DTYPE)
    return weight


def _bias_grad(gy, has_bias, needed):
    """One deterministic reduction per channel (kernels_for(gy).bias_grad)."""
    return backend.kernels_for(gy).bias_grad(gy) if has_bias and needed else None


class Convolution2D(Function):
    def __init__(self, geometry):
        self.geo = geometry

    def forward(self, x, weight, bias=None):
        need_x, need_w = self.needs_input_grad[:2]
        weight = _compute_weight(x, weight)
        # Backward needs the weight for gx and the input for gW, nothing else.
        self.x = x if need_w else None
        self.weight = weight if need_x else None
        self.in_size, self.has_bias = x.shape[2:], bias is not None
        return _correlate(x, weight, self.geo, bias)

    def backward(self, gy):
        need_x, need_w = self.needs_input_grad[:2]
        gw = _weight_grad(self.x, gy, self.geo) if need_w else None
        self.x = None  # free the saved input before gx is allocated
        gx = _correlate_adjoint(gy, self.weight, self.geo, *self.in_size) if need_x else None
        return gx, gw, _bias_grad(gy, self.has_bias, self.needs_input_grad[-1])


class Deconvolution2D(Function):
    def __init__(self, geometry, out_size):
        self.geo, self.out_size = geometry, out_size

    def forward(self, x, weight, bias=None):
        need_x, need_w = self.needs_input_grad[:2]
        weight = _compute_weight(x, weight)
        self.x = x if need_w else None
        self.weight = weight if need_x else None
        self.has_bias = bias is not None
        return _add_bias(_correlate_adjoint(x, weight, self.geo, *self.out_size), bias)

    def backward(self, gy):
        need_x, need_w = self.needs_input_grad[:2]
        gw = _weight_grad(gy, self.x, self.geo) if need_w else None
        self.x = None
        gx = _correlate(gy, self.weight, self.geo) if need_x else None
        return gx, gw, _bias_grad(gy, self.has_bias, self.needs_input_grad[-1])


def _conv_args(op, x, weight, bias, stride, padding, dilation, groups):
    """Validated tensors and geometry common to conv2d and conv_transpose2d."""
    x = float_tensor(op, "x", x, ndim=4, bf16=True)
    weight = float_tensor(op, "weight", weight, ndim=4)
    if bias is not None:
        bias = float_tensor(op, "bias", bias, ndim=1)
    if bfloat16.is_bfloat16(x.data):  # bf16 activations, float32 master weights
        if weight.dtype != numpy.float32 or (bias is not None and bias.dtype != numpy.float32):
            raise TypeError(f"{op}: a bf16 x {x.shape} takes float32 weight and bias (the master "
                            f"weights), got weight {weight.dtype}"
                            + (f", bias {bias.dtype}" if bias is not None else ""))
    else:
        same_dtype(op, x=x, weight=weight, bias=bias)
    same_device(op, x=x, weight=weight, bias=bias)
    sy, sx = pair(op, "stride", stride)
    ph, pw = pair(op, "padding", padding, minimum=0)
    dy, dx = pair(op, "dilation", dilation)
    if not isinstance(groups, numbers.Integral) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    kh, kw = weight.shape[2:]
    if min(kh, kw) < 1:
        raise ValueError(f"{op}: weight {weight.shape} has an empty kernel")
    if min(x.shape) < 1:
        raise ValueError(f"{op}: x {x.shape} is empty")
    return x, weight, bias, Geometry(kh, kw, sy, sx, ph, pw, dy, dx, int(groups))


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation of x (N, C_in, H, W) with weight (C_out, C_in/groups, kh, kw)."""
    op = "conv2d"
    x, weight, bias, geo = _conv_args(op, x, weight, bias, stride, padding, dilation, groups)
    c_in, c_out = x.shape[1], weight.shape[0]
    shapes = f"x {x.shape}, weight {weight.shape}"
    if c_in % groups or c_out % groups:
        raise ValueError(f"{op}: channels must divide by groups={groups}: {shapes}")
    if weight.shape[1] * groups != c_in:
        raise ValueError(f"{op}: channel mismatch, weight expects {weight.shape[1] * groups} "
                         f"input channels (groups={groups}): {shapes}")
    if bias is not None and bias.shape != (c_out,):
        raise ValueError(f"{op}: bias {bias.shape} must be ({c_out},) for {shapes}")
    extent_h, extent_w = geo.dy * (geo.kh - 1) + 1, geo.dx * (geo.kw - 1) + 1
    if extent_h > x.shape[2] + 2 * geo.ph or extent_w > x.shape[3] + 2 * geo.pw:
        raise ValueError(f"{op}: the {extent_h}x{extent_w} window (dilation included) is larger "
                         f"than the padded input ({x.shape[2]}+2*{geo.ph})x({x.shape[3]}+2*{geo.pw}): "
                         f"{shapes}")
    x = precision.compute_input(op, x)
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return Convolution2D(geo)(*inputs)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, groups=1, dilation=1):
    """The adjoint of conv2d: x (N, C_in, H, W), weight (C_in, C_out/groups, kh, kw),
    output (N, C_out, (H-1)s - 2p + d(k-1) + 1, ...)."""
    op = "conv_transpose2d"
    x, weight, bias, geo = _conv_args(op, x, weight, bias, stride, padding, dilation, groups)
    c_in = x.shape[1]
    c_out = weight.shape[1] * groups
    shapes = f"x {x.shape}, weight {weight.shape}"
    if weight.shape[0] != c_in:
        raise ValueError(f"{op}: channel mismatch, weight expects {weight.shape[0]} input "
                         f"channels: {shapes}")
    if c_in % groups:
        raise ValueError(f"{op}: channels must divide by groups={groups}: {shapes}")
    if bias is not None and bias.shape != (c_out,):
        raise ValueError(f"{op}: bias {bias.shape} must be ({c_out},) for {shapes}")
    out_h = (x.shape[2] - 1) * geo.sy - 2 * geo.ph + geo.dy * (geo.kh - 1) + 1
    out_w = (x.shape[3] - 1) * geo.sx - 2 * geo.pw + geo.dx * (geo.kw - 1) + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"{op}: padding {(geo.ph, geo.pw)} leaves an empty output "
                         f"({out_h}x{out_w}): {shapes}")
    x = precision.compute_input(op, x)
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return Deconvolution2D(geo, (out_h, out_w))(*inputs)


class Linear(Function):
    def forward(self, x, weight, bias=None):
        self.x, self.weight = x, weight
        y = x @ weight.T
        if bias is not None:
            y += bias
        return y

    def backward(self, gy):
        need_x, need_w = self.needs_input_grad[:2]
        gx = gy @ self.weight if need_x else None
        gw = gy.T @ self.x if need_w else None
        gb = gy.sum(axis=0) if len(self.needs_input_grad) == 3 and self.needs_input_grad[2] else None
        return gx, gw, gb


def linear(x, weight, bias=None):
    """y = x W^T + b for x (N, K) (any other shape is flattened to (N, K)), W (M, K)."""
    op = "linear"
    x = float_tensor(op, "x", x)
    weight = float_tensor(op, "weight", weight, ndim=2)
    if bias is not None:
        bias = float_tensor(op, "bias", bias, ndim=1)
    same_dtype(op, x=x, weight=weight, bias=bias)
    same_device(op, x=x, weight=weight, bias=bias)
    if x.ndim < 2:
        raise ValueError(f"linear: x must be (N, K) or (N, ...), got shape {x.shape}")
    features = x.size // x.shape[0] if x.shape[0] else 0
    if features != weight.shape[1]:
        raise ValueError(f"linear: x {x.shape} has {features} features per sample but "
                         f"weight {weight.shape} expects {weight.shape[1]}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias {bias.shape} must be ({weight.shape[0]},) for "
                         f"weight {weight.shape}")
    if x.ndim != 2:
        x = x.reshape(x.shape[0], features)
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return Linear()(*inputs)
