"""Crop (kernels/crop.cu) and LRN (kernels/lrn.cu) on the CPU emulation against the NumPy
contract, in float32, float64 and bf16 (against stored_reference: the reference in
float32 on the bf16 values, rounded once). Crop is a copy: bit for bit. LRN takes
another pow and sums in double: within cuda_emulator.assert_close."""
import numpy
import pytest

from minifcn import cuda

from minifcn.reference.crop import crop_backward_numpy, crop_forward_numpy
from minifcn.reference.norm import lrn_backward_numpy, lrn_forward_numpy

from cuda_emulator import assert_close, random_values, stored_reference, tolerance

# shape, (oy, ox), (h, w)
CROPS = [((1, 1, 1, 1), (0, 0), (1, 1)),
         ((2, 3, 7, 5), (1, 2), (4, 3)),
         ((1, 2, 6, 9), (0, 0), (6, 9)),      # nothing cropped
         ((2, 1, 40, 38), (19, 5), (21, 33)),  # FCN's `score` crop at offset 19
         ((2, 3, 9, 12), (2, 4), (5, 8)),      # 16-byte vectors of floats and doubles
         ((1, 2, 5, 24), (1, 8), (3, 16)),     # 16-byte vectors in every dtype (8 bf16)
         ((1, 2, 5, 10), (1, 2), (3, 6)),      # vectors of doubles only
         ((3, 21, 11, 9), (3, 0), (7, 9)),     # full rows, odd width
         ((1, 1, 3, 300), (1, 7), (2, 290))]   # rows longer than a block's first step


@pytest.mark.parametrize("shape, offset, size", CROPS)
def test_crop_matches_numpy(emulated_cuda, storage, rng, shape, offset, size):
    x = random_values(rng, shape, storage)
    y = emulated_cuda.crop_forward(x, *offset, *size)
    numpy.testing.assert_array_equal(y, stored_reference(crop_forward_numpy, x, *offset, *size))
    gy = random_values(rng, y.shape, storage)
    gx = emulated_cuda.crop_backward(gy, *shape[2:], *offset)
    assert y.dtype == gx.dtype == storage
    numpy.testing.assert_array_equal(gx, stored_reference(crop_backward_numpy, gy, *shape[2:], *offset))


def test_crop_covers_every_row_with_a_one_block_grid(emulated_gpu, dtype, rng, monkeypatch):
    # the launch's grid replaced by one block of 32 x 2 threads: every thread loops
    # along its row and over the rows (the conftest's 2x3 grid changes x only)
    enqueue = emulated_gpu.enqueuer()
    monkeypatch.setattr(cuda, "_enqueue", lambda filename, kernel, variant, blocks, threads, args:
                        enqueue(filename, kernel, variant, (1, 1), (32, 2), args))
    for shape, offset, size in CROPS:
        x = rng.standard_normal(shape).astype(dtype)
        y = cuda.crop_forward(x, *offset, *size)
        numpy.testing.assert_array_equal(y, crop_forward_numpy(x, *offset, *size))
        gx = cuda.crop_backward(y, *shape[2:], *offset)
        numpy.testing.assert_array_equal(gx, crop_backward_numpy(y, *shape[2:], *offset))


def test_crop_backward_takes_a_broadcast_gradient(emulated_cuda):
    gy = numpy.broadcast_to(numpy.float32(2.0), (1, 2, 3, 3))  # what sum's backward hands over
    gx = emulated_cuda.crop_backward(gy, 5, 6, 1, 2)
    numpy.testing.assert_array_equal(gx, crop_backward_numpy(numpy.ascontiguousarray(gy), 5, 6, 1, 2))


# shape, size, alpha, beta, k
LRNS = [((1, 1, 1, 1), 5, 1e-4, 0.75, 1.0),
        ((2, 7, 3, 4), 5, 1e-4, 0.75, 1.0),   # AlexNet's
        ((1, 6, 5, 3), 2, 0.5, 0.6, 2.0),     # an even window
        ((2, 3, 2, 5), 7, 1.0, 0.75, 1.0),    # a window wider than the channels
        ((1, 4, 3, 3), 1, 0.3, 1.5, 0.5),     # size 1: each channel alone
        ((2, 21, 5, 3), 5, 0.5, 0.75, 1.0),   # windows across the runs of 16 channels
        ((1, 33, 3, 7), 4, 0.8, 0.6, 1.5),    # three runs, the last of one channel
        ((1, 33, 2, 3), 19, 1.0, 0.75, 1.0),  # a window wider than a run
        ((3, 1, 7, 9), 3, 0.5, 0.75, 2.0)]    # one channel, odd sizes


@pytest.mark.parametrize("shape, size, alpha, beta, k", LRNS)
def test_lrn_matches_numpy(emulated_cuda, storage, rng, shape, size, alpha, beta, k):
    x = random_values(rng, shape, storage)
    y, scale = emulated_cuda.lrn_forward(x, size, alpha, beta, k)
    expected_y, expected_scale = stored_reference(lrn_forward_numpy, x, size, alpha, beta, k)
    assert y.dtype == storage and scale.dtype == storage
    assert_close(scale, expected_scale)
    assert_close(y, expected_y)

    # backward from the kernel's own y and scale (in bf16: rounded as the kernel stored them)
    gy = random_values(rng, shape, storage)
    gx = emulated_cuda.lrn_backward(x, y, scale, gy, size, alpha, beta)
    assert_close(gx, stored_reference(lrn_backward_numpy, x, y, scale, gy, size, alpha, beta))


@pytest.mark.parametrize("run", [1, 3, 64])
def test_lrn_any_run_of_channels_gives_the_same(emulated_cuda, dtype, rng, run, monkeypatch):
    # runs of one channel (every window summed afresh), runs that split the windows,
    # one run for every channel
    monkeypatch.setattr(cuda, "LRN_RUN", run)
    x, gy = rng.standard_normal((2, 2, 21, 5, 3)).astype(dtype)
    y, scale = emulated_cuda.lrn_forward(x, 5, 0.5, 0.75, 1.0)
    expected_y, expected_scale = lrn_forward_numpy(x, 5, 0.5, 0.75, 1.0)
    numpy.testing.assert_allclose(scale, expected_scale, **tolerance(dtype))
    numpy.testing.assert_allclose(y, expected_y, **tolerance(dtype))
    gx = emulated_cuda.lrn_backward(x, y, scale, gy, 5, 0.5, 0.75)
    numpy.testing.assert_allclose(gx, lrn_backward_numpy(x, expected_y, expected_scale, gy, 5, 0.5, 0.75),
                                  **tolerance(dtype))


def test_lrn_sliding_sum_residue_stays_small_and_inside_its_run(emulated_cuda, dtype, rng):
    # A huge channel enters and leaves the window: the subtraction leaves a rounding
    # residue of about 2^-52 of its square (the sums are doubles) in the later channels
    # of the same run of cuda.LRN_RUN channels; the next run starts from a fresh sum.
    alpha, size, k, huge = 1.0, 5, 1e-6, 1e3
    x = rng.standard_normal((1, 40, 2, 3)).astype(dtype) * dtype.type(1e-3)
    x[:, 3] = huge
    y, scale = emulated_cuda.lrn_forward(x, size, alpha, 0.75, k)
    expected_y, expected_scale = lrn_forward_numpy(x, size, alpha, 0.75, k)
    residue = alpha / size * huge**2 * 2.0**-52 * 4
    rtol = tolerance(dtype)["rtol"]
    numpy.testing.assert_allclose(scale, expected_scale, rtol=rtol, atol=residue)
    fresh = slice(cuda.LRN_RUN, None)  # channels 16 on: a window that never held channel 3
    numpy.testing.assert_allclose(scale[:, fresh], expected_scale[:, fresh], rtol=rtol)
    numpy.testing.assert_allclose(y[:, fresh], expected_y[:, fresh], rtol=rtol)
