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
        with no_grad():
            for name, param in self.params:
                if param.grad is None:
                    continue
                grad = param.grad * param.dtype.type(1.0 / self.iter_size)
                decay = self.weight_decay * getattr(param, "decay_mult", 1.0)
                if decay:
                    grad += param.dtype.type(decay) * param.data
                rate = param.dtype.type(self.lr * getattr(param, "lr_mult", 1.0))
                velocity = self.history.get(name)
                if velocity is None:
                    velocity = rate * grad
                else:
                    velocity *= param.dtype.type(self.momentum)
                    velocity += rate * grad
                self.history[name] = velocity
                param.data -= velocity

    def state_dict(self):
        """Momentum history as host arrays, keyed by parameter name."""
        return {name: backend.to_numpy(v) for name, v in self.history.items()}

    def load_state_dict(self, state):
        known = {name: p for name, p in self.params}
        for name, value in state.items():
            if name not in known:
                raise KeyError(f"SGD.load_state_dict: no learned parameter named {name!r}")
            if value.shape != known[name].shape:
                raise ValueError(f"SGD.load_state_dict: history for {name!r} has shape "
                                 f"{value.shape}, the parameter {known[name].shape}")
        self.history = {name: backend.to_device(value.astype(known[name].dtype),
                                                known[name].device)
                        for name, value in state.items()}


# The paper's solvers (Caffe, fixed lr, batch 1); `normalize` is the loss normalization.
PRESETS = {
    "fcn32s": dict(lr=1e-10, momentum=0.99, weight_decay=5e-4, iter_size=1, normalize=False),
    "fcn16s": dict(lr=1e-12, momentum=0.99, weight_decay=5e-4, iter_size=1, normalize=False),
    "fcn8s": dict(lr=1e-14, momentum=0.99, weight_decay=5e-4, iter_size=1, normalize=False),
    "fcn8s-atonce": dict(lr=1e-10, momentum=0.99, weight_decay=5e-4, iter_size=1, normalize=False),
    "fcn-alexnet": dict(lr=1e-4, momentum=0.9, weight_decay=5e-4, iter_size=20, normalize=True),
}
