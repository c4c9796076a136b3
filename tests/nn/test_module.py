"""Module and Parameter bookkeeping, state dicts and their errors, and the layers."""
import numpy
import pytest

import minifcn as mf
from minifcn import functions as F
from minifcn import nn
from minifcn.optim import SGD


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1, dtype=numpy.float64)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(F.relu(self.conv(x)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1_1 = nn.Conv2d(3, 2, 3, padding=1, dtype=numpy.float64)
        self.block = Block()
        self.upscore = nn.ConvTranspose2d(3, 3, 4, stride=2, dtype=numpy.float64)
        self.fc = nn.Linear(3 * 10 * 10, 4, dtype=numpy.float64)  # upscore: 4x4 -> 10x10

    def forward(self, x):
        return self.fc(self.upscore(self.block(self.conv1_1(x))))


NAMES = ["conv1_1.weight", "conv1_1.bias", "block.conv.weight", "block.conv.bias",
         "upscore.weight", "fc.weight", "fc.bias"]


@pytest.fixture
def x(rng):
    return mf.Tensor(rng.standard_normal((2, 3, 4, 4)))


def test_parameters_are_named_by_attribute_in_order():
    net = Net()
    assert [name for name, _ in net.named_parameters()] == NAMES
    assert net.parameters()[0] is net.conv1_1.weight
    assert all(isinstance(p, nn.Parameter) and isinstance(p, mf.Tensor) for p in net.parameters())


def test_parameter_multipliers_and_fixed_parameters():
    fixed = nn.Parameter(numpy.zeros(3), lr_mult=0)
    assert not fixed.requires_grad and fixed.lr_mult == 0 and fixed.decay_mult == 1
    assert nn.Parameter(numpy.zeros(3, numpy.float32)).requires_grad
    with pytest.raises(TypeError, match="floating point"):
        nn.Parameter(numpy.zeros(3, numpy.int64))
    net = Net()
    conv, up = net.conv1_1, net.upscore
    assert (conv.weight.lr_mult, conv.weight.decay_mult) == (1, 1)
    assert (conv.bias.lr_mult, conv.bias.decay_mult) == (2, 0)  # Caffe's bias convention
    assert up.bias is None and up.weight.lr_mult == 0 and not up.weight.requires_grad
    # the solver leaves the fixed upsampling alone
    assert "upscore.weight" not in [name for name, _ in SGD(net, lr=0.1).params]


def test_reassigning_an_attribute_replaces_its_registration():
    net = Net()
    net.fc = None
    assert [name for name, _ in net.named_parameters()] == NAMES[:5]
    net.conv1_1.bias = None
    assert "conv1_1.bias" not in dict(net.named_parameters())


def test_forgetting_super_init_is_explained():
    class Broken(nn.Module):
        def __init__(self):
            self.conv = nn.Conv2d(1, 1, 1)

    with pytest.raises(RuntimeError, match=r"super\(\).__init__\(\)"):
        Broken()


def test_state_dict_round_trip(x):
    source, target = Net().eval(), Net().eval()
    state = source.state_dict()
    assert list(state) == NAMES and all(isinstance(v, numpy.ndarray) for v in state.values())
    state["fc.bias"][:] = 7.0  # a copy: the net does not change
    assert not (source.fc.bias.numpy() == 7.0).any()
    state = source.state_dict()
    weight_before = target.conv1_1.weight.data
    assert target.load_state_dict(state) == ([], [])
    assert target.conv1_1.weight.data is weight_before  # loaded in place
    numpy.testing.assert_array_equal(target(x).numpy(), source(x).numpy())


def test_load_state_dict_casts_to_the_parameter_dtype():
    layer = nn.Linear(3, 2)  # float32
    layer.load_state_dict({"weight": numpy.ones((2, 3)), "bias": numpy.arange(2)})
    assert layer.weight.dtype == numpy.float32 and layer.bias.numpy().tolist() == [0, 1]


def test_load_state_dict_errors_name_the_key():
    net = Net()
    state = net.state_dict()
    with pytest.raises(KeyError, match="missing fc.bias"):
        net.load_state_dict({k: v for k, v in state.items() if k != "fc.bias"})
    with pytest.raises(KeyError, match="unexpected score_fr.weight"):
        net.load_state_dict({**state, "score_fr.weight": numpy.zeros(3)})
    state["block.conv.weight"] = numpy.zeros((3, 2, 5, 5))
    with pytest.raises(ValueError, match=r"block.conv.weight has shape \(3, 2, 5, 5\) in the "
                                         r"state dict but \(3, 2, 3, 3\) in the module"):
        net.load_state_dict(state)
    with pytest.raises(ValueError, match="block.conv.weight"):  # not strict: still an error
        net.load_state_dict(state, strict=False)
    with pytest.raises(TypeError, match="fc.bias must be a numeric array"):
        net.load_state_dict({"fc.bias": numpy.array(["a", "b", "c", "d"])}, strict=False)


def test_a_failed_load_changes_nothing():
    # One mis-shaped or non-numeric entry, listed after every good one: the net must not
    # be left half-loaded (it used to copy every entry before the bad one).
    net = mf.models.build("fcn8s", 6, widths=(3, 4, 4, 6, 6), fc_width=6)
    before = net.state_dict()
    for bad in (numpy.zeros(3), numpy.array(["a"] * 6)):
        state = {name: value + 1.0 for name, value in before.items()}
        state["upscore8.weight"] = bad
        with pytest.raises((ValueError, TypeError), match="upscore8.weight"):
            net.load_state_dict(state)
        with pytest.raises((ValueError, TypeError), match="upscore8.weight"):
            net.load_state_dict(state, strict=False)
        for name, value in net.state_dict().items():
            numpy.testing.assert_array_equal(value, before[name], err_msg=name)


def test_load_state_dict_not_strict_reports_what_it_skipped():
    net = Net()
    state = {"fc.bias": numpy.ones(4), "extra.weight": numpy.ones(2)}
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert missing == NAMES[:-1] and unexpected == ["extra.weight"]
    assert (net.fc.bias.numpy() == 1).all()


def test_train_and_eval_reach_every_submodule(x):
    net = Net()
    assert net.training and net.block.drop.training
    assert net.eval() is net and not net.block.drop.training and not net.block.conv.training
    numpy.testing.assert_array_equal(net(x).numpy(), net(x).numpy())  # no dropout
    net.train()
    assert net.block.drop.training
    mf.seed(0)
    hidden = net.block(net.conv1_1(x)).numpy()
    assert (hidden == 0).mean() > 0.5  # ReLU zeros plus dropped half


def test_to_cpu_returns_the_same_module():
    net = Net()
    assert net.to("cpu") is net
    with pytest.raises(ValueError, match="device must be"):
        net.to("tpu")


# ----------------------------------------------------------------------------- layers
def test_layers_compute_their_functions(rng):
    x = mf.Tensor(rng.standard_normal((2, 4, 6, 5)))
    conv = nn.Conv2d(4, 6, (3, 2), stride=2, padding=1, dilation=1, groups=2, dtype=numpy.float64)
    assert conv.weight.shape == (6, 2, 3, 2) and conv.bias.shape == (6,)
    numpy.testing.assert_array_equal(
        conv(x).numpy(), F.conv2d(x, conv.weight, conv.bias, 2, 1, 1, 2).numpy())
    deconv = nn.ConvTranspose2d(4, 4, 4, stride=2, groups=4, dtype=numpy.float64)
    assert deconv.weight.shape == (4, 1, 4, 4)
    numpy.testing.assert_array_equal(
        deconv(x).numpy(), F.conv_transpose2d(x, deconv.weight, None, 2, 0, 4).numpy())
    linear = nn.Linear(4 * 6 * 5, 3, dtype=numpy.float64)
    assert linear(x).shape == (2, 3)
    assert "Conv2d(4, 6, kernel=(3, 2), stride=2, padding=1, groups=2)" == repr(conv)


def test_layer_options():
    assert nn.Conv2d(3, 4, 1).weight.dtype == numpy.float32  # the default dtype
    assert not nn.Conv2d(3, 4, 1, init="zero").weight.numpy().any()
    assert nn.Conv2d(3, 4, 1, bias=False).bias is None
    assert nn.ConvTranspose2d(2, 2, 4, 2, learn=True).weight.lr_mult == 1
    learned = nn.ConvTranspose2d(2, 2, 4, 2, learn=0.5, bias=True)
    assert (learned.weight.lr_mult, learned.bias.lr_mult, learned.bias.decay_mult) == (0.5, 1, 0)
    assert nn.ConvTranspose2d(2, 3, 4, init="zero").weight.shape == (2, 3, 4, 4)
    with pytest.raises(ValueError, match="groups=2"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="bilinear_kernel"):
        nn.ConvTranspose2d(2, 3, 4)
    with pytest.raises(ValueError, match="square"):
        nn.ConvTranspose2d(2, 2, (4, 2))
    with pytest.raises(TypeError, match="float32 or float64"):
        nn.Linear(2, 2, dtype=numpy.float16)
