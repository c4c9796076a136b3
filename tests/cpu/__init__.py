"""Tests of the numba CPU kernels (minifcn/cpu/) and the blocked convolution."""
