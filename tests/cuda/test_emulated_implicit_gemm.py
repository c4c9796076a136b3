"""The implicit-GEMM convolution (kernels/implicit_gemm.cu) on the CPU emulation against
the NumPy reference (reference/implicit_gemm.py), several 64 x 64 tiles in both axes and
ragged edges; and conv2d through it (functions/conv.py, implicit_gemm_layers)."""
import numpy
import pytest

import minifcn as mf
from minifcn import backend, functions as F
from minifcn.functions import conv
from minifcn.reference.im2col import conv_output_size
from minifcn.reference.implicit_gemm import conv_implicit_gemm_numpy

GEOMETRIES = {  # (N, C_in, H, W), (C_out, kh, kw), (sy, sx, ph, pw, dy, dx)
    "3x3 pad 1, 3 P tiles x 2 M tiles": ((2, 3, 9, 8), (70, 3, 3), (1, 1, 1, 1, 1, 1)),
    "3x3 stride 2 dilation 2 pad 2": ((1, 5, 11, 13), (7, 3, 3), (2, 2, 2, 2, 2, 2)),
    "1x2 odd everything": ((3, 2, 5, 7), (9, 1, 2), (1, 2, 0, 1, 1, 3)),
}


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_implicit_gemm_matches_numpy(emulated_cuda, dtype, rng, name):
    (n, c, h, w), (c_out, kh, kw), (sy, sx, ph, pw, dy, dx) = GEOMETRIES[name]
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = rng.standard_normal((c_out, c, kh, kw)).astype(dtype)
    out_h, out_w = conv_output_size(h, kh, sy, ph, dy), conv_output_size(w, kw, sx, pw, dx)
    y = emulated_cuda.conv_implicit_gemm(x, weight, sy, sx, ph, pw, dy, dx, out_h, out_w)
    expected = conv_implicit_gemm_numpy(x, weight, sy, sx, ph, pw, dy, dx, out_h, out_w)
    assert y.dtype == dtype and y.shape == expected.shape
    tolerance = {"float32": 1e-5, "float64": 1e-12}[dtype.name]
    numpy.testing.assert_allclose(y, expected, rtol=tolerance, atol=tolerance)


def test_conv2d_takes_it_for_the_listed_layers_only(emulated_cupy, monkeypatch):
    rng = numpy.random.default_rng(3)
    x, weight, bias = (rng.standard_normal(s) for s in ((2, 3, 9, 8), (5, 3, 3, 3), (5,)))
    with backend.use_cpu_kernels("numpy"):
        expected = F.conv2d(mf.Tensor(x), mf.Tensor(weight), mf.Tensor(bias), padding=1).numpy()
    calls = []
    real = emulated_cupy_kernel = backend.kernels_for(emulated_cupy.asarray(x)).conv_implicit_gemm
    monkeypatch.setattr(type(backend.kernels_for(emulated_cupy.asarray(x))), "conv_implicit_gemm",
                        staticmethod(lambda *args: calls.append(args) or real(*args)))
    device = [mf.Tensor(backend.to_device(a, "cuda")) for a in (x, weight, bias)]
    F.conv2d(*device, padding=1)
    assert not calls  # not listed: im2col + cuBLAS
    monkeypatch.setattr(conv, "implicit_gemm_layers", {(3, 5, 3, 3, 1, 1, 1, 1, 1, 1)})
    y = F.conv2d(*device, padding=1).numpy()
    assert len(calls) == 1 and emulated_cupy_kernel is real
    numpy.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-12)
