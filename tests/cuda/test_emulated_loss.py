"""Softmax cross-entropy (kernels/softmax_loss.cu) on the CPU emulation against the NumPy contract."""
import numpy
import pytest

from minifcn.reference.loss import (softmax_cross_entropy_backward_numpy,
                                    softmax_cross_entropy_forward_numpy)

from cuda_emulator import tolerance

SHAPES = [(1, 1, 1, 1), (2, 3, 7, 5), (1, 21, 4, 6), (3, 5, 2, 9)]


def _case(rng, shape, dtype, ignore_index, ignored_fraction, score_scale=3.0):
    n, channels, height, width = shape
    score = (score_scale * rng.standard_normal(shape)).astype(dtype)
    target = rng.integers(0, channels, size=(n, height, width)).astype(numpy.int32)
    target[rng.random(target.shape) < ignored_fraction] = ignore_index
    return score, target


@pytest.mark.parametrize("ignore_index", [255, -1])
@pytest.mark.parametrize("ignored_fraction", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("shape", SHAPES)
def test_loss_matches_numpy(emulated_cuda, dtype, rng, shape, ignore_index, ignored_fraction):
    score, target = _case(rng, shape, dtype, ignore_index, ignored_fraction)
    expected_sum, expected_count = softmax_cross_entropy_forward_numpy(score, target, ignore_index)
    loss_sum, count = emulated_cuda.softmax_cross_entropy_forward(score, target, ignore_index)
    assert numpy.asarray(loss_sum).dtype == dtype and numpy.asarray(count).dtype.kind == "i"
    assert int(count) == int(expected_count)
    numpy.testing.assert_allclose(loss_sum, expected_sum, **tolerance(dtype))

    coefficient = numpy.asarray(rng.uniform(0.1, 2.0), dtype=dtype)
    gscore = emulated_cuda.softmax_cross_entropy_backward(score, target, ignore_index, coefficient)
    expected = softmax_cross_entropy_backward_numpy(score, target, ignore_index, coefficient)
    assert gscore.dtype == dtype and gscore.shape == score.shape
    numpy.testing.assert_allclose(gscore, expected, **tolerance(dtype))
    ignored = numpy.broadcast_to((target == ignore_index)[:, None], score.shape)
    assert not gscore[ignored].any()  # exactly 0 at ignored pixels


def test_large_scores_do_not_overflow(emulated_cuda, dtype, rng):
    score, target = _case(rng, (1, 4, 3, 3), dtype, 255, 0.0, score_scale=500.0)
    loss_sum, _ = emulated_cuda.softmax_cross_entropy_forward(score, target, 255)
    gscore = emulated_cuda.softmax_cross_entropy_backward(score, target, 255, numpy.asarray(1.0, dtype))
    assert numpy.isfinite(loss_sum) and numpy.isfinite(gscore).all()
    numpy.testing.assert_allclose(loss_sum, softmax_cross_entropy_forward_numpy(score, target, 255)[0],
                                  **tolerance(dtype))


def test_int64_labels_are_accepted(emulated_cuda, rng):
    score, target = _case(rng, (2, 3, 4, 5), numpy.float64, 255, 0.3)
    loss_sum, count = emulated_cuda.softmax_cross_entropy_forward(score, target.astype(numpy.int64), 255)
    expected_sum, expected_count = softmax_cross_entropy_forward_numpy(score, target, 255)
    assert int(count) == int(expected_count)
    numpy.testing.assert_allclose(loss_sum, expected_sum, rtol=1e-12)


def test_labels_out_of_range_make_their_pixels_nan(emulated_cuda, dtype, rng):
    # On the GPU nothing checks the labels (that would wait for the device): a label
    # outside [0, C) other than ignore_index poisons its pixel instead of reading
    # another pixel's scores. The other pixels are untouched.
    score, target = _case(rng, (2, 5, 4, 3), dtype, 255, 0.2)
    bad = numpy.zeros(target.shape, bool)
    bad[0, 1, 2], bad[1, 3, 0], bad[1, 0, 0] = True, True, True
    poisoned = target.copy()
    poisoned[bad] = [5, -3, 1000]
    loss_sum, _ = emulated_cuda.softmax_cross_entropy_forward(score, poisoned, 255)
    assert numpy.isnan(loss_sum)

    coefficient = numpy.asarray(0.5, dtype=dtype)
    gscore = emulated_cuda.softmax_cross_entropy_backward(score, poisoned, 255, coefficient)
    bad_channels = numpy.broadcast_to(bad[:, None], score.shape)
    assert numpy.isnan(gscore[bad_channels]).all()
    target[bad] = 255  # every other pixel: as if the bad ones were ignored
    expected = softmax_cross_entropy_backward_numpy(score, target, 255, coefficient)
    numpy.testing.assert_allclose(gscore[~bad_channels], expected[~bad_channels], **tolerance(dtype))
