"""Every test here runs once per CPU kernel set: the NumPy path and, where numba imports,
the numba kernels (minifcn/cpu/), so both are held to the same loop references and
gradient checks. Ops without a numba kernel fall back to NumPy in both runs."""
import importlib.util

import pytest

from minifcn import backend

KERNEL_SETS = ["numpy"] + (["numba"] if importlib.util.find_spec("numba") else [])


@pytest.fixture(autouse=True, params=KERNEL_SETS)
def cpu_kernel_set(request):
    with backend.use_cpu_kernels(request.param):
        yield request.param
