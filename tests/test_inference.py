"""The Python API for a trained net: mf.load_checkpoint (the net, its preprocessing and
class names), net.predict on a picture, a NumPy array refused in one line, and the
documented forward and options."""
import pydoc

import numpy
import pytest

import minifcn as mf
from minifcn import train as training
from minifcn.data import SyntheticShapes
from minifcn.inference import CheckpointError
from minifcn.train import TrainConfig

TINY = {"widths": (3, 4, 4, 6, 6), "fc_width": 6, "image_size": 40, "val_images": 2, "progress": False,
            "iterations": 2, "val_interval": 2}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    training.train(TrainConfig(out=str(out), **TINY), log=lambda *a: None)
    return out / "checkpoint.npz"


def test_load_checkpoint_gives_the_net_its_preprocessing_and_class_names(checkpoint):
    net = mf.load_checkpoint(str(checkpoint))
    assert net.preprocess == SyntheticShapes(size=40).preprocess  # RGB, [0, 1], mean 0.5
    assert net.class_names == SyntheticShapes.class_names
    assert tuple(net.config.widths) == (3, 4, 4, 6, 6) and not net.training
    saved = training.load_checkpoint(str(checkpoint))["params"]
    for name, value in net.state_dict().items():
        numpy.testing.assert_array_equal(value, saved[name])


def test_predict_labels_a_picture_as_the_net_scores_it(checkpoint, rng):
    net = mf.load_checkpoint(str(checkpoint))
    picture = rng.integers(0, 256, (21, 27, 3), dtype=numpy.uint8)
    labels = net.predict(picture)
    # the reference: the preprocessing written out by hand, the net's scores, argmax
    data = ((picture.astype(numpy.float64) / 255 - 0.5).transpose(2, 0, 1)[None]
            .astype(numpy.float32))
    with mf.no_grad():
        scores = net(mf.Tensor(data)).data
    assert labels.shape == (21, 27) and labels.dtype == numpy.int64
    numpy.testing.assert_array_equal(labels, scores[0].argmax(axis=0))
    with pytest.raises(TypeError, match=r"FCN8s.predict: expected a uint8 \(H, W, 3\) RGB "
                                        r"picture, got float64 \(21, 27\)"):
        net.predict(numpy.zeros((21, 27)))


def test_predict_without_a_checkpoint_uses_the_weights_convention():
    net = mf.models.FCN32s(3, widths=(2, 2, 2, 2, 2), fc_width=2)
    net.score_fr.bias.data[...] = [0.0, 1.0, 0.0]  # every pixel scores class 1 highest
    net.train()
    assert (net.predict(numpy.zeros((5, 6, 3), numpy.uint8)) == 1).all()
    assert net.training  # its mode is left as it was


def test_older_checkpoints_fall_back_to_the_datasets_convention(checkpoint, tmp_path):
    with numpy.load(checkpoint) as archive:
        entries = {k: archive[k] for k in archive.files
                   if k not in ("meta.channel_order", "meta.mean", "meta.std",
                                "meta.pixel_scale", "meta.class_names")}
    old = tmp_path / "old.npz"
    numpy.savez(old, **entries)
    net = mf.load_checkpoint(str(old))
    assert net.preprocess == SyntheticShapes(size=40).preprocess
    assert net.class_names == SyntheticShapes.class_names


def test_a_file_that_is_not_a_checkpoint_is_named_with_what_it_is(tmp_path):
    with pytest.raises(CheckpointError, match="nothing.npz: no such file .*--out folder"):
        mf.load_checkpoint(str(tmp_path / "nothing.npz"))
    converted = tmp_path / "vgg16.npz"
    numpy.savez(converted, **{"meta.source": numpy.array("caffemodel")})
    with pytest.raises(CheckpointError, match=r"vgg16.npz: converted VGG16 weights .*, not a "
                                              r"minifcn checkpoint; ImageNet weights to start "
                                              r"training from.*minifcn train --weights"):
        mf.load_checkpoint(str(converted))
    picture = tmp_path / "cat.npz"
    picture.write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    with pytest.raises(CheckpointError, match="cat.npz: an image, not a minifcn checkpoint") as error:
        mf.load_checkpoint(str(picture))
    assert "pickle" not in str(error.value)


def test_a_numpy_array_is_refused_in_one_line_saying_to_wrap_it():
    net = mf.models.FCN8s(4, widths=(2, 2, 2, 2, 2), fc_width=2)
    with pytest.raises(TypeError) as error:
        net(numpy.zeros((1, 3, 50, 50), numpy.float32))
    message = str(error.value)
    assert message == ("FCN8s: got a numpy.ndarray of shape (1, 3, 50, 50); wrap it in a "
                       "Tensor: net(mf.Tensor(array)) (or, for a uint8 (H, W, 3) picture, use "
                       "net.predict(picture))")
    assert net(mf.Tensor(numpy.zeros((1, 3, 50, 50), numpy.float32))).shape == (1, 4, 50, 50)


@pytest.mark.parametrize("model", sorted(mf.models.MODELS))
def test_help_documents_forward_and_every_option(model):
    text = pydoc.render_doc(mf.models.MODELS[model], renderer=pydoc.plaintext)
    assert "(N, 3, H, W)" in text and "mf.Tensor" in text and "predict" in text
    for option in ("n_class", "widths", "fc_width", "init", "learn_upsampling", "dtype"):
        assert option in text, option
