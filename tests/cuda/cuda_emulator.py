"""Run kernels/*.cu on the CPU: g++ compiles them against cuda_emulation.h, ctypes calls them.

`build(directory)` compiles every kernel file for each of its builds (float32, float64 and
bf16 where the file has one: minifcn.cuda.variants; in parallel, once per test session)
and returns an `EmulatedGpu`. Its `enqueuer()` has the signature of
`minifcn.cuda._enqueue`, the one function there that needs CuPy: a test that puts one in
place of the other runs the rest of minifcn/cuda.py unchanged (allocation, argument
conversion, launch sizes), NumPy arrays standing in for CuPy ones.

A launch runs direct (thread after thread) until a kernel calls __syncthreads or a warp
primitive; then it is run again from fresh copies of its arrays with the threads of each
block as cooperating fibers, and remembered as cooperative (cuda_emulation.h says why
both modes compute what the GPU computes).

What a launch here checks that a launch on a GPU would not:
- arguments against the kernel's C signature: count, int or float, width, and the
  element type of each array; a 4-byte int reaching a `long long` is an error here and
  garbage on a GPU;
- memory bounds: each array is copied into the middle of a larger buffer whose margins
  hold a sentinel (NaN for floats); a kernel that writes outside its array changes a
  margin (error), one that reads outside picks up NaN and disagrees with NumPy;
- complete outputs: an array the kernel may write (a non-const pointer) is filled with
  the sentinel before the launch, so an element the kernel never writes stays NaN. A
  kernel that updates an array in place names that parameter `..._inout`; it keeps its
  contents;
- barriers: a __syncthreads that part of a block skips, or a warp primitive whose mask
  names a lane that cannot arrive, is an error.

The 2x3 grid that tests/cuda/conftest.py also runs every kernel with replaces the
x-extent of the grid (every kernel covers any count with any grid in x: grid-stride
loops) and, for one-dimensional blocks of kernels that do not cooperate, the block size;
a cooperative kernel keeps the block size it was launched with (its shared arrays are
sized for it).
"""
import ctypes
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy

from minifcn import bfloat16, cuda

HEADER_DIR = Path(__file__).resolve().parent
DTYPES = tuple(cuda.SCALAR_TYPES)  # float32, float64, uint16 (bf16)
INDEX_BITS = tuple(cuda.INDEX_TYPES)  # 32, 64
MARGIN = 64  # sentinel elements on each side of every array
_KERNEL = re.compile(r'extern "C" __global__ void (\w+)\s*\(([^)]*)\)')
IN_OUT_SUFFIX = "_inout"  # a non-const pointer parameter that keeps its contents


def defined_kernels(source_text):
    """The names of the extern "C" __global__ kernels a .cu text defines."""
    return [name for name, _ in _KERNEL.findall(source_text)]


def parameter_names(source_text):
    """{kernel: [parameter names]} of the kernels a .cu text defines."""
    return {name: [re.findall(r"\w+", parameter)[-1] for parameter in parameters.split(",")
                   if parameter.strip()]
            for name, parameters in _KERNEL.findall(source_text)}


def _three(shape):
    """A grid or block shape (an int or a tuple of up to three) as (x, y, z)."""
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    return tuple(int(n) for n in shape) + (1,) * (3 - len(shape))


def compile_library(source, dtype, directory, index_bits=64):
    """g++ builds the .cu file `source` for `dtype` and `index_bits`-bit indices into a
    shared library in `directory` that exports run_<kernel> and signature_<kernel> for
    each of its kernels. Returns the library (ctypes) and g++'s warnings."""
    source = Path(source)
    stem = f"{source.stem}_{dtype}_{index_bits}"
    wrapper = Path(directory) / f"{stem}.cpp"
    names = defined_kernels(source.read_text())
    wrapper.write_text(f'#include "cuda_emulation.h"\n#include "{source}"\n'
                       + "".join(f"EMULATE_KERNEL({name})\n" for name in names))
    library = Path(directory) / f"lib{stem}.so"
    command = ["g++", "-std=c++17", "-O1", "-shared", "-fPIC", "-Wall", "-Wextra",
               f"-I{HEADER_DIR}", f"-I{cuda.KERNEL_DIR}", *cuda.compile_options(dtype, index_bits),
               str(wrapper), "-o", str(library)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"g++ could not compile {source.name} for {dtype}:\n{result.stderr}")
    return ctypes.CDLL(str(library)), result.stderr


def build(directory):
    """An EmulatedGpu with every kernels/*.cu file compiled for each of its dtypes and
    both index widths into `directory`."""
    jobs = [(filename, dtype, bits) for filename in cuda.kernel_files()
            for dtype, bits in cuda.variants(filename)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        built = list(pool.map(
            lambda job: compile_library(cuda.KERNEL_DIR / job[0], job[1], directory, job[2]), jobs))
    libraries = {job: library for job, (library, _) in zip(jobs, built)}
    warnings = {job: text for job, (_, text) in zip(jobs, built) if text.strip()}
    return EmulatedGpu(libraries, warnings)


def tolerance(dtype):
    """rtol/atol for comparing a kernel with its NumPy reference where the two are not
    bit-exact (another exp or pow, another order of additions)."""
    if numpy.dtype(dtype) == numpy.float32:
        return {"rtol": 2e-5, "atol": 1e-6}
    return {"rtol": 1e-12, "atol": 1e-13}


def random_values(rng, shape, dtype):
    """Standard normal values of `dtype`; for bf16 (uint16) the bits of float32 values
    rounded to bf16."""
    return stored(rng.standard_normal(shape), dtype)


def stored(values, dtype):
    """`values` as an array of `dtype`, a bf16 one (uint16) rounded from float32."""
    if numpy.dtype(dtype) == bfloat16.DTYPE:
        return bfloat16.from_float32(numpy.asarray(values, numpy.float32))
    return numpy.asarray(values, dtype)


def values_of(array):
    """The numbers an array holds: a bf16 array's decoded to float32, others as they are."""
    return bfloat16.to_float32(array) if bfloat16.is_bfloat16(array) else array


def stored_reference(reference, *args):
    """What a kernel must return for `args`: `reference(*args)`; where bf16 arrays are
    among them, the reference run in float32 on their values (values_of), each float32
    array it returns rounded once to bf16 (the rest, argmax offsets, as they are)."""
    if not any(isinstance(a, numpy.ndarray) and bfloat16.is_bfloat16(a) for a in args):
        return reference(*args)
    result = reference(*(values_of(a) if isinstance(a, numpy.ndarray) else a for a in args))
    rounded = tuple(bfloat16.from_float32(r) if r.dtype == numpy.float32 else r
                    for r in (result if isinstance(result, tuple) else (result,)))
    return rounded if isinstance(result, tuple) else rounded[0]


def bf16_steps_apart(a, b):
    """How many bf16 steps (ulps) apart the bf16 arrays a and b are, elementwise (+0 and
    -0 are one value)."""
    def ordered(bits):
        magnitude = bits.astype(numpy.int64) & 0x7FFF
        return numpy.where(bits & 0x8000, -magnitude, magnitude)
    return numpy.abs(ordered(a) - ordered(b))


def assert_close(actual, expected):
    """Kernel against reference where the two add in another order (or take another pow):
    float32 and float64 within `tolerance`; bf16 within one bf16 step (1 ulp), NaN
    exactly where expected: both round the same float32 arithmetic once, so they differ
    only when float32's last-bit differences straddle a bf16 rounding boundary."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    if not bfloat16.is_bfloat16(expected):
        numpy.testing.assert_allclose(actual, expected, **tolerance(expected.dtype))
        return
    nan = numpy.isnan(values_of(expected))
    numpy.testing.assert_array_equal(numpy.isnan(values_of(actual)), nan)
    apart = numpy.where(nan, 0, bf16_steps_apart(actual, expected))
    assert apart.max(initial=0) <= 1, (
        f"{int((apart > 1).sum())} values more than 1 bf16 ulp away (at most {apart.max()}): "
        f"{values_of(actual)[apart > 1][:5]} against {values_of(expected)[apart > 1][:5]}")


def _sentinel(dtype):
    if dtype == bfloat16.DTYPE:
        return 0x7FFF  # a bf16 NaN (an integer minimum, 0, would read as +0.0)
    return numpy.nan if dtype.kind == "f" else numpy.iinfo(dtype).min


def _type_code(value):
    """The code cuda_emulation.h's type_code gives the C type that `value` must match."""
    if isinstance(value, numpy.ndarray):
        return f"{value.dtype.kind}{value.dtype.itemsize}*"
    dtype = numpy.asarray(value).dtype
    return f"{dtype.kind}{dtype.itemsize}"


class _GuardedCopy:
    """`array` in the middle of a sentinel-filled buffer; an output starts all sentinel."""

    def __init__(self, array, is_output, keeps_contents=False):
        self.array, self.is_output = array, is_output
        self.buffer = numpy.full(array.size + 2 * MARGIN, _sentinel(array.dtype), array.dtype)
        if not is_output or keeps_contents:
            self.buffer[MARGIN: MARGIN + array.size] = array.reshape(-1)
        self.pointer = ctypes.c_void_p(self.buffer.ctypes.data + MARGIN * array.itemsize)
        self.margins_before = self._margins()

    def _margins(self):
        raw = self.buffer.view(numpy.uint8)
        edge = MARGIN * self.array.itemsize
        return raw[:edge].tobytes() + raw[len(raw) - edge:].tobytes()

    def finish(self, what):
        if self._margins() != self.margins_before:
            raise AssertionError(f"{what} wrote outside an array of shape {self.array.shape}")
        if self.is_output:
            self.array.reshape(-1)[...] = self.buffer[MARGIN: MARGIN + self.array.size]


class EmulatedGpu:
    def __init__(self, libraries, warnings, names=None):
        self.libraries = libraries  # (filename, dtype name, index bits) -> ctypes.CDLL
        self.warnings = warnings    # the same keys -> g++'s warnings, if any
        # filename -> {kernel: [names]}: read from the sources unless given, so that no
        # launch misses an `_inout` name (it would start from sentinels, not its contents)
        self.parameter_names = names or {filename: parameter_names(cuda.kernel_source(filename))
                                         for filename in cuda.kernel_files()}
        self.cooperative = set()    # (filename, kernel) found to need cooperative threads

    def library(self, filename, variant):
        """The build of `filename` for `variant`: (dtype name, index bits), or a dtype
        name alone for the 64-bit build."""
        dtype_name, bits = (variant, 64) if isinstance(variant, str) else variant
        return self.libraries[filename, dtype_name, bits]

    def signature(self, filename, variant, kernel_name):
        function = getattr(self.library(filename, variant), f"signature_{kernel_name}")
        function.restype = ctypes.c_char_p
        return function().decode().split(",")

    def enqueuer(self, grid=None):
        """A stand-in for minifcn.cuda._enqueue. `grid=(blocks, threads)` overrides the
        launch shape that cuda.py chose, e.g. a tiny grid that makes every thread loop
        (see the module docstring for what it replaces)."""
        def enqueue(filename, kernel_name, variant, blocks, threads, args):
            launched_threads = threads
            if grid is not None:
                blocks = (grid[0],) + _three(blocks)[1:]
                if _three(threads)[1:] == (1, 1) and (filename, kernel_name) not in self.cooperative:
                    threads = grid[1]
            self.launch(filename, kernel_name, variant, blocks, threads, args,
                        cooperative_threads=launched_threads)
        return enqueue

    def launch(self, filename, kernel_name, variant, blocks, threads, args,
               cooperative_threads=None):
        """Run one kernel of the `variant` build (see `library`). `cooperative_threads`:
        the block shape to use if the kernel turns out to cooperate (default: `threads`)."""
        what = f"{kernel_name} ({filename}, {variant})"
        expected = self.signature(filename, variant, kernel_name)
        passed = [_type_code(value) for value in args]
        if [code.replace("const ", "") for code in expected] != passed:
            raise TypeError(f"{what} takes ({', '.join(expected)}) but was passed "
                            f"({', '.join(passed)})")
        names = self.parameter_names.get(filename, {}).get(kernel_name, [""] * len(args))
        library = self.library(filename, variant)
        run = getattr(library, f"run_{kernel_name}")
        run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        run.restype = ctypes.c_int
        key = (filename, kernel_name)
        cooperative = key in self.cooperative
        if cooperative:
            threads = cooperative_threads or threads
        status = self._run(run, what, args, expected, names, blocks, threads, cooperative)
        if status == 1:  # it met a barrier: again, from fresh copies, cooperatively
            self.cooperative.add(key)
            threads = cooperative_threads or threads
            status = self._run(run, what, args, expected, names, blocks, threads, True)
        if status == 2:
            library.last_error.restype = ctypes.c_char_p
            raise RuntimeError(f"{what}: {library.last_error().decode()}")

    @staticmethod
    def _run(run, what, args, expected, names, blocks, threads, cooperative):
        guarded, values = [], []  # kept alive until the launch returns
        pointers = (ctypes.c_void_p * len(args))()
        for slot, (value, code, name) in enumerate(zip(args, expected, names)):
            if isinstance(value, numpy.ndarray):
                copy = _GuardedCopy(value, is_output=not code.startswith("const"),
                                    keeps_contents=name.endswith(IN_OUT_SUFFIX))
                guarded.append(copy)
                pointers[slot] = ctypes.addressof(copy.pointer)
            else:
                values.append(numpy.array(value))
                pointers[slot] = values[-1].ctypes.data
        grid = (ctypes.c_uint * 3)(*_three(blocks))
        block = (ctypes.c_uint * 3)(*_three(threads))
        status = run(grid, block, pointers, int(cooperative))
        if status == 0:
            for copy in guarded:
                copy.finish(what)
        return status
