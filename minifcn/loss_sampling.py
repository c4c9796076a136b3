"""Patchwise training as loss sampling (paper section 4.4): `minifcn train --loss-sampling P`.

Training on random patches is, for a fully convolutional net, the same as training on
whole images with the loss restricted to a random subset of its spatial terms. Here each
cell of the net's final score grid (stride 32 for FCN-32s, 16 for FCN-16s, 8 for FCN-8s)
keeps its pixels in the loss with probability P; the pixels of the other cells become
`ignore_index` for that step. The loss then counts only the kept pixels: normalized, it
is the mean over them; unnormalized (Caffe's), their sum over the batch size.

A pixel belongs to the cell whose centre is nearest: cell y of a grid of stride s whose
cell 0 is centred on input pixel c holds the pixels i with
    floor((i - c) / s + 1/2) = y,
the centres being those the models' docstrings derive for their crops (`GRIDS`).

The draw for a step is a pure function of (seed, position), position being the
micro-batch's number in the run, so a resumed run draws exactly the masks an
uninterrupted one would.
"""
import math

import numpy

from .errors import OptionError
from .models import FCN8s, FCN16s, FCN16sSiftFlow, FCN32s, FCNAlexNet, FCNGoogLeNet

# (stride, centre of cell 0 in input pixels) of each net's final score layer before its
# last upsampling: fcn.py, alexnet.py and googlenet.py derive the centres.
GRIDS = ((FCN8s, (8, -23.5)), (FCN16s, (16, -11.5)), (FCN16sSiftFlow, (16, -11.5)),
         (FCN32s, (32, 12.5)),
         (FCNAlexNet, (32, 13.0)), (FCNGoogLeNet, (32, 7.0)))
SALT = 0x10557A  # keeps these draws apart from any other stream seeded with (seed, position)


def probability(value):
    """P as a float in (0, 1], or a ValueError saying what is wrong (also argparse's type)."""
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise OptionError(f"--loss-sampling: P must be a number in (0, 1], got {value!r}") from None
    if not 0.0 < p <= 1.0 or math.isnan(p):
        raise OptionError(f"--loss-sampling: P must lie in (0, 1] (1 keeps every pixel), got {value!r}")
    return p


def grid_of(net):
    """(stride, centre of cell 0) of `net`'s final score grid."""
    for kind, grid in GRIDS:
        if isinstance(net, kind):
            return getattr(net, "score_grid", grid)
    grid = getattr(net, "score_grid", None)
    if grid is None:
        raise OptionError(f"--loss-sampling: no score grid is known for {type(net).__name__}")
    return grid


def cell_index(size, stride, centre):
    """The grid cell of each of `size` pixels along one axis."""
    return numpy.floor((numpy.arange(size) - centre) / stride + 0.5).astype(numpy.int64)


def sample_labels(labels, p, grid, seed, position, ignore_index=255):
    """`labels` (N, H, W), or (N, heads, H, W) for a multi-headed net, with the pixels of
    the dropped cells set to ignore_index (a copy; P = 1 returns labels unchanged)."""
    p = probability(p)
    if p == 1.0:
        return labels
    labels = numpy.asarray(labels)
    if labels.ndim not in (3, 4):
        raise ValueError(f"sample_labels: labels must be (N, H, W) or (N, heads, H, W), "
                         f"got shape {labels.shape}")
    stride, centre = grid
    height, width = labels.shape[-2:]
    rows, cols = cell_index(height, stride, centre), cell_index(width, stride, centre)
    rows, cols = rows - rows[0], cols - cols[0]
    rng = numpy.random.default_rng([int(seed), int(position), SALT])
    keep_cell = rng.random((labels.shape[0], rows[-1] + 1, cols[-1] + 1)) < p
    keep = keep_cell[:, rows[:, None], cols[None, :]]  # (N, H, W)
    if labels.ndim == 4:
        keep = keep[:, None]
    return numpy.where(keep, labels, numpy.asarray(ignore_index, labels.dtype))


def sample_step_labels(net, labels, p, seed, position):
    """The training step's hook: labels unchanged for P = 1, else sampled on net's grid."""
    if p == 1.0:
        return labels
    return sample_labels(labels, p, grid_of(net), seed, position)
