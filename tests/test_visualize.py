"""Colouring label maps, overlays, atomic PNG writing and the prediction grid."""
import os

import numpy
import pytest
from PIL import Image

from minifcn.data.voc import VOC_PALETTE
from minifcn.visualize import colorize, overlay, prediction_grid, save_png


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


def test_prediction_grid_layout(tmp_path, rng):
    images = [rng.integers(0, 256, (4, 5, 3), dtype=numpy.uint8),
              rng.integers(0, 256, (3, 5, 3), dtype=numpy.uint8)]  # sizes may differ
    labels = [numpy.ones((4, 5), int), numpy.full((3, 5), 255)]
    preds = [numpy.full((4, 5), 2), numpy.zeros((3, 5), int)]
    grid = prediction_grid(images, labels, preds, str(tmp_path / "grid.png"), separator=2,
                           zoom=1)
    assert grid.shape == (2 * 4 + 2, 3 * 5 + 2 * 2, 3)  # rows of cells 4 high, 5 wide
    numpy.testing.assert_array_equal(numpy.asarray(Image.open(tmp_path / "grid.png")), grid)
    numpy.testing.assert_array_equal(grid[:4, :5], images[0])
    assert (grid[:4, 7:12] == VOC_PALETTE[1]).all()      # truth of the first example
    assert (grid[:4, 14:19] == VOC_PALETTE[2]).all()     # its prediction
    numpy.testing.assert_array_equal(grid[6:9, :5], images[1])
    assert (grid[6:9, 7:12] == VOC_PALETTE[255]).all()
    assert (grid[4:6] == 255).all() and (grid[:, 5:7] == 255).all()  # white separators
    assert (grid[9] == 255).all()  # the shorter second row is padded


def test_prediction_grid_enlarges_small_scenes(tmp_path):
    image = numpy.zeros((32, 40, 3), numpy.uint8)
    image[0, 0] = 7
    label = numpy.zeros((32, 40), int)
    grid = prediction_grid([image], [label], [label], str(tmp_path / "grid.png"))
    assert grid.shape == (32 * 4, 3 * 40 * 4 + 2 * 2, 3)  # 4 x 32 reaches 128 pixels
    assert (grid[:4, :4] == 7).all() and (grid[4:8, 4:8] == 0).all()


def test_prediction_grid_needs_matching_lists(tmp_path):
    with pytest.raises(ValueError, match="needs as many images"):
        prediction_grid([numpy.zeros((2, 2, 3), numpy.uint8)], [], [], str(tmp_path / "g.png"))
