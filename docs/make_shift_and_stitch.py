"""Draws docs/shift-and-stitch.png: shift-and-stitch and filter rarefaction on a real
scene of the built-in dataset, computed with minifcn itself.

    python docs/make_shift_and_stitch.py [OUT.png]

The "net" is one 4x4 max pooling at stride 4 (output stride f = 4), applied to each
colour channel of a 64 x 64 scene. Top row: the scene, the 16 coarse 16 x 16 maps of
the shifted scenes (shift (dy, dx) at row dy, column dx), the coarse map of the scene
itself enlarged (what upsampling starts from). Bottom row: the stitched 64 x 64 map,
the rarefied one (the pool at stride 1: 61 x 61), and where they differ (white), which
is the last three rows and columns only: the cells whose pooling windows, in the
shifted scenes, reach the zero fill (tests/models/test_stitch.py states the rule).
"""
import sys

import numpy
from PIL import Image, ImageDraw, ImageFont

import minifcn as mf
from minifcn import functions as F
from minifcn.data.synthetic import SyntheticShapes

F_STRIDE = 4
ZOOM = 4
GAP = 12


def pool(x, stride):
    return F.max_pool2d(x, F_STRIDE, stride=stride)


def to_picture(array, size=None):
    """(3, H, W) floats in [0, 1] -> an RGB picture, enlarged ZOOM times (or to `size`)."""
    rgb = numpy.clip(array.transpose(1, 2, 0) * 255, 0, 255).astype(numpy.uint8)
    picture = Image.fromarray(rgb)
    return picture.resize(size or (rgb.shape[1] * ZOOM, rgb.shape[0] * ZOOM), Image.NEAREST)


def compute(size=64):
    scene = SyntheticShapes(size=size, split="val").raw_image(1).astype(numpy.float64) / 255
    x = mf.Tensor(scene.transpose(2, 0, 1)[None])
    coarse = {}

    def remember(shifted):  # fn, also keeping each coarse map for the picture
        out = pool(shifted, F_STRIDE)
        coarse[len(coarse)] = out.numpy()[0]
        return out

    stitched = mf.models.shift_and_stitch(remember, x, F_STRIDE).numpy()[0]
    rarefied = pool(x, 1).numpy()[0]
    return x.numpy()[0], coarse, stitched, rarefied


def draw(path):
    scene, coarse, stitched, rarefied = compute()
    side = scene.shape[1] * ZOOM
    font = ImageFont.load_default()
    canvas = Image.new("RGB", (3 * side + 4 * GAP, 2 * side + 5 * GAP), "white")
    text = ImageDraw.Draw(canvas)

    def place(picture, column, row, title):
        left, top = GAP + column * (side + GAP), 2 * GAP + row * (side + 2 * GAP)
        canvas.paste(picture, (left, top))
        text.rectangle([left - 1, top - 1, left + side, top + side], outline=(128, 128, 128))
        text.text((left, top - GAP), title, fill="black", font=font)

    place(to_picture(scene), 0, 0, "input 64 x 64")
    tile = (side - (F_STRIDE - 1) * 2) // F_STRIDE
    mosaic = Image.new("RGB", (side, side), "white")
    for index, coarse_map in coarse.items():
        dy, dx = divmod(index, F_STRIDE)
        mosaic.paste(to_picture(coarse_map, (tile, tile)), (dx * (tile + 2), dy * (tile + 2)))
    place(mosaic, 1, 0, f"{F_STRIDE * F_STRIDE} shifted runs, 16 x 16 each")
    place(to_picture(coarse[0], (side, side)), 2, 0, "one run, no shift")
    place(to_picture(stitched), 0, 1, "stitched: 64 x 64")
    rows, cols = rarefied.shape[1:]
    padded = numpy.ones_like(stitched)
    padded[:, :rows, :cols] = rarefied
    place(to_picture(padded), 1, 1, f"rarefied (pool stride 1): {rows} x {cols}")
    differ = numpy.ones(stitched.shape[1:], bool)
    differ[:rows, :cols] = numpy.abs(stitched[:, :rows, :cols] - rarefied).max(axis=0) > 1e-12
    place(to_picture(numpy.repeat(differ[None] * 1.0, 3, axis=0)), 2, 1,
          "where they differ (white)")
    canvas.save(path)
    return differ


if __name__ == "__main__":
    draw(sys.argv[1] if len(sys.argv) > 1 else "docs/shift-and-stitch.png")
