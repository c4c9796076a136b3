"""The Semantic Boundaries Dataset (SBD, Hariharan et al.): 11,355 more VOC pictures with
segmentations, the paper's training set (its `train` split, 8,498 images).

    SBD/dataset/img/<id>.jpg       the pictures
    SBD/dataset/cls/<id>.mat       MATLAB struct GTcls; GTcls.Segmentation is the (H, W)
                                   label map: 0 background, 1-20 the VOC classes
    SBD/dataset/{train,val}.txt    ids, one per line

Same 21 classes as PASCAL VOC. SBD has no void label in GTcls.Segmentation.
"""
import os

from .base import FileDataset, find_root
from .io import load_mat_label
from .preprocess import Preprocess
from .voc import CLASS_NAMES


class SBD(FileDataset):
    n_class = len(CLASS_NAMES)
    class_names = CLASS_NAMES

    def __init__(self, directory, split="train", preprocess=None, split_file=None):
        """`directory`: the SBD top directory or its `dataset` directory."""
        root = find_root(directory, "img", ["dataset"], "SBD")
        super().__init__(root, split, preprocess or Preprocess(), split_file)

    def split_directory(self):
        return self.root

    def image_path(self, name):
        return os.path.join(self.root, "img", f"{name}.jpg")

    def label_path(self, name):
        return os.path.join(self.root, "cls", f"{name}.mat")

    def read_label(self, path):
        return load_mat_label(path, "GTcls.Segmentation")
