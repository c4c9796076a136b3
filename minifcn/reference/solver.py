"""Caffe's SGD step in NumPy: the reference kernel (the math: optim.py's docstring).
Written against the array API (it also runs on CuPy: the CUDA set uses it).
"""


def sgd_update(param, grad, history, momentum, rate, grad_scale, decay):
    """One SGD step on one parameter, in place on `param` and `history` (optim.py's
    equations, with grad_scale = 1 / iter_size). minifcn/cpu/solver.py fuses it into one pass."""
    cast = param.dtype.type
    grad = grad * cast(grad_scale)
    if decay:
        grad += cast(decay) * param
    history *= cast(momentum)
    history += (rate if hasattr(rate, "shape") else cast(rate)) * grad  # a 0-d device rate: graph.py
    param -= history
