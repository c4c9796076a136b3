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
- One source, three storage types. Each .cu file is compiled with -Dscalar_t=float,
  -Dscalar_t=double and (unless the file refuses it: `storage_dtypes`) -DSTORAGE_BF16
  for bf16 arrays (uint16 holding the top half of a float32, minifcn/bfloat16.py)
  (`compile_options`), so a kernel is written once, with no template machinery between
  the reader and the loop. scalar_t is what an array holds, acc_t what the kernel
  computes in: float for float32 and bf16, double for float64 (kernels/common.cuh).
- Two index widths. Each file is also compiled with -Dindex_t=int and -Dindex_t=long
  long: `_launch` takes the 32-bit build whenever every index the launch can form fits
  (`index_bits`), so the common case pays no 64-bit division, and the 64-bit build,
  kept correct, serves tensors past 2^31 elements. Tests force the 64-bit one on small
  inputs (`forced_index_bits`).
- Arguments converted by the kernel's own signature. `kernel_parameters` reads each
  kernel's C parameter list from its source once; `_launch` converts every argument to
  the declared type (index_t to the chosen width, acc_t to float32 or float64 by the
  array's dtype, int, long long ...) and refuses a wrong count, so no call site can
  hand a 32-bit int to a 64-bit parameter (the kernel would read garbage, silently),
  and a launch costs one pass over prepared converters instead of a type switch per
  argument.
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
import math
import numbers
import re
from pathlib import Path

import numpy

from . import backend, bfloat16
from .kernel_set import KernelSet
from .reference.pooling import max_pool_offset_dtype

# A checkout (or an editable install) reads kernels/ beside the package; an installed
# wheel carries the same files inside the package as minifcn/_kernels (setup.py).
_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT_KERNELS = _PACKAGE.parent / "kernels"
KERNEL_DIR = _CHECKOUT_KERNELS if _CHECKOUT_KERNELS.is_dir() else _PACKAGE / "_kernels"
THREADS_PER_BLOCK = 256
MAX_BLOCKS = 65535  # enough to fill any current GPU many times; the loops cover the rest
# scalar_t (the storage type) of each array dtype's build, and acc_t (the arithmetic
# type) as a dtype: bf16 is held as uint16 and computed in float32
SCALAR_TYPES = {"float32": "float", "float64": "double", "uint16": "unsigned short"}
ACC_DTYPES = {"float32": numpy.dtype(numpy.float32), "float64": numpy.dtype(numpy.float64),
              "uint16": numpy.dtype(numpy.float32)}
_NO_BF16 = re.compile(r'^#ifdef STORAGE_BF16\s*\n#error "([^"]*)"', re.MULTILINE)
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
    """The compiler flags that make a kernels/*.cu file the float32, float64 or bf16
    (uint16) version, with 32- or 64-bit indices."""
    name = numpy.dtype(dtype).name
    if name not in SCALAR_TYPES:
        raise TypeError(f"the CUDA kernels take float32, float64 or bf16 (uint16) arrays, "
                        f"not {name}")
    storage = "-DSTORAGE_BF16" if name == bfloat16.DTYPE.name else f"-Dscalar_t={SCALAR_TYPES[name]}"
    return (storage, f"-Dindex_t={INDEX_TYPES[index_bits]}")


def acc_dtype(dtype):
    """The dtype a kernel computes an array of `dtype` in (acc_t): float32 for float32
    and bf16, float64 for float64."""
    compile_options(dtype)  # rejects dtypes the kernels are not built for
    return ACC_DTYPES[numpy.dtype(dtype).name]


def bf16_refusal(filename):
    """Why kernels/<filename> has no bf16 build (its #error under STORAGE_BF16), or None."""
    match = _NO_BF16.search((KERNEL_DIR / filename).read_text())
    return match and match.group(1)


def storage_dtypes(filename):
    """The dtype names kernels/<filename> is built for."""
    return tuple(name for name in SCALAR_TYPES
                 if name != bfloat16.DTYPE.name or bf16_refusal(filename) is None)


def variants(filename):
    """Every (dtype name, index bits) build of kernels/<filename>."""
    return [(dtype, bits) for dtype in storage_dtypes(filename) for bits in INDEX_TYPES]


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


class _Prepared:
    """What `_launch` needs to know of one kernel at one dtype, worked out once: which
    parameters are arrays, indices, reals (acc_t) or fixed C types, so that a launch is
    one pass over its arguments (the training step launches hundreds)."""

    def __init__(self, filename, kernel_name, dtype):
        self.dtype = numpy.dtype(dtype)
        self.real = acc_dtype(self.dtype)
        if self.dtype.name not in storage_dtypes(filename):
            raise TypeError(f"{kernel_name} (kernels/{filename}) takes float32 or float64 "
                            f"arrays, not bf16: {bf16_refusal(filename)}")
        try:
            parameters = kernel_parameters(filename)[kernel_name]
        except KeyError:
            raise ValueError(f"kernels/{filename} defines no kernel {kernel_name!r}") from None
        self.names = tuple(name for _, name in parameters)
        self.arrays, self.indices, self.reals, self.fixed = [], [], [], []
        for slot, (ctype, name) in enumerate(parameters):
            if ctype.endswith("*"):
                self.arrays.append(slot)
            elif ctype == "index_t":
                self.indices.append(slot)
            elif ctype == "acc_t" or (ctype == "scalar_t" and self.dtype.kind == "f"):
                self.reals.append(slot)
            elif ctype in _FIXED_TYPES:
                self.fixed.append((slot, _FIXED_TYPES[ctype]))
            else:
                raise TypeError(f"{kernel_name}: cannot pass a {ctype} ({name}) from Python")
        self.variants = {bits: (self.dtype.name, bits) for bits in INDEX_TYPES}


@functools.lru_cache(maxsize=None)
def _prepared(filename, kernel_name, dtype):
    return _Prepared(filename, kernel_name, dtype)


def _number(kernel_name, name, value, integral):
    """`value` if it is a number the parameter takes (an integer where `integral`), else
    a TypeError naming the kernel and the parameter."""
    kind = type(value)
    if kind is int or (kind is float and not integral):
        return value
    if isinstance(value, (bool, numpy.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{kernel_name}: {name} must be a number, got {value!r}")
    if integral and not isinstance(value, numbers.Integral):
        raise TypeError(f"{kernel_name}: {name} must be an integer, got {value!r}")
    return value


def _launch(filename, kernel_name, dtype, work_items, *args, grid=None):
    """Run `kernel_name` from kernels/<filename> over `work_items` grid-stride indices
    (or on `grid` = (blocks, threads), each an int or an (x, y, z) tuple). Every
    argument is converted to the type the kernel declares (see the module docstring)."""
    kernel = _prepared(filename, kernel_name, dtype)
    if len(args) != len(kernel.names):
        raise TypeError(f"{kernel_name} takes {len(kernel.names)} arguments "
                        f"({', '.join(kernel.names)}), got {len(args)}")
    blocks, threads = grid or launch_shape(work_items)
    largest = work_items + math.prod(_dims(blocks)) * math.prod(_dims(threads))
    converted = list(args)
    for slot in kernel.arrays:
        value = args[slot]
        if not (isinstance(value, numpy.ndarray) or backend.is_cupy_array(value)):
            raise TypeError(f"{kernel_name}: {kernel.names[slot]} must be an array, got "
                            f"{type(value).__name__}")
        if not value.flags.c_contiguous:
            raise ValueError(f"{kernel_name}: kernels take C-contiguous arrays, got strides "
                             f"{value.strides} for shape {value.shape} ({kernel.names[slot]})")
        largest = max(largest, value.size)
    for slot in kernel.indices:
        largest = max(largest, abs(_number(kernel_name, kernel.names[slot], args[slot], True)))
    if work_items == 0:
        return
    bits = index_bits(largest)
    index_type = numpy.int32 if bits == 32 else numpy.int64
    for slot in kernel.indices:
        converted[slot] = index_type(args[slot])
    for slot in kernel.reals:
        converted[slot] = kernel.real.type(_number(kernel_name, kernel.names[slot], args[slot],
                                                   False))
    for slot, ctype in kernel.fixed:
        integral = numpy.issubdtype(ctype, numpy.integer)
        converted[slot] = ctype(_number(kernel_name, kernel.names[slot], args[slot], integral))
    _enqueue(filename, kernel_name, kernel.variants[bits], blocks, threads, tuple(converted))


def _module_and_contiguous(*arrays):
    """The array module of the inputs, and each input as a C-contiguous array."""
    xp = backend.get_array_module(arrays[0])
    return (xp,) + tuple(xp.ascontiguousarray(array) for array in arrays)


def _same_dtype(op, *arrays):
    """A TypeError naming `op` unless the arrays share one dtype (a bf16 array read as
    float32, or the reverse, would be garbage, not an error, on the GPU)."""
    dtypes = [array.dtype for array in arrays]
    if any(dtype != dtypes[0] for dtype in dtypes):
        raise TypeError(f"{op}: the arrays must share one dtype, got "
                        f"{', '.join(dtype.name for dtype in dtypes)}")


def _same_shape(op, a, b):
    if a.shape != b.shape:
        raise ValueError(f"{op}: shapes {a.shape} and {b.shape} differ")


# ------------------------------------------------------------------------ im2col/col2im
# These kernels, and the pooling ones below, take a 3-D grid (kernels/im2col.cu,
# pooling.cu): z over channels or planes, y over im2col's taps, x a grid-stride loop
# over one plane's rows of runs.
GRID_YZ_LIMIT = 65535  # CUDA's limit on gridDim.y and .z; the kernels loop past it
RUN_THRESHOLD = 1 << 20  # outputs from which a thread computes runs of 4, not 1


def _runs(rows, row_length, outputs):
    """(run, rows * runs per row): outputs per thread along a row, 4 for launches of at
    least RUN_THRESHOLD outputs (the index arithmetic paid once per 4, 16-byte stores),
    1 for smaller ones, whose threads an H200 could hold 4 times over (132 SMs x 2048
    threads; fc6's col2im: 512 x 22 x 22 pixels); and the grid-stride count per plane."""
    run = 4 if outputs >= RUN_THRESHOLD else 1
    return run, rows * -(-row_length // run)


def _plane_grid(work_per_plane, y, z):
    """(blocks, threads) for `work_per_plane` grid-stride items in x, times y and z: a
    block of a multiple of 32 threads, no more than a small plane needs (fc6: 64)."""
    threads = min(THREADS_PER_BLOCK, max(32, -(-work_per_plane // 32) * 32))
    blocks_x = min(max(1, -(-work_per_plane // threads)), MAX_BLOCKS)
    return (blocks_x, min(max(y, 1), GRID_YZ_LIMIT), min(max(z, 1), GRID_YZ_LIMIT)), threads


def im2col(x, kh, kw, sy, sx, ph, pw, dy, dx, out_h, out_w):
    """x (C, H, W) -> col (C, kh, kw, out_h, out_w); see reference/im2col.py."""
    xp, x = _module_and_contiguous(x)
    channels, height, width = x.shape
    col = xp.empty((channels, kh, kw, out_h, out_w), dtype=x.dtype)
    run, rows_of_runs = _runs(out_h, out_w, col.size)
    _launch("im2col.cu", "im2col", x.dtype, rows_of_runs,
            x, channels, height, width, kh, kw, sy, sx, ph, pw, dy, dx, out_h, out_w, run, col,
            grid=_plane_grid(rows_of_runs, kh * kw, channels))
    return col


def col2im(col, height, width, sy, sx, ph, pw, dy, dx):
    """col (C, kh, kw, out_h, out_w) -> x (C, height, width), overlaps summed by gathering."""
    xp, col = _module_and_contiguous(col)
    channels, kh, kw, out_h, out_w = col.shape
    x = xp.empty((channels, height, width), dtype=col.dtype)
    run, rows_of_runs = _runs(height, width, x.size)
    _launch("im2col.cu", "col2im", col.dtype, rows_of_runs,
            col, channels, height, width, kh, kw, sy, sx, ph, pw, dy, dx, out_h, out_w, run, x,
            grid=_plane_grid(rows_of_runs, 1, channels))
    return x


def conv_implicit_gemm(x, weight, sy, sx, ph, pw, dy, dx, out_h, out_w):
    """x (N, C_in, H, W) * weight (C_out, C_in, kh, kw) -> y, the columns never in memory
    (kernels/implicit_gemm.cu: 64 x 64 tiles of 256 threads)."""
    xp, x, weight = _module_and_contiguous(x, weight)
    n, channels, height, width = x.shape
    c_out, _, kh, kw = weight.shape
    y = xp.empty((n, c_out, out_h, out_w), dtype=x.dtype)
    tiles = (min(-(-n * out_h * out_w // 64), MAX_BLOCKS), min(-(-c_out // 64), MAX_BLOCKS))
    _launch("implicit_gemm.cu", "conv_implicit_gemm", x.dtype, y.size,
            x, weight, n, channels, height, width, c_out, kh, kw, sy, sx, ph, pw, dy, dx,
            out_h, out_w, y, grid=(tiles, 256))
    return y


# ---------------------------------------------------------------------------- pooling
def _wide(kh, kw):
    """The kernel name suffix for an argmax of int32 offsets (windows over 255 cells)."""
    return "" if max_pool_offset_dtype(kh, kw) == numpy.uint8 else "_wide"


def max_pool_forward(x, kh, kw, sy, sx, ph, pw, out_h, out_w):
    """x (N, C, H, W) -> (y, argmax: each first maximum's offset i * kw + j in its window,
    uint8 up to 255 cells, else int32)."""
    xp, x = _module_and_contiguous(x)
    n, c, height, width = x.shape
    y = xp.empty((n, c, out_h, out_w), dtype=x.dtype)
    argmax = xp.empty((n, c, out_h, out_w), dtype=max_pool_offset_dtype(kh, kw))
    _launch("pooling.cu", "max_pool_forward" + _wide(kh, kw), x.dtype, out_h * out_w,
            x, n * c, height, width, kh, kw, sy, sx, ph, pw, out_h, out_w, y, argmax,
            grid=_plane_grid(out_h * out_w, 1, n * c))
    return y, argmax


def max_pool_backward(gy, argmax, height, width, kh, kw, sy, sx, ph, pw):
    """gy (N, C, out_h, out_w) -> gx (N, C, height, width): each pixel sums the gy of the
    windows whose argmax cell it is."""
    xp, gy, argmax = _module_and_contiguous(gy, argmax)
    n, c, out_h, out_w = gy.shape
    offset_dtype = max_pool_offset_dtype(kh, kw)
    if argmax.dtype != offset_dtype or argmax.shape != gy.shape:
        raise ValueError(f"max_pool_backward: argmax must be {numpy.dtype(offset_dtype).name} "
                         f"{gy.shape} for a {kh}x{kw} window, got {argmax.dtype} {argmax.shape}")
    gx = xp.empty((n, c, height, width), dtype=gy.dtype)
    run, rows_of_runs = _runs(height, width, gx.size)
    _launch("pooling.cu", "max_pool_backward" + _wide(kh, kw), gy.dtype, rows_of_runs,
            gy, argmax, n * c, height, width, kh, kw, sy, sx, ph, pw, out_h, out_w, run, gx,
            grid=_plane_grid(rows_of_runs, 1, n * c))
    return gx


def avg_pool_forward(x, kh, kw, sy, sx, ph, pw, out_h, out_w):
    """x (N, C, H, W) -> y: window sums over Caffe's pool_size."""
    xp, x = _module_and_contiguous(x)
    n, c, height, width = x.shape
    y = xp.empty((n, c, out_h, out_w), dtype=x.dtype)
    _launch("pooling.cu", "avg_pool_forward", x.dtype, out_h * out_w,
            x, n * c, height, width, kh, kw, sy, sx, ph, pw, out_h, out_w, y,
            grid=_plane_grid(out_h * out_w, 1, n * c))
    return y


def avg_pool_backward(gy, height, width, kh, kw, sy, sx, ph, pw):
    """gy (N, C, out_h, out_w) -> gx (N, C, height, width)."""
    xp, gy = _module_and_contiguous(gy)
    n, c, out_h, out_w = gy.shape
    gx = xp.empty((n, c, height, width), dtype=gy.dtype)
    run, rows_of_runs = _runs(height, width, gx.size)
    _launch("pooling.cu", "avg_pool_backward", gy.dtype, rows_of_runs,
            gy, n * c, height, width, kh, kw, sy, sx, ph, pw, out_h, out_w, run, gx,
            grid=_plane_grid(rows_of_runs, 1, n * c))
    return gx


# ------------------------------------------------------------------------------- loss
LOSS_THREADS = 256    # a block of softmax_loss.cu's forward: its fixed reduction tree
LOSS_PARTIALS = 4096  # about the most chunk partials the one-block total adds up
LOSS_CHUNK = 256      # pixels a forward block takes at least: one a thread, so that a
                      # batch-1 image still fills the GPU (977 blocks at 500 x 500)


def softmax_cross_entropy_forward(score, target, ignore_index):
    """(loss_sum, count): 0-d device arrays (of score's dtype, and int64). Two launches:
    per-chunk partials, then their total, in a fixed order (bit-identical every run)."""
    xp, score = _module_and_contiguous(score)
    target = xp.ascontiguousarray(target, dtype=xp.int32)
    n, channels, height, width = score.shape
    pixels = height * width
    if n * pixels == 0:
        return xp.zeros((), dtype=score.dtype), xp.zeros((), dtype=xp.int64)
    chunk = max(LOSS_CHUNK, -(-n * pixels // (LOSS_PARTIALS * LOSS_THREADS)) * LOSS_THREADS)
    chunks = -(-pixels // chunk)
    partial_loss = xp.empty(n * chunks, dtype=score.dtype)
    partial_count = xp.empty(n * chunks, dtype=xp.int64)
    grid = ((min(chunks, MAX_BLOCKS), min(n, MAX_BLOCKS)), LOSS_THREADS)
    _launch("softmax_loss.cu", "softmax_cross_entropy_forward", score.dtype, n * pixels,
            score, target, n, channels, pixels, ignore_index, chunk, partial_loss,
            partial_count, grid=grid)
    loss_sum = xp.empty((), dtype=score.dtype)
    count = xp.empty((), dtype=xp.int64)
    _launch("softmax_loss.cu", "softmax_cross_entropy_total", score.dtype, partial_loss.size,
            partial_loss, partial_count, partial_loss.size, loss_sum, count,
            grid=(1, LOSS_THREADS))
    return loss_sum, count


def softmax_cross_entropy_backward(score, target, ignore_index, coefficient):
    """gscore (N, C, H, W); `coefficient` (0-d, on the device) is read by the kernel."""
    xp, score = _module_and_contiguous(score)
    target = xp.ascontiguousarray(target, dtype=xp.int32)
    coefficient = xp.asarray(coefficient, dtype=score.dtype)
    n, channels, height, width = score.shape
    gscore = xp.empty(score.shape, dtype=score.dtype)
    pixels = height * width
    grid = ((min(-(-pixels // THREADS_PER_BLOCK), MAX_BLOCKS), min(n, MAX_BLOCKS)),
            THREADS_PER_BLOCK)
    _launch("softmax_loss.cu", "softmax_cross_entropy_backward", score.dtype, n * pixels,
            score, target, n, channels, pixels, ignore_index, coefficient, gscore, grid=grid)
    return gscore


# ------------------------------------------------------------------------------- crop
CROP_ITEMS_PER_STEP = 4  # kernels/crop.cu's: items a thread moves per step along a row


def _crop_rows_grid(rows, row_items, itemsize, vector):
    """(largest index, grid) of crop.cu over `rows` rows of `row_items` elements:
    blockDim.x covers a row in CROP_ITEMS_PER_STEP steps (of 16-byte vectors when the
    kernel can take them), 32 to 256 threads, the rest of a 256-thread block in y."""
    items = -(-row_items // (16 // itemsize)) if vector else row_items
    along = min(THREADS_PER_BLOCK, max(32, -(-items // (CROP_ITEMS_PER_STEP * 32)) * 32))
    across = THREADS_PER_BLOCK // along
    blocks = (min(-(-items // (CROP_ITEMS_PER_STEP * along)), MAX_BLOCKS),
              min(-(-rows // across), MAX_BLOCKS))
    # the kernel forms indices up to a row's end plus CROP_ITEMS_PER_STEP grid widths
    return rows * row_items + CROP_ITEMS_PER_STEP * blocks[0] * along, (blocks, (along, across))


def _crop_vectors(width, ox, w, itemsize):
    """Whether crop.cu can move 16-byte vectors (its pointers aside)."""
    lanes = 16 // itemsize
    return width % lanes == ox % lanes == w % lanes == 0


def crop_forward(x, oy, ox, h, w):
    """x (N, C, H, W) -> x[:, :, oy:oy+h, ox:ox+w], contiguous."""
    xp, x = _module_and_contiguous(x)
    n, c, height, width = x.shape
    y = xp.empty((n, c, h, w), dtype=x.dtype)
    if y.size == 0:
        return y
    largest, grid = _crop_rows_grid(n * c * h, w, x.itemsize,
                                    _crop_vectors(width, ox, w, x.itemsize))
    _launch("crop.cu", "crop_forward", x.dtype, largest,
            x, n * c, height, width, oy, ox, h, w, y, grid=grid)
    return y


def crop_backward(gy, height, width, oy, ox):
    """gy (N, C, h, w) -> gx (N, C, height, width): gy at (oy, ox), zeros elsewhere."""
    xp, gy = _module_and_contiguous(gy)
    n, c, h, w = gy.shape
    gx = xp.empty((n, c, height, width), dtype=gy.dtype)
    if gx.size == 0:
        return gx
    largest, grid = _crop_rows_grid(n * c * height, width, gy.itemsize,
                                    _crop_vectors(width, ox, w, gy.itemsize))
    _launch("crop.cu", "crop_backward", gy.dtype, largest,
            gy, n * c, height, width, oy, ox, h, w, gx, grid=grid)
    return gx


# -------------------------------------------------------------------------------- LRN
LRN_RUN = 16  # channels a thread of kernels/lrn.cu walks


def lrn_forward(x, size, alpha, beta, k):
    """x (N, C, H, W) -> (y, scale), Caffe LRN across channels."""
    xp, x = _module_and_contiguous(x)
    n, c, height, width = x.shape
    y = xp.empty(x.shape, dtype=x.dtype)
    scale = xp.empty(x.shape, dtype=x.dtype)
    _launch("lrn.cu", "lrn_forward", x.dtype, n * -(-c // LRN_RUN) * height * width,
            x, n, c, height * width, LRN_RUN, size, alpha / size, beta, k, y, scale)
    return y, scale


def lrn_backward(x, y, scale, gy, size, alpha, beta):
    """gx (N, C, H, W) from the saved x, y, scale and the incoming gy."""
    xp, x, y, scale, gy = _module_and_contiguous(x, y, scale, gy)
    n, c, height, width = x.shape
    gx = xp.empty(x.shape, dtype=x.dtype)
    _launch("lrn.cu", "lrn_backward", x.dtype, n * -(-c // LRN_RUN) * height * width,
            x, y, scale, gy, n, c, height * width, LRN_RUN, size, 2.0 * alpha * beta / size,
            beta, gx)
    return gx


# ---------------------------------------------------------------------------- dropout
def dropout(x, seed, threshold, scale):
    """x * mask * scale, the mask a function of (seed, flat index); see activation.py.
    `seed` is an int, or a 1-element int64 device array (a captured step's, graph.py).
    One thread per 16-byte vector (kernels/dropout.cu)."""
    xp, x = _module_and_contiguous(x)
    y = xp.empty(x.shape, dtype=x.dtype)
    grid = launch_shape(max(1, x.size // (16 // x.itemsize)))
    if hasattr(seed, "shape"):
        _launch("dropout.cu", "dropout_seed_on_device", x.dtype, x.size,
                x, x.size, seed, threshold, scale, y, grid=grid)
    else:
        _launch("dropout.cu", "dropout", x.dtype, x.size, x, x.size, seed, threshold, scale, y,
                grid=grid)
    return y


# ---------------------------------------------- fused elementwise passes and solver steps
# kernels/elementwise.cu and kernels/solver.cu; the references: reference/elementwise.py,
# reference/solver.py.
BIAS_GRAD_THREADS = 256  # kernels/elementwise.cu's shared array size
BIAS_GRAD_BLOCKS = 1024  # enough (channel, split) blocks to fill a GPU
BIAS_GRAD_MIN_SPLIT = 4 * BIAS_GRAD_THREADS  # at least 4 elements per thread per split


ITEMS_PER_STEP = 4  # kernels/elementwise.cu's: elements a thread loads per step


def _items_grid(size):
    """(largest index, grid) of elementwise.cu's ITEMS_PER_STEP kernels: a thread per 4
    elements; a thread forms indices up to 3 grid widths past its first."""
    blocks, threads = launch_shape(max(1, -(-size // ITEMS_PER_STEP)))
    return size + ITEMS_PER_STEP * blocks * threads, (blocks, threads)


def _launch_items(kernel_name, dtype, size, *args):
    largest, grid = _items_grid(size)
    if size:
        _launch("elementwise.cu", kernel_name, dtype, largest, *args, grid=grid)


def relu_forward(x):
    """y = max(x, 0), NaN kept, as a new array of x's dtype."""
    xp, x = _module_and_contiguous(x)
    y = xp.empty(x.shape, dtype=x.dtype)
    _launch_items("relu_forward", x.dtype, x.size, x, x.size, y)
    return y


def add(a, b):
    """a + b, a new array (same shape and dtype), rounded once."""
    _same_dtype("add", a, b)
    _same_shape("add", a, b)
    xp, a, b = _module_and_contiguous(a, b)
    y = xp.empty(a.shape, dtype=a.dtype)
    _launch_items("add", a.dtype, a.size, a, b, a.size, y)
    return y


def add_bias(y, bias):
    """y (N, C, H, W) += bias[c] in place (y C-contiguous; bias of acc_dtype(y.dtype):
    float32 for a bf16 y); returns y."""
    if y.ndim != 4 or bias.shape != (y.shape[1],):
        raise ValueError(f"add_bias: y must be (N, C, H, W) and bias (C,), got {y.shape} and "
                         f"{bias.shape}")
    if bias.dtype != acc_dtype(y.dtype):
        raise TypeError(f"add_bias: a {y.dtype.name} y takes a {acc_dtype(y.dtype).name} bias, "
                        f"not {bias.dtype.name}")
    if not y.flags.c_contiguous:
        raise ValueError(f"add_bias: y is updated in place and must be C-contiguous, got "
                         f"strides {y.strides} for shape {y.shape}")
    xp = backend.get_array_module(y)
    bias = xp.ascontiguousarray(bias)
    n, c, h, w = y.shape
    _launch("elementwise.cu", "add_bias", y.dtype, y.size, bias, n * c, c, h * w, y,
            grid=_plane_grid(h * w, 1, n * c))
    return y


def cast(x, dtype):
    """x as a new C-contiguous array of `dtype`: float32 -> bf16 (uint16, rounded to
    nearest even) or bf16 -> float32 (exact); the same dtype gives a copy."""
    dtype = numpy.dtype(dtype)
    xp, x = _module_and_contiguous(x)
    if x.dtype == dtype:
        return x.copy()
    if {x.dtype, dtype} != {numpy.dtype(numpy.float32), bfloat16.DTYPE}:
        raise TypeError(f"cast: converts float32 to bf16 (uint16) and back, not {x.dtype.name} "
                        f"to {dtype.name}")
    y = xp.empty(x.shape, dtype=dtype)
    if dtype == bfloat16.DTYPE:  # both in the bf16 build: acc_t is float32 there
        _launch_items("cast_from_acc", dtype, x.size, x, x.size, y)
    else:
        _launch_items("cast_to_acc", x.dtype, x.size, x, x.size, y)
    return y


def relu_backward(y, gy):
    """gx = gy where y > 0, else 0: one pass over ReLU's saved output, no mask."""
    _same_dtype("relu_backward", y, gy)
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
    """gy (N, C, H, W) -> gb (C,) of acc_dtype(gy.dtype) (float32 for a bf16 gy): per
    channel, a block-per-range sum then a fixed-order sum of the ranges (deterministic,
    no atomics)."""
    xp, gy = _module_and_contiguous(gy)
    n, c, h, w = gy.shape
    if gy.size == 0:
        return xp.zeros(c, dtype=acc_dtype(gy.dtype))
    splits = bias_split_count(n, c, h * w)
    partial = xp.empty(c * splits, dtype=acc_dtype(gy.dtype))
    _launch("elementwise.cu", "bias_grad_partial", gy.dtype, gy.size,
            gy, n, c, h * w, splits, partial,
            grid=(min(c * splits, MAX_BLOCKS), BIAS_GRAD_THREADS))
    gb = xp.empty(c, dtype=partial.dtype)
    _launch("elementwise.cu", "bias_grad_finish", gy.dtype, c, partial, c, splits, gb)
    return gb


def accumulate(total, g):
    """total += g in place (total C-contiguous, g of its shape and dtype); returns total."""
    xp = backend.get_array_module(total)
    if bfloat16.DTYPE in (total.dtype, g.dtype):
        _same_dtype("accumulate", total, g)  # a float cast of the bits would be garbage
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
    conv_implicit_gemm = conv_implicit_gemm
    max_pool_forward, max_pool_backward = max_pool_forward, max_pool_backward
    avg_pool_forward, avg_pool_backward = avg_pool_forward, avg_pool_backward
    softmax_cross_entropy_forward = softmax_cross_entropy_forward
    softmax_cross_entropy_backward = softmax_cross_entropy_backward
    crop_forward, crop_backward = crop_forward, crop_backward
    lrn_forward, lrn_backward = lrn_forward, lrn_backward
    dropout = dropout
    relu_backward, bias_grad, accumulate = relu_backward, bias_grad, accumulate
    relu_forward, add, add_bias, cast = relu_forward, add, add_bias, cast
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
        for name in ("set_compute_type", "get_compute_type", "COMPUTE_TYPE_TF32"):
            getattr(linalg, name)
    except (ImportError, AttributeError) as error:
        raise RuntimeError("this CuPy version has no set_compute_type; set CUPY_TF32=1 in "
                           f"the environment before the first float32 matmul instead ({error})"
                           ) from None
    return linalg
