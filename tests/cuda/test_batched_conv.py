"""The GPU convolution's whole-batch path (functions/conv.py, "whole batches"): the
columns of several images from one im2col launch, one strided-batched cuBLAS GEMM per
group, no im2col for 1x1 convolutions, and every float32 GEMM honouring allow_tf32. Run
on the emulated CuPy, whose cuBLAS stand-in reads the same raw strides and flags."""
import emulated_cupy as emulated_cupy_module
import numpy
import pytest

import minifcn as mf
from minifcn import backend, cuda
from minifcn import functions as F
from minifcn.functions import conv


def _pass(function, arrays, device, seed=3):
    leaves = [mf.Tensor(backend.to_device(a, device), requires_grad=True) for a in arrays]
    y = function(*leaves)
    gy = numpy.random.default_rng(seed).standard_normal(y.shape)
    y.backward(backend.to_device(gy.astype(y.dtype), device))
    return [y.numpy()] + [backend.to_numpy(t.grad) for t in leaves]


@pytest.fixture(params=[pytest.param("gpu", marks=pytest.mark.gpu), "emulated"])
def device(request):
    """CuPy on a GPU, or the emulated CuPy (float64 cases: TF32 does not apply)."""
    if request.param == "emulated":
        request.getfixturevalue("emulated_cupy")
    return "cuda"


def _launches(monkeypatch):
    names = []
    enqueue = cuda._enqueue

    def counting(filename, kernel_name, *args):
        names.append(kernel_name)
        return enqueue(filename, kernel_name, *args)
    monkeypatch.setattr(cuda, "_enqueue", counting)
    return names


CASES = {
    "3x3 pad 1": (lambda x, w, b: F.conv2d(x, w, b, padding=1), [(5, 3, 7, 6), (4, 3, 3, 3), (4,)]),
    "stride 2 dilation 2 groups 2": (lambda x, w: F.conv2d(x, w, stride=2, padding=2, dilation=2,
                                                           groups=2), [(3, 4, 9, 8), (6, 2, 3, 3)]),
    "1x1 (fc7, score)": (lambda x, w, b: F.conv2d(x, w, b), [(3, 6, 5, 4), (7, 6, 1, 1), (7,)]),
    "1x1 groups 3": (lambda x, w: F.conv2d(x, w, groups=3), [(2, 6, 3, 5), (9, 2, 1, 1)]),
    "1x1 stride 2 (needs im2col)": (lambda x, w: F.conv2d(x, w, stride=2), [(2, 3, 5, 5), (4, 3, 1, 1)]),
    "deconvolution 4/2": (lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1),
                          [(3, 3, 4, 5), (3, 2, 4, 4)]),
    "deconvolution 1x1": (lambda x, w, b: F.conv_transpose2d(x, w, b), [(2, 4, 3, 3), (4, 5, 1, 1), (5,)]),
}


@pytest.mark.parametrize("chunk_images", [1, 2, None], ids=["1 image", "2 images", "whole batch"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_batched_convolutions_match_the_cpu(device, monkeypatch, name, chunk_images):
    function, shapes = CASES[name]
    rng = numpy.random.default_rng(0)
    arrays = [rng.standard_normal(shape) for shape in shapes]  # float64: tight tolerance
    with backend.use_cpu_kernels("numpy"):
        expected = _pass(function, arrays, "cpu")
    if chunk_images is not None:  # columns of at most `chunk_images` images at once
        x, w = shapes[0], shapes[1]
        image_bytes = 8 * max(x[1], w[0]) * w[2] * w[3] * x[2] * x[3] * 4
        monkeypatch.setattr(conv, "batch_column_bytes", chunk_images * image_bytes // 2 + 1)
    for got, want in zip(_pass(function, arrays, "cuda"), expected):
        numpy.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_one_im2col_per_layer_and_none_for_1x1(emulated_cupy, monkeypatch):
    rng = numpy.random.default_rng(1)
    x = rng.standard_normal((4, 3, 6, 6)).astype(numpy.float32)
    w3, w1 = (rng.standard_normal(s).astype(numpy.float32) for s in ((5, 3, 3, 3), (2, 5, 1, 1)))
    names = _launches(monkeypatch)
    _pass(lambda x, a, b: F.conv2d(F.conv2d(x, a, padding=1), b), [x, w3, w1], "cuda")
    # forward and weight gradient of the 3x3 layer: one im2col each for all 4 images;
    # its input gradient one col2im; the 1x1 layer none at all
    assert names.count("im2col") == 2 and names.count("col2im") == 1


@pytest.mark.parametrize("allowed", [False, True])
def test_every_float32_convolution_gemm_honours_allow_tf32(emulated_cupy, allowed):
    rng = numpy.random.default_rng(2)
    arrays = [rng.standard_normal(s).astype(numpy.float32) for s in ((2, 3, 6, 5), (4, 3, 3, 3))]
    previous = cuda.allow_tf32(allowed)
    try:
        del emulated_cupy_module.gemm_calls[:]
        got = _pass(lambda x, w: F.conv_transpose2d(F.conv2d(x, w, padding=1), w), arrays, "cuda")
    finally:
        cuda.allow_tf32(previous)
    expected_type = (emulated_cupy_module.CUBLAS_COMPUTE_32F_FAST_TF32 if allowed
                     else emulated_cupy_module.CUBLAS_COMPUTE_32F)
    # each layer: forward 1, input gradient 1, weight gradient 1 per image (2)
    assert len(emulated_cupy_module.gemm_calls) == 8
    assert set(emulated_cupy_module.gemm_calls) == {expected_type}
    with backend.use_cpu_kernels("numpy"):
        exact = _pass(lambda x, w: F.conv_transpose2d(F.conv2d(x, w, padding=1), w),
                      [a.astype(numpy.float64) for a in arrays], "cpu")
    for value, reference in zip(got, exact):
        error = numpy.abs(value - reference).max() / numpy.abs(reference).max()
        # TF32 keeps 10 mantissa bits (2^-11 relative per input), float32 23
        assert (error > 1e-5) == allowed and error < 5e-3


@pytest.mark.parametrize("layout", ["contiguous", "a transposed", "b transposed", "both transposed"])
@pytest.mark.parametrize("broadcast", [False, True])
def test_gemm_reads_strided_stacks_as_numpy_matmul_does(emulated_cupy, layout, broadcast):
    rng = numpy.random.default_rng(4)
    batch, m, k, n = 3, 4, 5, 6
    a = rng.standard_normal((1 if broadcast else batch, m, k))
    b = rng.standard_normal((batch, k, n))

    def on_device(array, transposed):  # a transposed view: the stack stored as (.., cols, rows)
        if not transposed:
            return emulated_cupy.asarray(array)
        return emulated_cupy.asarray(numpy.ascontiguousarray(array.transpose(0, 2, 1))).transpose(0, 2, 1)
    device_a = on_device(a, layout in ("a transposed", "both transposed"))
    device_b = on_device(b, layout in ("b transposed", "both transposed"))
    wide = emulated_cupy.full((batch, m, n + 3), numpy.nan)  # out: a strided slice of it
    out = wide[:, :, 1:n + 1]
    conv._gemm(device_a, device_b, out)
    numpy.testing.assert_allclose(out.get(), numpy.matmul(a, b), rtol=1e-12)
    assert numpy.isnan(wide.get()[:, :, [0, n + 1, n + 2]]).all()  # nothing written outside
    conv._gemm(device_a, device_b, out, accumulate=True)
    numpy.testing.assert_allclose(out.get(), 2 * numpy.matmul(a, b), rtol=1e-12)
