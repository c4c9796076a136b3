"""A whole net's backward against float64 central differences, one direction per layer.

For the input and for every layer with learned parameters, the derivative of
<net(x), projection> along a random direction d (all of the layer's elements moved at
once) must equal <gradient, d>: two forward passes per layer, not two per element (the
ops' own tests check gradients element by element). Weights of mean 1/fan_in (mostly
positive) and positive biases keep a narrow net alive to the end yet leave units both
sides of ReLU's kink; zero biases would put the zero-padded margin exactly on the kink.
"""
import numpy

import minifcn as mf


def lively_weights(net, rng):
    for name, param in net.named_parameters():
        if name.endswith(".bias"):
            param.data[...] = rng.uniform(0.1, 0.5, param.shape)
        elif param.requires_grad:
            param.data[...] = (1.0 + rng.standard_normal(param.shape)) / param.data[0].size


def check_net_gradient(net, x, rng, heads=None):
    """`net` in float64 and eval mode, `x` an input array. `heads`: for a net returning a
    tuple of score maps, their count (each gets its own projection). Returns the number
    of layers checked."""
    x = mf.Tensor(x, requires_grad=True)
    with mf.no_grad():
        shapes = [o.shape for o in (net(x) if heads else (net(x),))]
    projections = [rng.standard_normal(shape) for shape in shapes]
    for k, projection in enumerate(projections):  # one fresh graph per head: leaves add up
        out = net(x)
        (out[k] if heads else out).backward(projection)

    def objective():
        with mf.no_grad():
            values = net(x)
            values = values if heads else (values,)
            return float(sum((v.numpy() * p).sum() for v, p in zip(values, projections)))

    learned = {}
    for name, param in net.named_parameters():
        if param.requires_grad:
            learned.setdefault(name.rsplit(".", 1)[0], []).append(param)
    eps = 1e-6
    for name, tensors in [("input", [x])] + list(learned.items()):
        directions = [rng.standard_normal(t.shape) for t in tensors]
        originals = [t.data.copy() for t in tensors]
        values = []
        for step in (eps, -eps):
            for tensor, original, direction in zip(tensors, originals, directions):
                tensor.data[...] = original + step * direction
            values.append(objective())
        for tensor, original in zip(tensors, originals):
            tensor.data[...] = original
        numeric = (values[0] - values[1]) / (2 * eps)
        analytic = sum(float((t.grad * d).sum()) for t, d in zip(tensors, directions))
        assert all(numpy.abs(t.grad).max() > 1e-6 for t in tensors), name  # nothing dead
        assert abs(analytic - numeric) <= 1e-7 + 1e-6 * abs(numeric), (name, analytic, numeric)
    return len(learned)
