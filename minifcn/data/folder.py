"""Your own images: a folder of pictures and masks (`--data folder:DIR`).

    DIR/images/<name>.jpg|.jpeg|.png    the pictures (any mode; read as RGB)
    DIR/masks/<name>.png                one mask per picture, the same <name> and size:
                                        a palette ('P') or single-channel ('L') PNG whose
                                        pixel values are class numbers 0, 1, ..., and 255
                                        for void (pixels not scored or learned from)
    DIR/classes.txt                     optional: the class names, one per line, class 0
                                        first; without it the classes are 0 .. the largest
                                        value in any mask, named "class 0", "class 1", ...
    DIR/train.txt, DIR/val.txt          optional: the names of each split, one per line;
                                        with one of them, the other split is every image
                                        it does not list; with neither, a seeded split
                                        holds out `val_fraction` of the images for val

A mask stores class numbers, not colours: a palette PNG (as PASCAL VOC's) shows them in
colour but stores the numbers, and an 'L' PNG stores them as grey levels. An RGB mask
is refused with a message saying so. Every picture needs its mask and every mask its
picture, so a typo in a name is an error at open rather than a silently smaller dataset.
"""
import os

import numpy

from .base import VOID, FileDataset, SegmentationDataset
from .io import DataError, load_label_png, read_split, require_directory
from .preprocess import Preprocess

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
DEFAULT_VAL_FRACTION = 0.2
DEFAULT_SPLIT_SEED = 1337


class Folder(FileDataset):
    """Pictures in DIR/images paired by name with masks in DIR/masks (module docstring)."""

    def __init__(self, directory, split="train", preprocess=None, val_fraction=DEFAULT_VAL_FRACTION,
                 seed=DEFAULT_SPLIT_SEED):
        require_directory(directory, "image folder")
        self.root, self.split = directory, split
        self.images = _files(os.path.join(directory, "images"), IMAGE_EXTENSIONS, "pictures")
        self.masks = _files(os.path.join(directory, "masks"), (".png",), "masks (PNG)")
        _check_pairs(directory, self.images, self.masks)
        self.class_names = self._read_classes()
        self.n_class = len(self.class_names)
        self.split_file = os.path.join(directory, f"{split}.txt")
        names = self._split_names(split, val_fraction, seed)
        SegmentationDataset.__init__(self, names, preprocess or Preprocess())

    def image_path(self, name):
        return self.images[name]

    def label_path(self, name):
        return self.masks[name]

    def read_label(self, path):
        return load_label_png(path).astype(numpy.int64)

    # -------------------------------------------------------------------------- helpers
    def _read_classes(self):
        path = os.path.join(self.root, "classes.txt")
        if os.path.isfile(path):
            return tuple(read_split(path))
        largest = -1
        for mask in self.masks.values():
            values = load_label_png(mask)
            values = values[values != VOID]
            if values.size:
                largest = max(largest, int(values.max()))
        if largest < 1:
            raise DataError(f"{os.path.join(self.root, 'masks')}: the masks hold no class but "
                            f"{'void' if largest < 0 else 0}; segmentation needs two classes "
                            f"at least (e.g. 0 background, 1 object)")
        return tuple(f"class {i}" for i in range(largest + 1))

    def _split_names(self, split, val_fraction, seed):
        everything = sorted(self.images)
        listed = {name: os.path.join(self.root, f"{name}.txt") for name in ("train", "val")}
        present = {name: path for name, path in listed.items() if os.path.isfile(path)}
        if split not in listed:
            names = read_split(self.split_file)  # DataError naming the file if absent
        elif split in present:
            names = read_split(present[split])
        elif present:  # the other split's list is given: this split is the rest
            other = set(read_split(next(iter(present.values()))))
            names = [name for name in everything if name not in other]
        else:
            names = seeded_split(everything, split, val_fraction, seed)
        unknown = [name for name in names if name not in self.images]
        if unknown:
            raise DataError(f"{self.split_file}: lists {len(unknown)} name(s) with no picture in "
                            f"{os.path.join(self.root, 'images')}, e.g. {unknown[0]!r}")
        if not names:
            raise DataError(f"{self.root}: the {split!r} split holds no images")
        return names


def seeded_split(names, split, val_fraction, seed):
    """`names` shuffled by `seed` and cut in two: "val" gets round(val_fraction * n)
    of them (at least one when there are two or more), "train" the rest."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"Folder: val_fraction must lie strictly between 0 and 1, got {val_fraction}")
    order = [names[i] for i in numpy.random.default_rng(seed).permutation(len(names))]
    n_val = min(max(round(val_fraction * len(names)), 1), len(names) - 1)
    return sorted(order[:n_val] if split == "val" else order[n_val:])


def _files(directory, extensions, what):
    """{stem: path} of the files in `directory` with one of `extensions` (any case)."""
    require_directory(directory, f"{what}")
    found = {}
    for entry in sorted(os.listdir(directory)):
        stem, extension = os.path.splitext(entry)
        if extension.lower() not in extensions:
            continue
        if stem in found:
            raise DataError(f"{directory}: two files named {stem!r} ({os.path.basename(found[stem])} "
                            f"and {entry}); names must be unique")
        found[stem] = os.path.join(directory, entry)
    if not found:
        raise DataError(f"{directory}: no {what} ({', '.join(extensions)})")
    return found


def _check_pairs(directory, images, masks):
    for have, lack, where in ((images, masks, "masks"), (masks, images, "images")):
        missing = sorted(set(have) - set(lack))
        if missing:
            raise DataError(f"{os.path.join(directory, where)}: no file for {len(missing)} "
                            f"name(s) the other folder has, e.g. {missing[0]!r}; every picture "
                            f"needs a mask of the same name and vice versa")
