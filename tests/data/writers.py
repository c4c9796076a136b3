"""Small dataset files in the real formats, written the way the real datasets store them:
JPEG/PNG pictures through Pillow, palette PNG labels with the VOC colour table, MATLAB
files through scipy.io.savemat (SBD's label as the struct GTcls with a Segmentation field)."""
import os

import numpy
import scipy.io
from PIL import Image

from minifcn.data.voc import VOC_PALETTE


def random_rgb(rng, height, width):
    return rng.integers(0, 256, (height, width, 3), dtype=numpy.uint8)


def write_picture(path, rgb):
    """JPEG or PNG by the file extension."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(rgb).save(path, quality=95)


def write_palette_png(path, label):
    """A 'P' mode PNG whose pixel values are the class indices, coloured by VOC_PALETTE."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    picture = Image.fromarray(numpy.asarray(label, numpy.uint8), mode="P")
    picture.putpalette(VOC_PALETTE.ravel().tolist())
    picture.save(path)


def write_mat(path, **entries):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    scipy.io.savemat(path, entries)


def write_sbd_mat(path, segmentation):
    """SBD's cls/<id>.mat: a 1x1 MATLAB struct GTcls with fields Segmentation,
    Boundaries and CategoriesPresent (a record array is how savemat writes a struct)."""
    struct = numpy.empty((1, 1), dtype=[("Segmentation", object), ("Boundaries", object),
                                        ("CategoriesPresent", object)])
    struct[0, 0] = (numpy.asarray(segmentation, numpy.uint8), numpy.zeros((1, 1)),
                    numpy.unique(segmentation[segmentation > 0]).astype(numpy.uint8))
    write_mat(path, GTcls=struct)


def write_split(path, names):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write("".join(f"{name}\n" for name in names))


def make_voc(root, names, rng, height=6, width=8, splits=("train", "val")):
    """A VOC20xx directory at `root`; returns {name: (rgb written, label)}."""
    written = {}
    for name in names:
        rgb = random_rgb(rng, height, width)
        label = rng.integers(0, 21, (height, width)).astype(numpy.uint8)
        label[0, :] = 255  # a void border, as VOC draws around objects
        write_picture(os.path.join(root, "JPEGImages", f"{name}.jpg"), rgb)
        write_palette_png(os.path.join(root, "SegmentationClass", f"{name}.png"), label)
        written[name] = (rgb, label)
    for split in splits:
        write_split(os.path.join(root, "ImageSets", "Segmentation", f"{split}.txt"), names)
    return written
