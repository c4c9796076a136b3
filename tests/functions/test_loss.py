"""softmax_cross_entropy against a per-pixel loop (Caffe SoftmaxWithLoss)."""
import numpy
import pytest

import minifcn as mf
from minifcn import functions as F
from minifcn.gradcheck import check_backward

from .reference import softmax_cross_entropy_ref

# (score shape, ignore_index, fraction of pixels ignored)
LOSS_CASES = [
    ((2, 3, 4, 5), 255, 0.0),
    ((2, 3, 4, 5), 255, 0.3),
    ((1, 5, 3, 3), -1, 0.5),
    ((3, 2, 1, 2), 0, 0.0),          # ignore_index inside [0, C): class 0 is never counted
    ((1, 21, 2, 3), 255, 0.2),       # VOC's 21 classes
]
IDS = [f"s{c[0]}-ignore{c[1]}-frac{c[2]}".replace(" ", "") for c in LOSS_CASES]


def _labels(rng, score_shape, ignore_index, fraction):
    n, n_class, h, w = score_shape
    target = rng.integers(0, n_class, (n, h, w))
    target[rng.random((n, h, w)) < fraction] = ignore_index
    return target


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("shape, ignore_index, fraction", LOSS_CASES, ids=IDS)
def test_loss_forward_and_backward_match_loops(rng, shape, ignore_index, fraction, normalize):
    score = rng.standard_normal(shape) * 3
    target = _labels(rng, shape, ignore_index, fraction)
    st = mf.Tensor(score, requires_grad=True)
    loss = F.softmax_cross_entropy(st, target, ignore_index=ignore_index, normalize=normalize)
    expected_loss, expected_grad = softmax_cross_entropy_ref(score, target, ignore_index, normalize)
    assert loss.shape == ()
    numpy.testing.assert_allclose(loss.item(), expected_loss, rtol=1e-12)
    loss.backward()
    numpy.testing.assert_allclose(st.grad, expected_grad, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("shape, ignore_index, fraction", LOSS_CASES[1:4], ids=IDS[1:4])
def test_loss_gradcheck(rng, shape, ignore_index, fraction, normalize):
    target = _labels(rng, shape, ignore_index, fraction)
    check_backward(lambda s, t: F.softmax_cross_entropy(s, t, ignore_index, normalize),
                   [rng.standard_normal(shape), target])


def test_loss_normalization_by_hand():
    """Uniform scores over C classes give -log(1/C) per counted pixel: normalize=True
    averages over the 3 counted pixels, normalize=False sums them and divides by N=2."""
    score = numpy.zeros((2, 4, 1, 2))
    target = numpy.array([[[1, 255]], [[3, 0]]])
    per_pixel = numpy.log(4.0)
    mean = F.softmax_cross_entropy(mf.Tensor(score), target)
    per_image = F.softmax_cross_entropy(mf.Tensor(score), target, normalize=False)
    numpy.testing.assert_allclose(mean.item(), per_pixel, rtol=1e-14)
    numpy.testing.assert_allclose(per_image.item(), 3 * per_pixel / 2, rtol=1e-14)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_all_ignored_gives_zero_loss_and_zero_gradient(dtype, normalize):
    score = mf.Tensor(numpy.ones((2, 3, 2, 2), dtype), requires_grad=True)
    target = numpy.full((2, 2, 2), 255, dtype=numpy.uint8)
    with numpy.errstate(divide="raise", invalid="raise"):
        loss = F.softmax_cross_entropy(score, target, normalize=normalize)
        loss.backward()
    assert loss.item() == 0.0 and loss.dtype == dtype
    assert score.grad.dtype == dtype
    numpy.testing.assert_array_equal(score.grad, numpy.zeros((2, 3, 2, 2)))


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("shape", [(0, 3, 4, 5), (2, 3, 0, 5), (2, 3, 4, 0), (0, 21, 0, 0)])
def test_an_empty_batch_gives_zero_loss_and_an_empty_gradient(shape, normalize):
    # No pixel is counted, so by the contract the loss is 0 (never NaN, never a kernel's
    # reshape error), for Caffe's per-image normalization (D = N = 0) too.
    score = mf.Tensor(numpy.ones(shape, numpy.float32), requires_grad=True)
    target = numpy.zeros((shape[0], *shape[2:]), numpy.int64)
    with numpy.errstate(divide="raise", invalid="raise"):
        loss = F.softmax_cross_entropy(score, target, normalize=normalize)
        loss.backward()
    assert loss.item() == 0.0 and loss.dtype == numpy.float32
    assert score.grad.shape == shape and score.grad.dtype == numpy.float32


def test_no_classes_is_a_clear_error():
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: score \(2, 0, 3, 3\) has no classes"):
        F.softmax_cross_entropy(mf.Tensor(numpy.ones((2, 0, 3, 3))), numpy.zeros((2, 3, 3), int))


def test_loss_large_scores_do_not_overflow():
    score = numpy.array([1000.0, 0.0, -1000.0]).reshape(1, 3, 1, 1)
    for dtype in (numpy.float32, numpy.float64):
        st = mf.Tensor(score.astype(dtype), requires_grad=True)
        with numpy.errstate(over="raise", invalid="raise"):
            loss = F.softmax_cross_entropy(st, numpy.array([[[1]]]))
            loss.backward()
        numpy.testing.assert_allclose(loss.item(), 1000.0, rtol=1e-6)
        numpy.testing.assert_allclose(st.grad.ravel(), [1.0, -1.0, 0.0], atol=1e-6)


@pytest.mark.parametrize("label_dtype", [numpy.uint8, numpy.int32, numpy.int64])
def test_loss_accepts_integer_labels_as_arrays_and_tensors(rng, label_dtype):
    score = rng.standard_normal((2, 3, 3, 2))
    target = _labels(rng, score.shape, 255, 0.2)
    expected, _ = softmax_cross_entropy_ref(score, target)
    for t in (target.astype(label_dtype), mf.Tensor(target.astype(label_dtype))):
        numpy.testing.assert_allclose(F.softmax_cross_entropy(mf.Tensor(score), t).item(),
                                      expected, rtol=1e-12)


@pytest.mark.parametrize("normalize", [True, False])
def test_loss_float32_agrees_with_float64(rng, normalize):
    score = rng.standard_normal((2, 4, 3, 3)) * 2
    target = _labels(rng, score.shape, 255, 0.25)
    results = {}
    for dtype in (numpy.float32, numpy.float64):
        st = mf.Tensor(score.astype(dtype), requires_grad=True)
        loss = F.softmax_cross_entropy(st, target, normalize=normalize)
        assert loss.dtype == dtype
        loss.backward()
        assert st.grad.dtype == dtype
        results[dtype] = (loss.data, st.grad)
    for low, high in zip(results[numpy.float32], results[numpy.float64]):
        numpy.testing.assert_allclose(low, high, rtol=1e-5, atol=1e-6)


def test_loss_backward_scales_with_the_upstream_gradient(rng):
    score = rng.standard_normal((1, 3, 2, 2))
    target = _labels(rng, score.shape, 255, 0.0)
    st = mf.Tensor(score, requires_grad=True)
    (F.softmax_cross_entropy(st, target) * 2.5).backward()
    _, expected = softmax_cross_entropy_ref(score, target)
    numpy.testing.assert_allclose(st.grad, 2.5 * expected, rtol=1e-12)
