"""Pictures of label maps: colour them, lay them over photos, and line up predictions.

Label maps are coloured through a palette (by default VOC's: class i gets colour i, void
255 a pale grey-beige). `prediction_grid` is what training leaves behind: one PNG with a
row per example, image | ground truth | prediction, separated by thin white lines.
PNGs are written atomically (a temporary file renamed into place), so a reader never
finds half a picture.
"""
import math
import os
import tempfile

import numpy
from PIL import Image

from .data.voc import VOC_PALETTE

SEPARATOR = 255  # white lines between the cells of a grid
MIN_CELL_HEIGHT = 128  # pixels; smaller scenes are enlarged in a prediction grid


def colorize(label, palette=VOC_PALETTE):
    """uint8 (H, W, 3) RGB picture of an integer (H, W) label map."""
    label = numpy.asarray(label)
    palette = numpy.asarray(palette, dtype=numpy.uint8)
    if label.size and (label.min() < 0 or label.max() >= len(palette)):
        raise ValueError(f"colorize: label values {label.min()}..{label.max()} fall outside "
                         f"the palette's {len(palette)} colours")
    return palette[label.astype(numpy.intp)]


def overlay(rgb, label, alpha=0.5, palette=VOC_PALETTE, background=0):
    """The photo with each labelled pixel tinted by its class colour (weight `alpha`);
    pixels of class `background` keep the photo (background=None tints every pixel)."""
    rgb = numpy.asarray(rgb)
    if rgb.shape[:2] != numpy.shape(label):
        raise ValueError(f"overlay: picture {rgb.shape[:2]} and label {numpy.shape(label)} "
                         f"differ in size")
    tinted = (1 - alpha) * rgb + alpha * colorize(label, palette)
    if background is not None:
        keep = numpy.asarray(label) == background
        tinted[keep] = rgb[keep]
    return numpy.rint(tinted).astype(numpy.uint8)


def save_png(path, array):
    """Write a uint8 (H, W) or (H, W, 3) array as a PNG, atomically."""
    array = numpy.asarray(array)
    if array.dtype != numpy.uint8 or array.ndim not in (2, 3):
        raise ValueError(f"save_png: expected uint8 (H, W) or (H, W, 3), got {array.dtype} "
                         f"{array.shape}")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".png", prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            Image.fromarray(array).save(stream, format="PNG")
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def prediction_grid(images, labels, preds, path, palette=VOC_PALETTE, separator=2,
                    zoom=None):
    """Save one PNG with a row per example: the uint8 RGB image, its coloured truth and
    its coloured prediction, `separator` white pixels apart. Each cell is enlarged `zoom`
    times (nearest neighbour); by default small scenes are enlarged to at least
    MIN_CELL_HEIGHT pixels so they can be seen. Returns the grid array."""
    if not len(images) == len(labels) == len(preds) > 0:
        raise ValueError(f"prediction_grid: needs as many images ({len(images)}), labels "
                         f"({len(labels)}) and predictions ({len(preds)}), at least one")
    rows = [[numpy.asarray(image), colorize(label, palette), colorize(pred, palette)]
            for image, label, pred in zip(images, labels, preds)]
    if zoom is None:
        tallest = max(cell.shape[0] for row in rows for cell in row)
        zoom = max(1, math.ceil(MIN_CELL_HEIGHT / tallest))
    rows = [[cell.repeat(zoom, axis=0).repeat(zoom, axis=1) for cell in row] for row in rows]
    grid = _tile(rows, separator)
    save_png(path, grid)
    return grid


def _tile(rows, separator):
    """Cells (uint8 (h, w, 3)) laid out on a white canvas, each at the top left of a slot
    as large as the largest cell, slots `separator` pixels apart."""
    cell_height = max(cell.shape[0] for row in rows for cell in row)
    cell_width = max(cell.shape[1] for row in rows for cell in row)
    n_rows, n_columns = len(rows), max(len(row) for row in rows)
    canvas = numpy.full((n_rows * (cell_height + separator) - separator,
                         n_columns * (cell_width + separator) - separator, 3),
                        SEPARATOR, numpy.uint8)
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            top, left = r * (cell_height + separator), c * (cell_width + separator)
            canvas[top:top + cell.shape[0], left:left + cell.shape[1]] = cell
    return canvas
