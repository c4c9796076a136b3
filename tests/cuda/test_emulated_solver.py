"""kernels/solver.cu on the CPU emulation against the NumPy references
(minifcn/reference/solver.py): one SGD or Adam step over all parameters, through the
chunk table, with odd parameter sizes, Caffe's multipliers (lr_mult 2 and no decay for
biases) and chunks smaller than a parameter; both index widths and a 2x3 grid.

Why the emulated path is fully checked: the kernels take no pointer table. The
parameters, gradients and state are flat arenas (optim.ParameterArena) and the table
holds offsets into them, so every array a launch touches is an ordinary argument that
the emulator copies into a guarded buffer (bounds, sentinels, complete outputs)."""
import numpy
import pytest

from minifcn.reference.solver import Segments, adam_step_numpy, sgd_step_numpy

from cuda_emulator import tolerance

SIZES = [5, 1, 37, 12, 3]  # weights and biases of a small net, in arena order


def _segments(chunk):
    return Segments(SIZES, rate_mults=[1, 2, 1, 2, 1], decays=[5e-4, 0, 5e-4, 0, 0.1], chunk=chunk)


def _arenas(rng, dtype, count):
    size = sum(SIZES)
    return [rng.standard_normal(size).astype(dtype) for _ in range(count)]


def test_segments_cut_each_parameter_into_chunks():
    segments = _segments(chunk=8)
    assert segments.start.tolist() == [0, 5, 6, 43, 55] and segments.size == 58
    assert segments.chunk_start.tolist() == [0, 5, 6, 14, 22, 30, 38, 43, 51, 55]
    assert segments.chunk_stop.tolist() == [5, 6, 14, 22, 30, 38, 43, 51, 55, 58]
    assert segments.chunk_rate.tolist() == [1, 2, 1, 1, 1, 1, 1, 2, 2, 1]
    with pytest.raises(ValueError, match="Segments"):
        Segments([3, 0], [1, 1], [0, 0])


@pytest.mark.parametrize("chunk", [4, 16384])
def test_sgd_step_matches_numpy(emulated_cuda, dtype, rng, chunk):
    segments = _segments(chunk)
    param, grad, history = _arenas(rng, dtype, 3)
    scalars = numpy.array([0.05, 0.9, 0.5], dtype=dtype)
    expected_param, expected_history = param.copy(), history.copy()
    for _ in range(2):
        sgd_step_numpy(expected_param, grad, expected_history, segments, scalars)
        emulated_cuda.sgd_step(param, grad, history, segments, scalars)
    numpy.testing.assert_allclose(param, expected_param, **tolerance(dtype))
    numpy.testing.assert_allclose(history, expected_history, **tolerance(dtype))


def test_sgd_step_follows_caffes_rule_per_parameter(emulated_cuda, rng):
    segments = _segments(chunk=4)
    param, grad, history = _arenas(rng, numpy.float64, 3)
    lr, momentum, grad_scale = 0.05, 0.9, 0.5
    w, v = param.copy(), history.copy()
    emulated_cuda.sgd_step(param, grad, history, segments, numpy.array([lr, momentum, grad_scale]))
    for k in range(len(SIZES)):  # Caffe: diff = g/iter_size + decay w; v = m v + lr lr_mult diff
        part = slice(segments.start[k], segments.stop[k])
        step = momentum * v[part] + lr * segments.rate_mult[k] * (
            grad_scale * grad[part] + segments.decay[k] * w[part])
        numpy.testing.assert_allclose(history[part], step, rtol=1e-13)
        numpy.testing.assert_allclose(param[part], w[part] - step, rtol=1e-13)


@pytest.mark.parametrize("chunk", [4, 16384])
def test_adam_step_matches_numpy(emulated_cuda, dtype, rng, chunk):
    segments = _segments(chunk)
    param, grad = _arenas(rng, dtype, 2)
    first, second = numpy.zeros_like(param), numpy.zeros_like(param)
    expected = [param.copy(), first.copy(), second.copy()]
    b1, b2 = 0.9, 0.999
    for t in (1, 2, 3):
        scalars = numpy.array([1e-3 / (1 - b1 ** t), b1, 1 - b1, b2, 1 - b2, 1e-8, 0.5, 1 - b2 ** t],
                              dtype=dtype)
        adam_step_numpy(*expected[:1], grad, *expected[1:], segments, scalars)
        emulated_cuda.adam_step(param, grad, first, second, segments, scalars)
    for got, want in zip((param, first, second), expected):
        numpy.testing.assert_allclose(got, want, **tolerance(dtype))
