"""An installed minifcn (a wheel, not a checkout) carries the CUDA sources it compiles."""
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None,
                    reason="building a wheel without network needs setuptools installed")
def test_the_wheel_carries_every_kernel_source(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(tmp_path)],
                   check=True, capture_output=True, cwd=tmp_path)
    wheel, = tmp_path.glob("minifcn-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = sorted(p.name for p in (ROOT / "kernels").iterdir() if p.suffix in (".cu", ".cuh"))
    assert sources and all(f"minifcn/_kernels/{name}" in names for name in sources)
    assert "minifcn/cuda.py" in names


def test_cuda_module_finds_the_kernels_of_this_checkout():
    from minifcn import cuda
    assert cuda.KERNEL_DIR == ROOT / "kernels"
    assert (cuda.KERNEL_DIR / "im2col.cu").is_file()
