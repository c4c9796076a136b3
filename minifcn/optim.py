"""Caffe's SGD solver: momentum, weight decay, per-parameter multipliers, iter_size.

For each learned parameter w with gradient g summed over `iter_size` backward passes:

    g  <- g / iter_size + weight_decay * decay_mult * w      (Caffe: Normalize, Regularize)
    v  <- momentum * v + lr * lr_mult * g                      (ComputeUpdateValue)
    w  <- w - v                                                 (Update)

Biases carry lr_mult 2 and decay_mult 0 (the models set that on their Parameters); a
parameter with lr_mult 0 (the fixed bilinear upsampling) is skipped. Note that Caffe
folds the learning rate into the momentum history, unlike PyTorch's SGD: with a fixed
learning rate the two agree, and we keep Caffe's form so its solvers transfer as is.
"""
import numpy

from .autograd import no_grad
from . import backend


class SGD:
    def __init__(self, net, lr, momentum=0.9, weight_decay=0.0, iter_size=1):
        if lr <= 0:
            raise ValueError(f"SGD: lr must be > 0, got {lr!r}")
        if not 0 <= momentum < 1:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum!r}")
        if weight_decay < 0 or iter_size < 1:
            raise ValueError(f"SGD: weight_decay must be >= 0 and iter_size >= 1, got "
                             f"{weight_decay!r} and {iter_size!r}")
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self.iter_size = int(iter_size)
        self.params = [(name, p) for name, p in net.named_parameters()
                       if p.requires_grad and getattr(p, "lr_mult", 1.0) != 0]
        self.history = {}

    def zero_grad(self):
        for _, param in self.params:
            param.grad = None

    def step(self):
        self.update(self.step_scalars())

    def step_scalars(self, advance=True):
        """The numbers of this step that change from step to step, per learned parameter
        ({name: (rate,)}), computed on the host. `update` takes them as host floats, or,
        in a captured step (graph.py), as the 0-d device arrays each replay refills.
        advance=False: the numbers only, without counting the step (Adam)."""
        return {name: (self.lr * getattr(param, "lr_mult", 1.0),) for name, param in self.params}

    def update(self, scalars):
        with no_grad():
            for name, param in self.params:
                if param.grad is None:
                    continue
                history = self.history.get(name)
                if history is None:  # Caffe starts the history at zero
                    history = self.history[name] = backend.get_array_module(
                        param.data).zeros_like(param.data)
                backend.kernels_for(param.data).sgd_update(
                    param.data, param.grad, history, self.momentum,
                    rate=_per_step(scalars[name][0], param.dtype),
                    grad_scale=1.0 / self.iter_size,
                    decay=self.weight_decay * getattr(param, "decay_mult", 1.0))

    def state_dict(self):
        """Momentum history as host arrays, keyed by parameter name."""
        return {name: backend.to_numpy(v) for name, v in self.history.items()}

    def load_state_dict(self, state):
        self.history = self._restore(state)

    def _restore(self, state):
        """Saved per-parameter arrays, checked against the parameters and moved beside them."""
        known = {name: p for name, p in self.params}
        for name, value in state.items():
            if name not in known:
                raise KeyError(f"SGD.load_state_dict: no learned parameter named {name!r}")
            if value.shape != known[name].shape:
                raise ValueError(f"SGD.load_state_dict: history for {name!r} has shape "
                                 f"{value.shape}, the parameter {known[name].shape}")
        return {name: backend.to_device(value.astype(known[name].dtype), known[name].device)
                for name, value in state.items()}


class Adam(SGD):
    """Adam (Kingma and Ba), for nets trained from scratch such as the default small FCN.

    With g as in SGD above (iter_size average plus decay), per learned parameter:

        m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2
        w <- w - lr lr_mult * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

    The paper's FCNs start from ImageNet weights and use SGD; a VGG-shaped net with no
    normalization layers trained from random weights gets going far sooner with Adam.
    """

    def __init__(self, net, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, iter_size=1):
        super().__init__(net, lr, momentum=betas[0], weight_decay=weight_decay, iter_size=iter_size)
        self.beta2, self.eps, self.steps = float(betas[1]), float(eps), 0
        self.second = {}

    def step_scalars(self, advance=True):
        steps = self.steps + 1
        if advance:
            self.steps = steps
        first_fix = 1.0 - self.momentum ** steps
        second_fix = 1.0 - self.beta2 ** steps
        return {name: (self.lr * getattr(param, "lr_mult", 1.0) / first_fix, second_fix)
                for name, param in self.params}

    def update(self, scalars):
        with no_grad():
            for name, param in self.params:
                if param.grad is None:
                    continue
                xp = backend.get_array_module(param.data)
                cast = param.dtype.type
                rate, second_fix = (_per_step(value, param.dtype) for value in scalars[name])
                grad = param.grad * cast(1.0 / self.iter_size)
                decay = self.weight_decay * getattr(param, "decay_mult", 1.0)
                if decay:
                    grad += cast(decay) * param.data
                if name not in self.history:
                    self.history[name], self.second[name] = (xp.zeros_like(param.data),
                                                              xp.zeros_like(param.data))
                mean, square = self.history[name], self.second[name]
                mean *= cast(self.momentum)
                mean += cast(1.0 - self.momentum) * grad
                square *= cast(self.beta2)
                square += cast(1.0 - self.beta2) * grad * grad
                param.data -= rate * mean / (xp.sqrt(square / second_fix) + cast(self.eps))

    def state_dict(self):
        state = {f"m.{name}": backend.to_numpy(v) for name, v in self.history.items()}
        state.update({f"v.{name}": backend.to_numpy(v) for name, v in self.second.items()})
        state["steps"] = numpy.array(self.steps)
        return state

    def load_state_dict(self, state):
        state = dict(state)
        self.steps = int(state.pop("steps", 0))
        self.history = self._restore({k[2:]: v for k, v in state.items() if k.startswith("m.")})
        self.second = self._restore({k[2:]: v for k, v in state.items() if k.startswith("v.")})


def _per_step(value, dtype):
    """A per-step number as an update's arithmetic takes it: a host float, cast to the
    parameter's dtype, or a captured step's 0-d device array (already of that dtype)."""
    return value if hasattr(value, "shape") else dtype.type(value)


POLY_POWER = 0.9  # Caffe's usual power for "poly" (DeepLab's solvers)


def learning_rate(base_lr, policy, iteration, max_iter, power=POLY_POWER):
    """Caffe's lr_policy at `iteration` (counted from 0) of a run of `max_iter` steps:

        fixed   base_lr                                  (the paper's solvers)
        poly    base_lr * (1 - iteration / max_iter) ^ power

    "poly" glides to zero by the last step, which settles a net trained from scratch
    with Adam at its best weights instead of leaving it hopping about near them.
    """
    if policy == "fixed":
        return base_lr
    if policy == "poly":
        return base_lr * (1.0 - min(iteration, max_iter) / max_iter) ** power
    raise ValueError(f"unknown lr_policy {policy!r}: choose fixed or poly")


def make_optimizer(net, optimizer, lr, momentum, weight_decay, iter_size):
    """The solver a training config names: "sgd" (Caffe's) or "adam" (momentum is beta1)."""
    if optimizer == "sgd":
        return SGD(net, lr, momentum, weight_decay, iter_size)
    if optimizer == "adam":
        return Adam(net, lr, betas=(momentum, 0.999), weight_decay=weight_decay,
                    iter_size=iter_size)
    raise ValueError(f"unknown optimizer {optimizer!r}: choose sgd or adam")


def _caffe_solver(lr, momentum=0.99, iter_size=1, normalize=False):
    return dict(lr=lr, momentum=momentum, weight_decay=5e-4, iter_size=iter_size,
                normalize=normalize, optimizer="sgd", lr_policy="fixed")


# The paper's solvers (Caffe, fixed lr, batch 1); `normalize` is the loss normalization.
PRESETS = {
    "fcn32s": _caffe_solver(1e-10),
    "fcn16s": _caffe_solver(1e-12),
    "fcn8s": _caffe_solver(1e-14),
    "fcn8s-atonce": _caffe_solver(1e-10),
    "fcn-alexnet": _caffe_solver(1e-4, momentum=0.9, iter_size=20, normalize=True),
    # the paper's section 4.3: batch 20, fixed lr 5e-5 for FCN-GoogLeNet, normalized loss
    "fcn-googlenet": _caffe_solver(5e-5, momentum=0.9, iter_size=20, normalize=True),
    # the reference's nyud-fcn32s-* solvers (one stream 1e-10, two streams 1e-12)
    "fcn32s-rgbd": _caffe_solver(1e-10),
    "fcn32s-early-hha": _caffe_solver(1e-10),
    "fcn32s-late-hha": _caffe_solver(1e-12),
    "fcn16s-siftflow": _caffe_solver(1e-12),  # the reference's siftflow-fcn16s solver
}
