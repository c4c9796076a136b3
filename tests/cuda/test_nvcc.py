"""Every kernels/*.cu file compiles with nvcc to PTX for Ampere (sm_80) and Hopper
(sm_90), in both dtypes, warnings as errors, and defines the kernels cuda.py launches.

What is compiled is exactly what cupy.RawModule hands to NVRTC: the text from
`minifcn.cuda.kernel_source` (includes pasted in) with `minifcn.cuda.compile_options`.
"""
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from minifcn import cuda

import cuda_emulator

ARCHITECTURES = ("sm_80", "sm_90")
NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
JOBS = [(filename, dtype, arch) for filename in cuda_emulator.kernel_files()
        for dtype in cuda_emulator.DTYPES for arch in ARCHITECTURES]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """(filename, dtype, arch) -> nvcc's CompletedProcess and the PTX it wrote."""
    if NVCC is None:
        pytest.skip("nvcc is not installed (CUDA toolkit): cannot check that kernels/*.cu compile")
    directory = tmp_path_factory.mktemp("ptx")

    def compile_one(job):
        filename, dtype, arch = job
        stem = f"{filename[:-3]}_{dtype}_{arch}"
        source, ptx = directory / f"{stem}.cu", directory / f"{stem}.ptx"
        source.write_text(cuda.kernel_source(filename))
        result = subprocess.run([NVCC, f"-arch={arch}", "-ptx", "--Werror", "all-warnings",
                                 *cuda.compile_options(dtype), str(source), "-o", str(ptx)],
                                capture_output=True, text=True)
        return result, ptx.read_text() if ptx.exists() else ""

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(zip(JOBS, pool.map(compile_one, JOBS)))


@pytest.mark.parametrize("filename, dtype, arch", JOBS)
def test_kernel_file_compiles_to_ptx(compiled, filename, dtype, arch):
    result, ptx = compiled[filename, dtype, arch]
    assert result.returncode == 0, f"nvcc -arch={arch} failed on {filename} ({dtype}):\n{result.stderr}"
    entries = set(re.findall(r"\.entry (\w+)\(", ptx))
    defined = set(cuda_emulator.defined_kernels(cuda.kernel_source(filename)))
    assert defined and defined == entries



@pytest.mark.parametrize("filename", cuda_emulator.kernel_files())
def test_kernel_file_compiles_as_it_stands(filename, tmp_path):
    """`nvcc -ptx kernels/<file>.cu`, with no flags: the file and its #include alone."""
    if NVCC is None:
        pytest.skip("nvcc is not installed (CUDA toolkit): cannot check that kernels/*.cu compile")
    ptx = tmp_path / "out.ptx"
    result = subprocess.run([NVCC, "-ptx", str(cuda.KERNEL_DIR / filename), "-o", str(ptx)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, f"nvcc could not compile kernels/{filename}:\n{result.stderr}"
    assert set(re.findall(r"\.entry (\w+)\(", ptx.read_text())) == set(
        cuda_emulator.defined_kernels(cuda.kernel_source(filename)))
