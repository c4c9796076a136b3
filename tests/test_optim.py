"""SGD against Caffe's update rule computed by hand, step by step."""
import numpy
import pytest

import minifcn as mf
from minifcn.optim import SGD


class TwoParams:
    """A stand-in net: a weight (lr_mult 1, decay_mult 1), a bias (2, 0), a fixed one (0)."""

    def __init__(self, rng):
        self.weight = mf.Tensor(rng.standard_normal((3, 2)), requires_grad=True)
        self.bias = mf.Tensor(rng.standard_normal(3), requires_grad=True)
        self.bias.lr_mult, self.bias.decay_mult = 2.0, 0.0
        self.fixed = mf.Tensor(rng.standard_normal(4), requires_grad=True)
        self.fixed.lr_mult = 0.0

    def named_parameters(self):
        return [("w", self.weight), ("b", self.bias), ("fixed", self.fixed)]


@pytest.fixture(params=["numpy", "numba"])
def kernel_set(request):
    with mf.backend.use_cpu_kernels(request.param):
        yield request.param


def test_sgd_follows_caffe_update_over_steps(rng, kernel_set):
    net = TwoParams(rng)
    lr, momentum, decay, iter_size = 0.1, 0.9, 0.01, 2
    opt = SGD(net, lr, momentum, decay, iter_size)
    w, b, fixed = net.weight.data.copy(), net.bias.data.copy(), net.fixed.data.copy()
    vw, vb = numpy.zeros_like(w), numpy.zeros_like(b)
    for _ in range(3):
        gw, gb = rng.standard_normal(w.shape), rng.standard_normal(b.shape)
        net.weight.grad, net.bias.grad = gw, gb
        net.fixed.grad = numpy.ones_like(fixed)
        opt.step()
        # Caffe: diff /= iter_size; diff += decay * decay_mult * w; v = m v + lr lr_mult diff
        vw = momentum * vw + lr * 1.0 * (gw / iter_size + decay * w)
        vb = momentum * vb + lr * 2.0 * (gb / iter_size)
        w, b = w - vw, b - vb
        numpy.testing.assert_allclose(net.weight.data, w, rtol=1e-12)
        numpy.testing.assert_allclose(net.bias.data, b, rtol=1e-12)
        numpy.testing.assert_array_equal(net.fixed.data, fixed)


def test_sgd_does_not_modify_gradients_in_place(rng, kernel_set):
    net = TwoParams(rng)
    grad = rng.standard_normal((3, 2))
    net.weight.grad = grad
    kept = grad.copy()
    SGD(net, 0.1, weight_decay=0.5).step()
    numpy.testing.assert_array_equal(grad, kept)


def test_sgd_state_round_trip_continues_identically(rng):
    grads = [rng.standard_normal((3, 2)) for _ in range(4)]
    nets = [TwoParams(numpy.random.default_rng(1)) for _ in range(2)]
    first = SGD(nets[0], 0.1, 0.9)
    for g in grads:
        nets[0].weight.grad = g
        first.step()
    second = SGD(nets[1], 0.1, 0.9)
    for g in grads[:2]:
        nets[1].weight.grad = g
        second.step()
    resumed = SGD(nets[1], 0.1, 0.9)
    resumed.load_state_dict(second.state_dict())
    for g in grads[2:]:
        nets[1].weight.grad = g
        resumed.step()
    numpy.testing.assert_array_equal(nets[0].weight.data, nets[1].weight.data)


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=0), "lr"), (dict(lr=0.1, momentum=1.0), "momentum"),
    (dict(lr=0.1, weight_decay=-1), "weight_decay"), (dict(lr=0.1, iter_size=0), "iter_size")])
def test_sgd_rejects_bad_settings(rng, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SGD(TwoParams(rng), **kwargs)


def test_sgd_state_rejects_unknown_and_misshapen(rng):
    opt = SGD(TwoParams(rng), 0.1)
    with pytest.raises(KeyError, match="nope"):
        opt.load_state_dict({"nope": numpy.zeros(3)})
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict({"w": numpy.zeros(5)})


def test_adam_follows_its_update_with_multipliers(rng):
    from minifcn.optim import Adam
    net = TwoParams(rng)
    lr, b1, b2, eps, decay = 0.01, 0.9, 0.999, 1e-8, 0.1
    opt = Adam(net, lr, betas=(b1, b2), eps=eps, weight_decay=decay)
    w, b = net.weight.data.copy(), net.bias.data.copy()
    mw, vw, mb, vb = (numpy.zeros_like(a) for a in (w, w, b, b))
    for t in range(1, 4):
        gw, gb = rng.standard_normal(w.shape), rng.standard_normal(b.shape)
        net.weight.grad, net.bias.grad = gw, gb
        opt.step()
        gw = gw + decay * w                       # weight: decay_mult 1, lr_mult 1
        mw, vw = b1 * mw + (1 - b1) * gw, b2 * vw + (1 - b2) * gw ** 2
        w = w - lr * (mw / (1 - b1 ** t)) / (numpy.sqrt(vw / (1 - b2 ** t)) + eps)
        mb, vb = b1 * mb + (1 - b1) * gb, b2 * vb + (1 - b2) * gb ** 2   # bias: decay 0
        b = b - 2 * lr * (mb / (1 - b1 ** t)) / (numpy.sqrt(vb / (1 - b2 ** t)) + eps)
        numpy.testing.assert_allclose(net.weight.data, w, rtol=1e-10)
        numpy.testing.assert_allclose(net.bias.data, b, rtol=1e-10)


def test_adam_state_round_trip_continues_identically(rng):
    from minifcn.optim import Adam
    grads = [rng.standard_normal((3, 2)) for _ in range(4)]
    nets = [TwoParams(numpy.random.default_rng(1)) for _ in range(2)]
    whole = Adam(nets[0], 0.01)
    for g in grads:
        nets[0].weight.grad = g
        whole.step()
    first = Adam(nets[1], 0.01)
    for g in grads[:2]:
        nets[1].weight.grad = g
        first.step()
    resumed = Adam(nets[1], 0.01)
    resumed.load_state_dict(first.state_dict())
    for g in grads[2:]:
        nets[1].weight.grad = g
        resumed.step()
    numpy.testing.assert_array_equal(nets[0].weight.data, nets[1].weight.data)


def test_learning_rate_policies_match_caffe():
    from minifcn.optim import learning_rate
    assert learning_rate(0.1, "fixed", 70, 100) == 0.1
    # Caffe's poly: base_lr * (1 - iter / max_iter) ^ power
    assert learning_rate(0.1, "poly", 0, 100) == 0.1
    assert learning_rate(0.1, "poly", 75, 100, power=2.0) == pytest.approx(0.1 * 0.25 ** 2)
    assert learning_rate(0.1, "poly", 90, 100) == pytest.approx(0.1 * 0.1 ** 0.9)
    assert learning_rate(0.1, "poly", 100, 100) == 0.0
    assert learning_rate(0.1, "poly", 150, 100) == 0.0  # past the end: stays at zero
    with pytest.raises(ValueError, match="lr_policy 'step'"):
        learning_rate(0.1, "step", 0, 100)


# ------------------------------------------------- one arena, one launch per step
def _conv_net(rng):
    net = mf.nn.Conv2d(2, 3, 3, padding=1, dtype=numpy.float64)
    x = mf.Tensor(rng.standard_normal((2, 2, 5, 4)))
    return net, x


def _loss(net, x):
    return (mf.functions.relu(net(x)) * 0.5).sum()


def test_parameters_gradients_and_state_live_in_one_arena(rng):
    net, x = _conv_net(rng)
    before = net.state_dict()
    opt = SGD(net, 0.1)
    opt.lend_gradients = True  # the GPU's layout (the default on the CPU: test below)
    opt.zero_grad()
    (arena,) = opt.arenas
    assert arena.data.size == 3 * 2 * 9 + 3 and arena.names == ["weight", "bias"]
    for k, (name, p) in enumerate(net.named_parameters()):
        assert numpy.shares_memory(p.data, arena.data) and numpy.shares_memory(p.grad_buffer, arena.grad)
        numpy.testing.assert_array_equal(p.data, before[name])  # the values moved in unchanged
        numpy.testing.assert_array_equal(arena.view(arena.data, k), p.data)
    assert net.state_dict().keys() == before.keys()


def test_backward_writes_into_the_arena_and_accumulates_there(rng):
    net, x = _conv_net(rng)
    _loss(net, x).backward()
    expected = {name: 2 * p.grad for name, p in net.named_parameters()}  # two passes' sum
    for p in net.parameters():
        p.grad = None
    opt = SGD(net, 0.1)
    opt.lend_gradients = True
    opt.zero_grad()
    _loss(net, x).backward()
    _loss(net, x).backward()
    for name, p in net.named_parameters():
        assert p.grad is p.grad_buffer, name  # no copy left for the step to make
        numpy.testing.assert_allclose(p.grad, expected[name], rtol=1e-14)


@pytest.mark.parametrize("lend", [False, True])
def test_both_layouts_step_alike(rng, lend, kernel_set):
    net, x = _conv_net(rng)
    reference_net, _ = _conv_net(numpy.random.default_rng(0))
    reference_net.load_state_dict(net.state_dict())
    opt = SGD(net, 0.1, momentum=0.9, weight_decay=0.01, iter_size=2)
    opt.lend_gradients = lend
    history = {name: numpy.zeros(p.shape) for name, p in reference_net.named_parameters()}
    for _ in range(2):
        opt.zero_grad()
        _loss(net, x).backward()
        _loss(net, x).backward()
        assert (net.weight.grad is net.weight.grad_buffer) == lend
        opt.step()
        for p in reference_net.parameters():
            p.grad = None
        _loss(reference_net, x).backward()
        for name, p in reference_net.named_parameters():  # Caffe's rule, by hand
            g = p.grad + p.grad  # two passes
            h = history[name] = 0.9 * history[name] + 0.1 * p.lr_mult * (
                g / 2 + 0.01 * p.decay_mult * p.data)
            p.data = p.data - h
    for name, p in net.named_parameters():
        numpy.testing.assert_allclose(p.data, dict(reference_net.named_parameters())[name].data,
                                      rtol=1e-12, err_msg=name)
    assert numpy.shares_memory(net.weight.data, opt.arenas[0].data)
    assert (opt.arenas[0].grad is None) == (not lend)  # the CPU keeps no gradient arena


def test_every_parameter_is_stepped_a_missing_gradient_counting_as_zero(rng, kernel_set):
    net = TwoParams(rng)
    opt = SGD(net, 0.1, momentum=0.5, weight_decay=0.1)
    w, b = net.weight.data.copy(), net.bias.data.copy()
    net.weight.grad = gw = rng.standard_normal((3, 2))
    opt.step()  # bias: no gradient, so only its (zero) decay and momentum act: unchanged
    numpy.testing.assert_allclose(net.weight.data, w - 0.1 * (gw + 0.1 * w), rtol=1e-12)
    numpy.testing.assert_array_equal(net.bias.data, b)
    opt.zero_grad()
    net.weight.grad = None
    opt.step()  # the weight keeps moving on its momentum and decay (Caffe)
    v = 0.5 * 0.1 * (gw + 0.1 * w) + 0.1 * 0.1 * (w - 0.1 * (gw + 0.1 * w))
    numpy.testing.assert_allclose(net.weight.data, w - 0.1 * (gw + 0.1 * w) - v, rtol=1e-12)


def test_a_replaced_parameter_array_gets_a_new_arena_with_the_state(rng):
    grads = [rng.standard_normal((3, 2)) for _ in range(3)]
    nets = [TwoParams(numpy.random.default_rng(1)) for _ in range(2)]
    opts = [SGD(net, 0.1, 0.9) for net in nets]
    for step, g in enumerate(grads):
        if step == 1:  # as net.to(device) does: a new array for every parameter
            for p in (nets[1].weight, nets[1].bias):
                p.data = p.data.copy()
        for net, opt in zip(nets, opts):
            net.weight.grad = g
            opt.step()
    assert numpy.shares_memory(nets[1].weight.data, opts[1].arenas[0].data)
    numpy.testing.assert_array_equal(nets[1].weight.data, nets[0].weight.data)
    numpy.testing.assert_array_equal(opts[1].history["w"], opts[0].history["w"])


def test_adam_has_its_own_names_and_loads_checkpoints_of_before(rng):
    from minifcn.optim import Adam
    net = TwoParams(rng)
    opt = Adam(net, 0.01, betas=(0.8, 0.99))
    assert (opt.beta1, opt.beta2) == (0.8, 0.99)
    assert not hasattr(opt, "momentum") and not hasattr(opt, "history")
    net.weight.grad = g = rng.standard_normal((3, 2))
    opt.step()
    numpy.testing.assert_allclose(opt.first_moment["w"], 0.2 * g, rtol=1e-12)
    numpy.testing.assert_allclose(opt.second_moment["w"], 0.01 * g * g, rtol=1e-12)
    # The keys checkpoints have had (train.py saves them as solver.<key>).
    assert sorted(opt.state_dict()) == ["m.b", "m.w", "steps", "v.b", "v.w"]
    old = {"m.w": numpy.full((3, 2), 0.5), "v.w": numpy.full((3, 2), 0.25), "steps": numpy.array(7)}
    opt.load_state_dict(old)
    assert opt.steps == 7
    numpy.testing.assert_array_equal(opt.first_moment["w"], old["m.w"])
    numpy.testing.assert_array_equal(opt.second_moment["b"], numpy.zeros(3))  # absent: zero
    with pytest.raises(ValueError, match="not Adam state"):
        opt.load_state_dict({"w": numpy.zeros((3, 2))})  # an SGD checkpoint's solver.*
    with pytest.raises(ValueError, match="betas"):
        Adam(net, 0.01, betas=(1.0, 0.9))


def test_a_tensor_listed_twice_is_stepped_once(rng):
    net = TwoParams(rng)
    listed = net.named_parameters() + [("w again", net.weight)]
    opt = SGD(type("Tied", (), {"named_parameters": lambda self: listed})(), 0.1, momentum=0.0)
    w = net.weight.data.copy()
    net.weight.grad = g = rng.standard_normal((3, 2))
    opt.step()
    numpy.testing.assert_allclose(net.weight.data, w - 0.1 * g, rtol=1e-12)
    assert [name for name, _ in opt.params] == ["w", "b"]
