"""The GPU backend end to end: every op through the public API on device arrays against
NumPy, forward and backward, on odd sizes; then whole FCN-8s training steps, and
`minifcn train/eval/predict --device cuda`.

Each test runs on two backends (the `device` fixture):
- "gpu": CuPy on a real GPU (marked `gpu`; skipped without one, tests/conftest.py);
- "emulated": the CPU stand-in for CuPy with the CPU build of kernels/*.cu
  (emulated_cupy.py), which runs everywhere, CI included. It checks the GPU code path
  (dispatch, host/device moves, kernel arguments), not the device.
"""
import functools
import json
import math

import numpy
import pytest

import minifcn as mf
from minifcn import backend, bfloat16, cuda, functions as F
from minifcn.models import MODELS, FCN8s, build
from minifcn.optim import SGD, Adam
from minifcn.reference import (accumulate_numpy, add_bias_numpy, add_numpy, avg_pool_backward_numpy,
                               avg_pool_forward_numpy, bias_grad_numpy, cast_numpy, col2im_numpy,
                               crop_backward_numpy, crop_forward_numpy, dropout_numpy, im2col_numpy,
                               lrn_forward_numpy, max_pool_backward_numpy, max_pool_forward_numpy,
                               relu_backward_numpy, relu_forward_numpy)

from cuda_emulator import assert_close, random_values, stored_reference, values_of

TOLERANCE = {numpy.float32: {"rtol": 1e-4, "atol": 1e-5}, numpy.float64: {"rtol": 1e-9, "atol": 1e-11}}


@pytest.fixture(params=[pytest.param("gpu", marks=pytest.mark.gpu), "emulated"])
def device(request):
    """Run the test on CuPy and a GPU, or on the emulated CuPy; either way the device is
    "cuda"."""
    if request.param == "emulated":
        request.getfixturevalue("emulated_cupy")
        yield "cuda"
        return
    previous = cuda.allow_tf32(False)  # TF32 would put GEMMs 1e-3 away from NumPy's
    yield "cuda"
    cuda.allow_tf32(previous)


def _seeded_dropout(x):
    mf.seed(5)  # the same seed, so the same mask, on the CPU and the device
    return F.dropout(x, p=0.3)


def _cases(rng, dtype):
    """name -> (function of Tensors, input arrays); float inputs get gradients."""
    def normal(*shape):
        return rng.standard_normal(shape).astype(dtype)

    labels = rng.integers(0, 5, size=(2, 7, 3)).astype(numpy.int32)
    labels[rng.random(labels.shape) < 0.3] = 255
    return {
        "conv2d 3x3 pad 1": (lambda x, w, b: F.conv2d(x, w, b, padding=1),
                             [normal(2, 3, 7, 5), normal(4, 3, 3, 3), normal(4)]),
        "conv2d stride 3 pad 2 dilation 2 groups 2": (
            lambda x, w: F.conv2d(x, w, stride=(3, 2), padding=2, dilation=2, groups=2),
            [normal(1, 4, 11, 9), normal(6, 2, 3, 3)]),
        "conv_transpose2d 4/2 pad 1": (lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1),
                                       [normal(1, 3, 5, 4), normal(3, 2, 4, 4)]),
        "conv_transpose2d upscore-like 8/4": (lambda x, w, b: F.conv_transpose2d(x, w, b, stride=4),
                                              [normal(2, 3, 3, 2), normal(3, 3, 8, 8), normal(3)]),
        "max_pool2d 2/2 ceil": (lambda x: F.max_pool2d(x, 2, 2, ceil_mode=True), [normal(2, 3, 7, 5)]),
        "max_pool2d 3/2 pad 1 ceil": (lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True),
                                      [normal(1, 2, 9, 6)]),
        "avg_pool2d 3/2 pad 1 ceil": (lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True),
                                      [normal(1, 2, 9, 6)]),
        "avg_pool2d 2/3": (lambda x: F.avg_pool2d(x, 2, 3), [normal(2, 1, 7, 8)]),
        "relu": (F.relu, [normal(2, 3, 4, 5)]),
        "dropout": (_seeded_dropout, [normal(2, 3, 5, 7)]),
        "crop": (lambda x: F.crop(x, (4, 3), (2, 1)), [normal(2, 3, 7, 5)]),
        "local_response_norm": (lambda x: F.local_response_norm(x, 5, 1e-2, 0.75, 2.0),
                                [normal(2, 7, 3, 4)]),
        "softmax_cross_entropy normalize": (lambda s, t: F.softmax_cross_entropy(s, t),
                                            [normal(2, 5, 7, 3), labels]),
        "softmax_cross_entropy per image": (
            lambda s, t: F.softmax_cross_entropy(s, t, normalize=False), [normal(2, 5, 7, 3), labels]),
        "softmax_cross_entropy nothing counted": (
            lambda s, t: F.softmax_cross_entropy(s, t), [normal(1, 3, 2, 2), numpy.full((1, 2, 2), 255)]),
    }


def _run(function, arrays, device, seed=1):
    """Forward, backward with a fixed random gy; everything back on the host."""
    leaves = [mf.Tensor(backend.to_device(a, device), requires_grad=a.dtype.kind == "f") for a in arrays]
    y = function(*leaves)
    gy = numpy.random.default_rng(seed).standard_normal(y.shape).astype(y.dtype)
    y.backward(backend.to_device(gy, device))
    return y.numpy(), [backend.to_numpy(t.grad) for t in leaves if t.requires_grad]


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("name", sorted(_cases(numpy.random.default_rng(0), numpy.float32)))
def test_op_on_the_device_matches_numpy(device, name, dtype):
    function, arrays = _cases(numpy.random.default_rng(0), dtype)[name]
    with backend.use_cpu_kernels("numpy"):
        expected_y, expected_grads = _run(function, arrays, "cpu")
    y, grads = _run(function, arrays, device)
    assert y.dtype == dtype
    numpy.testing.assert_allclose(y, expected_y, **TOLERANCE[dtype])
    assert len(grads) == len(expected_grads)
    for grad, expected in zip(grads, expected_grads):
        assert grad.dtype == dtype
        numpy.testing.assert_allclose(grad, expected, **TOLERANCE[dtype])


def test_the_cuda_kernels_are_the_ones_used(device):
    array = backend.to_device(numpy.zeros(1, numpy.float32), device)
    kernels = backend.kernels_for(array)
    assert kernels is cuda.KERNELS
    for name in ("im2col", "col2im", "max_pool_forward", "max_pool_backward", "avg_pool_forward",
                 "avg_pool_backward", "softmax_cross_entropy_forward",
                 "softmax_cross_entropy_backward", "crop_forward", "crop_backward",
                 "lrn_forward", "lrn_backward", "dropout"):
        assert getattr(kernels, name) is getattr(cuda, name)


def test_gradients_are_deterministic(device):
    # col2im and the pooling backward passes gather (no atomics): bit-identical reruns.
    rng = numpy.random.default_rng(0)
    x, w = rng.standard_normal((1, 8, 9, 9)).astype(numpy.float32), rng.standard_normal((8, 8, 8, 8)).astype(numpy.float32)

    def function(x, w):
        return F.max_pool2d(F.conv_transpose2d(x, w, stride=4), 3, 2, ceil_mode=True)

    first, second = _run(function, [x, w], device), _run(function, [x, w], device)
    numpy.testing.assert_array_equal(first[0], second[0])
    for a, b in zip(first[1], second[1]):
        numpy.testing.assert_array_equal(a, b)


def _bf16_cases(rng):
    """name -> (kernel call, NumPy reference, bf16 (or float32) inputs, exact): every
    kernel with a bf16 build once, on odd sizes. exact: a copy, or one float32 operation
    (or a sum in the reference's order) rounded once; else within one bf16 ulp."""
    def bf16(*shape):
        return random_values(rng, shape, bfloat16.DTYPE)

    x, gy_pool, col = bf16(2, 3, 9, 13), bf16(2, 3, 5, 7), bf16(3, 3, 3, 5, 13)
    pool = (3, 3, 2, 2, 1, 1)
    argmax = max_pool_forward_numpy(values_of(x), *pool, 5, 7)[1]
    special = numpy.array([numpy.nan, numpy.inf, -numpy.inf, -0.0, 3.3895e38, 1e-40, 1.00390625],
                          numpy.float32)
    dropout = (3, math.ceil(0.3 * 2**53), 1 / 0.7)
    lrn = (5, 1e-2, 0.75, 2.0)
    return {
        "cast to bf16": ("cast", cast_numpy, [numpy.concatenate([special, rng.standard_normal(
            1001).astype(numpy.float32)]), bfloat16.DTYPE], True),
        "cast to float32": ("cast", cast_numpy, [bf16(7, 11), numpy.float32], True),
        "relu_forward": ("relu_forward", relu_forward_numpy, [x], True),
        "relu_backward": ("relu_backward", relu_backward_numpy, [x, bf16(*x.shape)], True),
        "add": ("add", add_numpy, [x, bf16(*x.shape)], True),
        "add_bias": ("add_bias", add_bias_numpy, [x.copy(), rng.standard_normal(3).astype(numpy.float32)], True),
        "accumulate": ("accumulate", accumulate_numpy, [x.copy(), bf16(*x.shape)], True),
        "im2col": ("im2col", im2col_numpy, [x[0], 3, 3, 2, 1, 1, 1, 1, 2, 5, 11], True),
        "col2im": ("col2im", col2im_numpy, [col, 9, 13, 2, 1, 1, 1, 1, 1], True),
        "max_pool_forward": ("max_pool_forward", max_pool_forward_numpy, [x, *pool, 5, 7], True),
        "max_pool_backward": ("max_pool_backward", max_pool_backward_numpy,
                              [gy_pool, argmax, 9, 13, *pool], False),
        "avg_pool_forward": ("avg_pool_forward", avg_pool_forward_numpy, [x, *pool, 5, 7], True),
        "avg_pool_backward": ("avg_pool_backward", avg_pool_backward_numpy,
                              [gy_pool, 9, 13, *pool], True),
        "crop_forward": ("crop_forward", crop_forward_numpy, [x, 1, 8, 5, 4], True),
        "crop_backward": ("crop_backward", crop_backward_numpy, [gy_pool, 9, 13, 1, 3], True),
        "dropout": ("dropout", dropout_numpy, [x, *dropout], True),
        "lrn_forward": ("lrn_forward", lrn_forward_numpy, [x, *lrn], False),
    }


@pytest.mark.parametrize("name", sorted(_bf16_cases(numpy.random.default_rng(0))))
def test_bf16_kernels_on_the_device_match_the_float32_references(device, name):
    # the emulated device repeats tests/cuda/test_emulated_*.py's checks; on a GPU this
    # checks NVRTC's bf16 builds and the GPU's float arithmetic (FMA contraction, powf)
    kernel, reference, inputs, exact = _bf16_cases(numpy.random.default_rng(0))[name]
    if kernel != "cast":  # the others compute in float32 on the bf16 values
        reference = functools.partial(stored_reference, reference)
    expected = reference(*(a.copy() if isinstance(a, numpy.ndarray) else a for a in inputs))
    result = getattr(cuda, kernel)(*(backend.to_device(a, device) if isinstance(a, numpy.ndarray)
                                     else a for a in inputs))
    results = result if isinstance(result, tuple) else (result,)
    for actual, wanted in zip(results, expected if isinstance(expected, tuple) else (expected,)):
        actual = backend.to_numpy(actual)
        if exact or not bfloat16.is_bfloat16(wanted):
            numpy.testing.assert_array_equal(actual, wanted)
        else:
            assert_close(actual, wanted)


def test_bf16_bias_grad_on_the_device_is_a_float32_sum(device):
    gy = random_values(numpy.random.default_rng(0), (2, 5, 9, 13), bfloat16.DTYPE)
    gb = backend.to_numpy(cuda.bias_grad(backend.to_device(gy, device)))
    assert gb.dtype == numpy.float32
    numpy.testing.assert_allclose(gb, bias_grad_numpy(values_of(gy)), **TOLERANCE[numpy.float32])


@pytest.mark.gpu
def test_tf32_switch_round_trips():
    previous = cuda.allow_tf32(True)
    try:
        ampere_or_later = int(backend.require_cupy().cuda.Device().compute_capability) >= 80
        assert cuda.tf32_allowed() == ampere_or_later
        cuda.allow_tf32(False)
        assert not cuda.tf32_allowed()
    finally:
        cuda.allow_tf32(previous)


def _small_fcn8s():
    # A narrow VGG so the CPU side stays quick; float64 so the comparison is tight.
    return FCN8s(n_class=3, widths=(4, 8, 8, 16, 16), fc_width=16, dtype=numpy.float64)


def _train(net, device, image, labels, solver_class=SGD, steps=2, **options):
    """`steps` solver steps in training mode (dropout on: the CPU and the GPU draw the
    same masks from the same seed); the losses."""
    mf.seed(0)
    net.to(device).train()
    solver = solver_class(net, **options)
    x = mf.Tensor(backend.to_device(image.astype(net.conv1_1.weight.dtype), device))
    target = backend.to_device(labels, device)
    losses = []
    for _ in range(steps):
        solver.zero_grad()
        loss = F.softmax_cross_entropy(net(x), target, normalize=False)
        loss.backward()
        solver.step()
        losses.append(float(loss.item()))
    return losses


@pytest.mark.parametrize("solver_class, options", [
    (SGD, dict(lr=1e-4, momentum=0.9, weight_decay=5e-4)),
    (Adam, dict(lr=1e-3, weight_decay=5e-4)),
], ids=["sgd", "adam"])
def test_whole_fcn8s_training_steps_match_the_cpu(device, solver_class, options):
    rng = numpy.random.default_rng(0)
    image = rng.standard_normal((1, 3, 37, 45))
    labels = rng.integers(0, 3, size=(1, 37, 45)).astype(numpy.int32)
    labels[:, :5] = 255
    cpu_net, gpu_net = _small_fcn8s(), _small_fcn8s()
    gpu_net.load_state_dict(cpu_net.state_dict())
    with backend.use_cpu_kernels("numpy"):
        cpu_losses = _train(cpu_net, "cpu", image, labels, solver_class, **options)
    gpu_losses = _train(gpu_net, device, image, labels, solver_class, **options)
    assert gpu_net.conv1_1.weight.device == "cuda"
    numpy.testing.assert_allclose(gpu_losses, cpu_losses, rtol=1e-6)
    gpu_state = gpu_net.state_dict()
    for name, value in cpu_net.state_dict().items():
        assert isinstance(gpu_state[name], numpy.ndarray), name  # state_dict is on the host
        numpy.testing.assert_allclose(gpu_state[name], value, rtol=1e-6, atol=1e-9, err_msg=name)


def test_bad_labels_on_the_device_give_a_nan_loss_not_a_wait(device):
    # Host labels are checked (ValueError, tests/functions/test_bad_input.py); checking
    # device labels would stall the GPU, so a bad one makes the loss NaN instead.
    rng = numpy.random.default_rng(0)
    score = mf.Tensor(backend.to_device(rng.standard_normal((1, 3, 4, 4)), device), requires_grad=True)
    labels = numpy.zeros((1, 4, 4), numpy.int32)
    labels[0, 2, 3] = 7
    with pytest.raises(ValueError, match=r"found \[7\]"):
        F.softmax_cross_entropy(mf.Tensor(score.numpy()), labels)
    loss = F.softmax_cross_entropy(score, backend.to_device(labels, device))
    loss.backward()
    assert numpy.isnan(float(loss.item()))
    grad = backend.to_numpy(score.grad)
    assert numpy.isnan(grad[0, :, 2, 3]).all() and numpy.isfinite(numpy.delete(grad.reshape(3, 16), 11, axis=1)).all()


def test_dropout_on_the_device_draws_the_cpus_masks(device):
    x = numpy.random.default_rng(0).standard_normal((2, 3, 40, 50)).astype(numpy.float32)
    results = {}
    for where in ("cpu", device):
        mf.seed(3)
        leaf = mf.Tensor(backend.to_device(x, where), requires_grad=True)
        y = F.dropout(leaf, p=0.25)
        y.backward(backend.to_device(numpy.ones(y.shape, numpy.float32), where))
        assert y.device == where and backend.device_of(leaf.grad) == where
        results[where] = y.numpy(), backend.to_numpy(leaf.grad)
    numpy.testing.assert_array_equal(results[device][0], results["cpu"][0])
    numpy.testing.assert_array_equal(results[device][1], results["cpu"][1])
    kept = results[device][1] != 0
    assert 0.70 < kept.mean() < 0.80  # 12000 draws: 0.75 +- 0.004 (one sigma)
    numpy.testing.assert_array_equal(numpy.unique(results[device][1]), [0.0, numpy.float32(1 / 0.75)])


def test_a_net_moves_to_the_device_and_back(device):
    net = _small_fcn8s()
    before = net.state_dict()
    assert net.to(device) is net
    assert {param.device for param in net.parameters()} == {"cuda"}
    assert all(isinstance(value, numpy.ndarray) for value in net.state_dict().values())
    net.load_state_dict(_small_fcn8s().state_dict())  # loads in place, on the device
    assert net.conv1_1.weight.device == "cuda"
    net.load_state_dict(before)
    net.to("cpu")
    assert {param.device for param in net.parameters()} == {"cpu"}
    for name, value in net.state_dict().items():
        numpy.testing.assert_array_equal(value, before[name], err_msg=name)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_on_the_device_matches_the_cpu(device, name):
    # Forward and backward of each net (FCN-AlexNet brings LRN and grouped convolutions),
    # narrow and in float64, dropout on with the same seed on both sides.
    rng = numpy.random.default_rng(0)
    widths = (4, 8, 8, 16, 16) if name != "fcn-alexnet" else (4, 8, 8, 8, 8)
    n_class = (3, 2) if name == "fcn16s-siftflow" else 3  # two heads: scores concatenated
    net = build(name, n_class, widths=widths, fc_width=8, dtype=numpy.float64).train()
    net.load_state_dict({key: rng.standard_normal(value.shape) * 0.5
                         for key, value in net.state_dict().items()})
    image = rng.standard_normal((1, getattr(net, "in_channels", 3), 17, 23))
    gy = rng.standard_normal((1, numpy.sum(n_class), 17, 23))
    results = {}
    for where in ("cpu", device):
        mf.seed(1)
        net.to(where)
        for param in net.parameters():
            param.grad = None
        with backend.use_cpu_kernels("numpy"):
            score = net(mf.Tensor(backend.to_device(image, where)))
            score = F.concat(list(score)) if isinstance(score, tuple) else score
            score.backward(backend.to_device(gy, where))
        assert score.device == where
        results[where] = score.numpy(), {key: backend.to_numpy(param.grad)
                                         for key, param in net.named_parameters()
                                         if param.grad is not None}
    numpy.testing.assert_allclose(results[device][0], results["cpu"][0], rtol=1e-9, atol=1e-9)
    assert results[device][1].keys() == results["cpu"][1].keys() and results["cpu"][1]
    for key, grad in results["cpu"][1].items():
        numpy.testing.assert_allclose(results[device][1][key], grad, rtol=1e-8, atol=1e-9, err_msg=key)


TINY = ["--widths", "3,4,4,6,6", "--fc-width", "6", "--image-size", "40", "--val-images", "2",
        "--no-progress"]


def test_train_resume_eval_and_predict_with_device_cuda(device, tmp_path, capsys):
    from PIL import Image
    from minifcn.cli import main

    out = tmp_path / "run"
    assert main(["train", "--device", device, "--iterations", "2", "--val-interval", "2",
                 "--out", str(out), *TINY]) == 0
    assert main(["train", "--device", device, "--resume",
                 "--iterations", "3", "--val-interval", "3", "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [entry["iteration"] for entry in log if "mean_iu" in entry] == [2, 3]

    def scores(device):
        assert main(["eval", "--weights", str(out / "checkpoint.npz"), "--limit", "2",
                     "--device", device]) == 0
        return {key: float(value) for key, value in
                (line.split() for line in capsys.readouterr().out.splitlines()[:4])}

    # The same checkpoint scores the same on both, up to the few pixels whose two best
    # classes are closer than float32 sums in another order can tell apart.
    assert scores(device) == pytest.approx(scores("cpu"), abs=2e-3)

    image = tmp_path / "scene.png"
    Image.fromarray(numpy.full((20, 24, 3), 120, numpy.uint8)).save(image)
    labels = {}
    for where in (device, "cpu"):
        assert main(["predict", str(image), "--weights", str(out / "checkpoint.npz"),
                     "--device", where, "--out", str(tmp_path / where)]) == 0
        labels[where] = numpy.asarray(Image.open(tmp_path / where / "scene_seg.png").convert("RGB"))
    assert labels[device].shape == labels["cpu"].shape == (20, 24, 3)  # coloured by class
    assert (labels[device] == labels["cpu"]).all(axis=-1).mean() > 0.99
