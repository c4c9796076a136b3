"""file_kind tells the files a user may hand minifcn apart by their first bytes, and the
weights messages name the kind found and the fix, never advising to unpickle."""
import io
import pickle

import numpy
import pytest
from PIL import Image

from minifcn.weights import WeightsFileError, convert, load_converted
from minifcn.weights.sniff import file_kind

from . import writers


def npz_bytes(**arrays):
    buffer = io.BytesIO()
    numpy.savez(buffer, **arrays)
    return buffer.getvalue()


def image_bytes(format):
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (9, 8, 7)).save(buffer, format=format)
    return buffer.getvalue()


def zip_bytes():
    import zipfile
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "hello")
    return buffer.getvalue()


def npy_bytes():
    buffer = io.BytesIO()
    numpy.save(buffer, numpy.arange(3))
    return buffer.getvalue()


def files(rng):
    state = writers.vgg_state_dict(writers.small_vgg16(rng))
    return {
        "checkpoint": npz_bytes(**{"meta.config": numpy.array("{}"), "param.w": numpy.zeros(2)}),
        "converted": npz_bytes(**{"meta.source": numpy.array("caffemodel"), "fc8.bias": numpy.zeros(2)}),
        "npz": npz_bytes(a=numpy.zeros(2)),
        "pytorch": writers.zip_pth(state),
        "pytorch (legacy)": writers.legacy_pth(state),
        "zip": zip_bytes(),
        "pickle": pickle.dumps({"a": 1}, protocol=4),
        "caffemodel": writers.vgg_caffemodel(writers.small_vgg16(rng)),
        "image (png)": image_bytes("PNG"),
        "image (jpeg)": image_bytes("JPEG"),
        "hdf5": b"\x89HDF\r\n\x1a\n" + bytes(100),
        "npy": npy_bytes(),
        "empty": b"",
        "text": b"<html><body>404 Not Found</body></html>\n",
        "unknown": b"\x07\xff\xfe" + bytes(range(200)),
    }


def test_every_kind_is_told_apart(tmp_path, rng):
    for name, content in files(rng).items():
        path = tmp_path / "file"
        path.write_bytes(content)
        assert file_kind(path) == name.split(" ")[0], name


@pytest.mark.parametrize("name, says", [
    ("converted", "converted VGG16 weights .* already converted: give it to `minifcn train --weights`"),
    ("checkpoint", "a minifcn checkpoint .* trained already"),
    ("image (jpeg)", "an image, not a Caffe model"),
    ("pickle", "a Python pickle, not a Caffe model \\(.caffemodel\\) or a PyTorch file \\(.pth\\)"),
    ("zip", "a zip archive that is neither"),
    ("unknown", "not a format minifcn knows, not a Caffe model"),
    ("empty", "an empty file, not a Caffe model")])
def test_convert_says_what_a_file_is_before_parsing_it(tmp_path, rng, name, says):
    source = tmp_path / "vgg16.pth"
    source.write_bytes(files(rng)[name])
    with pytest.raises(WeightsFileError, match=f"vgg16.pth: {says}") as error:
        convert(source, tmp_path / "out.npz")
    assert "wire type" not in str(error.value) and "pickle.load" not in str(error.value)
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("name, says", [
    ("pytorch", ("a PyTorch file \\(torch.save\\), not converted VGG16 weights. Convert it first: "
                "minifcn convert .*w.npz vgg16.npz")),
    ("checkpoint", ("a minifcn checkpoint .*, not converted VGG16 weights. To start from a "
                   "trained net use `minifcn train --init-from`")),
    ("npz", ("a NumPy .npz archive not written by minifcn, not converted VGG16 weights. "
            "`minifcn convert SRC vgg16.npz` makes them")),
    ("pickle", "a Python pickle, not converted")])
def test_weights_that_are_not_converted_say_what_they_are_and_the_fix(tmp_path, rng, name, says):
    path = tmp_path / "w.npz"
    path.write_bytes(files(rng)[name])
    with pytest.raises(WeightsFileError, match=f"w.npz: {says}") as error:
        load_converted(path)
    assert "allow_pickle" not in str(error.value) and "unsafe" not in str(error.value)
