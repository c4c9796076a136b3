"""Softmax cross-entropy (kernels/softmax_loss.cu) on the CPU emulation against the NumPy contract.

The forward reduces inside the kernels (per-chunk partials, then one block's total):
besides the values, these check that every chunk and every image is counted, with the
chunks the launch picks and with many small chunks, and that the sum is the same bits
on every run and with any grid."""
import numpy
import pytest

from minifcn import cuda

from minifcn.reference.loss import (softmax_cross_entropy_backward_numpy,
                                    softmax_cross_entropy_forward_numpy)

from cuda_emulator import tolerance

# channels 1, 3, 21, 33; odd heights and widths; (2, 3, 37, 41): 1517 pixels an image,
# six chunks of cuda.LOSS_CHUNK = 256, the last one short
SHAPES = [(1, 1, 1, 1), (2, 3, 7, 5), (1, 21, 4, 6), (3, 5, 2, 9), (2, 33, 5, 3),
          (2, 3, 37, 41)]


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


@pytest.mark.parametrize("shape", [(2, 21, 13, 11), (3, 1, 9, 7), (1, 33, 17, 5)])
def test_many_small_chunks_add_up(emulated_cuda, dtype, rng, shape, monkeypatch):
    # 64-pixel chunks: several partials an image, the last one short
    monkeypatch.setattr(cuda, "LOSS_CHUNK", 64)
    score, target = _case(rng, shape, dtype, 255, 0.3)
    loss_sum, count = emulated_cuda.softmax_cross_entropy_forward(score, target, 255)
    expected_sum, expected_count = softmax_cross_entropy_forward_numpy(score, target, 255)
    assert int(count) == int(expected_count)
    numpy.testing.assert_allclose(loss_sum, expected_sum, **tolerance(dtype))


def test_the_loss_is_the_same_bits_every_run_and_with_any_grid(emulated_gpu, dtype, rng,
                                                              monkeypatch):
    score, target = _case(rng, (3, 21, 23, 29), dtype, 255, 0.3)
    runs = []
    for grid in (None, None, (1, 256), (2, 256)):  # None: the launch's own grid
        enqueue = emulated_gpu.enqueuer()

        def forced(filename, kernel, variant, blocks, threads, args, grid=grid, enqueue=enqueue):
            if grid is not None and kernel == "softmax_cross_entropy_forward":
                blocks = (grid[0], 1 if grid[0] == 1 else 2)  # fewer blocks in x and y
            enqueue(filename, kernel, variant, blocks, threads, args)
        monkeypatch.setattr(cuda, "_enqueue", forced)
        loss_sum, count = cuda.softmax_cross_entropy_forward(score, target, 255)
        runs.append((numpy.asarray(loss_sum).tobytes(), int(count)))
    assert len(set(runs)) == 1
    numpy.testing.assert_allclose(numpy.frombuffer(runs[0][0], dtype)[0],
                                  softmax_cross_entropy_forward_numpy(score, target, 255)[0],
                                  **tolerance(dtype))


def test_a_nan_score_makes_the_loss_nan(emulated_cuda, dtype, rng):
    # the online maximum must not drop a NaN (a diverged net shows NaN, not a number)
    score, target = _case(rng, (1, 5, 3, 4), dtype, 255, 0.0)
    for channel in (0, 2, 4):
        poisoned = score.copy()
        poisoned[0, channel, 1, 2] = numpy.nan
        loss_sum, _ = emulated_cuda.softmax_cross_entropy_forward(poisoned, target, 255)
        assert numpy.isnan(loss_sum)
        gscore = emulated_cuda.softmax_cross_entropy_backward(poisoned, target, 255,
                                                              numpy.asarray(1.0, dtype))
        assert numpy.isnan(gscore[0, :, 1, 2]).all()
        assert numpy.isfinite(numpy.delete(gscore.reshape(5, -1), 6, axis=1)).all()


def test_no_pixels_give_a_zero_loss_without_a_launch(emulated_cuda, dtype):
    score = numpy.zeros((0, 3, 4, 5), dtype)
    loss_sum, count = emulated_cuda.softmax_cross_entropy_forward(
        score, numpy.zeros((0, 4, 5), numpy.int32), 255)
    assert float(loss_sum) == 0 and int(count) == 0
