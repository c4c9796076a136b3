"""The whole autograd machinery: Tensor, Function, backward, no_grad.

A Tensor wraps an array (numpy on the CPU, cupy on the GPU). Calling a Function on
Tensors runs its `forward` on the arrays and, when a gradient is wanted, records the
Function as the result's `creator`. `Tensor.backward` then:

  1. builds the topological order of the graph once, iteratively (a graph thousands of
     nodes deep never meets Python's recursion limit);
  2. walks it in reverse, handing each creator the gradient of its output and adding
     what it returns into the gradients of its inputs (a tensor used twice gets both);
  3. releases as it goes: an intermediate gradient is dropped once its creator has used
     it, and each Function drops the buffers it saved for backward. Leaf tensors that
     require a gradient keep theirs in `.grad`.

Gradients are treated as read-only: they may be shared between tensors (the gradient of
`x + y` is handed to both), so nothing downstream may modify one in place, except a
buffer autograd owns. A tensor reached twice gets the sum of its gradients: the first
sum is a new array, which autograd then owns and adds every later gradient into in
place (kernels_for(g).accumulate: one pass, no temporary). A leaf may also come with
a `grad_buffer`, an array of its shape that its owner (the optimizer's gradient arena,
optim.py) lends it: the leaf's first gradient is copied into it, later ones added in
place, and `.grad` is that buffer, so a solver finds every gradient where it expects
it with no gather pass. Setting `.grad` to None starts the next accumulation afresh.
bf16 gradients (uint16 storage, bfloat16.py) are added and converted by kernels
(kernels_for(g).add, .accumulate, .cast), never as integers.
"""
import contextlib

from . import backend, bfloat16

_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Within this block no graph is recorded (inference, optimiser updates)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled():
    return _grad_enabled


class Tensor:
    """An array plus what is needed to differentiate through it."""

    __array_priority__ = 1000  # `2.0 * x` calls Tensor.__rmul__, not ndarray's

    def __init__(self, data, requires_grad=False):
        if isinstance(data, Tensor):
            raise TypeError("Tensor(data): data is already a Tensor; use it directly")
        self.data = backend.as_array(data)
        self.grad = None
        self.grad_buffer = None  # an array lent for the gradient (see the module docstring)
        self._owned_grad = None  # the array in .grad that autograd may add into in place
        self.requires_grad = bool(requires_grad)
        self.creator = None  # the Function that made this tensor, None for a leaf

    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    device = property(lambda self: backend.device_of(self.data))

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}, device={self.device}{grad})"

    def __len__(self):
        return len(self.data)

    def numpy(self):
        """The data as a NumPy array (copied off the GPU if need be)."""
        return backend.to_numpy(self.data)

    def item(self):
        return self.data.item()

    def detach(self):
        return Tensor(self.data)

    def to(self, device):
        """A tensor on `device` ("cpu" or "cuda"), a leaf with the same requires_grad."""
        return Tensor(backend.to_device(self.data, device), requires_grad=self.requires_grad)

    # Arithmetic: the few operators the nets need. Nothing broadcasts silently.
    def __add__(self, other):
        from .functions.array import add
        return add(self, other)

    def __mul__(self, scalar):
        from .functions.array import scale
        return scale(self, scalar)

    __rmul__ = __mul__

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        return self + (-other)

    def reshape(self, *shape):
        from .functions.array import reshape
        return reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)

    def sum(self):
        from .functions.array import sum_all
        return sum_all(self)

    def backward(self, grad=None):
        """Accumulate d(self)/d(leaf) into every leaf that requires a gradient."""
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require a gradient "
                               "(no input required one, or it was made under no_grad)")
        if grad is None:
            if self.size != 1:
                raise ValueError(f"backward: grad may be omitted only for a one-element "
                                 f"tensor, this one has shape {self.shape}")
            from .precision import astype  # 1 in the tensor's dtype, bf16 included
            grad = astype(backend.get_array_module(self.data).ones(self.shape, "float32"),
                          self.dtype)
        else:
            grad = grad.data if isinstance(grad, Tensor) else backend.as_array(grad)
            if grad.shape != self.shape:
                raise ValueError(f"backward: grad shape {grad.shape} != tensor shape {self.shape}")
        _run_backward(self, grad)


def _topological_order(root):
    """Tensors with a creator, each after all the tensors it was computed from."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        tensor, inputs_done = stack.pop()
        if inputs_done:
            order.append(tensor)
            continue
        if id(tensor) in visited or tensor.creator is None:
            continue
        visited.add(id(tensor))
        stack.append((tensor, True))
        for parent in tensor.creator.inputs or ():  # None once released; reported below
            if parent.requires_grad and id(parent) not in visited:
                stack.append((parent, False))
    return order


def _run_backward(root, grad):
    if root.creator is None:  # a leaf: its gradient is the one given
        _accumulate_leaf(root, grad)
        return
    pending = {id(root): grad}  # gradients of intermediate tensors not yet consumed
    owned = {}  # id -> the pending gradient autograd allocated, so may add into in place
    for tensor in reversed(_topological_order(root)):
        grad_out = pending.pop(id(tensor), None)
        owned.pop(id(tensor), None)
        function = tensor.creator
        if function.inputs is None:
            raise RuntimeError("backward: this part of the graph was already walked and its "
                               "buffers released; run the forward pass again")
        if grad_out is None:  # no path from root reaches it (cannot happen); keep going
            continue
        grads_in = function.backward(grad_out)
        if not isinstance(grads_in, tuple):
            grads_in = (grads_in,)
        for parent, g in zip(function.inputs, grads_in):
            if g is None or not parent.requires_grad:
                continue
            if g.shape != parent.shape:
                raise RuntimeError(f"{type(function).__name__}.backward returned a gradient of "
                                   f"shape {g.shape} for an input of shape {parent.shape}")
            if parent.creator is None:
                _accumulate_leaf(parent, g)
            elif id(parent) in pending:
                pending[id(parent)] = _add(pending[id(parent)], g, owned, id(parent))
            else:
                pending[id(parent)] = g
        function.release()


def _add(total, g, owned, key):
    """total + g: in place when `owned[key]` is `total` (an array autograd made), else
    into a new array, which is then recorded as owned."""
    if owned.get(key) is total:
        return backend.kernels_for(total).accumulate(total, g)
    if bfloat16.is_bfloat16(total):
        owned[key] = total = backend.kernels_for(total).add(total, g)
    else:
        owned[key] = total = total + g
    return total


def _accumulate_leaf(tensor, grad):
    if grad.dtype != tensor.dtype:
        from .precision import astype
        grad = astype(grad, tensor.dtype)
    current, buffer = tensor.grad, tensor.grad_buffer
    if current is None:
        if (buffer is not None and buffer.shape == grad.shape and buffer.dtype == grad.dtype
                and type(buffer) is type(grad)):
            buffer[...] = grad  # the one copy into the lent buffer
            tensor.grad = tensor._owned_grad = buffer
        else:
            tensor.grad = grad  # shared with whoever else holds it: never written
        return
    owned = {0: tensor._owned_grad if tensor._owned_grad is not None else buffer}
    tensor.grad = tensor._owned_grad = _add(current, grad, owned, 0)


class Function:
    """One differentiable operation.

    Subclasses implement `forward(*arrays) -> array` and `backward(grad_out) -> tuple`
    of one gradient per input (None where an input needs none). Before `forward` runs,
    `self.needs_input_grad` tells which inputs will want a gradient, so forward can
    skip saving what backward will not use, and backward can skip work.
    Whatever forward saves on `self` is dropped by `release()` after backward.
    """

    inputs = None

    def __call__(self, *inputs):
        for position, x in enumerate(inputs):
            if not isinstance(x, Tensor):
                raise TypeError(f"{type(self).__name__}: input {position} is a "
                                f"{type(x).__name__}, expected a minifcn Tensor")
        record = _grad_enabled and any(x.requires_grad for x in inputs)
        self.needs_input_grad = tuple(record and x.requires_grad for x in inputs)
        output = Tensor(self.forward(*(x.data for x in inputs)), requires_grad=record)
        if record:
            output.creator = self
            self.inputs = inputs
        else:
            self.release()
        return output

    def forward(self, *arrays):
        raise NotImplementedError

    def backward(self, grad_out):
        raise NotImplementedError

    def release(self):
        """Drop the inputs and every buffer saved for backward."""
        self.__dict__.clear()
        self.inputs = None
