"""The NYUDv2 nets: input channels and names, output size, gradients of narrow ones,
VGG16 initialisation (extra conv1_1 channels = the mean RGB filter), and training from
the command line on small NYUDv2 files in the reference layout."""
import numpy
import pytest

import minifcn as mf
from minifcn import cli, models
from minifcn.train import load_checkpoint
from minifcn.weights.convert import CAFFE_META, META_PREFIX
from tests.data.test_nyud import write_depth
from tests.data.writers import random_rgb, write_mat, write_picture, write_split

from .gradients import check_net_gradient, lively_weights

NETS = {"fcn32s-rgbd": 4, "fcn32s-early-hha": 6, "fcn32s-late-hha": 6}
NARROW = dict(widths=(2, 2, 2, 2, 2), fc_width=3)


@pytest.mark.parametrize("name, channels", NETS.items())
def test_input_channels_and_names(name, channels):
    net = models.build(name, 40, init="zero")
    names = [n for n, _ in net.named_parameters()]
    assert names[0] == "conv1_1.weight"
    early = name != "fcn32s-late-hha"
    assert net.conv1_1.weight.shape == ((64, channels, 3, 3) if early else (64, 3, 3, 3))
    assert net.score_fr.weight.shape == (40, 4096, 1, 1)
    if not early:
        assert net.hha.conv1_1.weight.shape == (64, 3, 3, 3)
        assert "hha.score_fr.weight" in names and "hha.upscore.weight" not in names


@pytest.mark.parametrize("name, channels", NETS.items())
@pytest.mark.parametrize("size", [(1, 1), (5, 9), (31, 17)])
def test_output_size_equals_input_size(name, channels, size):
    net = models.build(name, 3, **NARROW)
    x = numpy.random.default_rng(0).standard_normal((1, channels) + size).astype(numpy.float32)
    assert net(mf.Tensor(x)).shape == (1, 3) + size


@pytest.mark.parametrize("name", NETS)
def test_rgb_input_is_a_clear_error(name):
    with pytest.raises(ValueError, match=r"expects \(N, [46], H, W\) input .* --data nyud:DIR"):
        models.build(name, 3, **NARROW)(mf.Tensor(numpy.zeros((1, 3, 8, 8), numpy.float32)))


@pytest.mark.parametrize("name, channels", NETS.items())
def test_gradients_of_narrow_nets(rng, name, channels):
    mf.seed(4)
    net = models.build(name, 2, dtype=numpy.float64, **NARROW).eval()
    lively_weights(net, rng)
    layers = check_net_gradient(net, rng.standard_normal((1, channels, 5, 6)), rng)
    assert layers == (32 if name == "fcn32s-late-hha" else 16)  # 15 convs + score_fr a stream


def small_vgg16_npz(path, rng):
    vgg = models.VGG16(n_class=7, widths=(2, 3, 4, 3, 2), fc_width=5)
    state = {name: rng.standard_normal(value.shape).astype(numpy.float32)
             for name, value in vgg.state_dict().items()}
    meta = {META_PREFIX + key: numpy.asarray(value) for key, value in CAFFE_META.items()}
    numpy.savez(path, **state, **meta)
    return state


@pytest.mark.parametrize("name, channels", NETS.items())
def test_load_vgg16(tmp_path, rng, name, channels):
    state = small_vgg16_npz(tmp_path / "vgg.npz", rng)
    net = models.build(name, 5, widths=(2, 3, 4, 3, 2), fc_width=5).load_vgg16(
        str(tmp_path / "vgg.npz"))
    rgb = state["conv1_1.weight"]
    streams = [net, net.hha] if name == "fcn32s-late-hha" else [net]
    for stream in streams:
        numpy.testing.assert_array_equal(stream.conv3_2.weight.numpy(), state["conv3_2.weight"])
        numpy.testing.assert_array_equal(stream.fc6.weight.numpy().reshape(5, -1),
                                         state["fc6.weight"])
        numpy.testing.assert_array_equal(stream.conv1_1.bias.numpy(), state["conv1_1.bias"])
    conv1_1 = net.conv1_1.weight.numpy()
    numpy.testing.assert_array_equal(conv1_1[:, :3], rgb)
    for extra in range(3, conv1_1.shape[1]):  # the reference's surgery, one channel at a time
        for out in range(conv1_1.shape[0]):
            expected = (rgb[out, 0] + rgb[out, 1] + rgb[out, 2]) / 3
            numpy.testing.assert_allclose(conv1_1[out, extra], expected, rtol=1e-6)
    assert net.input_meta["meta.channel_order"] == "BGR"


def make_nyud(root, rng, names=("5001", "5002"), size=(12, 14)):
    for name in names:
        write_picture(f"{root}/data/images/img_{name}.png", random_rgb(rng, *size))
        write_picture(f"{root}/data/hha/img_{name}.png", random_rgb(rng, *size))
        write_depth(f"{root}/data/depth/img_{name}.png", rng.integers(500, 9000, size))
        write_mat(f"{root}/segmentation/img_{name}.mat",
                  segmentation=rng.integers(0, 41, size).astype(numpy.uint8))
    write_split(f"{root}/trainval.txt", list(names))
    write_split(f"{root}/test.txt", list(names[:1]))
    return str(root)


@pytest.mark.parametrize("name, channels", NETS.items())
def test_trains_and_evaluates_on_nyud_files(tmp_path, rng, capsys, name, channels):
    data = make_nyud(tmp_path / "nyud", rng)
    out = tmp_path / "run"
    argv = ["train", "--model", name, "--data", f"nyud:{data}", "--widths", "2,2,2,2,2",
            "--fc-width", "3", "--iterations", "2", "--val-interval", "2", "--val-images", "1",
            "--lr", "1e-3", "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    params = load_checkpoint(str(out / "checkpoint.npz"))["params"]
    first = "conv1_1.weight"
    assert params[first].shape[1] == (3 if name == "fcn32s-late-hha" else channels)
    assert cli.main(["eval", "--weights", str(out / "checkpoint.npz")]) == 0
    assert "mean_iu" in capsys.readouterr().out


def test_a_nyud_net_on_other_data_is_refused(tmp_path, capsys):
    code = cli.main(["train", "--model", "fcn32s-rgbd", "--out", str(tmp_path)])
    assert code == 1
    assert "--model fcn32s-rgbd trains on --data nyud:DIR, not 'synthetic'" in capsys.readouterr().err


def test_channel_slice_values_gradient_and_errors(rng):
    from minifcn.gradcheck import check_backward
    from minifcn.models.nyud import channels
    x = rng.standard_normal((2, 6, 3, 4))
    numpy.testing.assert_array_equal(channels(mf.Tensor(x), 3, 6).numpy(), x[:, 3:6])
    check_backward(lambda t: channels(t, 1, 4), [x])
    with pytest.raises(ValueError, match=r"channels: cannot take channels 3:7 of shape \(2, 6, 3, 4\)"):
        channels(mf.Tensor(x), 3, 7)
