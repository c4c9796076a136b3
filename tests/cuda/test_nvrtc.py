"""Every kernels/*.cu file compiles with NVRTC, the compiler cupy.RawModule runs on the
GPU machine, from exactly the text and options minifcn.cuda gives it.

nvcc (test_nvcc.py) compiles the same text, but with the host's headers and the CUDA
runtime header pre-included; NVRTC has neither, so a kernel that leans on a host
header compiles with nvcc and fails at its first launch. NVRTC ships as a library
(libnvrtc: pip's nvidia-cuda-nvrtc, which CuPy uses and the test extra installs on
x86-64 Linux, or the CUDA toolkit's), called here through ctypes. Where none is found
the test skips and says so.
"""
import ctypes
import ctypes.util
import glob
import os
import re

import pytest

from minifcn import cuda

import cuda_emulator

# One virtual architecture: which sm_XX is nvcc's concern (test_nvcc.py builds sm_80 and
# sm_90); what NVRTC adds is a compile without host headers. compute_80 is the oldest
# architecture the kernels are built for, so the most restrictive.
ARCHITECTURES = ("compute_80",)


def _find_nvrtc():
    candidates = [ctypes.util.find_library("nvrtc")]
    try:
        import nvidia  # pip's nvidia-cuda-nvrtc: nvidia/cu13/lib/libnvrtc.so.13
        candidates += sorted(path for directory in nvidia.__path__
                             for path in glob.glob(os.path.join(directory, "*", "lib", "libnvrtc.so*")))
    except ImportError:
        pass
    candidates += sorted(glob.glob("/usr/local/cuda*/lib64/libnvrtc.so*"))
    for candidate in filter(None, candidates):
        try:
            return ctypes.CDLL(candidate)
        except OSError:
            continue
    return None


@pytest.fixture(scope="module")
def nvrtc():
    library = _find_nvrtc()
    if library is None:
        pytest.skip("no libnvrtc on this machine (pip install nvidia-cuda-nvrtc to run this check)")
    return library


def _check(library, status, what):
    if status != 0:
        library.nvrtcGetErrorString.restype = ctypes.c_char_p
        raise RuntimeError(f"{what}: {library.nvrtcGetErrorString(status).decode()}")


def compile_with_nvrtc(library, source, name, options):
    """(succeeded, NVRTC's log, PTX text)."""
    program = ctypes.c_void_p()
    _check(library, library.nvrtcCreateProgram(ctypes.byref(program), source.encode(),
                                               name.encode(), 0, None, None), "nvrtcCreateProgram")
    try:
        encoded = [option.encode() for option in options]
        status = library.nvrtcCompileProgram(program, len(encoded), (ctypes.c_char_p * len(encoded))(*encoded))
        size = ctypes.c_size_t()
        _check(library, library.nvrtcGetProgramLogSize(program, ctypes.byref(size)), "log size")
        log = ctypes.create_string_buffer(size.value)
        _check(library, library.nvrtcGetProgramLog(program, log), "log")
        ptx = b""
        if status == 0:
            _check(library, library.nvrtcGetPTXSize(program, ctypes.byref(size)), "PTX size")
            buffer = ctypes.create_string_buffer(size.value)
            _check(library, library.nvrtcGetPTX(program, buffer), "PTX")
            ptx = buffer.value
        return status == 0, log.value.decode(errors="replace"), ptx.decode(errors="replace")
    finally:
        library.nvrtcDestroyProgram(ctypes.byref(program))


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("filename, dtype, bits", [
    (filename, dtype, bits) for filename in cuda.kernel_files()
    for dtype, bits in cuda.variants(filename)])
def test_kernel_file_compiles_with_nvrtc(nvrtc, filename, dtype, bits, arch):
    source = cuda.kernel_source(filename)
    ok, log, ptx = compile_with_nvrtc(nvrtc, source, filename,
                                      [f"--gpu-architecture={arch}", *cuda.compile_options(dtype, bits)])
    assert ok, f"NVRTC ({arch}) could not compile {filename} for {dtype}, {bits}-bit indices:\n{log}"
    assert set(re.findall(r"\.entry (\w+)\(", ptx)) == set(cuda_emulator.defined_kernels(source))


def test_nvrtc_reports_a_broken_kernel(nvrtc):
    # The check above can fail: a kernel that uses a host header's name does not compile.
    ok, log, _ = compile_with_nvrtc(nvrtc, 'extern "C" __global__ void k(float* x) { x[0] = std::sqrt(2.0f); }',
                                    "broken.cu", ["--gpu-architecture=compute_80"])
    assert not ok and "std" in log
