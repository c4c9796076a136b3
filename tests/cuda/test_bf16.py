"""bf16 mixed precision (minifcn/precision.py) on the emulated GPU: the bf16 GEMM, each
op that takes bf16 against its float32 result, autograd's bf16 sums, the net's float32
output under autocast, and a whole bf16 training step against the fp32 one.

Units. bf16 keeps 8 significant bits: a store rounds to nearest with a relative error
of at most U = 2^-9. Inputs here are drawn as bf16 values (rounded float32), so both
runs see the same numbers and every difference comes from the bf16 run's own stores."""
import emulated_cupy as emulated_cupy_module
import numpy
import pytest

import minifcn as mf
from minifcn import backend, bfloat16, graph, precision
from minifcn import functions as F
from minifcn.functions import conv
from minifcn.functions.pooling import MaxPooling2D
from minifcn.models import FCN8s
from minifcn.optim import SGD

U = 2.0**-9  # bf16's unit roundoff


def _bf16_values(rng, shape, scale=1.0):
    """float32 values that bf16 holds exactly."""
    return bfloat16.round_float32((scale * rng.standard_normal(shape)).astype(numpy.float32))


def _relative(got, want):
    return numpy.linalg.norm(got - want) / numpy.linalg.norm(want)


# ------------------------------------------------------------------------------ the GEMM
@pytest.mark.parametrize("out_bf16", [False, True], ids=["float32 out", "bf16 out"])
def test_bf16_gemm_accumulates_in_float32(emulated_cupy, out_bf16):
    """bf16 operands: their products are exact in float32 (8 + 8 significant bits), so a
    float32 C matches float64 to float32 summation; a bf16 C is that rounded once. The
    call is recorded with bf16 A and B and float32 compute."""
    rng = numpy.random.default_rng(0)
    a, b = _bf16_values(rng, (1, 5, 40)), _bf16_values(rng, (3, 40, 6))
    exact = numpy.matmul(a.astype(numpy.float64), b.astype(numpy.float64))
    device = [emulated_cupy.asarray(bfloat16.from_float32(m)) for m in (a, b)]
    out = emulated_cupy.empty((3, 5, 6), bfloat16.DTYPE if out_bf16 else numpy.float32)
    del emulated_cupy_module.gemm_types[:]
    conv._gemm(device[0], device[1], out)
    conv._gemm(device[0], device[1], out, accumulate=True)  # beta = 1: out += a @ b
    got = out.get()
    got = bfloat16.to_float32(got) if out_bf16 else got
    m = emulated_cupy_module
    c_type = m.CUDA_R_16BF if out_bf16 else m.CUDA_R_32F
    assert m.gemm_types == [(m.CUDA_R_16BF, m.CUDA_R_16BF, c_type, m.CUBLAS_COMPUTE_32F)] * 2
    # bf16 C: rounded after each call (2U, plus the first rounding carried into the second)
    numpy.testing.assert_allclose(got, 2 * exact, rtol=3 * U if out_bf16 else 1e-6,
                                  atol=1e-6 * numpy.abs(exact).max())


def test_gemm_refuses_mixed_operands(emulated_cupy):
    a = emulated_cupy.zeros((1, 2, 3), bfloat16.DTYPE)
    b = emulated_cupy.zeros((1, 3, 4), numpy.float32)
    with pytest.raises(TypeError, match="_gemm: operands uint16 @ float32"):
        conv._gemm(a, b, emulated_cupy.zeros((1, 2, 4), numpy.float32))


# -------------------------------------------------------------------------- each op
# name: (function of tensors, input shapes, how many of the inputs are activations (cast
# to bf16; the others are float32 weights), bf16 roundings on the longest path of the
# forward and of the backward pass). 0 roundings: the op moves or selects values, and
# must agree bit for bit.
OPS = {
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, padding=1), [(2, 3, 6, 5), (4, 3, 3, 3), (4,)],
               1, (2, 2)),  # GEMM out, bias add; gx: GEMM out, col2im's sum
    "conv2d 1x1 groups 2": (lambda x, w: F.conv2d(x, w, groups=2), [(2, 4, 3, 5), (6, 2, 1, 1)],
                            1, (1, 1)),
    "conv_transpose2d": (lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2),
                         [(2, 3, 4, 5), (3, 2, 4, 4), (2,)], 1, (3, 1)),
    "relu": (F.relu, [(2, 3, 4, 5)], 1, (0, 0)),
    "max_pool2d": (lambda x: F.max_pool2d(x, 2, stride=2, ceil_mode=True), [(2, 3, 5, 5)], 1, (0, 0)),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, stride=2, padding=1), [(2, 3, 6, 5)], 1, (1, 1)),
    "dropout": (lambda x: F.dropout(x, 0.5), [(2, 3, 4, 5)], 1, (0, 0)),  # scale 2: exact
    "crop": (lambda x: F.crop(x, (3, 2), (1, 2)), [(2, 3, 5, 5)], 1, (0, 0)),
    "add": (F.add, [(2, 3, 4, 5), (2, 3, 4, 5)], 2, (1, 0)),
    "scale": (lambda x: x * 0.01, [(2, 3, 4, 5)], 1, (1, 1)),
    "concat": (lambda a, b: F.concat([a, b]), [(2, 3, 4, 5), (2, 2, 4, 5)], 2, (0, 0)),
    "local_response_norm": (lambda x: F.local_response_norm(x, 3, alpha=0.5), [(2, 7, 4, 5)],
                            1, (1, 4)),  # backward: y, scale and gy stored bf16
}


def _op_pass(function, arrays, activations, bf16):
    """Output and input gradients (float32 on the host) of `function` on the GPU; with
    `bf16` its activation inputs are cast to bf16 (F.cast: their gradients come back
    float32) and the output gradient is bf16."""
    leaves = [mf.Tensor(backend.to_device(a, "cuda"), requires_grad=True) for a in arrays]
    inputs = [F.cast(t, bfloat16.DTYPE) if bf16 and i < activations else t
              for i, t in enumerate(leaves)]
    backend.seed(5)  # dropout's masks
    y = function(*inputs)
    gy = _bf16_values(numpy.random.default_rng(9), y.shape)
    if bf16:
        assert y.dtype == bfloat16.DTYPE
        gy = bfloat16.from_float32(gy)
    y.backward(backend.to_device(gy, "cuda"))
    y = y.numpy()
    return [bfloat16.to_float32(y) if bf16 else y] + [backend.to_numpy(t.grad) for t in leaves]


@pytest.mark.parametrize("name", sorted(OPS))
def test_each_bf16_op_follows_float32(emulated_cupy, name):
    """Forward and backward on bf16 against the same op on float32, from the same (bf16)
    values: each bf16 store adds at most U relative error per element, so the result's
    relative error (as a norm) is at most U times the roundings on its path; an op that
    only moves or selects values agrees exactly. A weight gradient is a float32 GEMM of
    bf16 operands, whose products are exact in float32: it matches to float32 rounding,
    which a bf16 store (U = 2^-9) would not."""
    function, shapes, activations, (forward, backward) = OPS[name]
    rng = numpy.random.default_rng(1)
    arrays = [_bf16_values(rng, shape) for shape in shapes]
    want = _op_pass(function, arrays, activations, bf16=False)
    got = _op_pass(function, arrays, activations, bf16=True)
    bounds = [forward] + [backward] * activations + [None] * (len(arrays) - activations)
    names = ["y"] + [f"gradient of input {i}" for i in range(len(arrays))]
    for what, value, reference, roundings in zip(names, got, want, bounds):
        assert value.dtype == numpy.float32, what
        if roundings is None:  # a float32 weight's gradient
            numpy.testing.assert_allclose(value, reference, rtol=1e-5, atol=1e-5, err_msg=what)
        elif roundings == 0:
            numpy.testing.assert_array_equal(value, reference, err_msg=what)
        else:
            assert _relative(value, reference) <= roundings * U, what
    if forward:  # not trivially equal: the bf16 run did round
        assert not numpy.array_equal(got[0], want[0])


def test_ops_refuse_bf16_they_cannot_take(emulated_cupy):
    x = F.cast(mf.Tensor(emulated_cupy.ones((2, 3, 4, 4), numpy.float32)), bfloat16.DTYPE)
    label = emulated_cupy.zeros((2, 4, 4), numpy.int64)
    weight = mf.Tensor(emulated_cupy.ones((5, 48), numpy.float32))
    for call, op in [(lambda: F.softmax_cross_entropy(x, label), "softmax_cross_entropy"),
                     (lambda: F.linear(x.reshape(2, -1), weight), "linear"),
                     (lambda: x.sum(), "sum")]:
        with pytest.raises(TypeError, match=f"^{op}: .* is bf16 .* cast it to float32 first"):
            call()
    w64 = mf.Tensor(emulated_cupy.ones((4, 3, 1, 1), numpy.float64))
    with pytest.raises(TypeError, match=r"conv2d: a bf16 x \(2, 3, 4, 4\) takes float32 weight"):
        F.conv2d(x, w64)


def test_autograd_adds_bf16_gradients_with_kernels(emulated_cupy):
    """x used three times: its gradient is the sum of three bf16 gradients, added by the
    kernel set's add then accumulate, not as uint16 integers (which would give garbage)."""
    x = mf.Tensor(emulated_cupy.asarray(bfloat16.from_float32(
        numpy.full((2, 3), 1.5, numpy.float32))), requires_grad=True)
    y = F.add(F.add(x, x), x)
    y.backward(emulated_cupy.asarray(bfloat16.from_float32(numpy.full((2, 3), 0.25, numpy.float32))))
    numpy.testing.assert_array_equal(bfloat16.to_float32(x.grad.get()), 0.75)
    numpy.testing.assert_array_equal(bfloat16.to_float32(y.data.get()), 4.5)


def test_cast_is_differentiable_and_rounds_to_nearest_even(emulated_cupy):
    values = numpy.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, -2.5, 1e-3], numpy.float32)
    x = mf.Tensor(emulated_cupy.asarray(values), requires_grad=True)
    y = F.cast(x, bfloat16.DTYPE)
    assert y.dtype == bfloat16.DTYPE
    numpy.testing.assert_array_equal(y.data.get(), bfloat16.from_float32(values))
    F.cast(y, numpy.float32).sum().backward()
    assert x.grad.dtype == numpy.float32
    numpy.testing.assert_array_equal(x.grad.get(), numpy.ones(5, numpy.float32))


# ------------------------------------------------------------------------ the whole net
def _net(seed):
    """A narrow FCN-8s whose every learned weight is random (the reference nets'
    zero-initialized score layers would give every pixel equal scores, a loss of exactly
    log(3) and no gradient below them at the first step)."""
    backend.seed(seed)
    net = FCN8s(n_class=3, widths=(4, 8, 8, 16, 16), fc_width=16)
    rng = numpy.random.default_rng(seed)
    for name, param in net.named_parameters():
        if name.startswith("score"):
            param.data[...] = 0.3 * rng.standard_normal(param.shape)
    return net.to("cuda").train()


def _step(bf16, monkeypatch, seed=4):
    """One SGD step (lr 1, no momentum or decay: the update is minus the gradient) of a
    fresh net on one image; (loss, {name: update}, dtypes the max poolings saw)."""
    net = _net(seed)
    before = {name: p.copy() for name, p in net.state_dict().items()}
    pooled, forward = [], MaxPooling2D.forward
    monkeypatch.setattr(MaxPooling2D, "forward", lambda self, x: pooled.append(x.dtype) or
                        forward(self, x))
    rng = numpy.random.default_rng(seed)
    batch = [(rng.standard_normal((1, 3, 16, 16)).astype(numpy.float32),
              rng.integers(0, 3, (1, 16, 16)))]
    step = graph.TrainStep(net, SGD(net, lr=1.0, momentum=0.0), normalize=True, device="cuda",
                           mode="off")
    backend.seed(seed)  # the same dropout masks in both runs
    with precision.autocast(bf16):
        loss = float(step(batch))
    monkeypatch.setattr(MaxPooling2D, "forward", forward)
    after = net.state_dict()
    return loss, {name: after[name] - before[name] for name in before}, set(pooled)


def _cosine(a, b):
    a, b = a.ravel().astype(numpy.float64), b.ravel().astype(numpy.float64)
    return a @ b / (numpy.linalg.norm(a) * numpy.linalg.norm(b))


def test_a_bf16_step_follows_the_fp32_step(emulated_cupy, monkeypatch):
    """The same narrow FCN-8s, image and dropout masks, one SGD step in fp32 and in bf16.

    Tolerances. Each bf16 store rounds with relative error at most U = 2^-9, and errors
    add along the longest path through the net: the input's cast, then per convolution
    its GEMM's output and its bias add (ReLU, max pooling, crop and dropout at p = 0.5
    store exactly what they are given), per deconvolution its output, per skip one
    addition: about 36 stores from the image to FCN-8s's scores. So the scores differ by
    at most 36 U (0.07) relative, and so does the loss, a float32 softmax of them (the
    net's output is cast to float32); max pooling is continuous in its input, so it
    adds nothing. The backward pass stores again (each GEMM output, col2im): about 72
    stores from the loss to fc6, so the updates of the layers whose gradient goes
    through no max pooling (fc6, fc7, the score layers) differ by at most 72 U (0.14).
    Below a pooling the gradient is not continuous: max pooling sends a window's
    gradient to its maximum, and where the window's two largest values lie within the
    forward's error of each other the bf16 run may pick the other one, moving that
    window's gradient to another pixel. Those are a few percent of the windows, an
    O(1) change there, and they add up over the five pools: the earliest layers'
    updates differ by tens of percent in norm while pointing the same way. So every
    parameter's update must have a cosine above 0.8 with fp32's, and the whole update
    above 0.95. A wrong op (bits read as integers, a float32 pass skipped) errs by O(1)
    everywhere and fails all three. And the bf16 step is not the fp32 one: its GEMMs
    were bf16 cuBLAS calls, its pooled activations uint16, and its loss differs."""
    del emulated_cupy_module.gemm_types[:]
    loss32, update32, pooled32 = _step(False, monkeypatch)
    m = emulated_cupy_module
    assert {types[:3] for types in m.gemm_types} == {(m.CUDA_R_32F,) * 3}
    del m.gemm_types[:]
    loss16, update16, pooled16 = _step(True, monkeypatch)
    assert {types[:2] for types in m.gemm_types} == {(m.CUDA_R_16BF, m.CUDA_R_16BF)}
    assert {types[2] for types in m.gemm_types} == {m.CUDA_R_16BF, m.CUDA_R_32F}  # gW float32
    assert pooled32 == {numpy.dtype(numpy.float32)} and pooled16 == {bfloat16.DTYPE}
    forward_stores, backward_stores = 36, 72
    assert loss16 != loss32
    assert abs(loss16 - loss32) / abs(loss32) <= forward_stores * U
    learned = [name for name in update32 if numpy.any(update32[name])]
    assert set(learned) == {name for name in update16 if numpy.any(update16[name])}
    assert "conv1_1.weight" in learned  # the gradient reached the first layer
    for name in learned:
        if name.startswith(("fc", "score")):  # above every max pooling
            assert 0 < _relative(update16[name], update32[name]) <= backward_stores * U, name
        assert _cosine(update16[name], update32[name]) > 0.8, name
    whole = [numpy.concatenate([update[name].ravel() for name in learned])
             for update in (update16, update32)]
    assert _cosine(*whole) > 0.95


def test_autocast_casts_the_nets_output_to_float32(emulated_cupy):
    net = _net(2).eval()
    x = mf.Tensor(emulated_cupy.asarray(numpy.random.default_rng(0).standard_normal(
        (1, 3, 20, 20)).astype(numpy.float32)))
    with mf.no_grad():
        plain = net(x)
        with precision.autocast():
            mixed = net(x)
            layer = net.score_fr(mf.Tensor(emulated_cupy.ones((1, 16, 2, 2), numpy.float32)))
    assert plain.dtype == mixed.dtype == layer.dtype == numpy.float32  # the outermost call's
    assert 0 < _relative(mixed.numpy(), plain.numpy()) <= 36 * U
    assert not precision.autocasting()


@pytest.mark.slow  # emulated, whole FCN steps: tens of seconds (CI runs -m slow too)
def test_a_captured_bf16_step_replays_as_a_plain_one(emulated_cupy):
    """CUDA graphs (graph.py) capture the bf16 step as they do the fp32 one: three steps
    captured and replayed give the parameters of three plain ones, bit for bit."""
    from test_graph import _run_steps
    with precision.autocast():
        plain = _run_steps("off", SGD, [(29, 35)] * 4)
        replayed = _run_steps("on", SGD, [(29, 35)] * 4)
    assert replayed[2].captured is not None and replayed[2].captured.launches == 2
    for name, value in plain[0].items():
        numpy.testing.assert_array_equal(replayed[0][name], value, err_msg=name)
    assert plain[3] == replayed[3]


def test_use_sets_and_restores_each_precision(emulated_cupy):
    from minifcn import cuda
    assert not cuda.tf32_allowed() and not precision.autocasting()
    with precision.use("tf32", "cuda"):
        assert cuda.tf32_allowed() and not precision.autocasting()
    with precision.use("bf16", "cuda"):
        assert precision.autocasting() and not cuda.tf32_allowed()
    with precision.use("fp32", "cuda"):
        assert not precision.autocasting() and not cuda.tf32_allowed()
    assert not cuda.tf32_allowed() and not precision.autocasting()


def test_a_bf16_run_trains_and_records_its_precision(emulated_cupy, tmp_path):
    from minifcn import train as training
    tiny = dict(widths=(3, 4, 4, 6, 6), fc_width=6, image_size=40, val_images=1, progress=False,
                device="cuda", iterations=4, val_interval=4, log_interval=2, precision="bf16")
    scores = training.train(training.TrainConfig(out=str(tmp_path), **tiny), log=lambda *a: None)
    checkpoint = training.load_checkpoint(tmp_path / "checkpoint.npz")
    assert checkpoint["config"]["precision"] == "bf16"
    assert numpy.isfinite(checkpoint["loss"]) and 0 <= scores["mean_iu"] <= 1
    assert all(value.dtype == numpy.float32 for value in checkpoint["params"].values())
    assert not precision.autocasting()


def test_the_command_line_option_reaches_the_run(emulated_cupy, monkeypatch, tmp_path):
    import minifcn.train as training
    from minifcn.cli import main
    seen = {}
    monkeypatch.setattr(training, "train", lambda config, **run: seen.update(config=config) or
                        {"mean_iu": 0.0})
    for value in precision.PRECISIONS:
        assert main(["train", "--device", "cuda", "--precision", value, "--out",
                     str(tmp_path / value)]) == 0
        assert seen["config"].precision == value
    assert main(["train", "--device", "cuda", "--out", str(tmp_path / "default")]) == 0
    assert seen["config"].precision == "fp32"
