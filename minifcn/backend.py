"""Where arrays live and which kernels run on them.

Every op asks `get_array_module(array)` for `numpy` or `cupy` and writes one code path
against it where the array API allows. CuPy is optional: it is imported on first use
of the GPU, and a clear error says what is missing when it cannot be.

The hot paths (im2col, col2im, pooling, loss, the SGD update, ...) are kernels, listed
once in kernel_set.py, and `kernels_for(array)` is the kernel set that runs on an array:
the CUDA kernels for a CuPy array, and on the CPU either the plain NumPy references
(minifcn/reference/, kept because readers learn from them) or the numba kernels in
`minifcn/cpu/`. `cpu_kernels()` says which of the two runs; the environment variable
`MINIFCN_CPU_KERNELS=numpy|numba` (or `use_cpu_kernels(...)`) chooses. The default
("auto") is numba when it imports: it trains FCN-32s markedly faster than the NumPy
kernels (`minifcn bench cpu_nets --numpy-kernels`, the two minifcn columns), and the
gap is widest on the pooling rows (`minifcn bench cpu_ops`). Its threads
sleep between parallel loops (the "workqueue" pool, runtime.py says why), but
on a machine whose cores are busy with other work we have seen its parallel loops
wait for descheduled threads; MINIFCN_CPU_KERNELS=numpy is the way out.

Memory. `keep_freed_memory()` has glibc's malloc keep the large arrays an FCN step frees
for the next step; runtime.configure_process() calls it (nothing does at import), and
says why.
"""
import contextlib
import ctypes
import os
import sys

import numpy

_cupy = None
_cpu_kernels = os.environ.get("MINIFCN_CPU_KERNELS", "auto")
if _cpu_kernels not in ("auto", "numba", "numpy"):
    raise ValueError(f"MINIFCN_CPU_KERNELS must be auto, numba or numpy, not {_cpu_kernels!r}")


def cupy_or_none():
    """The cupy module if it imports, else None (never raises)."""
    global _cupy
    if _cupy is None:
        try:
            import cupy
            _cupy = cupy
        except Exception:  # not installed, or no CUDA driver
            _cupy = False
    return _cupy or None


def require_cupy():
    cupy = cupy_or_none()
    if cupy is None:
        raise RuntimeError("the GPU backend needs CuPy: pip install -e \".[cuda]\" in the "
                           "minifcn checkout, on a machine with an NVIDIA GPU and its driver")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception as error:
        raise RuntimeError(f"CuPy is installed but no CUDA GPU can be used: {error}") from None
    return cupy


def gpu_available():
    cupy = cupy_or_none()
    if cupy is None:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def is_cupy_array(array):
    return _cupy is not None and _cupy is not False and isinstance(array, _cupy.ndarray)


def get_array_module(array):
    """numpy for a NumPy array, cupy for a CuPy one."""
    return _cupy if is_cupy_array(array) else numpy


def as_array(data):
    """An ndarray (NumPy or CuPy) from whatever array-like `data` is."""
    if isinstance(data, numpy.ndarray) or is_cupy_array(data):
        return data
    if type(data).__module__.startswith("cupy"):  # a cupy array before we imported cupy
        cupy_or_none()
        return data
    return numpy.asarray(data)


def device_of(array):
    return "cuda" if is_cupy_array(array) else "cpu"


def check_device(device):
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', not {device!r}")
    return device


def to_device(array, device):
    """`array` on "cpu" (NumPy) or "cuda" (CuPy); no copy if it is already there."""
    if check_device(device) == "cuda":
        return require_cupy().asarray(array)
    return to_numpy(array)


def to_numpy(array):
    return array.get() if is_cupy_array(array) else numpy.asarray(array)


# ----------------------------------------------------------------------------- random
_rng = numpy.random.default_rng(1337)


def seed(value):
    """Seed every random draw minifcn makes (dropout masks, data shuffling)."""
    global _rng
    _rng = numpy.random.default_rng(value)


def rng():
    """The generator dropout and the data pipeline draw from."""
    return _rng


def rng_state():
    return _rng.bit_generator.state


def set_rng_state(state):
    _rng.bit_generator.state = state


# ---------------------------------------------------------------------- CPU kernel set
def cpu_kernels():
    """"numba" or "numpy": which implementation the CPU hot paths use now."""
    global _cpu_kernels
    if _cpu_kernels != "numpy":  # "auto" or "numba": both need numba to import
        try:
            import numba  # noqa: F401
        except ImportError:
            if _cpu_kernels == "numba":
                raise RuntimeError("MINIFCN_CPU_KERNELS=numba, but numba does not import") from None
            _cpu_kernels = "numpy"
        else:
            _cpu_kernels = "numba"
    return _cpu_kernels


@contextlib.contextmanager
def use_cpu_kernels(name):
    """Run a block with the "numpy" or "numba" CPU kernels (tests compare the two)."""
    global _cpu_kernels
    if name not in ("numba", "numpy"):
        raise ValueError(f"use_cpu_kernels: expected 'numba' or 'numpy', not {name!r}")
    previous, _cpu_kernels = _cpu_kernels, name
    try:
        yield
    finally:
        _cpu_kernels = previous


def kernels_for(array):
    """The kernel set (kernel_set.py's contract) that runs on `array`: the CUDA kernels
    (cuda.CudaKernels) for a CuPy array; on the CPU the numba ones (cpu.NumbaKernels)
    while numba is active, else the NumPy references (reference.NumpyKernels)."""
    if is_cupy_array(array):
        from . import cuda
        return cuda.KERNELS
    if cpu_kernels() == "numba":
        from . import cpu
        return cpu.KERNELS
    from . import reference
    return reference.KERNELS


# ------------------------------------------------------------------------------ memory
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory():
    """Have glibc's malloc serve large arrays from its heap (no mmap) and not return
    freed memory to the system (trim threshold 2 GB). True if it took effect; False
    where malloc is not glibc's (macOS, Windows, musl), which changes nothing."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))

