"""numba kernels for the CPU hot paths, same contracts as the NumPy versions.

backend.kernel(name, ...) looks a hot path up here by name (im2col, col2im,
max_pool_forward, ...); a name not defined here falls back to the NumPy version.
"""
