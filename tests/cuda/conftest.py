"""Fixtures for the GPU backend's tests, most of which need no GPU.

`emulated_cuda` is minifcn.cuda with its one CuPy call (`_enqueue`) replaced by the CPU
emulation of kernels/*.cu (cuda_emulator.py): the functions under test are the real
ones, run on NumPy arrays. Each test runs twice: with the launch shape and the index
width cuda.py picks (32-bit at these sizes), and with a 2-block x 3-thread grid, so
every thread loops (the grid-stride path), on the 64-bit build.

`emulated_cupy` goes one step further: it installs a CPU stand-in for CuPy itself
(emulated_cupy.py), so `to("cuda")`, the ops, the solvers and the training loop run
their GPU code path end to end, on device arrays as strict as CuPy's.

This directory has no __init__.py on purpose: as a package it would be called `cuda`
and could shadow NVIDIA's cuda-python package that CuPy imports.
"""
import shutil
import warnings

import numpy
import pytest

from minifcn import backend, cuda

import cuda_emulator
import emulated_cupy as emulated_cupy_module


@pytest.fixture(scope="session")
def emulated_gpu(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed: the CPU emulation of kernels/*.cu needs it")
    gpu = cuda_emulator.build(tmp_path_factory.mktemp("emulated_kernels"))
    for (filename, dtype, bits), text in gpu.warnings.items():
        warnings.warn(f"g++ warnings for {filename} ({dtype}, {bits}-bit indices):\n{text}",
                      stacklevel=2)
    return gpu


@pytest.fixture(params=["gpu-grid", "2x3-grid-64bit"])
def emulated_cuda(request, emulated_gpu, monkeypatch):
    monkeypatch.setattr(cuda, "_enqueue", emulated_gpu.enqueuer(
        grid=None if request.param == "gpu-grid" else (2, 3)))
    if request.param == "gpu-grid":
        yield cuda
    else:
        with cuda.forced_index_bits(64):
            yield cuda


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return numpy.dtype(request.param)


@pytest.fixture(params=["float32", "float64", "bf16"])
def storage(request):
    """Every storage dtype a kernel with a bf16 build takes (bf16: uint16, minifcn/bfloat16.py)."""
    return numpy.dtype(numpy.uint16 if request.param == "bf16" else request.param)


@pytest.fixture(params=["run-1", "run-4"])
def run(request, monkeypatch):
    """Large launches (cuda.RUN_THRESHOLD outputs) compute runs of 4 outputs per thread
    (im2col, col2im, the pooling backward passes): forced on small ones for "run-4"."""
    monkeypatch.setattr(cuda, "RUN_THRESHOLD", 1 if request.param == "run-4" else 2**62)
    return request.param


@pytest.fixture
def emulated_cupy(emulated_gpu, monkeypatch):
    """minifcn with `cupy` = the CPU stand-in and its kernels the CPU emulation."""
    cupy = emulated_cupy_module.EmulatedCupy()
    monkeypatch.setattr(backend, "_cupy", cupy)
    monkeypatch.setattr(cuda, "_enqueue", emulated_cupy_module.kernel_launcher(emulated_gpu.enqueuer()))
    monkeypatch.setattr(cuda, "_cupy_linalg", lambda: cupy.cuda.routines_linalg)
    return cupy
