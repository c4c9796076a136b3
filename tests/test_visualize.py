"""Colouring label maps, overlays, atomic PNG writing and the prediction grid."""
import os

import numpy
import pytest
from PIL import Image

from minifcn.data.voc import VOC_PALETTE
from minifcn.visualize import (
    SWATCH,
    TEXT_HEIGHT,
    colorize,
    key_entries,
    overlay,
    panel,
    prediction_grid,
    save_png,
)


def test_colorize_uses_the_palette():
    label = numpy.array([[0, 1], [15, 255]])
    picture = colorize(label)
    assert picture.shape == (2, 2, 3) and picture.dtype == numpy.uint8
    assert picture[0, 1].tolist() == [128, 0, 0] and picture[1, 1].tolist() == [224, 224, 192]
    custom = colorize(numpy.array([1]), palette=[(1, 2, 3), (4, 5, 6)])
    assert custom.tolist() == [[4, 5, 6]]
    with pytest.raises(ValueError, match="outside the palette's 2 colours"):
        colorize(numpy.array([2]), palette=[(1, 2, 3), (4, 5, 6)])


def test_overlay_blends_labelled_pixels_only():
    rgb = numpy.full((1, 2, 3), 100, numpy.uint8)
    blended = overlay(rgb, numpy.array([[0, 1]]), alpha=0.25)
    assert blended[0, 0].tolist() == [100, 100, 100]  # background keeps the photo
    assert blended[0, 1].tolist() == [107, 75, 75]    # 0.75 * 100 + 0.25 * (128, 0, 0)
    tinted_all = overlay(rgb, numpy.array([[0, 1]]), alpha=0.5, background=None)
    assert tinted_all[0, 0].tolist() == [50, 50, 50]
    with pytest.raises(ValueError, match="differ in size"):
        overlay(rgb, numpy.zeros((2, 2), int))


def test_save_png_round_trip_leaves_no_temporary(tmp_path, rng):
    picture = rng.integers(0, 256, (5, 6, 3), dtype=numpy.uint8)
    path = str(tmp_path / "deeper" / "p.png")
    assert save_png(path, picture) == path
    numpy.testing.assert_array_equal(numpy.asarray(Image.open(path)), picture)
    grey = rng.integers(0, 256, (3, 4), dtype=numpy.uint8)
    save_png(path, grey)  # replaces the file in place
    numpy.testing.assert_array_equal(numpy.asarray(Image.open(path)), grey)
    assert os.listdir(tmp_path / "deeper") == ["p.png"]
    with pytest.raises(ValueError, match="expected uint8"):
        save_png(path, picture.astype(numpy.float32))


def ink_columns(band):
    """The x positions where a white band has anything drawn."""
    return numpy.flatnonzero((band != 255).any(axis=(0, 2)))


def test_prediction_grid_layout_headings_and_key(tmp_path, rng):
    images = [rng.integers(0, 256, (40, 50, 3), dtype=numpy.uint8),
              rng.integers(0, 256, (30, 50, 3), dtype=numpy.uint8)]  # sizes may differ
    labels = [numpy.ones((40, 50), int), numpy.full((30, 50), 255)]
    preds = [numpy.full((40, 50), 2), numpy.zeros((30, 50), int)]
    picture = prediction_grid(images, labels, preds, str(tmp_path / "grid.png"), separator=2,
                              zoom=1, class_names=["sky", "tree", "road"])
    numpy.testing.assert_array_equal(numpy.asarray(Image.open(tmp_path / "grid.png")), picture)
    top = TEXT_HEIGHT
    grid = picture[top:top + 2 * 40 + 2]  # rows of cells 40 high, 50 wide
    assert picture.shape[1] == 3 * 50 + 2 * 2
    numpy.testing.assert_array_equal(grid[:40, :50], images[0])
    assert (grid[:40, 52:102] == VOC_PALETTE[1]).all()      # truth of the first example
    assert (grid[:40, 104:154] == VOC_PALETTE[2]).all()     # its prediction
    numpy.testing.assert_array_equal(grid[42:72, :50], images[1])
    assert (grid[42:72, 52:102] == VOC_PALETTE[255]).all()
    assert (grid[40:42] == 255).all() and (grid[:, 50:52] == 255).all()  # white separators
    assert (grid[72:] == 255).all()  # the shorter second row is padded
    # a heading over each column, drawn inside the column
    heading = picture[:top]
    inked = ink_columns(heading)
    for column in range(3):
        inside = inked[(inked >= column * 52) & (inked < column * 52 + 50)]
        assert inside.size > 0
        assert abs((inside.min() + inside.max()) / 2 - (column * 52 + 25)) <= 2  # centred
    assert set(inked) <= {x for c in range(3) for x in range(c * 52, c * 52 + 50)}
    # below: the key, a swatch of every class's colour and of void, since a truth has void
    key = picture[top + 2 * 40 + 2:]
    for colour in (VOC_PALETTE[0], VOC_PALETTE[1], VOC_PALETTE[2], VOC_PALETTE[255]):
        assert (key == colour).all(axis=2).sum() >= (SWATCH - 2) ** 2
    assert key_entries(["sky", "tree", "road"], labels) == [
        ((0, 0, 0), "0 sky"), ((128, 0, 0), "1 tree"), ((0, 128, 0), "2 road"),
        ((224, 224, 192), "void (not scored)")]
    assert key_entries(["sky"], [numpy.zeros((2, 2))]) == [((0, 0, 0), "0 sky")]


def test_the_key_names_classes_by_number_when_no_names_are_given(tmp_path):
    label = numpy.array([[0, 3]])
    picture = prediction_grid([numpy.zeros((1, 2, 3), numpy.uint8)], [label], [label],
                              str(tmp_path / "g.png"), zoom=1)
    key = picture[TEXT_HEIGHT + 1:]
    for i in range(4):  # class 0 ... the largest shown
        assert (key == VOC_PALETTE[i]).all(axis=2).any(), i


def test_prediction_grid_enlarges_small_scenes(tmp_path):
    image = numpy.zeros((32, 40, 3), numpy.uint8)
    image[0, 0] = 7
    label = numpy.zeros((32, 40), int)
    picture = prediction_grid([image], [label], [label], str(tmp_path / "grid.png"))
    grid = picture[TEXT_HEIGHT:TEXT_HEIGHT + 128]  # 4 x 32 reaches 128 pixels
    assert picture.shape[1] == 3 * 40 * 4 + 2 * 2
    assert (grid[:4, :4] == 7).all() and (grid[4:8, 4:8] == 0).all()
    assert (grid[-4:, :4] == 0).all()


def test_panel_shows_picture_labels_and_overlay(tmp_path, rng):
    image = rng.integers(0, 256, (130, 20, 3), dtype=numpy.uint8)
    label = numpy.zeros((130, 20), int)
    label[:, 10:] = 1
    picture = panel(image, label, str(tmp_path / "p.png"), class_names=["bg", "thing"])
    cells = picture[TEXT_HEIGHT:TEXT_HEIGHT + 130]
    numpy.testing.assert_array_equal(cells[:, :20], image)
    assert (cells[:, 22:32] == VOC_PALETTE[0]).all() and (cells[:, 32:42] == VOC_PALETTE[1]).all()
    numpy.testing.assert_array_equal(cells[:, 44:64], overlay(image, label))
    assert len(ink_columns(picture[:TEXT_HEIGHT])) > 0


def test_pngs_are_readable_by_all_under_the_usual_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        save_png(str(tmp_path / "a.png"), numpy.zeros((2, 2), numpy.uint8))
    finally:
        os.umask(previous)
    assert os.stat(tmp_path / "a.png").st_mode & 0o777 == 0o644


def test_prediction_grid_needs_matching_lists(tmp_path):
    with pytest.raises(ValueError, match="needs as many images"):
        prediction_grid([numpy.zeros((2, 2, 3), numpy.uint8)], [], [], str(tmp_path / "g.png"))
