"""backend: the CPU kernel set chosen by default (malloc's setting: test_runtime.py)."""
import subprocess
import sys

import numpy
import pytest

from minifcn import backend


def run_python(code, **env):
    import os
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, **env}, check=True)
    return result.stdout.strip()


def test_auto_kernel_set_is_numba_when_it_imports():
    code = "from minifcn import backend; print(backend.cpu_kernels())"
    assert run_python(code, MINIFCN_CPU_KERNELS="auto") == "numba"
    assert run_python(code, MINIFCN_CPU_KERNELS="numpy") == "numpy"


def test_bad_kernel_set_name_is_refused():
    with pytest.raises(subprocess.CalledProcessError) as error:
        subprocess.run([sys.executable, "-c", "import minifcn"], capture_output=True, text=True,
                       env={"MINIFCN_CPU_KERNELS": "fast", "PATH": ""}, check=True)
    assert "MINIFCN_CPU_KERNELS must be auto, numba or numpy" in error.value.stderr


def test_asking_for_the_gpu_without_cupy_or_a_gpu_says_what_is_missing(monkeypatch, capsys):
    import types
    from minifcn.cli import main

    monkeypatch.setattr(backend, "_cupy", False)  # as if `import cupy` had failed
    assert not backend.gpu_available()
    with pytest.raises(RuntimeError, match=r'needs CuPy: pip install -e "\.\[cuda\]" in the minifcn checkout'):
        backend.to_device(numpy.zeros(3), "cuda")
    assert main(["train", "--device", "cuda", "--iterations", "1", "--widths", "3,4,4,6,6",
                 "--fc-width", "6", "--image-size", "40", "--no-progress", "--out", "/nonexistent/run"]) == 1
    assert capsys.readouterr().err.strip().endswith(
        'needs CuPy: pip install -e ".[cuda]" in the minifcn checkout, on a machine with an '
        "NVIDIA GPU and its driver")

    def no_device():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
    driverless = types.SimpleNamespace(cuda=types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=no_device)))
    monkeypatch.setattr(backend, "_cupy", driverless)  # CuPy installed, no GPU
    assert not backend.gpu_available()
    with pytest.raises(RuntimeError, match="CuPy is installed but no CUDA GPU can be used: "
                                           "cudaErrorNoDevice"):
        backend.to_device(numpy.zeros(3), "cuda")
