"""The CUDA kernel set: the GPU hot paths, the kernels in kernels/*.cu launched through CuPy.

Every function here has the contract of its kernel in kernel_set.py (and of the NumPy
reference in minifcn/reference/ of the same name + `_numpy`); `CudaKernels` below says
which of the contract it implements, which it takes from the references and which
capabilities it lacks. How one call reaches the GPU, for example max pooling:

    F.max_pool2d(x)                                   functions/pooling.py
      backend.kernels_for(x).max_pool_forward(...)    x is a cupy.ndarray: CudaKernels,
      max_pool_forward(x, ...)                        this module: allocates y and argmax
      _launch("pooling.cu", "max_pool_forward", ...)  converts the scalars, sizes the grid
      _enqueue(...)                                   compiles kernels/pooling.cu once per
                                                      dtype (cupy.RawModule, NVRTC) and
                                                      queues the kernel on the current stream

Nothing here waits for the GPU: results stay on the device, the loss included.

Why it is built this way:
- One source, two dtypes. Each .cu file is compiled twice, with -Dscalar_t=float and
  -Dscalar_t=double (`compile_options`), so a kernel is written once, with no template
  machinery between the reader and the loop.
- Two index widths. Each file is also compiled with -Dindex_t=int and -Dindex_t=long
  long: `_launch` takes the 32-bit build whenever every index the launch can form fits
  (`index_bits`), so the common case pays no 64-bit division, and the 64-bit build,
  kept correct, serves tensors past 2^31 elements. Tests force the 64-bit one on small
  inputs (`forced_index_bits`).
- Arguments converted by the kernel's own signature. `kernel_parameters` reads each
  kernel's C parameter list from its source once; `_launch` converts every argument to
  the declared type (index_t to the chosen width, scalar_t to the array's dtype, int,
  long long ...) and refuses a wrong count, so no call site can hand a 32-bit int to a
  64-bit parameter (the kernel would read garbage, silently), and a launch costs one
  pass over prepared converters instead of a type switch per argument.
- Grid-stride loops: `launch_shape` caps the grid and each thread loops, so any size
  fits in one launch.
- Deterministic gradients: col2im and the pooling backward passes GATHER (one thread
  per input pixel sums what maps to it) instead of scattering with atomicAdd, so two
  runs give bit-identical results.
- Testable without a GPU: the functions below are written against the array module of
  their inputs, and `_enqueue` is the only line that needs CuPy. tests/cuda runs them
  on NumPy arrays with `_enqueue` replaced by a CPU build of the same .cu files
  (tests/cuda/cuda_emulator.py), and compiles the sources with nvcc.

TF32: float32 matrix products (every convolution's GEMM, through cuBLAS) run at full
float32 precision by default. `allow_tf32(True)` lets cuBLAS use TF32 tensor cores
(inputs rounded to 10 mantissa bits, float32 accumulation; several times the GEMM
throughput on Ampere and later GPUs). CuPy's own switch is the environment variable
CUPY_TF32=1, read once at the first float32 product; `allow_tf32` changes the same
setting at any time.
"""
import contextlib
import functools
import numbers
import re
from pathlib import Path

import numpy

from . import backend
from .kernel_set import KernelSet

# A checkout (or an editable install) reads kernels/ beside the package; an installed
# wheel carries the same files inside the package as minifcn/_kernels (setup.py).
_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT_KERNELS = _PACKAGE.parent / "kernels"
KERNEL_DIR = _CHECKOUT_KERNELS if _CHECKOUT_KERNELS.is_dir() else _PACKAGE / "_kernels"
THREADS_PER_BLOCK = 256
MAX_BLOCKS = 65535  # enough to fill any current GPU many times; the loops cover the rest
SCALAR_TYPES = {"float32": "float", "float64": "double"}
INDEX_TYPES = {32: "int", 64: "long long"}  # index_t of the two builds of every file
_INCLUDE = re.compile(r'^#include "([^"]+)"[^\n]*$', re.MULTILINE)
_KERNEL = re.compile(r'extern "C" __global__ void (\w+)\s*\(([^)]*)\)')
_FIXED_TYPES = {"long long": numpy.int64, "int": numpy.int32, "unsigned long long": numpy.uint64,
                "unsigned int": numpy.uint32, "float": numpy.float32, "double": numpy.float64}
_forced_index_bits = None


# --------------------------------------------------------------- compiling and launching
def kernel_files():
    """The names of the kernels/*.cu files."""
    return sorted(path.name for path in KERNEL_DIR.glob("*.cu"))


def kernel_source(filename):
    """The text of kernels/<filename> with each `#include "name"` replaced by the text of
    kernels/<name>: NVRTC compiles a string and never looks in kernels/."""
    text = (KERNEL_DIR / filename).read_text()
    return _INCLUDE.sub(lambda match: kernel_source(match.group(1)), text)


def compile_options(dtype, index_bits=64):
    """The compiler flags that make a kernels/*.cu file the float32 or float64 version,
    with 32- or 64-bit indices."""
    name = numpy.dtype(dtype).name
    if name not in SCALAR_TYPES:
        raise TypeError(f"the CUDA kernels take float32 or float64 arrays, not {name}")
    return (f"-Dscalar_t={SCALAR_TYPES[name]}", f"-Dindex_t={INDEX_TYPES[index_bits]}")


def variants():
    """Every (dtype name, index bits) build of a kernel file."""
    return [(dtype, bits) for dtype in SCALAR_TYPES for bits in INDEX_TYPES]


@functools.lru_cache(maxsize=None)
def kernel_parameters(filename):
    """{kernel name: ((C type, parameter name), ...)} of the kernels kernels/<filename>
    defines, read from its source (qualifiers such as const and __restrict__ dropped
    from the type, `*` kept)."""
    kernels = {}
    for name, parameters in _KERNEL.findall(kernel_source(filename)):
        declared = []
        for parameter in filter(str.strip, parameters.split(",")):
            words = parameter.replace("*", " * ").split()
            type_words = [w for w in words[:-1] if w not in ("const", "__restrict__")]
            declared.append((" ".join(type_words).replace(" *", "*"), words[-1]))
        kernels[name] = tuple(declared)
    return kernels


def index_bits(largest_index):
    """32 when every index a launch forms is below `largest_index` < 2^31, else 64
    (unless a test forces one: `forced_index_bits`)."""
    if _forced_index_bits is not None:
        return _forced_index_bits
    return 32 if largest_index < 2**31 else 64


@contextlib.contextmanager
def forced_index_bits(bits):
    """Launch every kernel in the block with `bits`-bit indices (tests: the 64-bit build
    on small inputs)."""
    global _forced_index_bits
    if bits not in INDEX_TYPES:
        raise ValueError(f"index bits must be 32 or 64, not {bits!r}")
    previous, _forced_index_bits = _forced_index_bits, bits
    try:
        yield
    finally:
        _forced_index_bits = previous


def launch_shape(work_items):
    """(blocks, threads per block) for a grid-stride loop over `work_items` indices."""
    blocks = min(-(-work_items // THREADS_PER_BLOCK), MAX_BLOCKS)
    return blocks, THREADS_PER_BLOCK


@functools.lru_cache(maxsize=None)
def _compiled_module(filename, variant):
    """kernels/<filename> compiled for one (dtype name, index bits), once per process
    (CuPy also keeps the binary in its on-disk cache, so a later process skips NVRTC)."""
    cupy = backend.require_cupy()
    return cupy.RawModule(code=kernel_source(filename), options=compile_options(*variant))


@functools.lru_cache(maxsize=None)
def _kernel_function(filename, kernel_name, variant):
    return _compiled_module(filename, variant).get_function(kernel_name)


def _dims(shape):
    return tuple(shape) if isinstance(shape, tuple) else (shape,)


def _enqueue(filename, kernel_name, variant, blocks, threads, args):
    """Queue one kernel on the current CuPy stream (the only function that needs a GPU).
    `variant` is (dtype name, index bits); blocks and threads an int or a tuple (x, y, z)."""
    _kernel_function(filename, kernel_name, variant)(_dims(blocks), _dims(threads), args)


@functools.lru_cache(maxsize=None)
def _converters(filename, kernel_name):
    """Per parameter: its name and what `_launch` makes of a value for it ("array",
    "index", "scalar", or a NumPy scalar type), prepared once per kernel."""
    try:
        parameters = kernel_parameters(filename)[kernel_name]
    except KeyError:
        raise ValueError(f"kernels/{filename} defines no kernel {kernel_name!r}") from None
    kinds = []
    for ctype, name in parameters:
        if ctype.endswith("*"):
            kinds.append((name, "array"))
        elif ctype in ("index_t", "scalar_t"):
            kinds.append((name, ctype[:-2]))
        elif ctype in _FIXED_TYPES:
            kinds.append((name, _FIXED_TYPES[ctype]))
        else:
            raise TypeError(f"{kernel_name}: cannot pass a {ctype} ({name}) from Python")
    return tuple(kinds)


def _convert(kernel_name, name, kind, value, dtype, index_type):
    """`value` as the kernel's parameter `name` declares it."""
    if kind == "array":
        if not (isinstance(value, numpy.ndarray) or backend.is_cupy_array(value)):
            raise TypeError(f"{kernel_name}: {name} must be an array, got {type(value).__name__}")
        if not value.flags.c_contiguous:
            raise ValueError(f"{kernel_name}: kernels take C-contiguous arrays, got strides "
                             f"{value.strides} for shape {value.shape} ({name})")
        return value
    if isinstance(value, (bool, numpy.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{kernel_name}: {name} must be a number, got {value!r}")
    if kind == "scalar":
        return dtype.type(value)
    if (kind == "index" or numpy.issubdtype(kind, numpy.integer)) and not isinstance(
            value, numbers.Integral):
        raise TypeError(f"{kernel_name}: {name} must be an integer, got {value!r}")
    return index_type(value) if kind == "index" else kind(value)


def _launch(filename, kernel_name, dtype, work_items, *args, grid=None):
    """Run `kernel_name` from kernels/<filename> over `work_items` grid-stride indices
    (or on `grid` = (blocks, threads), each an int or an (x, y, z) tuple)."""
    dtype = numpy.dtype(dtype)
    compile_options(dtype)  # rejects dtypes the kernels are not built for
    kinds = _converters(filename, kernel_name)
    if len(args) != len(kinds):
        raise TypeError(f"{kernel_name} takes {len(kinds)} arguments "
                        f"({', '.join(name for name, _ in kinds)}), got {len(args)}")
    if work_items == 0:
        return
    blocks, threads = grid or launch_shape(work_items)
    threads_in_grid = numpy.prod(_dims(blocks)) * numpy.prod(_dims(threads))
    largest = max([work_items + threads_in_grid] + [
        value.size if kind == "array" else abs(value)
        for (_, kind), value in zip(kinds, args)
        if (kind == "array" and hasattr(value, "size"))
        or (kind == "index" and isinstance(value, numbers.Real))])
    bits = index_bits(largest)
    index_type = numpy.int32 if bits == 32 else numpy.int64
    _enqueue(filename, kernel_name, (dtype.name, bits), blocks, threads,
             tuple(_convert(kernel_name, name, kind, value, dtype, index_type)
                   for (name, kind), value in zip(kinds, args)))


def _module_and_contiguous(*arrays):
    """The array module of the inputs, and each input as a C-contiguous array."""
    xp = backend.get_array_module(arrays[0])
    return (xp,) + tuple(xp.ascontiguousarray(array) for array in arrays)


# ------------------------------------------------------------------------ im2col/col2im
def im2col(x, kh, kw, sy, sx, ph, pw, dy, dx, out_h, out_w):
    """x (C, H, W) -> col (C, kh, kw, out_h, out_w); see reference/im2col.py."""
    xp, x = _module_and_contiguous(x)
    channels, height, width = x.shape
    col = xp.empty((channels, kh, kw, out_h, out_w), dtype=x.dtype)
    _launch("im2col.cu", "im2col", x.dtype, channels * out_h * out_w,
            x, channels, height, width, kh, kw, sy, sx, ph, pw, dy, dx, out_h, out_w, col)
    return col


def col2im(col, height, width, sy, sx, ph, pw, dy, dx):
    """col (C, kh, kw, out_h, out_w) -> x (C, height, width), overlaps summed by gathering."""
    xp, col = _module_and_contiguous(col)
    channels, kh, kw, out_h, out_w = col.shape
    x = xp.empty((channels, height, width), dtype=col.dtype)
    _launch("im2col.cu", "col2im", col.dtype, channels * height * width,
            col, channels, height, width, kh, kw, sy, sx, ph, pw, dy, dx, out_h, out_w, x)
    return x


# ---------------------------------------------------------------------------- pooling
def max_pool_forward(x, kh, kw, sy, sx, ph, pw, out_h, out_w):
    """x (N, C, H, W) -> (y, argmax int32: h * W + w of each window's first maximum)."""
    xp, x = _module_and_contiguous(x)
    n, c, height, width = x.shape
    y = xp.empty((n, c, out_h, out_w), dtype=x.dtype)
    argmax = xp.empty((n, c, out_h, out_w), dtype=xp.int32)
    _launch("pooling.cu", "max_pool_forward", x.dtype, y.size,
            x, n * c, height, width, kh, kw, sy, sx, ph, pw, out_h, out_w, y, argmax)
    return y, argmax


def max_pool_backward(gy, argmax, height, width, kh, kw, sy, sx, ph, pw):
    """gy (N, C, out_h, out_w) -> gx (N, C, height, width): each pixel sums the gy of the
    windows whose argmax it is."""
    xp, gy, argmax = _module_and_contiguous(gy, argmax)
    n, c, out_h, out_w = gy.shape
    gx = xp.empty((n, c, height, width), dtype=gy.dtype)
    _launch("pooling.cu", "max_pool_backward", gy.dtype, gx.size,
            gy, argmax.astype(xp.int32, copy=False), n * c, height, width,
            kh, kw, sy, sx, ph, pw, out_h, out_w, gx)
    return gx


def avg_pool_forward(x, kh, kw, sy, sx, ph, pw, out_h, out_w):
    """x (N, C, H, W) -> y: window sums over Caffe's pool_size."""
    xp, x = _module_and_contiguous(x)
    n, c, height, width = x.shape
    y = xp.empty((n, c, out_h, out_w), dtype=x.dtype)
    _launch("pooling.cu", "avg_pool_forward", x.dtype, y.size,
            x, n * c, height, width, kh, kw, sy, sx, ph, pw, out_h, out_w, y)
    return y


def avg_pool_backward(gy, height, width, kh, kw, sy, sx, ph, pw):
    """gy (N, C, out_h, out_w) -> gx (N, C, height, width)."""
    xp, gy = _module_and_contiguous(gy)
    n, c, out_h, out_w = gy.shape
    gx = xp.empty((n, c, height, width), dtype=gy.dtype)
    _launch("pooling.cu", "avg_pool_backward", gy.dtype, gx.size,
            gy, n * c, height, width, kh, kw, sy, sx, ph, pw, out_h, out_w, gx)
    return gx


# ------------------------------------------------------------------------------- loss
def softmax_cross_entropy_forward(score, target, ignore_index):
    """(loss_sum, count): 0-d device arrays (of score's dtype, and an integer)."""
    xp, score = _module_and_contiguous(score)
    target = xp.ascontiguousarray(target, dtype=xp.int32)
    n, channels, height, width = score.shape
    pixel_loss = xp.empty((n, height, width), dtype=score.dtype)
    counted = xp.empty((n, height, width), dtype=xp.int32)
    _launch("softmax_loss.cu", "softmax_cross_entropy_forward", score.dtype, pixel_loss.size,
            score, target, n, channels, height * width, ignore_index, pixel_loss, counted)
    return pixel_loss.sum(dtype=score.dtype), counted.sum()


def softmax_cross_entropy_backward(score, target, ignore_index, coefficient):
    """gscore (N, C, H, W); `coefficient` (0-d, on the device) is read by the kernel."""
    xp, score = _module_and_contiguous(score)
    target = xp.ascontiguousarray(target, dtype=xp.int32)
    coefficient = xp.asarray(coefficient, dtype=score.dtype)
    n, channels, height, width = score.shape
    gscore = xp.empty(score.shape, dtype=score.dtype)
    _launch("softmax_loss.cu", "softmax_cross_entropy_backward", score.dtype, n * height * width,
            score, target, n, channels, height * width, ignore_index, coefficient, gscore)
    return gscore


# ------------------------------------------------------------------------------- crop
def crop_forward(x, oy, ox, h, w):
    """x (N, C, H, W) -> x[:, :, oy:oy+h, ox:ox+w], contiguous."""
    xp, x = _module_and_contiguous(x)
    n, c, height, width = x.shape
    y = xp.empty((n, c, h, w), dtype=x.dtype)
    _launch("crop.cu", "crop_forward", x.dtype, y.size,
            x, n * c, height, width, oy, ox, h, w, y)
    return y


def crop_backward(gy, height, width, oy, ox):
    """gy (N, C, h, w) -> gx (N, C, height, width): gy at (oy, ox), zeros elsewhere."""
    xp, gy = _module_and_contiguous(gy)
    n, c, h, w = gy.shape
    gx = xp.empty((n, c, height, width), dtype=gy.dtype)
    _launch("crop.cu", "crop_backward", gy.dtype, gx.size,
            gy, n * c, height, width, oy, ox, h, w, gx)
    return gx


# -------------------------------------------------------------------------------- LRN
def lrn_forward(x, size, alpha, beta, k):
    """x (N, C, H, W) -> (y, scale), Caffe LRN across channels."""
    xp, x = _module_and_contiguous(x)
    n, c, height, width = x.shape
    y = xp.empty(x.shape, dtype=x.dtype)
    scale = xp.empty(x.shape, dtype=x.dtype)
    _launch("lrn.cu", "lrn_forward", x.dtype, x.size,
            x, n, c, height * width, size, alpha / size, beta, k, y, scale)
    return y, scale


def lrn_backward(x, y, scale, gy, size, alpha, beta):
    """gx (N, C, H, W) from the saved x, y, scale and the incoming gy."""
    xp, x, y, scale, gy = _module_and_contiguous(x, y, scale, gy)
    n, c, height, width = x.shape
    gx = xp.empty(x.shape, dtype=x.dtype)
    _launch("lrn.cu", "lrn_backward", x.dtype, x.size,
            x, y, scale, gy, n, c, height * width, size, 2.0 * alpha * beta / size, beta, gx)
    return gx


# ---------------------------------------------------------------------------- dropout
def dropout(x, seed, threshold, scale):
    """x * mask * scale, the mask a function of (seed, flat index); see activation.py."""
    xp, x = _module_and_contiguous(x)
    y = xp.empty(x.shape, dtype=x.dtype)
    _launch("dropout.cu", "dropout", x.dtype, x.size, x, x.size, seed, threshold, scale, y)
    return y


# ---------------------------------------------- fused elementwise passes and solver steps
# kernels/elementwise.cu and kernels/solver.cu; the references: reference/elementwise.py,
# reference/solver.py.
BIAS_GRAD_THREADS = 256  # kernels/elementwise.cu's shared array size
BIAS_GRAD_BLOCKS = 1024  # enough (channel, split) blocks to fill a GPU
BIAS_GRAD_MIN_SPLIT = 4 * BIAS_GRAD_THREADS  # at least 4 elements per thread per split


def relu_backward(y, gy):
    """gx = gy where y > 0, else 0: one pass over ReLU's saved output, no mask."""
    xp, y, gy = _module_and_contiguous(y, gy)
    gx = xp.empty(gy.shape, dtype=gy.dtype)
    _launch("elementwise.cu", "relu_backward", gy.dtype, gy.size, y, gy, gy.size, gx)
    return gx


def bias_split_count(images, channels, pixels):
    """How many ranges each channel's N * H * W elements are cut into for bias_grad: a
    function of the sizes only (never of the grid), so the sums are reproducible."""
    count = images * pixels
    wanted = -(-BIAS_GRAD_BLOCKS // channels)
    return max(1, min(wanted, -(-count // BIAS_GRAD_MIN_SPLIT)))


def bias_grad(gy):
    """gy (N, C, H, W) -> gb (C,): per channel, a block-per-range sum then a fixed-order
    sum of the ranges (deterministic, no atomics)."""
    xp, gy = _module_and_contiguous(gy)
    n, c, h, w = gy.shape
    if gy.size == 0:
        return xp.zeros(c, dtype=gy.dtype)
    splits = bias_split_count(n, c, h * w)
    partial = xp.empty(c * splits, dtype=gy.dtype)
    _launch("elementwise.cu", "bias_grad_partial", gy.dtype, gy.size,
            gy, n, c, h * w, splits, partial,
            grid=(min(c * splits, MAX_BLOCKS), BIAS_GRAD_THREADS))
    gb = xp.empty(c, dtype=gy.dtype)
    _launch("elementwise.cu", "bias_grad_finish", gy.dtype, c, partial, c, splits, gb)
    return gb


def accumulate(total, g):
    """total += g in place (total C-contiguous, g of its shape and dtype); returns total."""
    xp = backend.get_array_module(total)
    g = xp.ascontiguousarray(g, dtype=total.dtype)
    _launch("elementwise.cu", "accumulate", total.dtype, total.size, g, total.size, total)
    return total


def _solver_table(param, segments):
    """(grid, chunk count, the chunk table on param's device) for solver.cu's kernels."""
    table = segments.on_device(param)
    chunks = len(table[0])
    return (min(chunks, MAX_BLOCKS), THREADS_PER_BLOCK), chunks, table


def sgd_step(param, grad, history, segments, scalars):
    """One SGD step for every parameter in the flat arenas, one launch (solver.cu);
    `scalars` is a device array, read by the kernel."""
    grid, chunks, table = _solver_table(param, segments)
    _launch("solver.cu", "sgd_step", param.dtype, param.size,
            param, grad, history, chunks, *table, scalars, grid=grid)


def adam_step(param, grad, first, second, segments, scalars):
    """One Adam step for every parameter in the flat arenas, one launch."""
    grid, chunks, table = _solver_table(param, segments)
    _launch("solver.cu", "adam_step", param.dtype, param.size,
            param, grad, first, second, chunks, *table, scalars, grid=grid)


# ------------------------------------------------------------------------- the kernel set
class CudaKernels(KernelSet):
    name = "cuda"
    # conv.py runs whole images on the GPU (its column matrix is a GPU buffer the size
    # of one image's), and Winograd's bands are host code: neither capability here.
    lacks = ("row_tiles", "winograd")
    im2col, col2im = im2col, col2im
    max_pool_forward, max_pool_backward = max_pool_forward, max_pool_backward
    avg_pool_forward, avg_pool_backward = avg_pool_forward, avg_pool_backward
    softmax_cross_entropy_forward = softmax_cross_entropy_forward
    softmax_cross_entropy_backward = softmax_cross_entropy_backward
    crop_forward, crop_backward = crop_forward, crop_backward
    lrn_forward, lrn_backward = lrn_forward, lrn_backward
    dropout = dropout
    relu_backward, bias_grad, accumulate = relu_backward, bias_grad, accumulate
    sgd_step, adam_step = sgd_step, adam_step


KERNELS = CudaKernels()


# ------------------------------------------------------------------------------- TF32
def allow_tf32(enabled=True):
    """Let float32 GEMMs use TF32 tensor cores (True) or not (False, the default);
    returns the previous setting. See the module docstring."""
    linalg = _cupy_linalg()
    previous = tf32_allowed()
    linalg.set_compute_type(numpy.float32, linalg.COMPUTE_TYPE_TF32 if enabled
                            else linalg.COMPUTE_TYPE_DEFAULT)
    return previous


def tf32_allowed():
    """Whether float32 GEMMs may use TF32 now."""
    linalg = _cupy_linalg()
    return linalg.get_compute_type(numpy.float32) == linalg.COMPUTE_TYPE_TF32


def _cupy_linalg():
    """CuPy's GEMM settings (cupy._core._routines_linalg: set_compute_type, the switch
    that CUPY_TF32 sets; not part of CuPy's public API, hence the clear error)."""
    backend.require_cupy()
    try:
        from cupy._core import _routines_linalg as linalg
        linalg.set_compute_type, linalg.get_compute_type, linalg.COMPUTE_TYPE_TF32
    except (ImportError, AttributeError) as error:
        raise RuntimeError("this CuPy version has no set_compute_type; set CUPY_TF32=1 in "
                           f"the environment before the first float32 matmul instead ({error})"
                           ) from None
    return linalg
