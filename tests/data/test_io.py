"""The file readers: formats, conversions and every error naming its file."""
import os

import numpy
import pytest
from PIL import Image

from minifcn.data.io import (DataError, check_same_size, load_image, load_label_png,
                             load_mat_label, read_split, require_directory)

from .writers import random_rgb, write_mat, write_palette_png, write_picture, write_sbd_mat


def test_png_picture_reads_back_exactly(tmp_path, rng):
    rgb = random_rgb(rng, 5, 7)
    write_picture(str(tmp_path / "a.png"), rgb)
    loaded = load_image(str(tmp_path / "a.png"))
    assert loaded.dtype == numpy.uint8 and loaded.shape == (5, 7, 3)
    numpy.testing.assert_array_equal(loaded, rgb)


def test_jpeg_picture_reads_as_rgb(tmp_path):
    rgb = numpy.zeros((16, 16, 3), numpy.uint8)
    rgb[...] = (200, 30, 90)  # flat colour: JPEG keeps it to within a few levels
    write_picture(str(tmp_path / "a.jpg"), rgb)
    loaded = load_image(str(tmp_path / "a.jpg"))
    assert numpy.abs(loaded.astype(int) - rgb).max() <= 3


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_other_modes_become_rgb(tmp_path, mode):
    picture = Image.new(mode, (4, 3))
    picture.save(tmp_path / "a.png")
    loaded = load_image(str(tmp_path / "a.png"))
    assert loaded.shape == (3, 4, 3) and loaded.dtype == numpy.uint8


def test_grey_picture_repeats_its_channel(tmp_path):
    grey = numpy.arange(12, dtype=numpy.uint8).reshape(3, 4) * 20
    Image.fromarray(grey, "L").save(tmp_path / "g.png")
    loaded = load_image(str(tmp_path / "g.png"))
    for channel in range(3):
        numpy.testing.assert_array_equal(loaded[:, :, channel], grey)


def test_missing_picture_names_the_file(tmp_path):
    with pytest.raises(DataError, match=r"nothere\.jpg: no such file"):
        load_image(str(tmp_path / "nothere.jpg"))


def test_unreadable_picture_names_the_file(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"this is not a picture")
    with pytest.raises(DataError, match=r"bad\.jpg: not a readable image"):
        load_image(str(tmp_path / "bad.jpg"))


def test_truncated_picture_is_unreadable(tmp_path, rng):
    write_picture(str(tmp_path / "whole.png"), random_rgb(rng, 32, 32))
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.png: not a readable image"):
        load_image(str(tmp_path / "cut.png"))


def test_palette_label_reads_indices_not_colours(tmp_path):
    label = numpy.array([[0, 1, 15], [20, 255, 7]], numpy.uint8)
    write_palette_png(str(tmp_path / "l.png"), label)
    assert Image.open(tmp_path / "l.png").mode == "P"
    loaded = load_label_png(str(tmp_path / "l.png"))
    assert loaded.dtype == numpy.uint8
    numpy.testing.assert_array_equal(loaded, label)


def test_rgb_label_png_is_refused(tmp_path, rng):
    write_picture(str(tmp_path / "l.png"), random_rgb(rng, 3, 3))
    with pytest.raises(DataError, match=r"l\.png: label PNG has mode 'RGB'"):
        load_label_png(str(tmp_path / "l.png"))


def test_missing_label_png_names_the_file(tmp_path):
    with pytest.raises(DataError, match=r"gone\.png: no such file"):
        load_label_png(str(tmp_path / "gone.png"))


def test_mat_label_by_key_and_by_struct_field(tmp_path):
    label = numpy.array([[1, 2], [3, 0]], numpy.uint8)
    write_mat(str(tmp_path / "s.mat"), S=label.astype(numpy.int16))
    write_sbd_mat(str(tmp_path / "cls.mat"), label)
    for path, field in (("s.mat", "S"), ("cls.mat", "GTcls.Segmentation")):
        loaded = load_mat_label(str(tmp_path / path), field)
        assert loaded.dtype == numpy.int64
        numpy.testing.assert_array_equal(loaded, label)


def test_mat_without_the_entry_lists_what_it_has(tmp_path):
    write_mat(str(tmp_path / "s.mat"), other=numpy.zeros((2, 2)))
    with pytest.raises(DataError, match=r"s\.mat: no 'S' entry \(the file has \['other'\]\)"):
        load_mat_label(str(tmp_path / "s.mat"), "S")
    write_sbd_mat(str(tmp_path / "cls.mat"), numpy.zeros((2, 2), numpy.uint8))
    with pytest.raises(DataError, match="no 'GTcls.Segmentaton' entry"):
        load_mat_label(str(tmp_path / "cls.mat"), "GTcls.Segmentaton")


def test_mat_entry_must_be_a_2d_number_array(tmp_path):
    write_mat(str(tmp_path / "s.mat"), S=numpy.zeros((2, 2, 2)))
    with pytest.raises(DataError, match=r"s\.mat: 'S' is a .* array of shape \(2, 2, 2\)"):
        load_mat_label(str(tmp_path / "s.mat"), "S")


def test_unreadable_and_missing_mat(tmp_path):
    (tmp_path / "bad.mat").write_bytes(b"MATLAB? no")
    with pytest.raises(DataError, match=r"bad\.mat: not a readable MATLAB file"):
        load_mat_label(str(tmp_path / "bad.mat"), "S")
    with pytest.raises(DataError, match=r"none\.mat: no such file"):
        load_mat_label(str(tmp_path / "none.mat"), "S")


def test_size_mismatch_names_both_files_and_sizes():
    with pytest.raises(DataError, match=r"a\.jpg is 6x8 but b\.png is 6x9"):
        check_same_size("a.jpg", (6, 8, 3), "b.png", (6, 9))
    check_same_size("a.jpg", (6, 8, 3), "b.png", (6, 8))


def test_split_file(tmp_path):
    (tmp_path / "train.txt").write_text("2008_000001\n\n 2008_000002 \n")
    assert read_split(str(tmp_path / "train.txt")) == ["2008_000001", "2008_000002"]
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(DataError, match=r"empty\.txt: the split file lists no images"):
        read_split(str(tmp_path / "empty.txt"))
    with pytest.raises(DataError, match=r"none\.txt: no such split file"):
        read_split(str(tmp_path / "none.txt"))


def test_require_directory(tmp_path):
    assert require_directory(str(tmp_path), "VOC") == str(tmp_path)
    missing = os.path.join(str(tmp_path), "nope")
    with pytest.raises(DataError, match="VOC directory not found: .*nope"):
        require_directory(missing, "VOC")
