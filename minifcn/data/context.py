"""PASCAL-Context (Mottaghi et al.), the 59-class task, in the FCN reference's layout:

    DIR/labels.txt              the full label list, "<index>: <name>" per line (459 names)
    DIR/59_labels.txt           the 59 task classes, "<index>: <name>" per line
    DIR/trainval/<id>.mat       key LabelMap: each pixel's index into labels.txt
    DIR/VOC2010/JPEGImages/<id>.jpg                 the pictures (VOC2010's), and the
    DIR/VOC2010/ImageSets/Main/{train,val}.txt      splits the reference reads

(`voc_dir=` names the VOC2010 directory, or a VOCdevkit holding it, when it lives
elsewhere.) As the reference's pascalcontext_layers.py: names are compared with their
spaces removed, three task names are spelled differently in the full list (diningtable
is table there, bedcloth bedclothes, clothes cloth), each of the 59 classes becomes 1-59
in its 59_labels.txt order and every other pixel 0, "background". So n_class is 60, the
reference nets' num_output, and no pixel is void. Pictures: BGR minus the VGG mean.
"""
import os

import numpy

from .base import FileDataset, find_root
from .io import DataError, load_mat_label
from .preprocess import Preprocess

# the task's spelling -> the full list's (pascalcontext_layers.py)
RENAMED = {"diningtable": "table", "bedcloth": "bedclothes", "clothes": "cloth"}


def read_label_list(path):
    """[(index, name without spaces), ...] from a "<index>: <name>" file."""
    try:
        with open(path) as handle:
            lines = [line.strip() for line in handle if line.strip()]
    except FileNotFoundError:
        raise DataError(f"{path}: no such label list") from None
    entries = []
    for number, line in enumerate(lines, 1):
        index, colon, name = line.partition(":")
        if not colon or not index.strip().isdigit() or not name.strip():
            raise DataError(f"{path}: line {number} is {line!r}, expected '<index>: <name>'")
        entries.append((int(index), name.replace(" ", "")))
    if not entries:
        raise DataError(f"{path}: the label list is empty")
    return entries


class PASCALContext(FileDataset):
    SPLIT_ALIASES = {"train": ("train",), "val": ("val",)}

    def __init__(self, directory, split="train", preprocess=None, split_file=None, voc_dir=None):
        root = find_root(directory, "trainval", [], "PASCAL-Context")
        self.voc_root = find_root(voc_dir or directory, "JPEGImages",
                                  ["VOC2010", os.path.join("VOCdevkit", "VOC2010")], "PASCAL VOC2010")
        full = read_label_list(os.path.join(root, "labels.txt"))
        task = read_label_list(os.path.join(root, "59_labels.txt"))
        index_of = {name: index for index, name in full}
        self.lookup = numpy.zeros(max(index_of.values()) + 1, numpy.int64)  # -> 0 background
        for task_class, (_, name) in enumerate(task, 1):
            full_name = RENAMED.get(name, name)
            if full_name not in index_of:
                raise DataError(f"{os.path.join(root, '59_labels.txt')}: class {name!r} is not "
                                f"in labels.txt")
            self.lookup[index_of[full_name]] = task_class
        self.class_names = ("background",) + tuple(name for _, name in task)
        self.n_class = len(self.class_names)
        super().__init__(root, split, preprocess or Preprocess(), split_file)

    def split_directory(self):
        return os.path.join(self.voc_root, "ImageSets", "Main")

    def image_path(self, name):
        return os.path.join(self.voc_root, "JPEGImages", f"{name}.jpg")

    def label_path(self, name):
        return os.path.join(self.root, "trainval", f"{name}.mat")

    def read_label(self, path):
        full = load_mat_label(path, "LabelMap")
        if full.size and (full.min() < 0 or full.max() >= len(self.lookup)):
            raise DataError(f"{path}: LabelMap holds {int(full.min())}..{int(full.max())}, "
                            f"outside labels.txt's indices 0..{len(self.lookup) - 1}")
        return self.lookup[full]
