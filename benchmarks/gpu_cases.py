"""The kernel cases of `python -m benchmarks.gpu_kernels`, one declarative entry each.

A case is a function registered with `@case(kernel, where)` (`where` is formatted with
the batch and the map sides into the report's shape column). It gets the batch, the FCN
map sides (`gpu_kernels.fcn_shapes`), `make` (random device arrays, and their PyTorch
views when PyTorch is there) and `torch` (or None), and returns a `Run`:

    @case("max_pool_forward", "pool1 ({batch}, 64, {conv1}, {conv1})")
    def _(batch, s, make, torch):
        x = make.normal(batch, 64, s["conv1"], s["conv1"])
        out = (s["pool1"],) * 2
        return Run(reads=[x],
                   minifcn=lambda: cuda.max_pool_forward(x, *POOL, *out),
                   cupy_only=lambda: pooling.max_pool_forward_numpy(x, *POOL, *out),
                   torch=torch and (lambda: ...))

Bytes are counted from the shapes: every array in `reads` read once (an int counts as
that many bytes: a crop reads only its window) plus every array written once, which is
what `minifcn()` returns unless `writes` names them (updates in place). That is the
least traffic the op needs, so bytes / time against the copy bandwidth is how close the
kernel is to the memory roof. `cupy_only` is the op's `*_numpy` reference on CuPy arrays
(what the backend would do without kernels/*.cu), timed at batch 1 only: it is there
for scale, and some are slow (col2im upscore's, in the H200 record
results/gpu-NVIDIA-H200-2026-11-30.md). `batched=False` marks a case that does not
depend on the batch (the solver updates): it runs once, as batch 1.

Every case runs at each batch of `--batches` (1 and 8: batch 8 separates bandwidth from
launch latency). im2col and col2im take a whole batch in one launch (its images'
channels as one axis), as the convolution makes them (functions/conv.py).

Marked places for work in progress: `FUSED` (the step's elementwise passes, at the end:
point `minifcn=` at a new fused kernel, or add an entry).
"""
import math
import types

CASES = []  # (kernel, where, builder, batched), in report order
POOL = (2, 2, 2, 2, 0, 0)  # pool1..pool5: 2x2, stride 2, no padding, Caffe's ceil rounding


class Run:
    """One case at one batch: what it reads and writes, and the calls to time."""

    def __init__(self, reads, minifcn, cupy_only=None, torch=None, writes=None):
        self.reads, self.writes = reads, writes
        self.minifcn, self.cupy_only, self.torch = minifcn, cupy_only, torch or None


def case(kernel, where, batched=True):
    def register(builder):
        CASES.append((kernel, where, builder, batched))
        return builder
    return register


def nbytes(items):
    """Bytes of arrays (nested in tuples and lists; an int is a byte count itself)."""
    if isinstance(items, (tuple, list)):
        return sum(nbytes(item) for item in items)
    return items if isinstance(items, int) else items.nbytes


def bytes_moved(run):
    """reads + writes, the writes counted from one minifcn call unless given."""
    return nbytes(run.reads) + nbytes(run.writes if run.writes is not None else run.minifcn())


class Make:
    """Random float32 device arrays (never zeros) and their zero-copy PyTorch views."""

    def __init__(self, cupy, torch):
        self.cupy, self._torch, self.rng = cupy, torch, cupy.random.default_rng(0)
        self.cache = {}  # what several cases share (the solvers' parameters)

    def normal(self, *shape):
        return self.rng.standard_normal(shape, dtype=self.cupy.float32)

    def labels(self, n, size, n_class=21, void_fraction=0.1):
        target = self.rng.integers(0, n_class, size=(n, size, size), dtype=self.cupy.int32)
        target[self.rng.random((n, size, size)) < void_fraction] = 255
        return target

    def torch(self, array):
        return None if self._torch is None else self._torch.as_tensor(array)


# ------------------------------------------------------------------- im2col / col2im
def _convolution(name, channels, side, k, s, p, forward=True):
    """Register im2col (unless not `forward`) and col2im of a k x k, stride s, pad p
    window over channels x side^2 (`side` a key of fcn_shapes)."""
    from minifcn.reference.im2col import conv_output_size

    def geometry(shapes):
        h = shapes[side]
        o = conv_output_size(h, k, s, p)
        return h, o, (k, k, s, s, p, p, 1, 1), (s, s, p, p, 1, 1)

    def im2col_case(batch, shapes, make, torch):
        from minifcn import cuda
        from minifcn.reference.im2col import im2col_numpy
        h, o, window, _ = geometry(shapes)
        x = make.normal(batch, channels, h, h)
        t_x = make.torch(x)
        # one launch for the batch, as conv.py makes it: the images' channels as one axis
        return Run(reads=[x],
                   minifcn=lambda: cuda.im2col(x.reshape(batch * channels, h, h), *window, o, o),
                   cupy_only=lambda: [im2col_numpy(image, *window, o, o) for image in x],
                   torch=torch and (lambda: torch.nn.functional.unfold(t_x, k, 1, p, s)))

    if forward:
        case(f"im2col {name}", f"({{batch}}, {channels}, {{{side}}}, {{{side}}}) k{k} s{s} p{p}")(
            im2col_case)

    @case(f"col2im {name}", f"({{batch}}, {channels}, {k}, {k}, ...) -> {{{side}}}")
    def _(batch, shapes, make, torch):
        from minifcn import cuda
        from minifcn.reference.im2col import col2im_numpy
        h, o, _, steps = geometry(shapes)
        col = make.normal(batch, channels, k, k, o, o)
        t_col = make.torch(col.reshape(batch, channels * k * k, o * o))
        return Run(reads=[col],
                   minifcn=lambda: cuda.col2im(col.reshape(batch * channels, k, k, o, o), h, h,
                                               *steps),
                   cupy_only=lambda: [col2im_numpy(image, h, h, *steps) for image in col],
                   torch=torch and (lambda: torch.nn.functional.fold(t_col, (h, h), k, 1, p, s)))


# The step's extremes: conv1_2 (64 channels on conv1's 698 x 698 at 500 x 500), fc6 (7x7
# on pool5's 22 x 22) and upscore's 64/32 deconvolution of score_fr (16 x 16 -> 544).
_convolution("conv1_2", 64, "conv1", 3, 1, 1)
_convolution("fc6", 512, "pool5", 7, 1, 0)
_convolution("upscore", 21, "upscore", 64, 32, 0, forward=False)  # a deconvolution: col2im only


# -------------------------------------------------------------------------- pooling
def _pool1(batch, shapes, make):
    side, out = shapes["conv1"], (shapes["pool1"],) * 2
    return make.normal(batch, 64, side, side), side, out


@case("max_pool_forward", "pool1 ({batch}, 64, {conv1}, {conv1})")
def _(batch, shapes, make, torch):
    from minifcn import cuda
    from minifcn.reference import pooling
    x, _, out = _pool1(batch, shapes, make)
    t_x = make.torch(x)
    return Run(reads=[x], minifcn=lambda: cuda.max_pool_forward(x, *POOL, *out),
               cupy_only=lambda: pooling.max_pool_forward_numpy(x, *POOL, *out),
               torch=torch and (lambda: torch.nn.functional.max_pool2d(
                   t_x, 2, 2, ceil_mode=True, return_indices=True)))


@case("max_pool_backward", "pool1 ({batch}, 64, {conv1}, {conv1})")
def _(batch, shapes, make, torch):
    from minifcn import cuda
    from minifcn.reference import pooling
    x, side, out = _pool1(batch, shapes, make)
    y, argmax = cuda.max_pool_forward(x, *POOL, *out)
    gy = make.normal(*y.shape)
    t_x, t_gy = make.torch(x), make.torch(gy)
    if torch:
        t_argmax = torch.nn.functional.max_pool2d(t_x, 2, 2, ceil_mode=True, return_indices=True)[1]
    return Run(reads=[gy, argmax], minifcn=lambda: cuda.max_pool_backward(gy, argmax, side, side, *POOL),
               cupy_only=lambda: pooling.max_pool_backward_numpy(gy, argmax, side, side, *POOL),
               torch=torch and (lambda: torch.ops.aten.max_pool2d_with_indices_backward(
                   t_gy, t_x, [2, 2], [2, 2], [0, 0], [1, 1], True, t_argmax)))


@case("avg_pool_forward", "pool1 ({batch}, 64, {conv1}, {conv1})")
def _(batch, shapes, make, torch):
    from minifcn import cuda
    from minifcn.reference import pooling
    x, _, out = _pool1(batch, shapes, make)
    t_x = make.torch(x)
    return Run(reads=[x], minifcn=lambda: cuda.avg_pool_forward(x, *POOL, *out),
               cupy_only=lambda: pooling.avg_pool_forward_numpy(x, *POOL, *out),
               torch=torch and (lambda: torch.nn.functional.avg_pool2d(t_x, 2, 2, ceil_mode=True)))


@case("avg_pool_backward", "pool1 ({batch}, 64, {conv1}, {conv1})")
def _(batch, shapes, make, torch):
    from minifcn import cuda
    from minifcn.reference import pooling
    x, side, out = _pool1(batch, shapes, make)
    gy = make.normal(batch, 64, *out)
    t_x, t_gy = make.torch(x), make.torch(gy)
    return Run(reads=[gy], minifcn=lambda: cuda.avg_pool_backward(gy, side, side, *POOL),
               cupy_only=lambda: pooling.avg_pool_backward_numpy(gy, side, side, *POOL),
               torch=torch and (lambda: torch.ops.aten.avg_pool2d_backward(
                   t_gy, t_x, [2, 2], [2, 2], [0, 0], True, True, None)))


# ------------------------------------------------------------------- loss and crop
@case("softmax_cross_entropy_forward", "({batch}, 21, {size}, {size}), 10% void")
def _(batch, shapes, make, torch):
    from minifcn import cuda
    from minifcn.reference import loss
    size = shapes["size"]
    score, target = make.normal(batch, 21, size, size), make.labels(batch, size)
    t_score, t_target = make.torch(score), torch and make.torch(target).long()
    return Run(reads=[score, target],  # writes two numbers
               minifcn=lambda: cuda.softmax_cross_entropy_forward(score, target, 255),
               cupy_only=lambda: loss.softmax_cross_entropy_forward_numpy(score, target, 255),
               torch=torch and (lambda: torch.nn.functional.cross_entropy(
                   t_score, t_target, ignore_index=255, reduction="sum")))


@case("softmax_cross_entropy_backward", "({batch}, 21, {size}, {size}), 10% void")
def _(batch, shapes, make, torch):
    from minifcn import cuda
    from minifcn.reference import loss
    size = shapes["size"]
    score, target = make.normal(batch, 21, size, size), make.labels(batch, size)
    coefficient = make.cupy.asarray(1.0, dtype=make.cupy.float32)
    if torch:
        t_leaf = make.torch(score).clone().requires_grad_()
        t_loss = torch.nn.functional.cross_entropy(t_leaf, make.torch(target).long(),
                                                   ignore_index=255, reduction="sum")
    return Run(reads=[score, target, coefficient],
               minifcn=lambda: cuda.softmax_cross_entropy_backward(score, target, 255, coefficient),
               cupy_only=lambda: loss.softmax_cross_entropy_backward_numpy(score, target, 255,
                                                                            coefficient),
               torch=torch and (lambda: torch.autograd.grad(t_loss, t_leaf, retain_graph=True)))


CROP_OFFSET = 19  # FCN-32s: upscore (544 x 544 at 500) cropped at 19 back to the image


@case("crop_forward", "({batch}, 21, {upscore}, {upscore}) -> {size}")
def _(batch, shapes, make, torch):
    from minifcn import cuda
    from minifcn.reference import crop
    size, up, o = shapes["size"], shapes["upscore"], CROP_OFFSET
    upscore = make.normal(batch, 21, up, up)
    t_up = make.torch(upscore)
    return Run(reads=[batch * 21 * size * size * 4],  # the window only
               minifcn=lambda: cuda.crop_forward(upscore, o, o, size, size),
               cupy_only=lambda: crop.crop_forward_numpy(upscore, o, o, size, size),
               torch=torch and (lambda: t_up[:, :, o:o + size, o:o + size].contiguous()))


@case("crop_backward", "({batch}, 21, {size}, {size}) -> {upscore}")
def _(batch, shapes, make, torch):
    from minifcn import cuda
    from minifcn.reference import crop
    size, up, o = shapes["size"], shapes["upscore"], CROP_OFFSET
    gy = make.normal(batch, 21, size, size)
    t_gy = make.torch(gy)
    return Run(reads=[gy], minifcn=lambda: cuda.crop_backward(gy, up, up, o, o),
               cupy_only=lambda: crop.crop_backward_numpy(gy, up, up, o, o),
               torch=torch and (lambda: torch.nn.functional.pad(t_gy, (o, up - size - o) * 2)))


# ----------------------------------------------------------------------- LRN, dropout
LRN = (5, 1e-4, 0.75)  # FCN-AlexNet's norm1: size 5, alpha, beta (k = 1)


@case("lrn_forward", "norm1 ({batch}, 96, {norm1}, {norm1})")
def _(batch, shapes, make, torch):
    from minifcn import cuda
    from minifcn.reference import norm
    x = make.normal(batch, 96, shapes["norm1"], shapes["norm1"])
    t_x = make.torch(x)
    return Run(reads=[x], minifcn=lambda: cuda.lrn_forward(x, *LRN, 1.0),  # writes y and scale
               cupy_only=lambda: norm.lrn_forward_numpy(x, *LRN, 1.0),
               torch=torch and (lambda: torch.nn.functional.local_response_norm(t_x, *LRN, 1.0)))


@case("lrn_backward", "norm1 ({batch}, 96, {norm1}, {norm1})")
def _(batch, shapes, make, torch):
    from minifcn import cuda
    from minifcn.reference import norm
    x = make.normal(batch, 96, shapes["norm1"], shapes["norm1"])
    gy = make.normal(*x.shape)
    y, scale = cuda.lrn_forward(x, *LRN, 1.0)
    if torch:
        t_leaf = make.torch(x).clone().requires_grad_()
        t_y = torch.nn.functional.local_response_norm(t_leaf, *LRN, 1.0)
        t_gy = make.torch(gy)
    return Run(reads=[x, y, scale, gy], minifcn=lambda: cuda.lrn_backward(x, y, scale, gy, *LRN),
               cupy_only=lambda: norm.lrn_backward_numpy(x, y, scale, gy, *LRN),
               torch=torch and (lambda: torch.autograd.grad(t_y, t_leaf, t_gy, retain_graph=True)))


@case("dropout", "fc6 ({batch}, 4096, {fc6}, {fc6})")
def _(batch, shapes, make, torch):
    """The mask hashed from (seed, index) and applied in one pass, p = 0.5."""
    from minifcn import cuda
    from minifcn.reference.dropout import dropout_numpy
    x = make.normal(batch, 4096, shapes["fc6"], shapes["fc6"])
    threshold, t_x = math.ceil(0.5 * 2**53), make.torch(x)
    return Run(reads=[x], minifcn=lambda: cuda.dropout(x, 12345, threshold, 2.0),
               cupy_only=lambda: dropout_numpy(x, 12345, threshold, 2.0),
               torch=torch and (lambda: torch.nn.functional.dropout(t_x, 0.5, training=True)))


@case("dropout_seed_on_device", "fc6 ({batch}, 4096, {fc6}, {fc6})")
def _(batch, shapes, make, torch):
    """dropout as a captured step (graph.py) runs it: the seed read from device memory;
    the same bytes as dropout's, plus 8."""
    import numpy
    from minifcn import cuda
    x = make.normal(batch, 4096, shapes["fc6"], shapes["fc6"])
    seed = make.cupy.asarray(numpy.array([12345], numpy.int64))
    threshold, t_x = math.ceil(0.5 * 2**53), make.torch(x)
    return Run(reads=[x, seed], minifcn=lambda: cuda.dropout(x, seed, threshold, 2.0),
               torch=torch and (lambda: torch.nn.functional.dropout(t_x, 0.5, training=True)))


# --------------------------------------------------- the step's elementwise passes
# FUSED KERNELS (issue 12 item 3) go here. Each entry times minifcn's code path as it
# stands, so the row shows today's cost and picks up a fused kernel as soon as that path
# uses it; where the fused kernel is a new function, point `minifcn=` at it. Bytes are
# the fused op's: what a single pass must read and write.

@case("relu_backward", "conv1_2 ({batch}, 64, {conv1}, {conv1})")
def _(batch, shapes, make, torch):
    """FUSED: ReLU backward in one pass from the saved output, no mask array
    (kernels/elementwise.cu relu_backward; it was a bool mask kept by forward, then
    gy * mask)."""
    import minifcn as mf
    from minifcn import functions as F
    side = shapes["conv1"]
    x, gy = make.normal(batch, 64, side, side), make.normal(batch, 64, side, side)
    relu = F.relu(mf.Tensor(x, requires_grad=True)).creator
    y = make.cupy.maximum(x, 0)
    t_y, t_gy = make.torch(y), make.torch(gy)
    return Run(reads=[y, gy], minifcn=lambda: relu.backward(gy),
               torch=torch and (lambda: torch.ops.aten.threshold_backward(t_gy, t_y, 0)))


@case("bias_grad", "conv1_2 ({batch}, 64, {conv1}, {conv1}) -> 64")
def _(batch, shapes, make, torch):
    """FUSED: the bias gradient as one deterministic reduction (kernels/elementwise.cu
    bias_grad_partial + bias_grad_finish; it was CuPy's sum over N, H, W)."""
    from minifcn.functions import conv
    side = shapes["conv1"]
    gy = make.normal(batch, 64, side, side)
    t_gy = make.torch(gy)
    return Run(reads=[gy], minifcn=lambda: conv._bias_grad(gy, True, True),
               torch=torch and (lambda: t_gy.sum(dim=(0, 2, 3))))


def _fcn32s_parameters(make):
    """FCN-32s's learned parameters on the device, each with a random gradient (the
    widths of nets.MINIFCN_OPTIONS), and a stand-in net for the solvers; built once per
    run (`make.cache`)."""
    if "fcn32s" not in make.cache:
        from minifcn import models
        from . import nets
        net = models.FCN32s(n_class=nets.N_CLASS, **nets.MINIFCN_OPTIONS).to("cuda")
        params = [(name, p) for name, p in net.named_parameters() if p.requires_grad]
        for _, param in params:
            param.grad = make.normal(*param.shape)
        make.cache["fcn32s"] = (types.SimpleNamespace(named_parameters=lambda: params),
                                [p for _, p in params])
    return make.cache["fcn32s"]


def _solver_case(solver_name, state_arrays):
    @case(f"{solver_name}_update", "all FCN-32s parameters", batched=False)
    def _(batch, shapes, make, torch):
        """FUSED: one multi-tensor launch for all parameters (kernels/solver.cu over
        optim's flat arena; it was several CuPy passes per tensor). The gradients are
        put where backward writes them (each parameter's grad_buffer), so a step times
        the scalars' upload and the one launch, as in training."""
        from minifcn import optim
        net, params = _fcn32s_parameters(make)
        if solver_name == "sgd":
            ours = optim.SGD(net, lr=1e-10, momentum=0.99, weight_decay=5e-4)
        else:
            ours = optim.Adam(net, lr=1e-10, weight_decay=5e-4)
        ours.step()  # the solver's state exists from the first step on
        for _, param in net.named_parameters():  # as backward leaves them
            param.grad_buffer[...] = param.grad
            param.grad = param.grad_buffer
        data, grads = [p.data for p in params], [p.grad for p in params]
        theirs = None
        if torch:
            t_params = [torch.nn.Parameter(make.torch(p.data).clone()) for p in params]
            for t_param, p in zip(t_params, params):
                t_param.grad = make.torch(p.grad)
            options = dict(lr=1e-10, weight_decay=5e-4, fused=True)  # PyTorch's one-launch update
            theirs = (torch.optim.SGD(t_params, momentum=0.99, **options) if solver_name == "sgd"
                      else torch.optim.Adam(t_params, **options))
        # reads w, g and the state; writes w and the state
        return Run(reads=[data, grads] + [data] * state_arrays,
                   writes=[data] * (1 + state_arrays), minifcn=ours.step,
                   torch=theirs and theirs.step)


_solver_case("sgd", 1)   # momentum history
_solver_case("adam", 2)  # first and second moments


@case("grad_accumulate", "all FCN-32s parameters", batched=False)
def _(batch, shapes, make, torch):
    """FUSED: gradient accumulation (iter_size > 1: each backward pass adds into the
    leaves' gradients: kernels/elementwise.cu accumulate, in place, per parameter; it
    was one CuPy add and a new array per parameter)."""
    from minifcn import autograd
    _, params = _fcn32s_parameters(make)
    more = [make.normal(*p.shape) for p in params]
    if torch:
        t_grads, t_more = [make.torch(p.grad).clone() for p in params], [make.torch(g) for g in more]

    def ours():
        for param, grad in zip(params, more):
            autograd._accumulate_leaf(param, grad)
    return Run(reads=[[p.grad for p in params], more], writes=[[p.grad for p in params]],
               minifcn=ours, torch=torch and (lambda: torch._foreach_add_(t_grads, t_more)))
