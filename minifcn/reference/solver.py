"""The solvers' steps in NumPy, over all parameters at once: the reference kernels
(the math: optim.py's docstrings).

optim.py keeps every learned parameter of one dtype and device and its solver state
(on a GPU its gradient too) as views into flat arrays ("arenas",
optim.ParameterArena), so one step is one pass over a few flat arrays (on the CPU one
per parameter, each over its own gradient, with a one-segment Segments). `Segments`
describes where each parameter lies in them and its per-parameter constants; the
kernels walk it in chunks:

    segment k    elements [start_k, stop_k) of every arena; rate_mult_k (Caffe's
                 lr_mult), decay_k (weight_decay * decay_mult)
    chunk j      a piece of one segment of at most CHUNK elements: the unit a numba
                 thread or a CUDA block takes (kernels/solver.cu)

`scalars` is a small array on the arenas' device holding what changes from step to
step (the learning rate, Adam's bias corrections), so the tables never change and a
step reads nothing back to the host:

    SGD   scalars = [lr, momentum, grad_scale]
          g = grad_scale grad + decay w;  v = momentum v + lr rate_mult g;  w = w - v
    Adam  scalars = [lr / (1 - b1^t), b1, 1 - b1, b2, 1 - b2, eps, grad_scale, 1 - b2^t]
          g = grad_scale grad + decay w;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g g
          w = w - (lr / (1 - b1^t)) rate_mult m / (sqrt(v / (1 - b2^t)) + eps)

Every quantity is in the parameters' dtype, each operation in the order written, so
the NumPy, numba and CUDA versions round alike (up to fused multiply-adds).
"""
import numpy

from ..backend import get_array_module

CHUNK = 16384  # elements per chunk: 64 per thread of a 256-thread CUDA block
SGD_SCALARS = ("lr", "momentum", "grad_scale")
ADAM_SCALARS = ("rate", "beta1", "one_minus_beta1", "beta2", "one_minus_beta2", "eps",
                "grad_scale", "second_fix")


class Segments:
    """Where each parameter lies in the arenas, and its constants; built once per arena.

    sizes, rate_mults, decays: one entry per parameter, in arena order. The chunk
    table (chunk_start, chunk_stop int64; chunk_rate, chunk_decay float64) is what the
    kernels read; `on_device(like)` gives it as arrays beside `like`, in its dtype,
    made once per (array module, dtype) and kept."""

    def __init__(self, sizes, rate_mults, decays, chunk=CHUNK):
        sizes = numpy.asarray(sizes, dtype=numpy.int64)
        if len(sizes) == 0 or (sizes <= 0).any() or not len(sizes) == len(rate_mults) == len(decays):
            raise ValueError(f"Segments: need one positive size, rate_mult and decay per "
                             f"parameter, got sizes {sizes.tolist()}, {len(rate_mults)} rate_mults "
                             f"and {len(decays)} decays")
        self.stop = numpy.cumsum(sizes)
        self.start = self.stop - sizes
        self.size = int(self.stop[-1])
        self.rate_mult = numpy.asarray(rate_mults, dtype=numpy.float64)
        self.decay = numpy.asarray(decays, dtype=numpy.float64)
        pieces = -(-sizes // chunk)
        owner = numpy.repeat(numpy.arange(len(sizes)), pieces)
        first = numpy.repeat(numpy.cumsum(pieces) - pieces, pieces)
        self.chunk_start = self.start[owner] + (numpy.arange(len(owner)) - first) * chunk
        self.chunk_stop = numpy.minimum(self.chunk_start + chunk, self.stop[owner])
        self.chunk_rate, self.chunk_decay = self.rate_mult[owner], self.decay[owner]
        self._device = {}

    def __len__(self):
        return len(self.start)

    def on_device(self, like):
        """(chunk_start, chunk_stop, chunk_rate, chunk_decay) beside `like`, the last two
        in its dtype."""
        xp = get_array_module(like)
        key = (xp.__name__, like.dtype.str)
        if key not in self._device:
            self._device[key] = (xp.asarray(self.chunk_start), xp.asarray(self.chunk_stop),
                                 xp.asarray(self.chunk_rate.astype(like.dtype)),
                                 xp.asarray(self.chunk_decay.astype(like.dtype)))
        return self._device[key]


def sgd_step_numpy(param, grad, history, segments, scalars):
    """One SGD step on every parameter, in place on the flat arenas param and history."""
    lr, momentum, grad_scale = (param.dtype.type(value) for value in scalars)
    for k in range(len(segments)):
        part = slice(segments.start[k], segments.stop[k])
        w, v, cast = param[part], history[part], param.dtype.type
        g = grad_scale * grad[part] + cast(segments.decay[k]) * w
        v *= momentum
        v += (lr * cast(segments.rate_mult[k])) * g
        w -= v


def adam_step_numpy(param, grad, first, second, segments, scalars):
    """One Adam step on every parameter, in place on the arenas param, first (moment)
    and second (moment)."""
    xp = get_array_module(param)
    rate, b1, one_minus_b1, b2, one_minus_b2, eps, grad_scale, second_fix = (
        param.dtype.type(value) for value in scalars)
    for k in range(len(segments)):
        part = slice(segments.start[k], segments.stop[k])
        w, m, v, cast = param[part], first[part], second[part], param.dtype.type
        g = grad_scale * grad[part] + cast(segments.decay[k]) * w
        m *= b1
        m += one_minus_b1 * g
        v *= b2
        v += one_minus_b2 * g * g
        w -= (rate * cast(segments.rate_mult[k])) * m / (xp.sqrt(v / second_fix) + eps)
