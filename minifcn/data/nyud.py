"""NYUDv2 (Silberman et al.) with the 40-class labels of Gupta et al., in the layout of
the FCN reference code:

    DIR/data/images/img_<id>.png     the colour pictures
    DIR/data/hha/img_<id>.png        depth encoded as three channels (HHA: horizontal
                                     disparity, height above ground, angle with gravity)
    DIR/data/depth/img_<id>.png      depth itself, one channel (16-bit PNG, millimetres)
    DIR/segmentation/img_<id>.mat    key `segmentation`: 1-40 the classes, 0 unlabelled
    DIR/{trainval,test}.txt          ids ("train" names trainval, the 795 training
                                     images of the standard split; "val" names test, 654)

Labels are shifted to 0-39 with void 255. `tops` picks the input: ("color",) BGR minus the
colour mean, ("hha",) HHA in file order minus the HHA mean, ("depth",) log depth minus its
mean (one channel, as the reference's load_depth), or several of them stacked into one
image in the order given: ("color", "hha") is (6, H, W), colour channels first, for an
early-fusion net (a late-fusion net splits it as image[:3], image[3:]); ("color",
"depth") is the (4, H, W) RGB-D input. A depth of 0 (a hole: log 0 is -inf) is a
DataError naming the file; the reference's depth maps are hole-filled.
"""
import os

import numpy

from .base import FileDataset, find_root, void_zero_labels
from .io import DataError, _open_picture, check_same_size, load_image, load_mat_label
from .preprocess import Preprocess

CLASS_NAMES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window",
    "bookshelf", "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser",
    "pillow", "mirror", "floor mat", "clothes", "ceiling", "books", "refrigerator",
    "television", "paper", "towel", "shower curtain", "box", "whiteboard", "person",
    "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure",
    "otherfurniture", "otherprop")
MEAN_BGR = (116.190, 97.203, 92.318)
MEAN_HHA = (132.431, 94.076, 118.477)
MEAN_LOG_DEPTH = 7.844
TOP_DIRECTORIES = {"color": "images", "hha": "hha", "depth": "depth"}
TOP_CHANNELS = {"color": 3, "hha": 3, "depth": 1}


class NYUD(FileDataset):
    n_class = len(CLASS_NAMES)
    class_names = CLASS_NAMES
    SPLIT_ALIASES = {"train": ("trainval", "train"), "val": ("test", "val")}

    def __init__(self, directory, split="train", preprocess=None, split_file=None,
                 tops=("color",), hha_preprocess=None):
        """`preprocess` applies to the colour picture, `hha_preprocess` to the HHA one."""
        tops = (tops,) if isinstance(tops, str) else tuple(tops)
        known = all(top in TOP_DIRECTORIES for top in tops)
        if not tops or not known or len(set(tops)) < len(tops):
            raise ValueError(f"NYUD: tops={tops!r}; choose one or both of {tuple(TOP_DIRECTORIES)}")
        self.tops = tops
        # HHA is not a photograph: the reference keeps its channels in file order
        self.preprocessors = {
            "color": preprocess or Preprocess(mean=MEAN_BGR),
            "hha": hha_preprocess or Preprocess(channel_order="RGB", mean=MEAN_HHA)}
        root = find_root(directory, "data", [], "NYUDv2")
        # the preprocessing of the first picture top (depth has its own, fixed)
        first = next((top for top in tops if top != "depth"), "color")
        super().__init__(root, split, self.preprocessors[first], split_file)

    def split_directory(self):
        return self.root

    def image_path(self, name, top=None):
        directory = TOP_DIRECTORIES[top or self.tops[0]]
        return os.path.join(self.root, "data", directory, f"img_{name}.png")

    def label_path(self, name):
        return os.path.join(self.root, "segmentation", f"img_{name}.mat")

    def picture_paths(self, name):
        return [self.image_path(name, top) for top in self.tops]

    def read_label(self, path):
        return void_zero_labels(load_mat_label(path, "segmentation"))

    def load_input(self, name):
        inputs = [self.load_top(name, top) for top in self.tops]
        for top, image in zip(self.tops[1:], inputs[1:]):
            check_same_size(self.image_path(name), inputs[0].shape[1:],
                            self.image_path(name, top), image.shape[1:])
        return inputs[0] if len(inputs) == 1 else numpy.concatenate(inputs, axis=0)

    def load_top(self, name, top):
        """float32 (C, H, W): one top, preprocessed."""
        if top == "depth":
            return load_depth(self.image_path(name, "depth"))
        return self.preprocessors[top](load_image(self.image_path(name, top)))


def load_depth(path):
    """(1, H, W) float32 log depth minus MEAN_LOG_DEPTH from a one-channel PNG."""
    picture = _open_picture(path)
    if picture.mode not in ("I;16", "I", "L", "F"):
        raise DataError(f"{path}: depth PNG has mode {picture.mode!r}; expected one channel")
    depth = numpy.asarray(picture, dtype=numpy.float32)
    if depth.ndim != 2 or not (depth > 0).all():
        raise DataError(f"{path}: depth must be a 2-d map of positive values (holes filled); "
                        f"found {int((depth <= 0).sum())} pixels <= 0")
    return (numpy.log(depth) - numpy.float32(MEAN_LOG_DEPTH))[None]
