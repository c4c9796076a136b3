"""Every test here compares the numba kernels with the NumPy ones: without numba there
is nothing to compare, so the whole directory skips."""
import pytest

pytest.importorskip("numba")
