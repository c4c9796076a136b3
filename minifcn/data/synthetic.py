"""SyntheticShapes: the built-in dataset, drawn on the fly, nothing to download.

Each scene is a textured background with a few flat-coloured shapes on it; the label map
gives each pixel's class:

    0 background   1 disc   2 square   3 triangle   4 ring   5 cross

The classes differ in form, not colour: every shape and every background draws its colours
from the same range (all of RGB), so a pixel's colour says nothing about its class and a
net must look at the shape around it. What makes it a little hard: random sizes (radius
from a tenth to a fifth of the image side), rotations, shapes partly covering one
another (later shapes hide earlier ones) or cut by the border, rings and discs that differ
only by a hole, and backgrounds of stripes, gradients and smooth colour noise, with
pixel noise over all.

Scene `i` of a split is a pure function of (seed, split, i): the generator is seeded with
that triple, so the same index always gives the same arrays and "train" and "val" draw
from disjoint streams.

Why shapes scale with the scene: an FCN-8s scores every 8th pixel and interpolates
between, so a shape must span several such cells for its outline to be drawn. Scoring
the true labels at stride 8 and interpolating them back (the best such a net could do
with bilinear upsampling of averaged scores) gives mean IU 0.82 with radii of 7-19
pixels in 96-pixel scenes, but 0.93 with radii of 16-32 in 160-pixel scenes.

Drawing is vectorized over a coordinate grid: each shape is a
boolean mask computed from pixel offsets to its centre, with no Python loop over
pixels, so drawing a scene costs little beside a training step.

Its preprocessing is simple mean subtraction at unit scale (pixels 0..1 minus 0.5), which
suits nets trained from scratch; there are no pretrained weights for these scenes.
"""
import math

import numpy

from .base import SegmentationDataset
from .preprocess import Preprocess

CLASS_NAMES = ("background", "disc", "square", "triangle", "ring", "cross")
DEFAULT_IMAGES = {"train": 1000, "val": 200}
DEFAULT_SIZE = 160       # pixels a side (the default run's; see "Why shapes scale" above)
SPLIT_STREAMS = {"train": 0, "val": 1}
PIXEL_NOISE = 6.0        # standard deviation, in 0..255 units
MIN_CONTRAST = 90.0      # least RGB distance between a shape and the colours under it
COLOUR_TRIES = 30


# ------------------------------------------------------------------------- shape masks
# Each takes pixel offsets from the shape's centre, rotated into the shape's own frame
# (u along its first axis, v across), and its radius r; returns the pixels inside.
def _disc(u, v, r, rng):
    return u * u + v * v <= r * r


def _square(u, v, r, rng):
    half_side = 0.85 * r  # a little smaller than the disc, so area does not give it away
    return (numpy.abs(u) <= half_side) & (numpy.abs(v) <= half_side)


def _triangle(u, v, r, rng):
    # equilateral: inside the three edges whose outward normals are 120 degrees apart;
    # circumradius 1.3 r gives about the area of the square
    inradius = 0.65 * r
    inside = numpy.ones(u.shape, bool)
    for angle in (0.0, 2 * math.pi / 3, 4 * math.pi / 3):
        inside &= u * math.cos(angle) + v * math.sin(angle) <= inradius
    return inside


def _ring(u, v, r, rng):
    squared = u * u + v * v
    hole = r * rng.uniform(0.4, 0.6)
    return (squared <= r * r) & (squared >= hole * hole)


def _cross(u, v, r, rng):
    half_width = 0.3 * r
    along_u = (numpy.abs(u) <= r) & (numpy.abs(v) <= half_width)
    along_v = (numpy.abs(v) <= r) & (numpy.abs(u) <= half_width)
    return along_u | along_v


SHAPES = (None, _disc, _square, _triangle, _ring, _cross)  # indexed by class number


# ------------------------------------------------------------------------- backgrounds
# Each takes the coordinate grid and two colours, and returns float (H, W, 3) pixels.
def _unit_wave(ys, xs, rng, period):
    """A plane wave cos(2 pi (position . direction) / period + phase) in [-1, 1]."""
    angle = rng.uniform(0, math.pi)
    phase = rng.uniform(0, 2 * math.pi)
    position = xs * math.cos(angle) + ys * math.sin(angle)
    return numpy.cos(position * (2 * math.pi / period) + phase)


def _stripes(ys, xs, colours, rng):
    wave = _unit_wave(ys, xs, rng, period=rng.uniform(5, 14))
    return _blend(colours, wave > 0)


def _gradient(ys, xs, colours, rng):
    # a wave longer than the image: a smooth ramp from one colour towards the other
    wave = _unit_wave(ys, xs, rng, period=4 * max(ys.shape))
    return _blend(colours, (wave + 1) / 2)


def _smooth_noise(ys, xs, colours, rng):
    waves = sum(_unit_wave(ys, xs, rng, period=rng.uniform(8, 30)) for _ in range(4))
    return _blend(colours, (waves / 4 + 1) / 2)


def _speckle(ys, xs, colours, rng):
    return _blend(colours, rng.random(ys.shape) < 0.5)


def _blend(colours, weight):
    """colours[0] where weight is 0, colours[1] where it is 1, linear between."""
    weight = numpy.asarray(weight, numpy.float32)[..., None]
    return colours[0] + (colours[1] - colours[0]) * weight


BACKGROUNDS = (_stripes, _gradient, _smooth_noise, _speckle)


# ---------------------------------------------------------------------------- dataset
class SyntheticShapes(SegmentationDataset):
    n_class = len(CLASS_NAMES)
    class_names = CLASS_NAMES

    def __init__(self, n_images=None, size=DEFAULT_SIZE, seed=0, split="train", preprocess=None,
                 shapes=(2, 5), min_radius=None):
        """`n_images` scenes (default 1000 for train, 200 for val) of `size` pixels (an
        int or (height, width)), each with shapes[0] to shapes[1] shapes (fewer where
        no free place is found) of radius `min_radius` (default a tenth of the shorter
        side) to a fifth of the shorter side."""
        if split not in SPLIT_STREAMS:
            raise ValueError(f"SyntheticShapes: split {split!r} is not one of "
                             f"{tuple(SPLIT_STREAMS)}")
        self.height, self.width = (int(size),) * 2 if numpy.ndim(size) == 0 else map(int, size)
        self.max_radius = min(self.height, self.width) / 5
        if self.max_radius < 3:
            raise ValueError(f"SyntheticShapes: size {size} is too small; shapes need scenes "
                             f"of 15 pixels or more")
        min_radius = self.max_radius / 2 if min_radius is None else min(min_radius, self.max_radius)
        n_images = DEFAULT_IMAGES[split] if n_images is None else int(n_images)
        super().__init__([f"{split}_{i:06d}" for i in range(n_images)],
                         preprocess or Preprocess(channel_order="RGB", mean=(0.5, 0.5, 0.5),
                                                  pixel_scale=1.0))
        self.seed, self.split = seed, split
        self.shapes, self.min_radius = tuple(shapes), min_radius
        self._ys, self._xs = numpy.mgrid[0:self.height, 0:self.width].astype(numpy.float32)

    def __getitem__(self, index):
        rgb, label = self.scene(index)
        return self.preprocess(rgb), label

    def raw_image(self, index):
        return self.scene(index)[0]

    def label(self, index):
        return self.scene(index)[1]

    def scene(self, index):
        """(uint8 (H, W, 3) RGB picture, int64 (H, W) label map) of scene `index`."""
        index = range(len(self))[index]  # IndexError past the end; negative counts back
        rng = numpy.random.default_rng([self.seed, SPLIT_STREAMS[self.split], index])
        pixels = self._background(rng)
        label = numpy.zeros((self.height, self.width), numpy.int64)
        placed = []
        for _ in range(rng.integers(self.shapes[0], self.shapes[1] + 1)):
            self._draw_shape(rng, pixels, label, placed)
        pixels += rng.normal(0.0, PIXEL_NOISE, pixels.shape).astype(numpy.float32)
        return numpy.clip(pixels, 0, 255).astype(numpy.uint8), label

    def _background(self, rng):
        texture = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
        colours = rng.uniform(0, 255, (2, 3)).astype(numpy.float32)
        return texture(self._ys, self._xs, colours, rng).astype(numpy.float32)

    def _draw_shape(self, rng, pixels, label, placed):
        """Paint one shape over `pixels` and `label`, unless no free place is found."""
        class_number = int(rng.integers(1, self.n_class))
        radius = rng.uniform(self.min_radius, self.max_radius)
        centre = self._free_centre(rng, radius, placed)
        if centre is None:
            return
        placed.append((centre, radius))
        angle = rng.uniform(0, 2 * math.pi)
        dy, dx = self._ys - centre[0], self._xs - centre[1]
        u = dx * math.cos(angle) + dy * math.sin(angle)
        v = dy * math.cos(angle) - dx * math.sin(angle)
        mask = SHAPES[class_number](u, v, radius, rng)
        pixels[mask] = _contrasting_colour(rng, pixels[mask])
        label[mask] = class_number

    def _free_centre(self, rng, radius, placed, tries=20):
        """A centre that keeps the shape mostly inside the image and lets it cover at most
        a part of any shape already placed (so each stays recognizable); None if none."""
        for _ in range(tries):
            centre = (rng.uniform(0.6 * radius, self.height - 0.6 * radius),
                      rng.uniform(0.6 * radius, self.width - 0.6 * radius))
            if all(math.dist(centre, other) >= 0.75 * (radius + other_radius)
                   for other, other_radius in placed):
                return centre
        return None


def _contrasting_colour(rng, covered):
    """A uniformly random RGB colour that stands out from the pixels it will cover: most
    of them (all but the 5% nearest, which tolerates a few odd pixels) lie at least
    MIN_CONTRAST away. After COLOUR_TRIES draws, the best one seen."""
    best, best_distance = None, -1.0
    for _ in range(COLOUR_TRIES):
        colour = rng.uniform(0, 255, 3).astype(numpy.float32)
        distance = numpy.quantile(numpy.linalg.norm(covered - colour, axis=1), 0.05)
        if distance >= MIN_CONTRAST:
            return colour
        if distance > best_distance:
            best, best_distance = colour, distance
    return best
