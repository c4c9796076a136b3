"""FCN-GoogLeNet: Caffe's layer names and shapes (from the bvlc_googlenet prototxt), the
output size for many odd inputs, where its scores sit (the crop), a float64 gradient
check of a narrow net, and `minifcn convert` of GoogLeNet caffemodels written in the
real format (a narrow one, and a full-size one marked slow)."""
import numpy
import pytest

import minifcn as mf
from minifcn import cli, models, nn
from minifcn.models import googlenet
from minifcn.weights import WeightsFileError, load_converted
from tests.weights import writers

from .gradients import check_net_gradient, lively_weights

# A few shapes read off the prototxt by hand (num_output, the bottom's channels, kernel).
PROTOTXT_SHAPES = {
    "conv1/7x7_s2.weight": (64, 3, 7, 7), "conv2/3x3_reduce.weight": (64, 64, 1, 1),
    "conv2/3x3.weight": (192, 64, 3, 3), "inception_3a/1x1.weight": (64, 192, 1, 1),
    "inception_3a/3x3.weight": (128, 96, 3, 3), "inception_3a/5x5.weight": (32, 16, 5, 5),
    "inception_3b/pool_proj.weight": (64, 256, 1, 1), "inception_4a/3x3_reduce.weight": (96, 480, 1, 1),
    "inception_4d/3x3.weight": (288, 144, 3, 3), "inception_4e/5x5.weight": (128, 32, 5, 5),
    "inception_5a/1x1.weight": (256, 832, 1, 1), "inception_5b/5x5_reduce.weight": (48, 832, 1, 1),
    "inception_5b/pool_proj.bias": (128,),
    "score_fr.weight": (21, 1024, 1, 1), "score_fr.bias": (21,), "upscore.weight": (21, 21, 64, 64)}
BRANCHES = ("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj")
MODULES = ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")


def test_caffe_names_and_shapes():
    net = models.build("fcn-googlenet", 21, init="zero")
    shapes = {name: p.shape for name, p in net.named_parameters()}
    for name, shape in PROTOTXT_SHAPES.items():
        assert shapes[name] == shape, name
    layers = ["conv1/7x7_s2", "conv2/3x3_reduce", "conv2/3x3"] + [
        f"inception_{m}/{b}" for m in MODULES for b in BRANCHES] + ["score_fr", "upscore"]
    assert list(shapes) == [f"{layer}.{part}" for layer in layers
                            for part in ("weight", "bias") if layer != "upscore" or part == "weight"]
    assert net.upscore.weight.lr_mult == 0 and net.score_fr.weight.numpy().max() == 0
    assert getattr(net, "conv1/7x7_s2").padding == googlenet.CONV1_PAD
    assert isinstance(mf.models.FCNGoogLeNet(n_class=21, init="zero"), models.FCNGoogLeNet)


@pytest.mark.parametrize("size", [(1, 1), (1, 9), (3, 5), (7, 31), (33, 17), (45, 63), (65, 3),
                                  (101, 99)])
def test_output_size_equals_input_size(size):
    net = models.FCNGoogLeNet(n_class=3, widths=2).eval()
    x = numpy.random.default_rng(0).standard_normal((2, 3) + size).astype(numpy.float32)
    assert net(mf.Tensor(x)).shape == (2, 3) + size


def test_bad_options():
    with pytest.raises(ValueError, match="upscore_kernel must be 64"):
        models.FCNGoogLeNet(upscore_kernel=32, init="zero")
    with pytest.raises(ValueError, match="widths"):
        models.FCNGoogLeNet(widths=0, init="zero")


# ------------------------------------------------------------------------- alignment
SIZE, MARGIN, C, AMPLITUDE = 224, 64, 1000.0, 1e-6  # the zero padding reaches ~60 px in


def position_finder(upscore_kernel):
    """As tests/models/test_alignment.py: every convolution an identity on channels 0, 1
    through its centre tap (the inception modules' other branches zero), so that score
    channel 0 carries the row its receptive field is centred on, 1 the column."""
    net = models.FCNGoogLeNet(n_class=2, widths=4, init="zero", upscore_kernel=upscore_kernel,
                              dtype=numpy.float64)
    for name, layer in net._modules.items():
        if isinstance(layer, nn.Conv2d) and not any(
                name.endswith(b) for b in ("3x3_reduce", "/3x3", "5x5_reduce", "5x5", "pool_proj")):
            k = layer.kernel_size[0]
            for channel in range(2):
                layer.weight.data[channel, channel, k // 2, k // 2] = 1.0
    getattr(net, "conv2/3x3_reduce").weight.data[[0, 1], [0, 1], 0, 0] = 1.0
    getattr(net, "conv2/3x3").weight.data[[0, 1], [0, 1], 1, 1] = 1.0
    return net.eval()


def position_estimate(net):
    rows, cols = numpy.mgrid[0:SIZE, 0:SIZE].astype(numpy.float64)
    ramp = numpy.stack([rows, cols, 0 * rows])[None]
    up = net(mf.Tensor(AMPLITUDE * (C + ramp))).numpy()
    down = net(mf.Tensor(AMPLITUDE * (C - ramp))).numpy()
    inner = slice(MARGIN, SIZE - MARGIN)
    return ((up - down) / (2 * AMPLITUDE))[0, :, inner, inner], ramp[0, :2, inner, inner]


@pytest.mark.parametrize("kernel, shift", [(63, 0.0), (64, -0.5)])
def test_scores_sit_over_their_pixels(kernel, shift):
    """63/32: each pixel gets the scores of the field centred on it; 64/32: of the field
    centred half a pixel above and left of it (the scores land half a pixel below and
    right), as the module docstring derives: no integer crop does better here."""
    estimate, truth = position_estimate(position_finder(kernel))
    numpy.testing.assert_allclose(estimate, truth + shift, rtol=0, atol=1e-6)


def test_a_wrong_offset_shows(monkeypatch):
    monkeypatch.setattr(googlenet, "SCORE_OFFSET", googlenet.SCORE_OFFSET + 1)
    estimate, truth = position_estimate(position_finder(63))
    assert numpy.abs(estimate - truth).min() > 0.9


# -------------------------------------------------------------------- gradient check
def test_gradient_of_a_narrow_fcn_googlenet(rng):
    """For the input and every learned layer (57 convolutions and score_fr)."""
    mf.seed(3)
    net = models.FCNGoogLeNet(n_class=2, widths=1, dtype=numpy.float64).eval()
    lively_weights(net, rng)
    assert check_net_gradient(net, rng.standard_normal((1, 3, 5, 7)), rng) == 58


# ------------------------------------------------------------------------ conversion
def googlenet_caffemodel(rng, conv1_width=64, aux=True, wrong=None):
    """A .caffemodel of GoogLeNet's layout (LayerParameter with name, type, blobs) with
    random weights, the auxiliary classifiers and weightless layers among them."""
    net = models.FCNGoogLeNet(widths=conv1_width, init="zero")
    layers = {}
    for name in net.trunk_names:
        shape = getattr(net, name).weight.shape
        layers[name] = (rng.standard_normal(shape).astype(numpy.float32),
                        rng.standard_normal(shape[0]).astype(numpy.float32))
    channels = net.score_fr.weight.shape[1]
    layers["loss3/classifier"] = (rng.standard_normal((1000, channels)).astype(numpy.float32),
                                  rng.standard_normal(1000).astype(numpy.float32))
    if wrong:
        weight, bias = layers[wrong]
        layers[wrong] = (weight[:-1], bias[:-1])
    messages = [writers.v2_layer(name, "InnerProduct" if "classifier" in name else "Convolution",
                                 [writers.blob(w), writers.blob(b)])
                for name, (w, b) in layers.items()]
    if aux:  # loss1/* is left out by the converter
        messages.insert(20, writers.v2_layer("loss1/conv", "Convolution", [
            writers.blob(numpy.ones((128, 512, 1, 1), numpy.float32)),
            writers.blob(numpy.ones(128, numpy.float32))]))
        messages.insert(3, writers.v2_layer("pool1/norm1", "LRN", []))
    return writers.net(messages), layers


def test_convert_a_narrow_googlenet_and_load_it(tmp_path, rng):
    content, layers = googlenet_caffemodel(rng, conv1_width=8)
    source = tmp_path / "narrow_googlenet.caffemodel"
    source.write_bytes(content)
    from minifcn.weights.convert import convert
    convert(str(source), str(tmp_path / "g.npz"), expect_vgg16_shapes=False)
    weights, meta = load_converted(str(tmp_path / "g.npz"), expect_vgg16_shapes=False)
    assert meta["channel_order"] == "BGR" and meta["mean"] == (104.0, 117.0, 123.0)
    assert set(weights) == {f"{n}.{p}" for n in layers for p in ("weight", "bias")}
    net = models.FCNGoogLeNet(n_class=5, widths=8, init="zero").load_googlenet(str(tmp_path / "g.npz"))
    for name, (weight, bias) in layers.items():
        if name == "loss3/classifier":
            continue
        numpy.testing.assert_array_equal(getattr(net, name).weight.numpy(), weight)
        numpy.testing.assert_array_equal(getattr(net, name).bias.numpy(), bias)
    assert net.input_meta["meta.channel_order"] == "BGR"


def test_a_narrow_googlenet_is_refused_as_googlenet(tmp_path, rng):
    source = tmp_path / "narrow.caffemodel"
    source.write_bytes(googlenet_caffemodel(rng, conv1_width=8)[0])
    assert cli.main(["convert", str(source), str(tmp_path / "g.npz")]) == 1
    assert not (tmp_path / "g.npz").exists()


def test_a_wrong_shape_names_the_layer(tmp_path, rng):
    source = tmp_path / "bad.caffemodel"
    source.write_bytes(googlenet_caffemodel(rng, conv1_width=8, wrong="inception_4c/5x5")[0])
    from minifcn.weights.convert import convert
    with pytest.raises(WeightsFileError, match=r"inception_4c/5x5.weight has shape"):
        convert(str(source), str(tmp_path / "g.npz"), expect_vgg16_shapes=False)


def test_vgg_weights_are_not_googlenet(tmp_path, rng):
    from minifcn.weights.convert import convert
    source = tmp_path / "vgg.caffemodel"
    source.write_bytes(writers.vgg_caffemodel(writers.small_vgg16(rng)))
    convert(str(source), str(tmp_path / "v.npz"), expect_vgg16_shapes=False)
    with pytest.raises(ValueError, match="not a converted GoogLeNet"):
        models.FCNGoogLeNet(widths=2, init="zero").load_googlenet(str(tmp_path / "v.npz"))


@pytest.mark.slow
def test_full_size_bvlc_googlenet_converts_from_the_command_line(tmp_path, rng):
    """A file of bvlc_googlenet.caffemodel's layout and size (about 28 MB of weights)."""
    content, layers = googlenet_caffemodel(rng)
    source = tmp_path / "bvlc_googlenet.caffemodel"
    source.write_bytes(content)
    out = tmp_path / "googlenet.npz"
    assert cli.main(["convert", str(source), str(out)]) == 0
    net = models.FCNGoogLeNet(n_class=21, init="zero").load_googlenet(str(out))
    for name in ("conv1/7x7_s2", "inception_4e/5x5", "inception_5b/pool_proj"):
        numpy.testing.assert_array_equal(getattr(net, name).weight.numpy(), layers[name][0])
    with numpy.load(out, allow_pickle=False) as archive:
        assert archive["loss3/classifier.weight"].shape == (1000, 1024)
        assert "loss1/conv.weight" not in archive.files
