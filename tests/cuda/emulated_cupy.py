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
import contextlib
import ctypes
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
        result = _run(getattr(ufunc, method), _to_host(inputs, where), kwargs, where)
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
        return _to_device(_run(self._host.__getitem__, (_index_to_host(key),), {}, "ndarray.__getitem__"))

    def __setitem__(self, key, value):
        _run(self._host.__setitem__, (_index_to_host(key), _to_host(value, "ndarray.__setitem__")),
             {}, "ndarray.__setitem__")

    def set(self, array, stream=None):
        """A copy from host memory (CuPy's ndarray.set); none while a stream captures."""
        _refuse_during_capture("ndarray.set (a copy from host memory)")
        if not isinstance(array, numpy.ndarray):
            raise TypeError(f"ndarray.set takes a numpy.ndarray, not {type(array).__name__}")
        if array.shape != self._host.shape or array.dtype != self._host.dtype:
            raise ValueError(f"ndarray.set: {array.dtype} {array.shape} into {self._host.dtype} "
                             f"{self._host.shape}")
        self._host[...] = array


host_reads = [0]  # how many times a device array was read on the host


def _read(host):
    _refuse_during_capture("a read of a device value on the host")
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
        return _to_device(_run(function, _to_host(args, where), _to_host(kwargs, where), where))
    return call


# ------------------------------------------------- CuPy's device API, as benchmarks use it
class _MemoryPointer:
    def __init__(self, host):
        self._host = host

    @property
    def ptr(self):  # the address of the array's first element, as CuPy's is (emulated cuBLAS reads it)
        if _capture[0] is not None:  # a captured cuBLAS call will read it at every replay
            _capture[0].keep.append(self._host)
        return self._host.__array_interface__["data"][0]

    def copy_from_device_async(self, source, nbytes, stream=None):
        def copy(target, source):
            target.reshape(-1).view(numpy.uint8)[:nbytes] = source.reshape(-1).view(numpy.uint8)[:nbytes]
        _run(copy, (self._host, source._host), {}, "MemoryPointer.copy_from_device_async")


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
            return ndarray(_run(function, (obj._host, *args), kwargs, f"cupy.{function.__name__}"))
        _refuse_during_capture(f"cupy.{function.__name__} of host data (a copy from the host)")
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
        _add_gemm_api(cuda)
        _add_stream_api(cuda)
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


def kernel_launcher(enqueue):
    """A `minifcn.cuda._enqueue` that launches `enqueue` (the CPU emulation of the
    kernels, which works on NumPy arrays) with device arrays unwrapped; a host array
    among the arguments is an error, as in a real launch."""
    def launch(filename, kernel_name, dtype_name, blocks, threads, args):
        _run(enqueue, (filename, kernel_name, dtype_name, blocks, threads,
                       _to_host(tuple(args), f"{kernel_name} launch")), {}, f"{kernel_name} launch")
    return launch


# --------------------------------------- cuBLAS's strided-batched GEMM and CuPy's TF32 switch
# functions/conv.py calls cuBLAS's gemmStridedBatchedEx itself (CuPy's batched matmul
# ignores the TF32 setting). The stand-in below does what cuBLAS does, from the same
# arguments: raw addresses, column-major leading dimensions and batch strides, the
# transpose flags, alpha and beta read from host pointers; so a wrong stride or flag in
# conv.py gives wrong numbers here too. A TF32 compute type rounds the inputs to TF32's
# 10 mantissa bits first. bf16 operands (CUDA_R_16BF: uint16 storage, the top half of a
# float32) are decoded to float32 and multiplied in float64, the sum then rounded to
# float32, as cuBLAS's float32 accumulation gives it to within float32 rounding, and to
# bf16 for a bf16 C. `gemm_calls` records each call's compute type, `gemm_types` its
# (A, B, C data types, compute type).
CUDA_R_32F, CUDA_R_64F, CUDA_R_16BF = 0, 1, 14
CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_COMPUTE_64F = 68, 77, 70
COMPUTE_TYPE_DEFAULT, COMPUTE_TYPE_TF32 = 1, 7
_STORAGE = {CUDA_R_32F: numpy.float32, CUDA_R_64F: numpy.float64, CUDA_R_16BF: numpy.uint16}
gemm_calls = []
gemm_types = []


def _host_view(address, dtype, batch, stride, rows, cols, ld):
    """The (batch, rows, cols) column-major matrices at `address`, as a writable view."""
    item = numpy.dtype(dtype).itemsize
    extent = ((batch - 1) * stride + (cols - 1) * ld + rows) * item
    buffer = (ctypes.c_byte * extent).from_address(address)
    flat = numpy.frombuffer(buffer, dtype=numpy.uint8)
    return numpy.lib.stride_tricks.as_strided(
        flat.view(dtype), shape=(batch, rows, cols), strides=(stride * item, item, ld * item))


def _tf32(values):
    """float32 values rounded to TF32 (10 mantissa bits, round to nearest)."""
    bits = numpy.ascontiguousarray(values, numpy.float32).view(numpy.uint32)
    return ((bits + numpy.uint32(0x1000)) & numpy.uint32(0xFFFFE000)).view(numpy.float32)


def _bf16_to_float32(bits):
    return (bits.astype(numpy.uint32) << numpy.uint32(16)).view(numpy.float32)


def _float32_to_bf16(values):
    """Round to nearest even (NaN kept quiet), as minifcn/bfloat16.from_float32 does."""
    u = numpy.ascontiguousarray(values, numpy.float32).view(numpy.uint32)
    rounded = (u + (numpy.uint32(0x7FFF) + ((u >> numpy.uint32(16)) & numpy.uint32(1)))) >> numpy.uint32(16)
    nan = (u & numpy.uint32(0x7FFFFFFF)) > numpy.uint32(0x7F800000)
    return numpy.where(nan, (u >> numpy.uint32(16)) | numpy.uint32(0x0040), rounded).astype(numpy.uint16)


def _gemm_strided_batched_ex(handle, transa, transb, m, n, k, alpha, a, a_type, lda, stride_a,
                             b, b_type, ldb, stride_b, beta, c, c_type, ldc, stride_c, batch,
                             compute_type, algo):
    bf16 = a_type == b_type == CUDA_R_16BF and c_type in (CUDA_R_16BF, CUDA_R_32F)
    if not (bf16 or a_type == b_type == c_type) or c_type not in _STORAGE:
        raise ValueError(f"emulated gemmStridedBatchedEx: data types {a_type, b_type, c_type}")
    operand, stored = _STORAGE[a_type], _STORAGE[c_type]
    scalar = numpy.float64 if c_type == CUDA_R_64F else numpy.float32  # alpha's and beta's
    if (compute_type == CUBLAS_COMPUTE_64F) != (c_type == CUDA_R_64F) or (
            bf16 and compute_type != CUBLAS_COMPUTE_32F):
        raise ValueError(f"emulated gemmStridedBatchedEx: compute type {compute_type} for "
                         f"data types {a_type, b_type, c_type}")
    for name, ld, rows in (("lda", lda, k if transa else m), ("ldb", ldb, n if transb else k),
                           ("ldc", ldc, m)):
        if ld < max(1, rows):
            raise ValueError(f"emulated gemmStridedBatchedEx: {name}={ld} < {rows} rows")
    gemm_calls.append(compute_type)
    gemm_types.append((a_type, b_type, c_type, compute_type))
    # alpha and beta are read at the call, from host memory (a captured call keeps them)
    alpha_value, beta_value = (numpy.frombuffer((ctypes.c_byte * 8).from_address(p), scalar, 1)[0]
                               for p in (alpha, beta))
    out = _host_view(c, stored, batch, stride_c, m, n, ldc)

    def run():
        op_a = _host_view(a, operand, batch, stride_a, *((k, m) if transa else (m, k)), lda)
        op_b = _host_view(b, operand, batch, stride_b, *((n, k) if transb else (k, n)), ldb)
        op_a = op_a.transpose(0, 2, 1) if transa else op_a
        op_b = op_b.transpose(0, 2, 1) if transb else op_b
        if compute_type == CUBLAS_COMPUTE_32F_FAST_TF32:
            op_a, op_b = _tf32(op_a), _tf32(op_b)
        if bf16:
            op_a, op_b = (_bf16_to_float32(op).astype(numpy.float64) for op in (op_a, op_b))
        product = alpha_value * numpy.matmul(op_a, op_b)
        # beta = 0 never reads C (which may hold garbage, or the emulator's NaN sentinels)
        if c_type == CUDA_R_16BF:
            current = 0 if beta_value == 0 else beta_value * _bf16_to_float32(out)
            out[...] = _float32_to_bf16((product + current).astype(numpy.float32))
        else:
            out[...] = product if beta_value == 0 else product + beta_value * out
    _run(lambda _: run(), (out,), {}, "gemmStridedBatchedEx")


def _add_gemm_api(cuda):
    """cupy.cuda.cublas, .runtime's data types, .device.get_cublas_handle and the
    compute-type switch of cupy._core._routines_linalg (minifcn.cuda._cupy_linalg)."""
    cuda.cublas = types.SimpleNamespace(
        CUBLAS_COMPUTE_32F=CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_64F=CUBLAS_COMPUTE_64F,
        CUBLAS_COMPUTE_32F_FAST_TF32=CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT=-1,
        gemmStridedBatchedEx=_gemm_strided_batched_ex)
    cuda.runtime.CUDA_R_32F, cuda.runtime.CUDA_R_64F = CUDA_R_32F, CUDA_R_64F
    cuda.runtime.CUDA_R_16BF = CUDA_R_16BF
    cuda.device = types.SimpleNamespace(get_cublas_handle=lambda: 1)
    compute_types = {}
    cuda.routines_linalg = types.SimpleNamespace(
        COMPUTE_TYPE_DEFAULT=COMPUTE_TYPE_DEFAULT, COMPUTE_TYPE_TF32=COMPUTE_TYPE_TF32,
        set_compute_type=lambda dtype, kind: compute_types.__setitem__(numpy.dtype(dtype), kind),
        get_compute_type=lambda dtype: compute_types.get(numpy.dtype(dtype), COMPUTE_TYPE_DEFAULT))


# ------------------------------------- streams, stream capture (CUDA graphs), pinned memory
# minifcn/graph.py captures a training step (cupy.cuda.Stream.begin_capture/end_capture)
# and replays it (Graph.launch); data/prefetch.py copies batches on a stream of its own
# from pinned memory. Emulated kernels finish as they launch, so streams order nothing
# here, but a capture is emulated faithfully enough to fail where CUDA would:
# - while a stream captures, every kernel launch, cuBLAS call and array operation is
#   recorded and replayed by Graph.launch() against the SAME buffers (the arrays a
#   capture creates keep their memory with the graph, as the graph's memory pool does);
# - work still runs during the capture (NumPy needs it for the shapes), but end_capture
#   puts back what the capture wrote into arrays it did not create and fills the float
#   arrays it created with NaN: on a GPU nothing runs before the first launch;
# - a read of a device value on the host, a copy from host memory (cupy.asarray of host
#   data, ndarray.set), Stream.synchronize and work issued on another stream are errors
#   during a capture, as on a GPU; and allocating is no operation (not replayed).
_capture = [None]  # the _Recording in progress
_ALLOCATIONS = ("cupy.empty", "cupy.empty_like")


def _refuse_during_capture(what):
    if _capture[0] is not None:
        raise RuntimeError(f"{what} while a stream is capturing: operation not permitted "
                           "when stream is capturing (emulated CuPy)")


def _arrays(value):
    """The NumPy arrays in an argument or result (nested tuples, lists and dicts)."""
    if isinstance(value, numpy.ndarray):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _arrays(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _arrays(item)


def _run(function, args, kwargs, where):
    """function(*args, **kwargs) on host buffers: an operation on the device, recorded
    when a stream captures."""
    if _capture[0] is None:
        return function(*args, **kwargs)
    return _capture[0].run(function, args, kwargs, where)


class _Recording:
    def __init__(self, stream):
        self.stream, self.ops, self.keep = stream, [], []
        self.seen, self.snapshots, self.created = set(), [], []

    def touch(self, array):
        """Remember `array`'s contents before the capture's first operation on it."""
        if id(array) not in self.seen:
            self.seen.add(id(array))
            self.keep.append(array)
            self.snapshots.append((array, array.copy()))

    def run(self, function, args, kwargs, where):
        if _streams[-1] is not self.stream:
            raise RuntimeError(f"{where} issued on another stream while a stream is capturing "
                               "(emulated CuPy)")
        for array in _arrays((args, kwargs)):
            self.touch(array)
        result = function(*args, **kwargs)
        if where in _ALLOCATIONS:
            return result
        if isinstance(result, numpy.generic):  # a device 0-d array, which replays refill
            result = numpy.asarray(result)
        results = list(_arrays(result))
        for array in results:
            if id(array) not in self.seen:
                self.seen.add(id(array))
                self.keep.append(array)
                if array.flags.owndata:
                    self.created.append(array)

        def replay():
            again = function(*args, **kwargs)
            for target, value in zip(results, _arrays(numpy.asarray(again) if isinstance(
                    again, numpy.generic) else again)):
                if target is not value:
                    numpy.copyto(target, value)
        self.ops.append(replay)
        return result

    def finish(self):
        """Undo what ran during the capture (it had not run, on a GPU)."""
        for array, before in reversed(self.snapshots):
            array[...] = before
        for array in self.created:
            if array.dtype.kind == "f":
                array.fill(numpy.nan)


class _Graph:
    """cupy.cuda.Graph: the operations of a capture, replayed on the same buffers."""

    def __init__(self, recording):
        self._ops, self._keep = recording.ops, recording.keep

    def launch(self, stream=None):
        _refuse_during_capture("Graph.launch")
        for op in self._ops:
            op()


class _Stream:
    """cupy.cuda.Stream: `with stream:` makes it current; it can capture."""

    def __init__(self, null=False, non_blocking=False, ptds=False):
        self.null = null
        self.ptr = id(self)  # the handle NCCL and cuBLAS calls take (never dereferenced here)

    def __enter__(self):
        _streams.append(self)
        return self

    def __exit__(self, *error):
        _streams.remove(self)

    def begin_capture(self, mode=None):
        if self.null:
            raise RuntimeError("cannot capture on the default (legacy) stream")
        if _capture[0] is not None:
            raise RuntimeError("a stream is capturing already (emulated CuPy)")
        _capture[0] = _Recording(self)

    def end_capture(self):
        recording = _capture[0]
        if recording is None or recording.stream is not self:
            raise RuntimeError("end_capture on a stream that is not capturing")
        _capture[0] = None
        recording.finish()
        return _Graph(recording)

    def is_capturing(self):
        return _capture[0] is not None and _capture[0].stream is self

    def synchronize(self):
        _refuse_during_capture("Stream.synchronize")

    def record(self, event=None):
        event = event or _Event()
        event.record(self)
        return event

    def wait_event(self, event):
        pass


_streams = [_Stream(null=True)]


class _MemoryPool:
    def malloc(self, nbytes):
        raise NotImplementedError("the emulated CuPy allocates with NumPy")

    def free_all_blocks(self):
        pass

    def used_bytes(self):
        return 0


def _add_stream_api(cuda):
    cuda.Stream, cuda.MemoryPool = _Stream, _MemoryPool
    cuda.get_current_stream = lambda: _streams[-1]
    cuda.using_allocator = lambda allocator=None: contextlib.nullcontext()
    cuda.alloc_pinned_memory = bytearray  # page-locked host memory: a buffer of nbytes


_numpy_functions = EmulatedCupy()  # NumPy functions called on device arrays land here
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
    cupy.cuda.Device = lambda device=0: types.SimpleNamespace(id=device, use=lambda: None)
    return cupy
