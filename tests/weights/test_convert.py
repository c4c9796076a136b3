"""convert and load_converted: both source formats, the .npz they write, and bad input."""
import os

import numpy
import pytest

from minifcn.weights import (WeightsFileError, convert, expected_shapes, load_converted,
                             read_caffemodel)

from . import writers


@pytest.fixture
def layers(rng):
    return writers.small_vgg16(rng)


def caffemodel_file(tmp_path, layers, **options):
    path = tmp_path / "vgg.caffemodel"
    path.write_bytes(writers.vgg_caffemodel(layers, **options))
    return path


def pth_file(tmp_path, layers, layout="zip"):
    path = tmp_path / "vgg.pth"
    state = writers.vgg_state_dict(layers)
    path.write_bytes(writers.zip_pth(state) if layout == "zip" else writers.legacy_pth(state))
    return path


def assert_weights_equal(weights, layers):
    assert sorted(weights) == sorted(f"{name}.{part}" for name in layers
                                     for part in ("weight", "bias"))
    for name, (weight, bias) in layers.items():
        assert weights[f"{name}.weight"].dtype == numpy.float32
        numpy.testing.assert_array_equal(weights[f"{name}.weight"], weight)
        numpy.testing.assert_array_equal(weights[f"{name}.bias"], bias)


@pytest.mark.parametrize("generation", ["v2", "v1"])
def test_caffemodel_converts_with_bgr_meta(tmp_path, layers, generation):
    src = caffemodel_file(tmp_path, layers, generation=generation, dims="legacy")
    out = tmp_path / "vgg.npz"
    meta = convert(src, out, expect_vgg16_shapes=False)
    weights, loaded_meta = load_converted(out, expect_vgg16_shapes=False)
    assert_weights_equal(weights, layers)
    assert meta == loaded_meta == {"source": "caffemodel", "channel_order": "BGR",
                                   "pixel_scale": 255.0, "std": (1.0, 1.0, 1.0),
                                   "mean": (104.00698793, 116.66876762, 122.67891434)}


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_torchvision_pth_converts_with_rgb_meta(tmp_path, layers, layout):
    out = tmp_path / "vgg.npz"
    convert(pth_file(tmp_path, layers, layout), out, expect_vgg16_shapes=False)
    weights, meta = load_converted(out, expect_vgg16_shapes=False)
    assert_weights_equal(weights, layers)
    assert meta == {"source": "torch_pth", "channel_order": "RGB", "pixel_scale": 1.0,
                    "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


def test_the_npz_loads_without_pickle_and_meta_entries_are_plain(tmp_path, layers):
    out = tmp_path / "vgg.npz"
    convert(caffemodel_file(tmp_path, layers), out, expect_vgg16_shapes=False)
    with numpy.load(out, allow_pickle=False) as npz:
        assert str(npz["meta.channel_order"]) == "BGR" and str(npz["meta.source"]) == "caffemodel"
        assert float(npz["meta.pixel_scale"]) == 255.0
        assert npz["meta.mean"].shape == npz["meta.std"].shape == (3,)
        assert npz["fc6.weight"].shape == (5, 2 * 49)


def test_a_convolutionalized_fc6_is_flattened_back(tmp_path, layers):
    """FCN caffemodels keep fc6 as a (4096, 512, 7, 7) convolution: same numbers, same order."""
    weight, bias = layers["fc6"]
    as_conv = dict(layers, fc6=(weight.reshape(5, 2, 7, 7), bias))
    out = tmp_path / "vgg.npz"
    convert(caffemodel_file(tmp_path, as_conv), out, expect_vgg16_shapes=False)
    numpy.testing.assert_array_equal(load_converted(out, False)[0]["fc6.weight"], weight)


def test_real_vgg16_shapes():
    shapes = expected_shapes()
    assert shapes["conv1_1.weight"] == (64, 3, 3, 3) and shapes["conv5_3.bias"] == (512,)
    assert shapes["fc6.weight"] == (4096, 25088) and shapes["fc7.weight"] == (4096, 4096)
    assert shapes["fc8.weight"] == (1000, 4096) and shapes["fc8.bias"] == (1000,)
    assert sum(numpy.prod(s) for s in shapes.values()) == 138_357_544  # VGG16's count


def test_real_torchvision_layout_when_torch_is_installed(tmp_path, layers):
    torch = pytest.importorskip("torch")
    state = {f"{writers.TORCHVISION[name]}.{part}": torch.from_numpy(array)
             for name, blobs in layers.items() for part, array in zip(("weight", "bias"), blobs)}
    src, out = tmp_path / "vgg16.pth", tmp_path / "vgg.npz"
    torch.save(state, src)
    convert(src, out, expect_vgg16_shapes=False)
    assert_weights_equal(load_converted(out, expect_vgg16_shapes=False)[0], layers)


# --- bad input: a WeightsFileError naming the file, and no output file --------------------

def refuses(src, out, *words, expect_vgg16_shapes=False):
    before = set(os.listdir(out.parent))
    with pytest.raises(WeightsFileError) as caught:
        convert(src, out, expect_vgg16_shapes=expect_vgg16_shapes)
    message = str(caught.value)
    assert all(word in message for word in words), message
    assert set(os.listdir(out.parent)) == before  # neither the output nor a temporary
    return message


def test_small_widths_are_refused_as_vgg16(tmp_path, layers):
    message = refuses(caffemodel_file(tmp_path, layers), tmp_path / "out.npz",
                      "conv1_1.weight has shape (2, 3, 3, 3), expected (64, 3, 3, 3)",
                      expect_vgg16_shapes=True)
    assert "vgg.caffemodel" in message


def test_caffemodel_missing_fc7(tmp_path, layers):
    refuses(caffemodel_file(tmp_path, layers, skip=("fc7",)), tmp_path / "out.npz",
            "vgg.caffemodel", "no layer 'fc7'")


def test_caffemodel_with_a_wrong_shape(tmp_path, layers):
    weight, bias = layers["conv3_2"]
    bad = dict(layers, conv3_2=(weight[:, :3], bias))  # 3 input channels where conv3_1 gives 4
    refuses(caffemodel_file(tmp_path, bad), tmp_path / "out.npz",
            "conv3_2.weight has shape (4, 3, 3, 3), expected (4, 4, 3, 3)")


def test_pth_with_a_wrong_shape(tmp_path, layers):
    weight, bias = layers["fc7"]
    bad = dict(layers, fc7=(weight[:, :-1], bias))
    refuses(pth_file(tmp_path, bad), tmp_path / "out.npz", "vgg.pth", "fc7.weight has shape (4, 4)")


def test_pth_missing_a_layer(tmp_path, layers):
    state = writers.vgg_state_dict(layers)
    del state["classifier.6.bias"]
    src = tmp_path / "vgg.pth"
    src.write_bytes(writers.zip_pth(state))
    refuses(src, tmp_path / "out.npz", "classifier.6.bias (fc8)")


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64),
                                     bytes(range(256)) * 4])
def test_unusable_files(tmp_path, content):
    src = tmp_path / "weights.bin"
    src.write_bytes(content)
    refuses(src, tmp_path / "out.npz", "weights.bin")


def test_truncated_caffemodel(tmp_path, layers):
    src = caffemodel_file(tmp_path, layers)
    src.write_bytes(src.read_bytes()[:-100])
    refuses(src, tmp_path / "out.npz", "truncated")


def test_a_failed_conversion_keeps_an_existing_output(tmp_path, layers):
    out = tmp_path / "out.npz"
    out.write_bytes(b"previous")
    refuses(caffemodel_file(tmp_path, layers, skip=("fc8",)), out, "fc8")
    assert out.read_bytes() == b"previous"


def test_a_failure_while_writing_leaves_no_temporary(tmp_path, layers, monkeypatch):
    def disk_full(file, **arrays):
        file.write(b"half an npz")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(numpy, "savez", disk_full)
    refuses(caffemodel_file(tmp_path, layers), tmp_path / "out.npz", "out.npz",
            "No space left on device")


def test_an_output_directory_that_does_not_exist(tmp_path, layers):
    with pytest.raises(WeightsFileError, match="cannot write"):
        convert(caffemodel_file(tmp_path, layers), tmp_path / "missing" / "out.npz",
                expect_vgg16_shapes=False)


# --- load_converted on files convert did not write ---------------------------------------

def saved(tmp_path, entries):
    path = tmp_path / "bad.npz"
    numpy.savez(path, **entries)
    return path


def converted_entries(tmp_path, layers):
    out = tmp_path / "vgg.npz"
    convert(caffemodel_file(tmp_path, layers), out, expect_vgg16_shapes=False)
    with numpy.load(out) as npz:
        return dict(npz)


def test_load_converted_names_a_missing_key(tmp_path, layers):
    entries = converted_entries(tmp_path, layers)
    del entries["fc7.bias"]
    with pytest.raises(WeightsFileError, match=r"bad\.npz: missing fc7\.bias"):
        load_converted(saved(tmp_path, entries), expect_vgg16_shapes=False)


def test_load_converted_names_a_wrong_shape(tmp_path, layers):
    entries = converted_entries(tmp_path, layers)
    entries["fc8.bias"] = numpy.zeros(7, numpy.float32)
    with pytest.raises(WeightsFileError, match=r"fc8\.bias has shape \(7,\), expected \(3,\)"):
        load_converted(saved(tmp_path, entries), expect_vgg16_shapes=False)


def test_load_converted_needs_the_meta(tmp_path, layers):
    entries = converted_entries(tmp_path, layers)
    del entries["meta.channel_order"]
    with pytest.raises(WeightsFileError, match="missing meta.channel_order"):
        load_converted(saved(tmp_path, entries), expect_vgg16_shapes=False)


def test_load_converted_on_a_caffemodel(tmp_path, layers):
    src = caffemodel_file(tmp_path, layers)
    assert read_caffemodel(src)  # a fine caffemodel, but not a converted file
    with pytest.raises(WeightsFileError, match=r"vgg.caffemodel: a Caffe model \(protobuf\), not "
                                               r"converted VGG16 weights. Convert it first: "
                                               r"minifcn convert .*vgg.caffemodel vgg16.npz"):
        load_converted(src)
