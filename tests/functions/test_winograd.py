"""Winograd F(2x2, 3x3) (functions/winograd.py): against the plain-loop convolution, its
transforms against their definitions, and the gradients of the convolutions that take
this path (conv2d's forward, input and weight gradients, conv_transpose2d's likewise).

conftest.py runs every test with the NumPy and the numba transforms. The layers of the
tests are small, so `winograd_everywhere` lowers the channel threshold to 1 and counts
the calls, so that a test cannot pass through im2col unnoticed."""
import numpy
import pytest

import minifcn as mf
from minifcn import backend, cuda
from minifcn import functions as F
from minifcn.functions import conv, winograd
from minifcn.gradcheck import check_backward

from .reference import conv2d_ref


@pytest.fixture
def winograd_everywhere(monkeypatch):
    """Every 3x3 stride-1 convolution through winograd.py; the list of the names of its
    functions called (correlate, weight_grad), one entry a call."""
    calls = []

    def counted(name, function):
        def call(*args, **kwargs):
            calls.append(name)
            return function(*args, **kwargs)
        return call
    monkeypatch.setattr(winograd, "min_channels", 1)
    for name in ("correlate", "weight_grad"):
        monkeypatch.setattr(winograd, name, counted(name, getattr(winograd, name)))
    return calls


# (x shape, C_out, padding): odd and even sizes, a single pixel, both paddings the
# adjoint allows (p <= 2), unequal ones, a 3x3 input with no padding (one output).
CASES = [((2, 3, 7, 9), 4, 1), ((1, 5, 8, 8), 2, 0), ((1, 2, 5, 6), 3, 2), ((1, 4, 1, 1), 4, 1),
         ((1, 3, 3, 3), 2, 0), ((1, 6, 11, 4), 5, (0, 2)), ((1, 2, 4, 13), 3, (2, 1))]


@pytest.mark.parametrize("x_shape, c_out, padding", CASES)
def test_forward_matches_the_plain_loops(winograd_everywhere, x_shape, c_out, padding):
    rng = numpy.random.default_rng(0)
    x, b = rng.standard_normal(x_shape), rng.standard_normal(c_out)
    w = rng.standard_normal((c_out, x_shape[1], 3, 3))
    y = F.conv2d(mf.Tensor(x), mf.Tensor(w), mf.Tensor(b), padding=padding)
    assert winograd_everywhere == ["correlate"], "conv2d did not take the Winograd path"
    numpy.testing.assert_allclose(y.data, conv2d_ref(x, w, b, padding=padding), rtol=1e-12, atol=1e-12)


def test_float32_rounding_stays_small(winograd_everywhere, monkeypatch):
    """The transforms add a few terms of either sign: float32 keeps ~1e-6 relative. The
    reference is im2col's convolution in float64 (test_conv.py holds it to the loops)."""
    rng = numpy.random.default_rng(1)
    x, w = rng.standard_normal((1, 64, 20, 17)), rng.standard_normal((32, 64, 3, 3))
    y = F.conv2d(mf.Tensor(x.astype(numpy.float32)), mf.Tensor(w.astype(numpy.float32)), padding=1)
    assert y.dtype == numpy.float32 and winograd_everywhere == ["correlate"]
    monkeypatch.setattr(winograd, "min_channels", 10**9)
    reference = F.conv2d(mf.Tensor(x), mf.Tensor(w), padding=1).data
    assert numpy.abs(y.data - reference).max() < 2e-5 * numpy.abs(reference).max()


@pytest.mark.parametrize("x_shape, c_out, padding", CASES[:4] + CASES[5:])
def test_conv2d_gradients(winograd_everywhere, x_shape, c_out, padding):
    rng = numpy.random.default_rng(2)
    x, b = rng.standard_normal(x_shape), rng.standard_normal(c_out)
    w = rng.standard_normal((c_out, x_shape[1], 3, 3))
    check_backward(lambda x, w, b: F.conv2d(x, w, b, padding=padding), [x, w, b])
    assert {"correlate", "weight_grad"} <= set(winograd_everywhere)


@pytest.mark.parametrize("x_shape, c_out, padding", [((1, 3, 5, 4), 2, 1), ((2, 2, 4, 6), 3, 0)])
def test_conv_transpose2d_gradients(winograd_everywhere, x_shape, c_out, padding):
    """A stride-1 3x3 transposed convolution's input gradient is a convolution: it takes
    the Winograd path too."""
    rng = numpy.random.default_rng(3)
    x, w = rng.standard_normal(x_shape), rng.standard_normal((x_shape[1], c_out, 3, 3))
    check_backward(lambda x, w: F.conv_transpose2d(x, w, padding=padding), [x, w])
    assert {"correlate", "weight_grad"} <= set(winograd_everywhere)


def test_bands_give_the_same_bits_as_one_band(winograd_everywhere):
    rng = numpy.random.default_rng(4)
    x, w = rng.standard_normal((2, 3, 13, 10)), rng.standard_normal((4, 3, 3, 3))
    kernels = backend.kernels_for(x)
    whole = winograd.correlate(kernels, x, w, 1, 1)
    one_tile_row = winograd.correlate(kernels, x, w, 1, 1, band_bytes=1)
    numpy.testing.assert_array_equal(one_tile_row, whole)


def test_the_input_gradient_is_the_adjoint(winograd_everywhere):
    """<conv(x), gy> = <x, conv_adjoint(gy)>, the adjoint through adjoint_weight."""
    rng = numpy.random.default_rng(5)
    x, w, gy = (rng.standard_normal(s) for s in ((1, 3, 6, 7), (2, 3, 3, 3), (1, 2, 6, 7)))
    geo = conv.Geometry(3, 3, 1, 1, 1, 1, 1, 1, 1)
    forward, adjoint = conv._correlate(x, w, geo), conv._correlate_adjoint(gy, w, geo, 6, 7)
    assert winograd_everywhere == ["correlate", "correlate"]
    assert numpy.vdot(forward, gy) == pytest.approx(numpy.vdot(x, adjoint), rel=1e-12)


def test_filter_transform_is_g_w_g_transposed():
    w = numpy.random.default_rng(6).standard_normal((3, 2, 3, 3))
    u = winograd.filter_transform(w)
    for k in range(3):
        for c in range(2):
            numpy.testing.assert_allclose(u[:, k, c].reshape(4, 4), winograd.G @ w[k, c] @ winograd.G.T,
                                          rtol=1e-14, atol=1e-14)


def test_one_tile_by_its_definition():
    """A^T [(G g G^T) * (B^T d B)] A is the 2x2 correlation of the 4x4 patch d with g."""
    rng = numpy.random.default_rng(7)
    d, g = rng.standard_normal((4, 4)), rng.standard_normal((3, 3))
    product = (winograd.G @ g @ winograd.G.T) * (winograd.B_T @ d @ winograd.B_T.T)
    expected = [[numpy.sum(d[r:r + 3, c:c + 3] * g) for c in range(2)] for r in range(2)]
    numpy.testing.assert_allclose(winograd.A_T @ product @ winograd.A_T.T, expected, rtol=1e-13)


@pytest.mark.parametrize("stride, dilation, groups, kernel, channels, padding, taken", [
    (1, 1, 1, 3, 64, 1, True), (1, 1, 1, 3, 64, 2, True), (2, 1, 1, 3, 64, 1, False),
    (1, 2, 1, 3, 64, 1, False), (1, 1, 2, 3, 64, 1, False), (1, 1, 1, 5, 64, 1, False),
    (1, 1, 1, 3, 63, 1, False), (1, 1, 1, 3, 64, 3, False)])
def test_which_layers_take_the_path(stride, dilation, groups, kernel, channels, padding, taken):
    x = numpy.zeros((1, channels * groups, 8, 8), numpy.float32)
    w = numpy.zeros((channels * groups, channels, kernel, kernel), numpy.float32)
    geo = conv.Geometry(kernel, kernel, stride, stride, padding, padding, dilation, dilation, groups)
    kernels = backend.kernels_for(x)
    assert winograd.applies(kernels, w.shape, geo) == taken
    assert winograd.applies(kernels, w[:32].shape, geo) is False  # 32 output channels: too few
    assert not winograd.applies(cuda.KERNELS, w.shape, geo)  # no Winograd on the GPU


def test_rows_of_v_and_m_are_an_odd_number_of_cache_lines():
    assert winograd._row_length(1, 4) == 16 and winograd._row_length(17, 4) == 48
    assert winograd._row_length(968, 4) == 976 and winograd._row_length(968, 8) == 968


@pytest.mark.parametrize("x_shape, c_out, padding", CASES)
def test_weight_gradient_matches_im2col(winograd_everywhere, x_shape, c_out, padding, monkeypatch):
    """Against the blocked im2col weight gradient, which test_conv.py checks against
    finite differences on its own; N = 2 sums over images, tiny bands over bands."""
    rng = numpy.random.default_rng(8)
    x = rng.standard_normal((2,) + x_shape[1:])
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    gy = rng.standard_normal((2, c_out, x_shape[2] + 2 * ph - 2, x_shape[3] + 2 * pw - 2))
    geo = conv.Geometry(3, 3, 1, 1, ph, pw, 1, 1, 1)
    winograd_grad = winograd.weight_grad(backend.kernels_for(x), x, gy, ph, pw, band_bytes=1)
    monkeypatch.setattr(winograd, "min_channels", 10**9)
    numpy.testing.assert_allclose(winograd_grad, conv._weight_grad(x, gy, geo), rtol=1e-11, atol=1e-11)
