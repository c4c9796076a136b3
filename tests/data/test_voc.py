"""PASCAL VOC on a tiny VOCdevkit written in the real formats."""
import os

import numpy
import pytest

from minifcn.data import VOC, DataError, load_image
from minifcn.data.voc import CLASS_NAMES, VOC_PALETTE

from .writers import make_voc, write_palette_png, write_picture, write_split

NAMES = ["2008_000001", "2008_000002", "2008_000003"]


@pytest.fixture
def devkit(tmp_path, rng):
    written = make_voc(str(tmp_path / "VOCdevkit" / "VOC2011"), NAMES, rng)
    return str(tmp_path / "VOCdevkit"), written


def test_items(devkit):
    directory, written = devkit
    voc = VOC(directory)
    assert len(voc) == 3 and voc.names == NAMES
    assert voc.n_class == 21 and voc.class_names == CLASS_NAMES and CLASS_NAMES[15] == "person"
    image, label = voc[1]
    assert image.shape == (3, 6, 8) and image.dtype == numpy.float32
    assert label.shape == (6, 8) and label.dtype == numpy.int64
    numpy.testing.assert_array_equal(label, written[NAMES[1]][1])  # void 255 kept
    assert (label[0] == 255).all()


def test_image_is_bgr_minus_the_mean(devkit):
    directory, _ = devkit
    voc = VOC(directory)
    decoded = voc.raw_image(0)  # the JPEG as decoded, RGB
    numpy.testing.assert_array_equal(decoded, load_image(voc.image_path(NAMES[0])))
    image, _ = voc[0]
    blue, green, red = decoded[2, 3, 2], decoded[2, 3, 1], decoded[2, 3, 0]
    assert image[0, 2, 3] == pytest.approx(blue - 104.00698793, abs=1e-4)
    assert image[1, 2, 3] == pytest.approx(green - 116.66876762, abs=1e-4)
    assert image[2, 2, 3] == pytest.approx(red - 122.67891434, abs=1e-4)


def test_directory_may_be_the_year_itself(devkit):
    directory, _ = devkit
    assert VOC(os.path.join(directory, "VOC2011")).names == NAMES


def test_prefers_voc2011_and_honours_year(devkit, rng):
    directory, _ = devkit
    make_voc(os.path.join(directory, "VOC2012"), ["2012_000001"], rng)
    assert VOC(directory).root.endswith("VOC2011")
    assert VOC(directory, year=2012).names == ["2012_000001"]


def test_val_is_seg11valid_when_present(devkit):
    directory, _ = devkit
    assert VOC(directory, split="val").split_file.endswith("val.txt")
    write_split(os.path.join(directory, "VOC2011", "ImageSets", "Segmentation",
                             "seg11valid.txt"), NAMES[:2])
    voc = VOC(directory, split="val")
    assert voc.split_file.endswith("seg11valid.txt") and voc.names == NAMES[:2]


def test_split_file_from_elsewhere(devkit, tmp_path):
    directory, _ = devkit
    write_split(str(tmp_path / "lists" / "seg11valid.txt"), [NAMES[2]])
    voc = VOC(directory, split="val", split_file=str(tmp_path / "lists" / "seg11valid.txt"))
    assert voc.names == [NAMES[2]]


def test_palette_is_the_voc_colour_map():
    assert VOC_PALETTE.shape == (256, 3) and VOC_PALETTE.dtype == numpy.uint8
    expected = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 4: (0, 0, 128),
                7: (128, 128, 128), 8: (64, 0, 0), 15: (192, 128, 128), 20: (0, 64, 128),
                255: (224, 224, 192)}
    for index, colour in expected.items():
        assert tuple(VOC_PALETTE[index]) == colour


# ---------------------------------------------------------------------------- errors
def test_missing_directory(tmp_path):
    with pytest.raises(DataError, match="PASCAL VOC directory not found: .*nowhere"):
        VOC(str(tmp_path / "nowhere"))


def test_directory_without_the_layout(tmp_path):
    with pytest.raises(DataError, match="does not have the expected layout: no .*JPEGImages"):
        VOC(str(tmp_path))


def test_missing_split(devkit):
    directory, _ = devkit
    with pytest.raises(DataError, match=r"no split file for split 'trainval'; looked for .*trainval\.txt"):
        VOC(directory, split="trainval")


def test_missing_image_and_label(devkit):
    directory, _ = devkit
    voc = VOC(directory)
    os.remove(voc.image_path(NAMES[0]))
    with pytest.raises(DataError, match=r"2008_000001\.jpg: no such file"):
        voc[0]
    os.remove(voc.label_path(NAMES[1]))
    with pytest.raises(DataError, match=r"2008_000002\.png: no such file"):
        voc[1]


def test_size_mismatch_names_both(devkit, rng):
    directory, _ = devkit
    voc = VOC(directory)
    write_palette_png(voc.label_path(NAMES[2]), numpy.zeros((6, 9), numpy.uint8))
    with pytest.raises(DataError, match=r"2008_000003\.jpg is 6x8 but .*2008_000003\.png is 6x9"):
        voc[2]


def test_rgb_label_is_refused(devkit, rng):
    directory, _ = devkit
    voc = VOC(directory)
    write_picture(voc.label_path(NAMES[0]), VOC_PALETTE[rng.integers(0, 21, (6, 8))])
    with pytest.raises(DataError, match=r"2008_000001\.png: label PNG has mode 'RGB'"):
        voc[0]


def test_label_value_out_of_range(devkit):
    directory, _ = devkit
    voc = VOC(directory)
    write_palette_png(voc.label_path(NAMES[0]), numpy.full((6, 8), 30, numpy.uint8))
    with pytest.raises(DataError, match=r"label value 30 is neither a class in \[0, 21\)"):
        voc[0]
