"""The reference FCNs: parameter names and shapes as in the Caffe nets, output size equal
to the input size, at-once scaling, building by name, init_from, load_vgg16, and a
gradient check of a whole tiny FCN-8s."""
import numpy
import pytest

import minifcn as mf
from minifcn import models
from .gradients import check_net_gradient, lively_weights

TINY = dict(widths=(2, 2, 2, 2, 2), fc_width=3)
VGG_CONVS = {"conv1_1": (64, 3), "conv1_2": (64, 64), "conv2_1": (128, 64), "conv2_2": (128, 128),
             "conv3_1": (256, 128), "conv3_2": (256, 256), "conv3_3": (256, 256),
             "conv4_1": (512, 256), "conv4_2": (512, 512), "conv4_3": (512, 512),
             "conv5_1": (512, 512), "conv5_2": (512, 512), "conv5_3": (512, 512)}


def vgg_fcn_shapes(head):
    """{name: shape} of a reference VGG16 FCN: the trunk, fc6/fc7, score_fr, then `head`."""
    shapes = {}
    for layer, (c_out, c_in) in VGG_CONVS.items():
        shapes[f"{layer}.weight"], shapes[f"{layer}.bias"] = (c_out, c_in, 3, 3), (c_out,)
    shapes.update({"fc6.weight": (4096, 512, 7, 7), "fc6.bias": (4096,),
                   "fc7.weight": (4096, 4096, 1, 1), "fc7.bias": (4096,),
                   "score_fr.weight": (21, 4096, 1, 1), "score_fr.bias": (21,)})
    shapes.update(head)
    return shapes


SCORE_POOL4 = {"score_pool4.weight": (21, 512, 1, 1), "score_pool4.bias": (21,)}
SCORE_POOL3 = {"score_pool3.weight": (21, 256, 1, 1), "score_pool3.bias": (21,)}
FCN8S_HEAD = {"upscore2.weight": (21, 21, 4, 4), **SCORE_POOL4,
              "upscore_pool4.weight": (21, 21, 4, 4), **SCORE_POOL3,
              "upscore8.weight": (21, 21, 16, 16)}
REFERENCE_SHAPES = {
    "fcn32s": vgg_fcn_shapes({"upscore.weight": (21, 21, 64, 64)}),
    "fcn16s": vgg_fcn_shapes({"upscore2.weight": (21, 21, 4, 4), **SCORE_POOL4,
                              "upscore16.weight": (21, 21, 32, 32)}),
    "fcn8s": vgg_fcn_shapes(FCN8S_HEAD),
    "fcn8s-atonce": vgg_fcn_shapes(FCN8S_HEAD),
    "fcn-alexnet": {
        "conv1.weight": (96, 3, 11, 11), "conv1.bias": (96,),
        "conv2.weight": (256, 48, 5, 5), "conv2.bias": (256,),      # group 2
        "conv3.weight": (384, 256, 3, 3), "conv3.bias": (384,),
        "conv4.weight": (384, 192, 3, 3), "conv4.bias": (384,),     # group 2
        "conv5.weight": (256, 192, 3, 3), "conv5.bias": (256,),     # group 2
        "fc6.weight": (4096, 256, 6, 6), "fc6.bias": (4096,),
        "fc7.weight": (4096, 4096, 1, 1), "fc7.bias": (4096,),
        "score_fr.weight": (21, 4096, 1, 1), "score_fr.bias": (21,),
        "upscore.weight": (21, 21, 63, 63)},
}


@pytest.mark.parametrize("name", sorted(REFERENCE_SHAPES))
def test_reference_nets_have_the_caffe_parameters(name):
    # init="zero": numpy.zeros is not backed by memory until written, so the ~540 MB of a
    # reference FCN costs nothing here; nothing runs forward on it
    net = models.build(name, 21, init="zero")
    assert {n: p.shape for n, p in net.named_parameters()} == REFERENCE_SHAPES[name]
    assert [n for n, _ in net.named_parameters()] == list(REFERENCE_SHAPES[name])  # prototxt order
    for param_name, param in net.named_parameters():
        layer = param_name.split(".")[0]
        if layer.startswith("upscore"):  # fixed bilinear deconvolutions
            assert param.lr_mult == 0 and not param.requires_grad
        elif name == "fcn-alexnet" and layer != "score_fr":  # Caffe's defaults
            assert (param.lr_mult, param.decay_mult) == (1, 1)
        else:
            expected = (1, 1) if param_name.endswith("weight") else (2, 0)
            assert (param.lr_mult, param.decay_mult) == expected
    assert net.score_fr.weight.numpy().max() == 0  # score layers start at zero


def test_reference_geometry():
    net = models.FCN8s(init="zero")
    assert net.conv1_1.padding == 100 and net.conv1_2.padding == 1
    assert (net.upscore2.stride, net.upscore_pool4.stride, net.upscore8.stride) == (2, 2, 8)
    alexnet = models.FCNAlexNet(init="zero")
    assert (alexnet.conv1.stride, alexnet.conv1.padding, alexnet.upscore.stride) == (4, 100, 32)
    assert (alexnet.conv2.groups, alexnet.conv3.groups, alexnet.conv4.groups) == (2, 1, 2)


SIZES = [(1, 1), (1, 9), (3, 2), (7, 5), (15, 31), (32, 32), (33, 17), (63, 65), (97, 1)]


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_output_size_equals_input_size(name, rng):
    two_heads = name == "fcn16s-siftflow"  # a (semantic, geometric) pair of score maps
    net = models.build(name, (3, 3) if two_heads else 3, **TINY)
    channels = getattr(net, "in_channels", 3)  # the NYUD nets take 4 or 6
    for batch, (height, width) in zip([2] + [1] * len(SIZES), SIZES):
        x = mf.Tensor(rng.standard_normal((batch, channels, height, width)).astype(numpy.float32))
        for score in (net(x) if two_heads else (net(x),)):
            assert score.shape == (batch, 3, height, width) and score.dtype == numpy.float32


def test_learn_upsampling_learns_the_intermediate_upsamplings_only():
    net = models.FCN8s(learn_upsampling=True, **TINY)
    assert net.upscore2.weight.lr_mult == 1 and net.upscore_pool4.weight.requires_grad
    assert net.upscore8.weight.lr_mult == 0
    assert models.FCN16s(learn_upsampling=True, **TINY).upscore16.weight.lr_mult == 0


def test_at_once_scales_the_skips(rng):
    """FCN-8s at-once equals FCN-8s whose skip score weights are 0.01 and 0.0001 times its."""
    eight, at_once = (models.FCN8s(2, dtype=numpy.float64, **TINY).eval(),
                      models.FCN8sAtOnce(2, dtype=numpy.float64, **TINY).eval())
    state = {name: rng.standard_normal(value.shape) for name, value in at_once.state_dict().items()}
    at_once.load_state_dict(state)
    state["score_pool4.weight"] = state["score_pool4.weight"] * 0.01
    state["score_pool3.weight"] = state["score_pool3.weight"] * 0.0001
    eight.load_state_dict(state)
    x = mf.Tensor(rng.standard_normal((1, 3, 20, 23)))
    numpy.testing.assert_allclose(at_once(x).numpy(), eight(x).numpy(), rtol=1e-10, atol=1e-12)


def test_build_by_name():
    assert type(models.build("fcn8s-atonce", 5, **TINY)) is models.FCN8sAtOnce
    net = models.build("fcn-alexnet", 4, widths=(4, 4, 4, 4, 4), fc_width=6, dtype=numpy.float64)
    assert net.score_fr.weight.shape == (4, 6, 1, 1) and net.fc6.weight.dtype == numpy.float64
    with pytest.raises(ValueError, match="unknown model 'fcn4s'.*fcn32s"):
        models.build("fcn4s", 21)
    with pytest.raises(ValueError, match="n_class must be 1 positive int"):
        models.build("fcn32s", 0, **TINY)


def test_init_from_copies_the_shared_parameters():
    mf.seed(1)
    fcn32 = models.FCN32s(4, init="gaussian", **TINY)
    fcn32.score_fr.weight.data[...] = 1.0
    fcn16 = models.FCN16s(4, **TINY)
    copied = models.init_from(fcn16, fcn32)
    trunk_and_score_fr = [name for name, _ in fcn32.named_parameters() if "upscore" not in name]
    assert copied == sorted(trunk_and_score_fr)
    for name in copied:
        numpy.testing.assert_array_equal(dict(fcn16.named_parameters())[name].numpy(),
                                         dict(fcn32.named_parameters())[name].numpy())
    assert not fcn16.score_pool4.weight.numpy().any()  # the new skip starts at zero
    fcn8 = models.FCN8s(4, **TINY)
    assert "score_pool4.weight" in models.init_from(fcn8, fcn16.state_dict())
    with pytest.raises(ValueError, match=r"score_fr.weight has shape \(4, 3, 1, 1\).*"
                                         r"\(21, 3, 1, 1\)"):
        models.init_from(models.FCN16s(21, **TINY), fcn32)


# ------------------------------------------------------------------------- load_vgg16
def write_converted_vgg16(path, widths, fc_width, rng):
    """A small stand-in for `minifcn convert`'s output: a VGG16 classifier's parameters
    (fc6 (fc_width, 7*7*widths[-1])) plus the meta entries of Caffe weights."""
    classifier = models.VGG16(n_class=10, widths=widths, fc_width=fc_width, init="zero")
    arrays = {name: rng.standard_normal(value.shape).astype(numpy.float32)
              for name, value in classifier.state_dict().items()}
    meta = {"meta.source": numpy.array("caffemodel"), "meta.channel_order": numpy.array("BGR"),
            "meta.pixel_scale": numpy.array(255.0),
            "meta.mean": numpy.array([104.00698793, 116.66876762, 122.67891434]),
            "meta.std": numpy.ones(3)}
    numpy.savez(path, **arrays, **meta)
    return arrays


def test_load_vgg16_transplants_conv1_1_to_fc7(tmp_path, rng):
    path = tmp_path / "vgg16.npz"
    arrays = write_converted_vgg16(path, TINY["widths"], TINY["fc_width"], rng)
    net = models.FCN8s(21, **TINY)
    assert net.load_vgg16(str(path)) is net
    params = {name: p.numpy() for name, p in net.named_parameters()}
    numpy.testing.assert_array_equal(params["conv1_1.weight"], arrays["conv1_1.weight"])
    numpy.testing.assert_array_equal(params["conv5_3.bias"], arrays["conv5_3.bias"])
    assert params["fc6.weight"].shape == (3, 2, 7, 7) and params["fc7.weight"].shape == (3, 3, 1, 1)
    numpy.testing.assert_array_equal(params["fc6.weight"].reshape(3, -1), arrays["fc6.weight"])
    numpy.testing.assert_array_equal(params["fc7.weight"][:, :, 0, 0], arrays["fc7.weight"])
    assert not params["score_fr.weight"].any()  # fc8 is dropped; the scores start at zero
    assert net.input_meta["meta.channel_order"] == "BGR"
    assert float(net.input_meta["meta.pixel_scale"]) == 255.0
    numpy.testing.assert_allclose(net.input_meta["meta.mean"], [104.00698793, 116.66876762,
                                                                122.67891434])
    assert set(net.input_meta) == {"meta.source", "meta.channel_order", "meta.pixel_scale",
                                   "meta.mean", "meta.std"}


def test_load_vgg16_into_other_widths_is_explained(tmp_path, rng):
    path = tmp_path / "vgg16.npz"
    write_converted_vgg16(path, TINY["widths"], TINY["fc_width"], rng)
    net = models.FCN32s(21, widths=(2, 2, 2, 2, 4), fc_width=3)
    with pytest.raises(ValueError, match=r"conv5_1.weight has shape \(2, 2, 3, 3\).*\(4, 2, 3, 3\)"
                                         r".*reference: widths=\(64, 128, 256, 512, 512\)"):
        net.load_vgg16(str(path))


# ---------------------------------------------------------------------- gradient check
def test_gradient_of_a_whole_tiny_fcn8s(rng):
    """Backward through the whole FCN-8s (trunk, crops, fusions, learned and fixed
    upsamplings) against central differences: for the input and for every layer with
    learned parameters, the derivative along a random direction d (all of their elements
    moved at once) must equal <gradient, d>. Two forward passes per layer, not two per
    element; the ops' own tests check gradients element by element."""
    mf.seed(2)
    net = models.FCN8s(2, widths=(2, 2, 2, 2, 2), fc_width=3, learn_upsampling=True,
                       dtype=numpy.float64).eval()
    lively_weights(net, rng)  # score layers start at zero, which would hide the trunk
    assert check_net_gradient(net, rng.standard_normal((1, 3, 5, 7)), rng) == 20  # 18 convs, 2 upsamplings
    assert net.upscore8.weight.grad is None  # fixed: no gradient is kept
