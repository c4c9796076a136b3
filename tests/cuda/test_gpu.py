"""On a real GPU: every op through the public API, CuPy against NumPy, forward and
backward, on odd sizes; then a whole small FCN-8s training step. Skipped without a GPU
(tests/conftest.py); what runs without one is the emulation in the other files here."""
import numpy
import pytest

import minifcn as mf
from minifcn import backend, cuda, functions as F
from minifcn.optim import SGD

pytestmark = pytest.mark.gpu

TOLERANCE = {numpy.float32: {"rtol": 1e-4, "atol": 1e-5}, numpy.float64: {"rtol": 1e-9, "atol": 1e-11}}


@pytest.fixture(autouse=True)
def plain_float32_gemms():
    previous = cuda.allow_tf32(False)  # TF32 would put GEMMs 1e-3 away from NumPy's
    yield
    cuda.allow_tf32(previous)


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
def test_op_on_gpu_matches_numpy(name, dtype):
    function, arrays = _cases(numpy.random.default_rng(0), dtype)[name]
    with backend.use_cpu_kernels("numpy"):
        expected_y, expected_grads = _run(function, arrays, "cpu")
    y, grads = _run(function, arrays, "cuda")
    assert y.dtype == dtype
    numpy.testing.assert_allclose(y, expected_y, **TOLERANCE[dtype])
    assert len(grads) == len(expected_grads)
    for grad, expected in zip(grads, expected_grads):
        assert grad.dtype == dtype
        numpy.testing.assert_allclose(grad, expected, **TOLERANCE[dtype])


def test_the_cuda_kernels_are_the_ones_used():
    cupy = backend.require_cupy()
    array = cupy.zeros(1, dtype=cupy.float32)
    for name in ("im2col", "col2im", "max_pool_forward", "max_pool_backward", "avg_pool_forward",
                 "avg_pool_backward", "softmax_cross_entropy_forward",
                 "softmax_cross_entropy_backward", "crop_forward", "crop_backward",
                 "lrn_forward", "lrn_backward"):
        assert backend.kernel(name, array, None) is getattr(cuda, name)


def test_gradients_are_deterministic():
    # col2im and the pooling backward passes gather (no atomics): bit-identical reruns.
    rng = numpy.random.default_rng(0)
    x, w = rng.standard_normal((1, 8, 9, 9)).astype(numpy.float32), rng.standard_normal((8, 8, 8, 8)).astype(numpy.float32)

    def function(x, w):
        return F.max_pool2d(F.conv_transpose2d(x, w, stride=4), 3, 2, ceil_mode=True)

    first, second = _run(function, [x, w], "cuda"), _run(function, [x, w], "cuda")
    numpy.testing.assert_array_equal(first[0], second[0])
    for a, b in zip(first[1], second[1]):
        numpy.testing.assert_array_equal(a, b)


def test_tf32_switch_round_trips():
    cuda.allow_tf32(True)
    ampere_or_later = int(backend.require_cupy().cuda.Device().compute_capability) >= 80
    assert cuda.tf32_allowed() == ampere_or_later
    cuda.allow_tf32(False)
    assert not cuda.tf32_allowed()


def _small_fcn8s():
    models = pytest.importorskip("minifcn.models", reason="minifcn.models is not there yet")
    if not hasattr(models, "FCN8s"):
        pytest.skip("minifcn.models has no FCN8s yet")
    try:  # a narrow VGG so the CPU side stays quick; float64 so the comparison is tight
        return models.FCN8s(n_class=3, widths=(4, 8, 8, 16, 16), fc_width=16, dtype=numpy.float64)
    except TypeError:  # only the documented FCN8s(n_class): the full VGG16 widths
        return models.FCN8s(n_class=3)


def _train(net, device, image, labels, steps=2):
    """`steps` SGD steps (dropout off: CPU and GPU draw different masks); the losses."""
    net.to(device).eval()
    solver = SGD(net, lr=1e-4, momentum=0.9, weight_decay=5e-4)
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


def test_a_whole_fcn8s_training_step_matches_the_cpu():
    rng = numpy.random.default_rng(0)
    image = rng.standard_normal((1, 3, 37, 45))
    labels = rng.integers(0, 3, size=(1, 37, 45)).astype(numpy.int32)
    labels[:, :5] = 255
    cpu_net, gpu_net = _small_fcn8s(), _small_fcn8s()
    gpu_net.load_state_dict(cpu_net.state_dict())
    with backend.use_cpu_kernels("numpy"):
        cpu_losses = _train(cpu_net, "cpu", image, labels)
    gpu_losses = _train(gpu_net, "cuda", image, labels)
    numpy.testing.assert_allclose(gpu_losses, cpu_losses, rtol=1e-6)
    gpu_state = gpu_net.state_dict()
    for name, value in cpu_net.state_dict().items():
        numpy.testing.assert_allclose(gpu_state[name], value, rtol=1e-6, atol=1e-9, err_msg=name)
