"""Caffe's SGD solver: momentum, weight decay, per-parameter multipliers, iter_size.

For each learned parameter w with gradient g summed over `iter_size` backward passes:

    g  <- g / iter_size + weight_decay * decay_mult * w      (Caffe: Normalize, Regularize)
    v  <- momentum * v + lr * lr_mult * g                      (ComputeUpdateValue)
    w  <- w - v                                                 (Update)

Biases carry lr_mult 2 and decay_mult 0 (the models set that on their Parameters); a
parameter with lr_mult 0 (the fixed bilinear upsampling) is skipped. Note that Caffe
folds the learning rate into the momentum history, unlike PyTorch's SGD: with a fixed
learning rate the two agree, and we keep Caffe's form so its solvers transfer as is.

Like Caffe, every learned parameter is stepped every time: one that got no gradient
since `zero_grad` is stepped with a zero gradient (its momentum and decay still act).

One launch per step. The solvers keep the learned parameters of one dtype and device
as views into one flat array, a ParameterArena, with their gradients and the solver's
state likewise, so a step is one kernel over a few flat arrays
(kernels_for(...).sgd_step / adam_step; reference/solver.py) instead of several
passes per parameter. The arena is made on first use, from wherever the parameters
are then (after `net.to(device)`), and remade, state carried over, if a parameter's
array is replaced (another `to`); `load_state_dict` of the module copies in place and
keeps it. Names, state_dict and checkpoints are as before: per-parameter arrays.
On a GPU the gradients live in the arena too and reach it without a gather: each
parameter lends autograd its slice as `grad_buffer` (autograd.py), so backward writes
the gradient there; a gradient set by hand (`p.grad = g`) is copied in at the step. On
the CPU each parameter is stepped on its own gradient (`_Solver.lend_gradients` says
why).

The step's changing numbers (learning rate, Adam's bias corrections) go to a small
array on the device before each launch, `arena.scalars`, and the kernels read them
there: the tables and the launch's arguments never change, and nothing is read back.
`step()` is `update(step_scalars())`: the numbers computed on the host, then the
launches; a captured step (graph.py) hands `update` 0-d device arrays it refills
before each replay instead.
Gradient zeroing costs nothing on the device: `zero_grad` sets `.grad` to None and the
first gradient of the next step is copied over the old one (one pass where a memset
and an add would make two).
"""
import numpy

from .autograd import no_grad
from . import backend
from .reference.solver import ADAM_SCALARS, SGD_SCALARS, Segments


class ParameterArena:
    """Parameters of one dtype and device as views into one flat array `data`, their
    gradients' buffers into `grad`, and each solver state into `state[name]`.

    params: [(name, tensor)] in order; rate_mults, decays: per parameter (Caffe's
    lr_mult, weight_decay * decay_mult). Each tensor's `data` becomes its view of
    `data` and, with lend_grads, its `grad_buffer` its view of `grad` (autograd.py).
    Without lend_grads there is no `grad` (None): each parameter is then stepped on its
    own gradient, through `parts` (one Segments each)."""

    def __init__(self, params, rate_mults, decays, state_names, scalar_count, lend_grads=True):
        self.names = [name for name, _ in params]
        self.tensors = [tensor for _, tensor in params]
        first = self.tensors[0].data
        xp, dtype = backend.get_array_module(first), first.dtype
        self.segments = Segments([t.size for t in self.tensors], rate_mults, decays)
        self.data = xp.empty(self.segments.size, dtype=dtype)
        self.grad = xp.zeros(self.segments.size, dtype=dtype) if lend_grads else None
        self.parts = [Segments([t.size], [rate], [decay])
                      for t, rate, decay in zip(self.tensors, rate_mults, decays)]
        self.state = {name: xp.zeros(self.segments.size, dtype=dtype) for name in state_names}
        self.scalars = xp.zeros(scalar_count, dtype=dtype)
        self.views = []
        for k, tensor in enumerate(self.tensors):
            view = self.view(self.data, k, tensor.shape)
            view[...] = tensor.data
            tensor.data = view
            self.views.append(view)
            tensor.grad_buffer = self.view(self.grad, k, tensor.shape) if lend_grads else None

    def view(self, flat, k, shape=None):
        """Parameter k's part of the flat array `flat`, in its shape."""
        part = flat[int(self.segments.start[k]):int(self.segments.stop[k])]
        return part.reshape(shape if shape is not None else self.tensors[k].shape)

    def is_current(self):
        """Whether every tensor still has its view as data (nothing replaced them)."""
        return all(tensor.data is view for tensor, view in zip(self.tensors, self.views))

    def gather_grads(self):
        """Make `grad` hold each tensor's gradient: already there when backward wrote
        into the lent buffer; copied when it was set by hand; 0 when it has none."""
        for k, tensor in enumerate(self.tensors):
            if tensor.grad is not tensor.grad_buffer:
                tensor.grad_buffer[...] = self.gradient(k)

    def gradient(self, k):
        """Tensor k's gradient as a C-contiguous array of its dtype on its device (zeros
        when it has none)."""
        tensor, grad = self.tensors[k], self.tensors[k].grad
        xp = backend.get_array_module(self.data)
        if grad is None:
            return xp.zeros(tensor.shape, dtype=self.data.dtype)
        if grad.shape != tensor.shape:
            raise ValueError(f"optimizer: the gradient of {self.names[k]!r} has shape "
                             f"{grad.shape}, the parameter {tensor.shape}")
        return xp.ascontiguousarray(backend.to_device(grad, tensor.device), dtype=self.data.dtype)

    def load_scalars(self, values):
        """Write this step's scalars to the device (a transfer, no read back)."""
        xp = backend.get_array_module(self.scalars)
        self.scalars[...] = xp.asarray(numpy.asarray(values, dtype=self.scalars.dtype))


class _Solver:
    """What SGD and Adam share: the learned parameters, their arenas, zero_grad and the
    per-parameter state as {name: array}. A subclass names its STATE arrays and SCALARS
    and defines `_scalars(advance)` and `_launch(kernels, param, grad, state, segments,
    scalars)`."""

    STATE = ()
    SCALARS = ()
    # Whether the arenas hold the gradients too (lent to autograd as grad_buffer); None:
    # on a GPU yes, on the CPU no. On a GPU the step is then one launch at fixed
    # addresses (what a CUDA graph can replay). On the CPU a launch costs nothing, so
    # each parameter is stepped on the gradient backward made, and no gradient arena
    # holds the parameters' size in memory between steps (FCN-32s: 537 MB in float32).
    lend_gradients = None

    def __init__(self, net, lr, weight_decay, iter_size):
        name = type(self).__name__
        if lr <= 0:
            raise ValueError(f"{name}: lr must be > 0, got {lr!r}")
        if weight_decay < 0 or iter_size < 1:
            raise ValueError(f"{name}: weight_decay must be >= 0 and iter_size >= 1, got "
                             f"{weight_decay!r} and {iter_size!r}")
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.iter_size = int(iter_size)
        self.params, seen = [], set()
        for name, p in net.named_parameters():  # a tensor listed twice is stepped once
            if p.requires_grad and getattr(p, "lr_mult", 1.0) != 0 and id(p) not in seen:
                self.params.append((name, p))
                seen.add(id(p))
        self.arenas = []
        self.stepped = False  # whether the state holds anything (Caffe starts it at zero)

    # -------------------------------------------------------------------- arenas
    def _current_arenas(self):
        """The arenas, remade (state carried over) if any parameter's array changed."""
        if self.arenas and all(arena.is_current() for arena in self.arenas):
            return self.arenas
        state = self._state_arrays() if self.arenas else {}
        groups = {}
        for name, p in self.params:
            groups.setdefault((p.dtype.str, p.device), []).append((name, p))
        self.arenas = [ParameterArena(
            group, [getattr(p, "lr_mult", 1.0) for _, p in group],
            [self.weight_decay * getattr(p, "decay_mult", 1.0) for _, p in group],
            self.STATE, len(self.SCALARS),
            lend_grads=(self.lend_gradients if self.lend_gradients is not None
                        else backend.is_cupy_array(group[0][1].data)))
            for group in groups.values()]
        if state:
            self._load_state_arrays(state)
        return self.arenas

    def zero_grad(self):
        """Forget the gradients (on a GPU the next backward writes them into the arena
        afresh: no memset)."""
        if self.params:
            self._current_arenas()  # lends the gradient buffers before backward
        for _, param in self.params:
            param.grad = None

    def step(self):
        """One update of every learned parameter: `update(step_scalars())`."""
        self.update(self.step_scalars())

    def step_scalars(self, advance=True):
        """This step's changing numbers, computed on the host, as graph.py takes them:
        {"": (the values of SCALARS, ...)}. advance=False: the numbers only, without
        counting the step (Adam)."""
        return {"": tuple(self._scalars(advance))}

    def update(self, scalars):
        """The step with `scalars` (step_scalars' form): host numbers are written to
        each arena's `scalars` (a transfer); the 0-d device arrays of a captured step
        (graph.py) are copied there on the device, so a replay reads the refilled ones.
        Then `apply`."""
        if not self.params:
            return
        values = scalars[""]
        for arena in self._current_arenas():
            if any(hasattr(value, "shape") for value in values):
                xp = backend.get_array_module(arena.scalars)
                arena.scalars[...] = xp.stack([xp.asarray(value, dtype=arena.scalars.dtype)
                                               for value in values])
            else:
                arena.load_scalars(values)
        self.apply()

    def apply(self):
        """The update itself, reading the scalars `update` wrote. With a gradient
        arena: gradients set by hand copied into it, then one kernel launch per arena;
        with the gradients where backward writes them that is the launch alone, the
        same every step (what a captured CUDA graph can replay). Without: one pass per
        parameter, over its own gradient."""
        with no_grad():
            for arena in self._current_arenas():
                kernels = backend.kernels_for(arena.data)
                if arena.grad is not None:
                    arena.gather_grads()
                    self._launch(kernels, arena.data, arena.grad,
                                 [arena.state[name] for name in self.STATE], arena.segments,
                                 arena.scalars)
                    continue
                for k, part in enumerate(arena.parts):
                    piece = slice(int(arena.segments.start[k]), int(arena.segments.stop[k]))
                    self._launch(kernels, arena.data[piece], arena.gradient(k).reshape(-1),
                                 [arena.state[name][piece] for name in self.STATE], part,
                                 arena.scalars)
        self.stepped = True

    # --------------------------------------------------------------------- state
    def _state_arrays(self):
        """{state name: {parameter name: array view}}."""
        return {state: {name: arena.view(arena.state[state], k)
                        for arena in self.arenas for k, name in enumerate(arena.names)}
                for state in self.STATE}

    def _load_state_arrays(self, state):
        """Copy {state name: {parameter name: array}} into the arenas; a parameter
        missing from it starts at zero."""
        for arena in self._current_arenas():
            for state_name in self.STATE:
                given = state.get(state_name, {})
                for k, name in enumerate(arena.names):
                    view = arena.view(arena.state[state_name], k)
                    if name in given:
                        view[...] = backend.to_device(given[name], arena.tensors[k].device
                                                      ).astype(view.dtype, copy=False)
                    else:
                        view.fill(0)

    def _checked(self, arrays, what):
        """Saved per-parameter arrays, checked against the parameters."""
        known = dict(self.params)
        where = f"{type(self).__name__}.load_state_dict"
        for name, value in arrays.items():
            if name not in known:
                raise KeyError(f"{where}: no learned parameter named {name!r} ({what})")
            if tuple(value.shape) != known[name].shape:
                raise ValueError(f"{where}: {what} for {name!r} has shape "
                                 f"{tuple(value.shape)}, the parameter {known[name].shape}")
        return arrays

    def _host_state(self, state_name):
        if not self.stepped:
            return {}
        return {name: backend.to_numpy(view).copy()
                for name, view in self._state_arrays()[state_name].items()}


class SGD(_Solver):
    STATE = ("history",)
    SCALARS = SGD_SCALARS

    def __init__(self, net, lr, momentum=0.9, weight_decay=0.0, iter_size=1):
        if not 0 <= momentum < 1:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum!r}")
        super().__init__(net, lr, weight_decay, iter_size)
        self.momentum = float(momentum)

    @property
    def history(self):
        """{parameter name: momentum history}, views into the arena."""
        self._current_arenas()
        return self._state_arrays()["history"]

    def _scalars(self, advance):
        return (self.lr, self.momentum, 1.0 / self.iter_size)

    def _launch(self, kernels, param, grad, state, segments, scalars):
        kernels.sgd_step(param, grad, *state, segments, scalars)

    def state_dict(self):
        """Momentum history as host arrays, keyed by parameter name."""
        return self._host_state("history")

    def load_state_dict(self, state):
        self._load_state_arrays({"history": self._checked(dict(state), "history")})
        self.stepped = bool(state)


class Adam(_Solver):
    """Adam (Kingma and Ba), for nets trained from scratch such as the default small FCN.

    With g as in SGD above (iter_size average plus decay), per learned parameter:

        m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2
        w <- w - lr lr_mult * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

    The paper's FCNs start from ImageNet weights and use SGD; a VGG-shaped net with no
    normalization layers trained from random weights gets going far sooner with Adam.
    Its state_dict: "m.<name>" (first moment), "v.<name>" (second) and "steps" (t),
    the keys checkpoints have always had.
    """

    STATE = ("first", "second")
    SCALARS = ADAM_SCALARS

    def __init__(self, net, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, iter_size=1):
        beta1, beta2 = betas
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1) or eps <= 0:
            raise ValueError(f"Adam: betas must be in [0, 1) and eps > 0, got {betas!r} and {eps!r}")
        super().__init__(net, lr, weight_decay, iter_size)
        self.beta1, self.beta2, self.eps, self.steps = float(beta1), float(beta2), float(eps), 0

    @property
    def first_moment(self):
        """{parameter name: m}, views into the arena."""
        self._current_arenas()
        return self._state_arrays()["first"]

    @property
    def second_moment(self):
        """{parameter name: v}, views into the arena."""
        self._current_arenas()
        return self._state_arrays()["second"]

    def _scalars(self, advance):
        t = self.steps + 1
        if advance:
            self.steps = t
        return (self.lr / (1.0 - self.beta1 ** t), self.beta1, 1.0 - self.beta1, self.beta2,
                1.0 - self.beta2, self.eps, 1.0 / self.iter_size, 1.0 - self.beta2 ** t)

    def _launch(self, kernels, param, grad, state, segments, scalars):
        kernels.adam_step(param, grad, *state, segments, scalars)

    def state_dict(self):
        state = {f"m.{name}": value for name, value in self._host_state("first").items()}
        state.update({f"v.{name}": value for name, value in self._host_state("second").items()})
        state["steps"] = numpy.array(self.steps)
        return state

    def load_state_dict(self, state):
        state = dict(state)
        unknown = [key for key in state if key != "steps" and not key.startswith(("m.", "v."))]
        if unknown:
            raise ValueError(f"Adam.load_state_dict: {unknown[:3]} are not Adam state (keys "
                             f"m.<param>, v.<param>, steps): a checkpoint of another solver?")
        self.steps = int(state.pop("steps", 0))
        self._load_state_arrays({
            "first": self._checked({k[2:]: v for k, v in state.items() if k.startswith("m.")},
                                   "first moment"),
            "second": self._checked({k[2:]: v for k, v in state.items() if k.startswith("v.")},
                                    "second moment")})
        self.stepped = bool(state)


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
