"""What every dataset offers, and the pairing of picture files with label files.

A dataset is a list of (image, label) pairs:

    len(ds)              number of images
    ds[i]                (image, label): image float32 (C, H, W), preprocessed for the net;
                         label int64 (H, W), class numbers in [0, n_class) and 255 = void
    ds.raw_image(i)      uint8 (H, W, 3) RGB picture, for looking at
    ds.label(i)          the label map alone
    ds.names             image ids (file stems) in order
    ds.n_class, ds.class_names, ds.preprocess

FileDataset adds what the on-disk datasets share: the split file that lists the ids,
resolving the split names "train" and "val" to each dataset's reference split, and the
checks that image and label exist and line up. A subclass only says where the files of
an id live (`image_path`, `label_path`) and how to read a label (`read_label`).
"""
import os

import numpy

from ..functions.loss import invalid_labels
from .io import DataError, check_same_size, load_image, picture_size, read_split, require_directory

VOID = 255


class SegmentationDataset:
    """The interface above; subclasses fill in the items."""
    n_class = None
    class_names = ()

    def __init__(self, names, preprocess):
        self.names = list(names)
        self.preprocess = preprocess

    def __len__(self):
        return len(self.names)

    def __getitem__(self, index):
        raise NotImplementedError

    def raw_image(self, index):
        raise NotImplementedError

    def label(self, index):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}({len(self)} images, {self.n_class} classes)"


class FileDataset(SegmentationDataset):
    """Images and labels in files, listed by a split file."""

    # split name asked for -> the split file stems tried, first found wins
    SPLIT_ALIASES = {}

    def __init__(self, root, split, preprocess, split_file=None):
        self.root = root
        self.split = split
        self.split_file = split_file or self.find_split_file(split)
        super().__init__(read_split(self.split_file), preprocess)

    # ----------------------------------------------------------- what subclasses define
    def split_directory(self):
        """Where the split files `<split>.txt` live."""
        raise NotImplementedError

    def image_path(self, name):
        raise NotImplementedError

    def label_path(self, name):
        raise NotImplementedError

    def read_label(self, path):
        """int64 (H, W) label map with void as 255."""
        raise NotImplementedError

    # ---------------------------------------------------------------- shared machinery
    def __getitem__(self, index):
        name = self.names[index]
        image = self.load_input(name)
        label = self.load_label(name)
        # a tuple when the dataset gives several label maps per image (SIFT Flow's "both")
        first_label = label[0] if isinstance(label, tuple) else label
        check_same_size(self.image_path(name), image.shape[1:], self.label_path(name),
                        first_label.shape)
        return image, label

    def load_input(self, name):
        """float32 (C, H, W) net input of image `name`."""
        return self.preprocess(load_image(self.image_path(name)))

    def load_label(self, name):
        return self.read_checked_label(self.label_path(name), self.n_class)

    def read_checked_label(self, path, n_class):
        label = self.read_label(path)
        check_label_values(label, n_class, path)
        return label

    def raw_image(self, index):
        return load_image(self.image_path(self.names[index]))

    # ----------------------------------------------------------- checking the files
    def picture_paths(self, name):
        """The picture files of image `name` (several when the input stacks pictures)."""
        return [self.image_path(name)]

    def label_files(self, name):
        """(path, n_class) of each label file of image `name`."""
        return [(self.label_path(name), self.n_class)]

    def file_problems(self, index):
        """What is wrong with the files of image `index`, one line each naming the file
        (empty: nothing): each must exist and decode, each label hold only classes or
        void, and all of them be of one size. data/scan.py runs it over a whole split."""
        problems, sizes = [], []

        def read(path, size_of):
            try:
                sizes.append((path, size_of(path)))
            except DataError as error:
                problems.append(str(error))
        name = self.names[index]
        for path in self.picture_paths(name):
            read(path, picture_size)
        for path, n_class in self.label_files(name):
            read(path, lambda path: self.read_checked_label(path, n_class).shape)  # noqa: B023
        for path, size in sizes[1:]:
            try:
                check_same_size(sizes[0][0], sizes[0][1], path, size)
            except DataError as error:
                problems.append(str(error))
        return problems

    def label(self, index):
        """The label map of image `index` alone (no picture decoded)."""
        return self.load_label(self.names[index])

    def find_split_file(self, split):
        directory = self.split_directory()
        tried = [os.path.join(directory, f"{stem}.txt")
                 for stem in self.SPLIT_ALIASES.get(split, (split,))]
        for path in tried:
            if os.path.isfile(path):
                return path
        raise DataError(f"{type(self).__name__}: no split file for split {split!r}; looked for "
                        f"{', '.join(tried)} (a list of image names, one a line)")


def find_root(directory, marker, subdirectories, what):
    """`directory` itself or one of its `subdirectories`, whichever holds `marker`.

    Lets a user point at either a dataset's top directory or the one inside it that holds
    the files (VOCdevkit or VOCdevkit/VOC2011, SBD or SBD/dataset)."""
    require_directory(directory, what)
    for candidate in (directory, *(os.path.join(directory, sub) for sub in subdirectories)):
        if os.path.isdir(os.path.join(candidate, marker)):
            return candidate
    looked = ", ".join(os.path.join(directory, sub, marker) for sub in ("", *subdirectories))
    raise DataError(f"{what} directory {directory} does not have the expected layout: "
                    f"no {looked}")


def void_zero_labels(raw):
    """Classes numbered from 1 with 0 (or -1) for unlabelled, as in the .mat datasets,
    renumbered from 0 with void 255: 0 -> 255, k -> k - 1. (The reference code gets the
    same by subtracting 1 in uint8, letting 0 wrap around to 255.)"""
    label = raw.astype(numpy.int64) - 1
    label[raw <= 0] = VOID
    return label


def check_label_values(label, n_class, path):
    """DataError for a class number outside [0, n_class) that is not void."""
    bad = invalid_labels(label, n_class, VOID)
    if bad.any():
        value = int(label[bad][0])
        raise DataError(f"{path}: label value {value} is neither a class in [0, {n_class}) "
                        f"nor void ({VOID})")
