"""An installed minifcn (a wheel, not a checkout) carries the CUDA sources it compiles."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None,
                    reason="running setup.py needs setuptools installed")
def test_the_built_package_carries_every_kernel_source(tmp_path):
    # build_py lays the package out exactly as a wheel holds it, with no network or wheel
    subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)],
                   check=True, capture_output=True, cwd=ROOT)
    sources = sorted(p.name for p in (ROOT / "kernels").iterdir() if p.suffix in (".cu", ".cuh"))
    packaged = sorted(p.name for p in (tmp_path / "minifcn" / "_kernels").iterdir())
    assert sources and packaged == sources
    assert (tmp_path / "minifcn" / "cuda.py").is_file()


def test_cuda_module_finds_the_kernels_of_this_checkout():
    from minifcn import cuda
    assert cuda.KERNEL_DIR == ROOT / "kernels"
    assert (cuda.KERNEL_DIR / "im2col.cu").is_file()
