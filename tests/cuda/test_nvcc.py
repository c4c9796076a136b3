"""Every kernels/*.cu file compiles with nvcc to PTX for Ampere (sm_80) and Hopper
(sm_90), in each of its builds (float32, float64, bf16 where it has one), warnings as
errors, and defines the kernels cuda.py launches;
and no kernel uses local memory (ptxas's report, benchmarks/kernel_resources.py).

What is compiled is exactly what cupy.RawModule hands to NVRTC: the text from
`minifcn.cuda.kernel_source` (includes pasted in) with `minifcn.cuda.compile_options`.
"""
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from minifcn import cuda

import cuda_emulator

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the `benchmarks` package
from benchmarks import kernel_resources  # noqa: E402

pytestmark = pytest.mark.slow  # nvcc takes about 10 s for all of them

ARCHITECTURES = kernel_resources.ARCHITECTURES
NVCC = kernel_resources.nvcc()
JOBS = [(filename, dtype, bits, arch) for filename in cuda.kernel_files()
        for dtype, bits in cuda.variants(filename) for arch in ARCHITECTURES]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """(filename, dtype, index bits, arch) -> nvcc's CompletedProcess and the PTX it wrote."""
    if NVCC is None:
        pytest.skip("nvcc is not installed (CUDA toolkit): cannot check that kernels/*.cu compile")
    directory = tmp_path_factory.mktemp("ptx")

    def compile_one(job):
        filename, dtype, bits, arch = job
        stem = f"{filename[:-3]}_{dtype}_{bits}_{arch}"
        source, ptx = directory / f"{stem}.cu", directory / f"{stem}.ptx"
        source.write_text(cuda.kernel_source(filename))
        result = subprocess.run([NVCC, f"-arch={arch}", "-ptx", "--Werror", "all-warnings",
                                 *cuda.compile_options(dtype, bits), str(source), "-o", str(ptx)],
                                capture_output=True, text=True)
        return result, ptx.read_text() if ptx.exists() else ""

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(zip(JOBS, pool.map(compile_one, JOBS)))


@pytest.mark.parametrize("filename, dtype, bits, arch", JOBS)
def test_kernel_file_compiles_to_ptx(compiled, filename, dtype, bits, arch):
    result, ptx = compiled[filename, dtype, bits, arch]
    assert result.returncode == 0, (f"nvcc -arch={arch} failed on {filename} ({dtype}, "
                                    f"{bits}-bit indices):\n{result.stderr}")
    entries = set(re.findall(r"\.entry (\w+)\(", ptx))
    defined = set(cuda_emulator.defined_kernels(cuda.kernel_source(filename)))
    assert defined and defined == entries



@pytest.mark.parametrize("filename", cuda.kernel_files())
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


def test_no_kernel_spills_or_has_a_stack_frame():
    """Local memory (a stack frame, spilled registers) would add traffic to kernels that
    are meant to be bound by their reads and writes alone. Hopper, every build of every
    file (bf16 included), both index widths."""
    if NVCC is None:
        pytest.skip("nvcc is not installed (CUDA toolkit): cannot ask ptxas")
    jobs = [(filename, dtype, bits) for filename in cuda.kernel_files()
            for dtype, bits in cuda.variants(filename)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        reports = pool.map(lambda job: kernel_resources.ptxas_report(
            job[0], job[1], "sm_90", NVCC, index_bits=job[2]), jobs)
    for (filename, dtype, bits), report in zip(jobs, reports):
        assert set(report) == set(cuda_emulator.defined_kernels(cuda.kernel_source(filename)))
        for kernel, resources in report.items():
            assert resources["stack_bytes"] == resources["spill_stores"] == resources["spill_loads"] == 0, (
                f"{kernel} ({filename}, {dtype}, {bits}-bit) uses local memory: {resources}")
            assert 0 < resources["registers"] <= 255


def test_resident_threads_as_registers_allow():
    # 256-thread blocks, registers allocated per thread in steps of 8, 65536 per SM
    assert kernel_resources.resident_fraction(32) == 1.0      # 8 blocks
    assert kernel_resources.resident_fraction(33) == 0.75     # 40 a thread: 6 blocks
    assert kernel_resources.resident_fraction(64) == 0.5      # 4 blocks
    assert kernel_resources.resident_fraction(255) == 0.125   # 1 block
