"""The kernel contract: every hot path an op hands to a kernel, written down once.

An op asks `backend.kernels_for(array)` for the kernel set that runs on that array
and calls its kernels by attribute, e.g. `kernels_for(x).im2col(...)`, so an editor's
go-to-definition leads from the op here, and from here to the three sets:

    NumpyKernels   reference/__init__.py   the pure-array references: what to read first,
                                           and the CPU kernels when numba is off
    NumbaKernels   cpu/__init__.py         numba kernels, the CPU default when numba imports
    CudaKernels    cuda.py                 the CUDA kernels in kernels/*.cu, via CuPy

A set must define every kernel below, or name it: in `fallbacks` when it takes the
NumPy reference on purpose (e.g. numba has no LRN), or in `lacks` a whole capability
(the CUDA set has no row tiles and no Winograd path), which turns that capability's
attribute off so that conv.py never asks for those kernels. Anything else is a
TypeError when the set's class is defined, that is at import, never a silent fallback
at run time. Arguments are arrays and Python numbers; shapes are NCHW.
"""

# A capability and the kernels it needs. conv.py reads `kernels.row_tiles` (walk an
# image in bands of output rows through a host buffer) and `kernels.winograd` (run 3x3
# stride-1 convolutions through functions/winograd.py); nothing else branches on the
# device.
CAPABILITIES = {
    "row_tiles": ("im2col_tile", "col2im_tile"),
    "winograd": ("winograd_input", "winograd_output", "winograd_gy"),
}


class KernelSet:
    """The contract. Each method is one kernel: its signature and what it returns."""

    name = "contract"
    fallbacks = ()  # kernels taken from the NumPy references on purpose, by name
    lacks = ()      # capabilities (CAPABILITIES' keys) this set does not have
    row_tiles = winograd = True

    # ---------------------------------------------------------------- convolution
    def im2col(x, kh, kw, sy, sx, ph, pw, dy, dx, out_h, out_w):
        """x (C, H, W) -> col (C, kh, kw, out_h, out_w) (reference/im2col.py)."""

    def col2im(col, height, width, sy, sx, ph, pw, dy, dx):
        """col (C, kh, kw, out_h, out_w) -> image (C, height, width), summing overlaps."""

    def conv_implicit_gemm(x, weight, sy, sx, ph, pw, dy, dx, out_h, out_w):
        """x (N, C_in, H, W) * weight (C_out, C_in, kh, kw) -> y (N, C_out, out_h, out_w),
        groups 1, the columns never in memory (reference/implicit_gemm.py)."""

    def im2col_tile(x, kh, kw, sy, sx, ph, pw, dy, dx, first_row, col):
        """Write the columns of output rows [first_row, first_row + col.shape[3]) of x
        into col (C, kh, kw, rows, out_w); returns col. Capability row_tiles."""

    def col2im_tile(col, first_row, sy, sx, ph, pw, dy, dx, image):
        """Add those columns onto image (C, H, W) in place; returns image. row_tiles."""

    def winograd_input(x, ph, pw, first, rows, v):
        """V[:, :, :rows * cols] = B^T d B for tile rows [first, first + rows) of x
        (C, H, W) (functions/winograd.py). Capability winograd."""

    def winograd_output(m, first, rows, bias, y):
        """y (C_out, out_h, out_w)'s rows [2 first, 2 first + 2 rows) = A^T M A + bias."""

    def winograd_gy(gy, first, rows, dm):
        """dM[:, :, :rows * cols] = A g A^T for gy's 2x2 blocks in those tile rows."""

    # -------------------------------------------------------------------- pooling
    def max_pool_forward(x, kh, kw, sy, sx, ph, pw, out_h, out_w):
        """x (N, C, H, W) -> (y, argmax): argmax the offset i * kw + j of each maximum
        inside its window, uint8 for windows of up to 255 cells, else int32 (NaN wins,
        ties keep the first in scan order: functions/pooling.py)."""

    def max_pool_backward(gy, argmax, height, width, kh, kw, sy, sx, ph, pw):
        """gy sent to the cell of each window that argmax names: gx (N, C, height, width)."""

    def avg_pool_forward(x, kh, kw, sy, sx, ph, pw, out_h, out_w):
        """x (N, C, H, W) -> y, each window's sum over Caffe's pool size."""

    def avg_pool_backward(gy, height, width, kh, kw, sy, sx, ph, pw):
        """gy spread evenly over each window: gx (N, C, height, width)."""

    # ----------------------------------------------------------------------- loss
    def softmax_cross_entropy_forward(score, target, ignore_index):
        """-> (loss_sum, count), 0-d arrays on the scores' device (functions/loss.py)."""

    def softmax_cross_entropy_backward(score, target, ignore_index, coefficient):
        """-> gscore (N, C, H, W); coefficient is a 0-d array on the device."""

    # --------------------------------------------------------- crop, LRN, dropout
    def crop_forward(x, oy, ox, h, w):
        """x[:, :, oy:oy+h, ox:ox+w] as a contiguous array."""

    def crop_backward(gy, height, width, oy, ox):
        """gy placed at (oy, ox) inside zeros (N, C, height, width)."""

    def lrn_forward(x, size, alpha, beta, k):
        """-> (y, scale) (functions/norm.py)."""

    def lrn_backward(x, y, scale, gy, size, alpha, beta):
        """-> gx."""

    def dropout(x, seed, threshold, scale):
        """x * m * scale, m[i] = [SplitMix64(seed, i) >> 11 >= threshold]
        (functions/activation.py)."""

    # ------------------------------------------- the fused passes of a training step
    def relu_backward(y, gy):
        """-> gx: gy where ReLU's output y > 0, else 0 (reference/elementwise.py)."""

    def bias_grad(gy):
        """gy (N, C, H, W) -> (C,): the sum over N, H, W, deterministic; float32 (the
        accumulation type) for a bf16 gy, else gy's dtype."""

    def accumulate(total, g):
        """total += g in place (total C-contiguous); returns total (autograd.py)."""

    # ------------------------------ bf16 mixed precision (any storage dtype: float32,
    # float64, or bf16 held as uint16, minifcn/bfloat16.py; computed in float32 for bf16,
    # rounded once)
    def relu_forward(x):
        """-> y = max(x, 0) as a new array, NaN kept (numpy.maximum's rule)."""

    def add(a, b):
        """-> a + b, a new array of their shape and dtype."""

    def add_bias(y, bias):
        """y (N, C, H, W) += bias[c] in place (y C-contiguous; bias float32 for a bf16 or
        float32 y, float64 for float64); returns y."""

    def cast(x, dtype):
        """-> x as a new C-contiguous array of dtype: float32 -> bf16 (round to nearest
        even, NaN kept), bf16 -> float32 (exact), the same dtype a copy; else TypeError."""

    # -------------------------------------------------------------------- solvers
    def sgd_step(param, grad, history, segments, scalars):
        """One SGD step for every parameter at once, in place on the flat arenas param
        and history; segments a reference.solver.Segments, scalars a small array on
        the arenas' device (reference/solver.py, optim.py)."""

    def adam_step(param, grad, first, second, segments, scalars):
        """One Adam step for every parameter at once, in place on param, first, second."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        check(cls)


KERNELS = tuple(name for name, value in vars(KernelSet).items()
                if callable(value) and not name.startswith("_"))


def _unavailable(set_name, capability, name):
    def kernel(*args, **kwargs):
        raise NotImplementedError(f"{set_name} kernels have no {name} (no {capability}): "
                                  f"callers check kernels.{capability} first")
    kernel.__name__ = kernel.__qualname__ = name
    return kernel


def check(cls):
    """Hold the kernel set `cls` to the contract (called when its class is defined):
    every kernel defined in its own body or named in `lacks`; `fallbacks` exactly the
    kernels it takes from the NumPy references. Kernels become static methods."""
    where = f"{cls.__module__}.{cls.__name__}"
    unknown = set(cls.lacks) - set(CAPABILITIES)
    if unknown:
        raise TypeError(f"{where}.lacks names unknown capabilities {sorted(unknown)}; "
                        f"they are {sorted(CAPABILITIES)}")
    lacked = {name: capability for capability in cls.lacks for name in CAPABILITIES[capability]}
    own = vars(cls)
    missing = [name for name in KERNELS if name not in own and name not in lacked]
    if missing:
        raise TypeError(f"{where} does not implement {missing} of the kernel contract "
                        f"(minifcn/kernel_set.py): define them, or list a capability in `lacks`")
    both = [name for name in lacked if name in own]
    if both:
        raise TypeError(f"{where} defines {both}, which its `lacks` says it has not")
    for capability in CAPABILITIES:
        setattr(cls, capability, capability not in cls.lacks)
    for name, capability in lacked.items():
        setattr(cls, name, staticmethod(_unavailable(cls.name, capability, name)))
    if cls.name != "numpy":  # the references themselves have no fallbacks
        from .reference import NumpyKernels
        taken = sorted(name for name in KERNELS if name not in lacked
                       and _function(own[name]) is _function(vars(NumpyKernels)[name]))
        if taken != sorted(cls.fallbacks):
            raise TypeError(f"{where} takes {taken} from the NumPy references but lists "
                            f"fallbacks = {sorted(cls.fallbacks)}: name each intended one")
    for name in KERNELS:
        if name not in lacked and not isinstance(own[name], staticmethod):
            setattr(cls, name, staticmethod(own[name]))


def _function(value):
    return value.__func__ if isinstance(value, staticmethod) else value
