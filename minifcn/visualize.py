"""Pictures of label maps: colour them, lay them over photos, and line up predictions.

Label maps are coloured through a palette, by default VOC's: class i gets colour i, so
class 0 (background) is black, 1 dark red (128, 0, 0), 2 green (0, 128, 0), 3 olive
(128, 128, 0), 4 navy (0, 0, 128), 5 purple (128, 0, 128), 6 teal (0, 128, 128), ... and
void (255) a pale grey-beige (224, 224, 192): voc.voc_palette says how colour i is made.

`prediction_grid` is what training leaves behind: one PNG with a row per example,
image | truth | prediction under column headings, and a key of the class colours with
their names below. `panel` is the same for one picture `minifcn predict` labels. PNGs
are written atomically (a temporary file renamed into place, so a reader never finds
half a picture) and readable by all (0644 under the usual umask).
"""
import math
import os
import secrets

import numpy
from PIL import Image, ImageDraw, ImageFont

from .data.voc import VOC_PALETTE

SEPARATOR = 255  # white lines between the cells of a grid
MIN_CELL_HEIGHT = 128  # pixels; smaller scenes are enlarged in a prediction grid
GRID_HEADINGS = ("image", "truth", "prediction")
PANEL_HEADINGS = ("image", "prediction", "overlay")
VOID = 255
TEXT_HEIGHT = 16  # a line of the default font, with its margins
SWATCH = 12       # side of a colour's square in the key
INK = (0, 0, 0)


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
    temporary = os.path.join(directory, f".tmp-{secrets.token_hex(6)}.png")
    # os.open with mode 0o666 lets the umask decide, as for any file a program writes
    # (mkstemp would make it 0600: readable by its owner only)
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as stream:
            Image.fromarray(array).save(stream, format="PNG")
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def prediction_grid(images, labels, preds, path, palette=VOC_PALETTE, separator=2,
                    zoom=None, class_names=None):
    """Save one PNG with a row per example: the uint8 RGB image, its coloured truth and
    its coloured prediction, `separator` white pixels apart, under the headings
    GRID_HEADINGS; below them the key of `class_names` (default "class 0", ... for the
    classes that appear). Each cell is enlarged `zoom` times (nearest neighbour); by
    default small scenes are enlarged to at least MIN_CELL_HEIGHT pixels so they can be
    seen. Returns the picture's array."""
    if not len(images) == len(labels) == len(preds) > 0:
        raise ValueError(f"prediction_grid: needs as many images ({len(images)}), labels "
                         f"({len(labels)}) and predictions ({len(preds)}), at least one")
    rows = [[numpy.asarray(image), colorize(label, palette), colorize(pred, palette)]
            for image, label, pred in zip(images, labels, preds)]
    shown = [*labels, *preds]
    return _save_with_text(path, rows, GRID_HEADINGS, _names(class_names, shown), shown,
                           palette, separator, zoom)


def panel(image, label, path, class_names=None, palette=VOC_PALETTE, separator=2, zoom=None):
    """Save one PNG: the picture, its coloured label map and the overlay of the two under
    PANEL_HEADINGS, with the key of `class_names` below. Returns the picture's array."""
    row = [numpy.asarray(image), colorize(label, palette), overlay(image, label, palette=palette)]
    return _save_with_text(path, [row], PANEL_HEADINGS, _names(class_names, [label]), [label],
                           palette, separator, zoom)


def key_entries(class_names, labels=(), palette=VOC_PALETTE):
    """[(colour, text)] of the key: every class "i name", then "void" if a label map in
    `labels` has void pixels."""
    entries = [(tuple(int(c) for c in palette[i]), f"{i} {name}")
               for i, name in enumerate(class_names)]
    if any((numpy.asarray(label) == VOID).any() for label in labels):
        entries.append((tuple(int(c) for c in palette[VOID]), "void (not scored)"))
    return entries


def _names(class_names, labels):
    if class_names is not None:
        return list(class_names)
    largest = max((int(numpy.max(numpy.where(numpy.asarray(label) == VOID, 0, label)))
                   for label in labels), default=0)
    return [f"class {i}" for i in range(largest + 1)]


def _save_with_text(path, rows, headings, class_names, labels, palette, separator, zoom):
    if zoom is None:
        tallest = max(cell.shape[0] for row in rows for cell in row)
        zoom = max(1, math.ceil(MIN_CELL_HEIGHT / tallest))
    rows = [[cell.repeat(zoom, axis=0).repeat(zoom, axis=1) for cell in row] for row in rows]
    grid = _tile(rows, separator)
    cell_width = max(cell.shape[1] for row in rows for cell in row)
    top = _heading_band(headings, grid.shape[1], cell_width, separator)
    bottom = _key_band(key_entries(class_names, labels, palette), grid.shape[1])
    picture = numpy.concatenate([top, grid, bottom])
    save_png(path, picture)
    return picture


def _heading_band(headings, width, cell_width, separator):
    """A white band TEXT_HEIGHT high with each heading centred over its column."""
    band = Image.new("RGB", (width, TEXT_HEIGHT), (SEPARATOR,) * 3)
    draw, font = ImageDraw.Draw(band), ImageFont.load_default()
    for column, text in enumerate(headings):
        centre = column * (cell_width + separator) + cell_width / 2
        draw.text((centre, TEXT_HEIGHT / 2), text, fill=INK, font=font, anchor="mm")
    return numpy.asarray(band)


def _key_band(entries, width):
    """White rows TEXT_HEIGHT high of (swatch, text) entries, as many to a row as fit."""
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    sizes = [SWATCH + 4 + math.ceil(measure.textlength(text, font=font)) + 12
             for _, text in entries]
    lines, x = [[]], 0
    for entry, size in zip(entries, sizes):
        if x + size > width and lines[-1]:
            lines.append([])
            x = 0
        lines[-1].append((entry, x))
        x += size
    band = Image.new("RGB", (width, TEXT_HEIGHT * len(lines) + 4), (SEPARATOR,) * 3)
    draw = ImageDraw.Draw(band)
    for row, line in enumerate(lines):
        y = 2 + row * TEXT_HEIGHT + (TEXT_HEIGHT - SWATCH) // 2
        for (colour, text), x in line:
            draw.rectangle([x + 2, y, x + 1 + SWATCH, y + SWATCH - 1], fill=colour,
                           outline=(128, 128, 128) if colour == (SEPARATOR,) * 3 else None)
            draw.text((x + SWATCH + 6, y + SWATCH / 2), text, fill=INK, font=font, anchor="lm")
    return numpy.asarray(band)


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
