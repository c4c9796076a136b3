"""read_caffemodel against .caffemodel files written by the independent encoder in writers.py."""
import time

import numpy
import pytest

from minifcn.weights import WeightsFileError, read_caffemodel

from . import writers


def write(tmp_path, data, name="net.caffemodel"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def assert_exact(read, layers):
    assert list(read) == list(layers)
    for name, blobs in layers.items():
        assert len(read[name]) == len(blobs)
        for got, want in zip(read[name], blobs):
            assert got.dtype == numpy.float32
            assert got.shape == want.shape, name
            numpy.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("generation", ["v2", "v1", "v0"])
@pytest.mark.parametrize("dims", ["shape", "shape_unpacked", "legacy"])
@pytest.mark.parametrize("data", ["packed", "unpacked", "split", "double"])
def test_every_layout_round_trips_exactly(tmp_path, rng, generation, dims, data):
    layers = writers.small_vgg16(rng)
    path = write(tmp_path, writers.vgg_caffemodel(layers, generation, dims, data))
    assert_exact(read_caffemodel(path), layers)


def test_legacy_dims_are_squeezed_to_the_real_shapes(tmp_path, rng):
    """Old files store a bias as 1x1x1xN and an InnerProduct weight as 1x1xMxN."""
    layers = writers.small_vgg16(rng)
    read = read_caffemodel(write(tmp_path, writers.vgg_caffemodel(layers, "v1", "legacy")))
    assert read["fc6"][0].shape == (5, 2 * 49) and read["fc6"][1].shape == (5,)
    assert read["conv1_1"][0].shape == (2, 3, 3, 3) and read["conv1_1"][1].shape == (2,)


def test_legacy_conv_weight_with_unit_dims_keeps_four_dims(tmp_path):
    """A 1-output 1-input convolution stays (1, 1, kh, kw): only biases and fc weights lose dims."""
    weight, bias = numpy.full((1, 1, 2, 2), 0.25, numpy.float32), numpy.ones(1, numpy.float32)
    blobs = [writers.blob(weight, "legacy"), writers.blob(bias, "legacy")]
    read = read_caffemodel(write(tmp_path, writers.net([writers.v1_layer("c", 4, blobs)], v1=True)))
    assert read["c"][0].shape == (1, 1, 2, 2) and read["c"][1].shape == (1,)


def test_layers_without_weights_are_left_out_and_other_layers_kept(tmp_path):
    score = numpy.arange(6, dtype=numpy.float32).reshape(2, 3)
    data = writers.net([writers.v2_layer("score", "Scale", [writers.blob(score)])])
    assert list(read_caffemodel(write(tmp_path, data))) == ["score"]  # relu1_1 has no blobs


def test_a_long_unpacked_run_is_read_quickly(tmp_path):
    """One field per float: the run is decoded with numpy, not one Python step per float."""
    values = numpy.arange(300_000, dtype=numpy.float32)
    data = writers.net([writers.v2_layer("big", "InnerProduct",
                                         [writers.blob(values, data="unpacked")])])
    start = time.perf_counter()
    read = read_caffemodel(write(tmp_path, data))
    assert time.perf_counter() - start < 2.0
    numpy.testing.assert_array_equal(read["big"][0], values)


# --- files it must refuse, each with a WeightsFileError naming the file -----------------

def refuses(path, *words):
    with pytest.raises(WeightsFileError) as caught:
        read_caffemodel(path)
    message = str(caught.value)
    assert str(path) in message and all(word in message for word in words), message
    assert "\n" not in message


def test_empty_file(tmp_path):
    refuses(write(tmp_path, b""), "empty")


def test_missing_file(tmp_path):
    refuses(tmp_path / "nowhere.caffemodel", "cannot read")


def test_truncated_in_the_middle_of_a_packed_float_field(tmp_path, rng):
    layers = writers.small_vgg16(rng)
    data = writers.vgg_caffemodel(layers)
    fc6 = layers["fc6"][0].astype("<f4").tobytes()
    cut = data.index(fc6) + len(fc6) // 2 + 1  # also mid-float
    refuses(write(tmp_path, data[:cut]), "truncated")


def test_png_bytes(tmp_path):
    from PIL import Image
    path = tmp_path / "image.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(path)
    refuses(path, "not a valid Caffe model")


def test_random_bytes(tmp_path):
    data = numpy.random.default_rng(7).integers(0, 256, 4096, numpy.uint8).tobytes()
    refuses(write(tmp_path, data))


def test_a_blob_whose_shape_and_data_disagree(tmp_path):
    blob = writers.bytes_field(7, writers.bytes_field(1, writers.varint(2) + writers.varint(3)))
    blob += writers.real_fields(5, [1.0] * 5, packed=True)
    refuses(write(tmp_path, writers.net([writers.v2_layer("c", "Convolution", [blob])])),
            "shape (2, 3)", "5 numbers")


def test_a_message_field_with_the_wrong_wire_type(tmp_path):
    refuses(write(tmp_path, writers.int_field(100, 3)), "wire type 0")


def test_a_net_with_no_weights(tmp_path):
    refuses(write(tmp_path, writers.net([])), "no layer with weights")


def test_two_layers_of_one_name_with_weights(tmp_path):
    blob = writers.blob(numpy.ones(2, numpy.float32))
    layer = writers.v2_layer("fc6", "InnerProduct", [blob])
    refuses(write(tmp_path, writers.net([layer, layer])), "two layers named 'fc6'")


@pytest.mark.slow
def test_a_full_size_vgg16_file_reads(tmp_path):
    """The real file is 528 MB of packed floats (writing it takes most of this test's
    ~10 s, hence slow)."""
    from minifcn.weights import expected_shapes
    shapes = expected_shapes()
    layers = {name: tuple(numpy.full(shapes[f"{name}.{part}"], 0.5, numpy.float32)
                          for part in ("weight", "bias")) for name in writers.CONV + writers.FC}
    path = write(tmp_path, writers.vgg_caffemodel(layers, "v1", "legacy"))
    read = read_caffemodel(path)
    assert read["fc6"][0].shape == (4096, 25088) and float(read["fc6"][0][-1, -1]) == 0.5
