"""numba SGD and Adam steps over all parameters at once (contract and math:
reference/solver.py, sgd_step_numpy and adam_step_numpy).

The NumPy version makes several passes over memory per parameter, with temporaries
of the parameter's size; these make one pass over the flat arenas, reading the
gradient and the state once and writing the state once. For fc6's 411 MB weight the
one-pass SGD update took 175 ms down to 38 ms (benchmarks/cpu_ops.py).

Loop mapping: prange over the chunks of segments.chunk_* (each inside one parameter,
with that parameter's constants); a thread walks its chunk's elements in order. The
constants arrive in the parameters' dtype, so float32 parameters are updated in
float32 arithmetic, in the same order as the NumPy version.
"""
import numpy
from numba import njit, prange


@njit(parallel=True, cache=True)
def _sgd_step(param, grad, history, chunk_start, chunk_stop, chunk_rate, chunk_decay,
              lr, momentum, grad_scale):
    for j in prange(chunk_start.size):
        rate, decay = lr * chunk_rate[j], chunk_decay[j]
        for i in range(chunk_start[j], chunk_stop[j]):
            g = grad_scale * grad[i] + decay * param[i]
            step = momentum * history[i] + rate * g
            history[i] = step
            param[i] -= step


@njit(parallel=True, cache=True)
def _adam_step(param, grad, first, second, chunk_start, chunk_stop, chunk_rate, chunk_decay,
               rate0, b1, one_minus_b1, b2, one_minus_b2, eps, grad_scale, second_fix):
    for j in prange(chunk_start.size):
        rate, decay = rate0 * chunk_rate[j], chunk_decay[j]
        for i in range(chunk_start[j], chunk_stop[j]):
            g = grad_scale * grad[i] + decay * param[i]
            m = b1 * first[i] + one_minus_b1 * g
            v = b2 * second[i] + one_minus_b2 * g * g
            first[i], second[i] = m, v
            param[i] -= rate * m / (numpy.sqrt(v / second_fix) + eps)


def _constants(param, segments, scalars):
    cast = param.dtype.type
    return segments.on_device(param) + tuple(cast(value) for value in scalars)


def sgd_step(param, grad, history, segments, scalars):
    """In place on the flat arenas param and history (1-D, one dtype)."""
    _sgd_step(param, grad, history, *_constants(param, segments, scalars))


def adam_step(param, grad, first, second, segments, scalars):
    """In place on the flat arenas param, first and second."""
    _adam_step(param, grad, first, second, *_constants(param, segments, scalars))
