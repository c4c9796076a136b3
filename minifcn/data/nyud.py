"""NYUDv2 (Silberman et al.) with the 40-class labels of Gupta et al., in the layout of
the FCN reference code:

    DIR/data/images/img_<id>.png     the colour pictures
    DIR/data/hha/img_<id>.png        depth encoded as three channels (HHA: horizontal
                                     disparity, height above ground, angle with gravity)
    DIR/segmentation/img_<id>.mat    key `segmentation`: 1-40 the classes, 0 unlabelled
    DIR/{trainval,test}.txt          ids ("train" names trainval, the 795 training
                                     images of the standard split; "val" names test, 654)

Labels are shifted to 0-39 with void 255. `tops` picks the input: ("color",) BGR minus the
colour mean, ("hha",) HHA in file order minus the HHA mean, or ("color", "hha"): both
stacked into one (6, H, W) image, colour channels first (tops in the order given), for an
early-fusion net; a late-fusion net splits it as image[:3], image[3:].
"""
import os

import numpy

from .base import FileDataset, find_root, void_zero_labels
from .io import check_same_size, load_image, load_mat_label
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
TOP_DIRECTORIES = {"color": "images", "hha": "hha"}


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
        super().__init__(root, split, self.preprocessors[tops[0]], split_file)

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
        pictures = [load_image(self.image_path(name, top)) for top in self.tops]
        for top, picture in zip(self.tops[1:], pictures[1:]):
            check_same_size(self.image_path(name), pictures[0].shape,
                            self.image_path(name, top), picture.shape)
        inputs = [self.preprocessors[top](picture) for top, picture in zip(self.tops, pictures)]
        return inputs[0] if len(inputs) == 1 else numpy.concatenate(inputs, axis=0)
