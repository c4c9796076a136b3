"""Shared fixtures; GPU tests skip themselves on a machine without a usable GPU."""
import numpy
import pytest

import minifcn


def pytest_collection_modifyitems(config, items):
    if minifcn.gpu_available():
        return
    skip_gpu = pytest.mark.skip(reason="no CuPy/GPU on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def rng():
    return numpy.random.default_rng(0)
