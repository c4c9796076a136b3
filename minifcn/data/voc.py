"""PASCAL VOC segmentation (VOC2011 in the paper), in the VOCdevkit layout:

    VOCdevkit/VOC2011/JPEGImages/<id>.jpg                   the pictures
    VOCdevkit/VOC2011/SegmentationClass/<id>.png            palette PNG labels
    VOCdevkit/VOC2011/ImageSets/Segmentation/<split>.txt    ids, one per line

A label PNG stores one palette index per pixel: the index is the class (0 background,
1-20 objects, 255 void: object boundaries and unsure regions), and the palette (VOC_PALETTE)
only colours it for display. The paper validates on `seg11valid` (736 images of VOC2011
val not in SBD train); the reference code ships that list separately, so `split="val"`
takes ImageSets/Segmentation/seg11valid.txt when it is there and val.txt otherwise, and
`split_file=` names a list anywhere else.
"""
import glob
import os

import numpy

from .base import FileDataset, find_root
from .io import load_label_png
from .preprocess import Preprocess

CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor")


def voc_palette(n_colors=256):
    """The VOC colour table: colour i spreads the bits of i over the three channels,
    from the most significant bit down (bit 0 -> red, bit 1 -> green, bit 2 -> blue,
    bit 3 -> red one place lower, ...), so small class numbers get distinct colours."""
    index = numpy.arange(n_colors)
    palette = numpy.zeros((n_colors, 3), numpy.uint8)
    for shift in range(8):
        for channel in range(3):
            bit = (index >> (3 * shift + channel)) & 1
            palette[:, channel] |= (bit << (7 - shift)).astype(numpy.uint8)
    return palette


VOC_PALETTE = voc_palette()


class VOC(FileDataset):
    n_class = len(CLASS_NAMES)
    class_names = CLASS_NAMES
    SPLIT_ALIASES = {"train": ("train",), "val": ("seg11valid", "val")}

    def __init__(self, directory, split="train", preprocess=None, split_file=None, year=None):
        """`directory`: VOCdevkit (then VOC<year>, by default VOC2011 if present, else the
        newest VOC20xx inside) or a VOC20xx directory itself."""
        subdirectories = [f"VOC{year}"] if year else _voc_years(directory)
        root = find_root(directory, "JPEGImages", subdirectories, "PASCAL VOC")
        super().__init__(root, split, preprocess or Preprocess(), split_file)

    def split_directory(self):
        return os.path.join(self.root, "ImageSets", "Segmentation")

    def image_path(self, name):
        return os.path.join(self.root, "JPEGImages", f"{name}.jpg")

    def label_path(self, name):
        return os.path.join(self.root, "SegmentationClass", f"{name}.png")

    def read_label(self, path):
        return load_label_png(path).astype(numpy.int64)


def _voc_years(devkit):
    """VOC20xx subdirectories of a VOCdevkit, the paper's VOC2011 first, then newest first."""
    found = glob.glob(os.path.join(devkit, "VOC20[0-9][0-9]"))
    years = sorted((os.path.basename(path) for path in found), reverse=True)
    return sorted(years, key=lambda name: name != "VOC2011")
