"""Parameter and Module: named, learnable state and the bookkeeping around it.

A Parameter is a leaf Tensor plus Caffe's two per-blob multipliers: `lr_mult` scales the
solver's learning rate for it and `decay_mult` its weight decay. `lr_mult == 0` means
the parameter is fixed (FCN's bilinear upsampling): it then needs no gradient at all.

A Module registers every Parameter and Module assigned to one of its attributes, in
the order they are assigned, so that

    class Net(Module):
        def __init__(self):
            super().__init__()
            self.conv1_1 = Conv2d(3, 64, 3, padding=100)

gives `named_parameters()` -> ("conv1_1.weight", p), ("conv1_1.bias", p): the attribute
names are the parameter names, and for the reference nets they are Caffe's layer names.
"""
import numpy

from ..autograd import Tensor
from .. import backend, precision


class Parameter(Tensor):
    """A learnable leaf tensor with Caffe's learning-rate and weight-decay multipliers."""

    def __init__(self, data, lr_mult=1.0, decay_mult=1.0):
        super().__init__(data, requires_grad=lr_mult != 0)
        if self.dtype.kind != "f":
            raise TypeError(f"Parameter: data must be floating point, got {self.dtype} "
                            f"with shape {self.shape}")
        self.lr_mult, self.decay_mult = float(lr_mult), float(decay_mult)

    def __repr__(self):
        return (f"Parameter(shape={self.shape}, dtype={self.dtype}, device={self.device}, "
                f"lr_mult={self.lr_mult:g}, decay_mult={self.decay_mult:g})")


class Module:
    """A layer or a net: registered parameters and submodules, a `forward`, a mode."""

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        self.training = True

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before "
                               f"assigning attribute {name!r}")
        self._parameters.pop(name, None)  # re-assigning a name replaces its registration
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def forward(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def __call__(self, *inputs, **options):
        for value in inputs:
            if isinstance(value, numpy.ndarray) or backend.is_cupy_array(value):
                raise TypeError(
                    f"{type(self).__name__}: got a {type(value).__module__}.ndarray of shape "
                    f"{value.shape}; wrap it in a Tensor: net(mf.Tensor(array)) (or, for a "
                    f"uint8 (H, W, 3) picture, use net.predict(picture))")
        return precision.call_module(self.forward, inputs, options)  # float32 out of autocast

    # ------------------------------------------------------------------ parameters
    def named_parameters(self, prefix=""):
        """("layer.weight", Parameter) pairs, this module's own first, in assignment order."""
        for name, param in self._parameters.items():
            yield prefix + name, param
        for name, module in self._modules.items():
            yield from module.named_parameters(prefix + name + ".")

    def parameters(self):
        return [param for _, param in self.named_parameters()]

    def state_dict(self):
        """{name: NumPy copy of the parameter} (copied to the host from a GPU)."""
        return {name: backend.to_numpy(param.data).copy()
                for name, param in self.named_parameters()}

    def load_state_dict(self, state, strict=True):
        """Copy `state` ({name: array}) into the parameters, in place, cast to their dtype.

        strict=True: a parameter missing from `state`, or an entry of `state` the module
        does not have, is a KeyError. strict=False skips both and returns them as
        (missing, unexpected). A shape mismatch is a ValueError either way. Every entry
        is checked before any parameter changes, so a failed load leaves the module as it
        was, never half-loaded.
        """
        own = dict(self.named_parameters())
        missing = [name for name in own if name not in state]
        unexpected = [name for name in state if name not in own]
        where = f"{type(self).__name__}.load_state_dict"
        if strict and (missing or unexpected):
            raise KeyError(f"{where}: " + "; ".join(
                f"{what} {', '.join(names)}" for what, names in
                (("missing", missing), ("unexpected", unexpected)) if names))
        loads = [(name, own[name], value) for name, value in state.items() if name in own]
        for name, param, value in loads:
            if getattr(getattr(value, "dtype", None), "kind", None) not in ("f", "i", "u"):
                raise TypeError(f"{where}: {name} must be a numeric array, got "
                                f"{type(value).__name__}")
            if tuple(value.shape) != param.shape:
                raise ValueError(f"{where}: {name} has shape {tuple(value.shape)} in the state "
                                 f"dict but {param.shape} in the module")
        for _, param, value in loads:
            param.data[...] = backend.to_device(value, param.device).astype(param.dtype, copy=False)
        return missing, unexpected

    def to(self, device):
        """Move every parameter (and its gradient) to "cpu" or "cuda", in place."""
        for param in self.parameters():
            param.data = backend.to_device(param.data, device)
            if param.grad is not None:
                param.grad = backend.to_device(param.grad, device)
        return self

    # ------------------------------------------------------------------------ mode
    def train(self, mode=True):
        """Training mode (dropout active) for this module and every submodule."""
        self.training = bool(mode)
        for module in self._modules.values():
            module.train(mode)
        return self

    def eval(self):
        return self.train(False)

    # ---------------------------------------------------------------------- display
    def extra_repr(self):
        return ""

    def __repr__(self):
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"  {name}: {module!r}" for name, module in self._modules.items()]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"
