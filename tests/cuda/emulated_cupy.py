"""A stand-in for CuPy that runs on the CPU, so the whole GPU path runs without a GPU.

`EmulatedCupy()` is a module-like object that minifcn's backend takes for `cupy`:
`tests/cuda/conftest.py` puts it where `backend.cupy_or_none()` keeps the real one and
routes `minifcn.cuda._enqueue` to the CPU build of kernels/*.cu (cuda_emulator.py).
Then `net.to("cuda")`, every op, the solvers and `minifcn train --device cuda` run as
they would on a GPU: arrays of another type, the same dispatch, our kernels launched
with the same arguments.

What it can catch is what goes wrong between host and device. Its arrays are as strict
as CuPy's (stricter where CuPy is lenient, never more lenient):
- `numpy.asarray(device_array)` raises TypeError, as CuPy's `__array__` does; only
  `.get()` and `cupy.asnumpy` copy to the host.
- a NumPy array in a ufunc, an operator, an indexing assignment, a function of this
  module or a kernel launch raises TypeError: the host array must be moved with
  `cupy.asarray` first (CuPy raises the same error in ufuncs and kernel launches);
- reductions return 0-d device arrays, never NumPy scalars, as CuPy's do.
And `host_reads` counts every read of a device value on the host (`.get()`, `float()`,
`.item()`...): on a GPU each one waits for all the work queued before it.

It also has the few pieces of CuPy's device API that benchmarks/gpu_kernels.py uses
(events, the device's name, `cupy.random`, a device-to-device copy), so that benchmark
can be run end to end at a small size; its events read the host's clock, which is
right here because every emulated kernel has finished when its launch returns.

What it cannot catch: anything about the device itself (speed, memory, races between
threads, CuPy functions NumPy has and CuPy lacks). tests/cuda/test_gpu.py runs the
same tests on a real GPU when there is one.
"""
import numbers
import time
import types

import numpy
from numpy.lib.mixins import NDArrayOperatorsMixin

# NumPy attributes CuPy lacks; every __dunder__ is refused too (NumPy would read
# __array_struct__ to convert a device array behind CuPy's back).
_HOST_ONLY = ("ctypes", "tofile")
_TRANSFERS = ("asarray", "array")  # the functions that may take a host array


def _host_array_error(where):
    return TypeError(f"{where}: got a numpy.ndarray where a device array is needed "
                     "(emulated CuPy: move it with cupy.asarray first)")


class ndarray(NDArrayOperatorsMixin):
    """A device array: a NumPy array that only this module's functions may touch."""
    __slots__ = ("_host",)

    def __init__(self, host):
        self._host = host

    # -------------------------------------------------------- crossing to the host
    # Each of these makes the host wait for the GPU; `host_reads` counts them.
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def get(self):
        return _read(self._host).copy()

    def item(self):
        return _read(self._host).item()

    def tolist(self):
        return _read(self._host).tolist()

    def __float__(self):
        return float(_read(self._host))

    def __int__(self):
        return int(_read(self._host))

    def __bool__(self):
        return bool(_read(self._host))

    def __len__(self):
        return len(self._host)

    def __iter__(self):
        return (_to_device(row) for row in self._host)

    def __repr__(self):
        return f"emulated_cupy.{self._host!r}"

    # ---------------------------------------------------------- NumPy's protocols
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        where = f"{ufunc.__name__}.{method}" if method != "__call__" else ufunc.__name__
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = _to_host(out, where)
        result = getattr(ufunc, method)(*_to_host(inputs, where), **kwargs)
        if out is not None:  # the output arrays themselves, as NumPy and CuPy return them
            return out[0] if len(out) == 1 else out
        return _to_device(result)

    def __array_function__(self, function, types_, args, kwargs):
        own = getattr(_numpy_functions, function.__name__, None)
        if own is None:
            raise TypeError(f"no implementation found for numpy.{function.__name__} on "
                            "emulated CuPy arrays")
        return own(*args, **kwargs)

    # ------------------------------------------------------- attributes and methods
    def __getattr__(self, name):
        if name in _HOST_ONLY or name.startswith("__"):
            raise AttributeError(f"cupy.ndarray has no attribute {name!r}")
        value = getattr(self._host, name)
        if callable(value):
            return _on_device(value, f"ndarray.{name}")
        return _to_device(value)

    @property
    def data(self):  # CuPy's MemoryPointer, not NumPy's memoryview
        return _MemoryPointer(self._host)

    def __getitem__(self, key):
        return _to_device(self._host[_index_to_host(key)])

    def __setitem__(self, key, value):
        self._host[_index_to_host(key)] = _to_host(value, "ndarray.__setitem__")


host_reads = [0]  # how many times a device array was read on the host


def _read(host):
    host_reads[0] += 1
    return host


def _to_device(value):
    """NumPy results as device arrays (NumPy scalars as 0-d arrays), recursively."""
    if isinstance(value, (numpy.ndarray, numpy.generic)):
        return ndarray(numpy.asarray(value))
    if isinstance(value, tuple):
        return tuple(_to_device(item) for item in value)
    if isinstance(value, list):
        return [_to_device(item) for item in value]
    return value


def _to_host(value, where):
    """Arguments as NumPy sees them: device arrays unwrapped; a host array is an error."""
    if isinstance(value, ndarray):
        return value._host
    if isinstance(value, numpy.ndarray):
        raise _host_array_error(where)
    if isinstance(value, (tuple, list)):
        return type(value)(_to_host(item, where) for item in value)
    if isinstance(value, dict):
        return {key: _to_host(item, where) for key, item in value.items()}
    return value


def _index_to_host(key):
    """Indices: device arrays unwrapped; host integer arrays allowed (CuPy copies them)."""
    if isinstance(key, tuple):
        return tuple(_index_to_host(item) for item in key)
    return key._host if isinstance(key, ndarray) else key


def _on_device(function, where):
    def call(*args, **kwargs):
        return _to_device(function(*_to_host(args, where), **_to_host(kwargs, where)))
    return call


# ------------------------------------------------- CuPy's device API, as benchmarks use it
class _MemoryPointer:
    def __init__(self, host):
        self._host = host

    def copy_from_device_async(self, source, nbytes):
        target = self._host.reshape(-1).view(numpy.uint8)
        target[:nbytes] = source._host.reshape(-1).view(numpy.uint8)[:nbytes]


class _Event:
    """cupy.cuda.Event on the host's clock (emulated kernels finish as they launch)."""

    def record(self, stream=None):
        self.at = time.perf_counter()

    def synchronize(self):
        pass


def _elapsed_ms(start, end):
    return (end.at - start.at) * 1e3


class _Generator:
    """cupy.random.Generator: NumPy's, its draws handed out as device arrays."""

    def __init__(self, seed=None):
        self._numpy = numpy.random.default_rng(seed)

    def __getattr__(self, name):
        return _on_device(getattr(self._numpy, name), f"Generator.{name}")


# -------------------------------------------------------------------- the module
def _transfer(function):
    """cupy.asarray/array: a device array as NumPy's function treats an array; anything
    from the host copied, as a transfer to the device does."""
    def to_device(obj, *args, **kwargs):
        if isinstance(obj, ndarray):
            return ndarray(function(obj._host, *args, **kwargs))
        return ndarray(numpy.array(obj, *args, **kwargs))
    return to_device


def _asnumpy(array):
    return array.get() if isinstance(array, ndarray) else numpy.asarray(array)


class EmulatedCupy(types.SimpleNamespace):
    """`cupy` as minifcn uses it. Every NumPy function is here, working on device arrays
    (`_on_device`); the data types and constants are NumPy's, as CuPy's are."""

    def __init__(self):
        runtime = types.SimpleNamespace(
            getDeviceCount=lambda: 1, runtimeGetVersion=lambda: 0,
            getDeviceProperties=lambda device: {"name": b"emulated GPU"})
        cuda = types.SimpleNamespace(runtime=runtime, Event=_Event, get_elapsed_time=_elapsed_ms,
                                     Device=lambda device=0: types.SimpleNamespace(id=device))
        pool = types.SimpleNamespace(free_all_blocks=lambda: None)
        super().__init__(
            __name__="cupy", __version__="emulated", ndarray=ndarray, asnumpy=_asnumpy, cuda=cuda,
            random=types.SimpleNamespace(default_rng=_Generator),
            get_default_memory_pool=lambda: pool,
            **{name: _transfer(getattr(numpy, name)) for name in _TRANSFERS})

    def __getattr__(self, name):
        value = getattr(numpy, name)
        if isinstance(value, types.ModuleType):  # numpy.random & co. would draw on the host
            raise AttributeError(f"the emulated CuPy has no cupy.{name}")
        if isinstance(value, (type, numbers.Number)) or not callable(value):
            return value  # numpy.float32, numpy.inf, numpy.newaxis: CuPy's are NumPy's
        return _on_device(value, f"cupy.{name}")


_numpy_functions = EmulatedCupy()


def kernel_launcher(enqueue):
    """A `minifcn.cuda._enqueue` that launches `enqueue` (the CPU emulation of the
    kernels, which works on NumPy arrays) with device arrays unwrapped; a host array
    among the arguments is an error, as in a real launch."""
    def launch(filename, kernel_name, dtype_name, blocks, threads, args):
        enqueue(filename, kernel_name, dtype_name, blocks, threads,
                _to_host(tuple(args), f"{kernel_name} launch"))
    return launch


# ------------------------------------------------ NCCL, as minifcn/distributed.py uses it
# `with_nccl(cupy)` adds cupy.cuda.nccl to an EmulatedCupy: a communicator whose
# allReduce sums over the ranks of MPI's COMM_WORLD, the buffers found from their device
# pointers (`array.data.ptr`, here the host address) as NCCL finds them. It checks what
# a real NCCL needs: every rank built its communicator from the same unique id (the one
# rank 0 drew and broadcast), with its own rank and the same number of ranks.
NCCL_SUM, NCCL_FLOAT32, NCCL_FLOAT64 = 0, 7, 8  # ncclRedOp_t and ncclDataType_t values
_NCCL_TYPES = {NCCL_FLOAT32: numpy.float32, NCCL_FLOAT64: numpy.float64}


def _host_at(address, count, dtype):
    """The `count` elements of `dtype` at host `address`, as a NumPy array (no copy)."""
    import ctypes
    nbytes = count * numpy.dtype(dtype).itemsize
    return numpy.frombuffer((ctypes.c_char * nbytes).from_address(address), dtype=dtype)


class _NcclCommunicator:
    def __init__(self, ndev, commId, rank):
        from mpi4py import MPI
        self.comm, self.MPI = MPI.COMM_WORLD, MPI
        ids = self.comm.allgather((tuple(commId), rank, ndev))
        if len({entry[0] for entry in ids}) != 1:
            raise RuntimeError("emulated NCCL: the ranks were given different unique ids")
        if [entry[1] for entry in ids] != list(range(ndev)) or {entry[2] for entry in ids} != {ndev}:
            raise RuntimeError(f"emulated NCCL: ranks and sizes {[e[1:] for e in ids]} do not "
                               f"make a communicator of {ndev}")
        self.calls = 0

    def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):
        if op != NCCL_SUM or datatype not in _NCCL_TYPES or not isinstance(stream, int):
            raise TypeError(f"emulated NCCL: allReduce of op {op}, type {datatype}, stream {stream!r}")
        received = _host_at(recvbuf, count, _NCCL_TYPES[datatype])
        sent = self.MPI.IN_PLACE if sendbuf == recvbuf else _host_at(sendbuf, count, _NCCL_TYPES[datatype])
        self.comm.Allreduce(sent, received, op=self.MPI.SUM)
        self.calls += 1


def _unique_id():
    return tuple(int(b) for b in numpy.random.default_rng().integers(-128, 128, 128))


_MemoryPointer.ptr = property(lambda self: self._host.__array_interface__["data"][0])
_Event.done = property(lambda self: True)  # emulated work has finished when it returns


def with_nccl(cupy):
    """`cupy` (an EmulatedCupy) with cuda.nccl, the current stream and Device.use()."""
    cupy.cuda.nccl = types.SimpleNamespace(
        get_unique_id=_unique_id, NcclCommunicator=_NcclCommunicator, NCCL_SUM=NCCL_SUM,
        NCCL_FLOAT32=NCCL_FLOAT32, NCCL_FLOAT64=NCCL_FLOAT64)
    cupy.cuda.get_current_stream = lambda: types.SimpleNamespace(ptr=0)
    cupy.cuda.Device = lambda device=0: types.SimpleNamespace(id=device, use=lambda: None)
    return cupy
