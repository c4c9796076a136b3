"""Shared fixtures and the split into fast and slow tests.

`python -m pytest -q` runs the fast tests: everything on the NumPy kernels, the CUDA
kernels on their CPU emulation. Tests marked slow (`-m slow`) are those that need the
numba kernels, which a fresh checkout first compiles (about half a minute on 2 cores),
the CUDA compilers, and whole-benchmark or full-size-file runs. A test runs the numba
kernels when it is under tests/cpu (numba against NumPy) or is parametrized with the
"numba" kernel set; both are marked slow here. CI runs both suites (.ci/run).
GPU tests skip themselves on a machine without a usable GPU."""
import signal

import numpy
import pytest

import minifcn
from minifcn import backend


def pytest_configure(config):
    """The process settings `minifcn train` makes (runtime.py; import makes none), so the
    numba kernels run on the thread pool they are written for. Ctrl-C as at a terminal:
    a shell that starts the tests in the background (`pytest &`, nohup) hands them
    SIGINT ignored, and the tests of Ctrl-C would then see no KeyboardInterrupt."""
    minifcn.configure_process()
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _runs_numba(item):
    params = getattr(item, "callspec", None)
    values = params.params.values() if params is not None else ()
    return item.path.parent.name == "cpu" or any(isinstance(v, str) and v == "numba" for v in values)


@pytest.hookimpl(tryfirst=True)  # before -m "not slow" deselects by the markers
def pytest_collection_modifyitems(config, items):
    skip_gpu = None if minifcn.gpu_available() else pytest.mark.skip(reason="no CuPy/GPU on this machine")
    for item in items:
        if _runs_numba(item):
            item.add_marker(pytest.mark.slow)
        if skip_gpu and "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def numpy_kernels_in_fast_tests(request, monkeypatch):
    """Fast tests, and the processes they start, use the NumPy kernels; slow ones the
    default (numba) unless they choose."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    monkeypatch.setenv("MINIFCN_CPU_KERNELS", "numpy")
    with backend.use_cpu_kernels("numpy"):
        yield


@pytest.fixture
def rng():
    return numpy.random.default_rng(0)
