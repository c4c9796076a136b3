"""Caffe's Crop in NumPy: the reference kernels of functions/array.py's crop. Written
against the array API (they also run on CuPy).
"""
from ..backend import get_array_module


def crop_forward_numpy(x, oy, ox, h, w):
    """x (N, C, H, W) -> x[:, :, oy:oy+h, ox:ox+w] as a contiguous array."""
    xp = get_array_module(x)
    return xp.ascontiguousarray(x[:, :, oy: oy + h, ox: ox + w])


def crop_backward_numpy(gy, height, width, oy, ox):
    """gy (N, C, h, w) placed at (oy, ox) inside zeros (N, C, height, width)."""
    xp = get_array_module(gy)
    gx = xp.zeros(gy.shape[:2] + (height, width), dtype=gy.dtype)
    gx[:, :, oy: oy + gy.shape[2], ox: ox + gy.shape[3]] = gy
    return gx
