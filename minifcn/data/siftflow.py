"""SIFT Flow (Liu et al.): 2,688 outdoor pictures of 256x256, each labelled twice, with 33
semantic classes and 3 geometric ones, in the layout of the FCN reference code:

    DIR/Images/spatial_envelope_256x256_static_8outdoorcategories/<id>.jpg
    DIR/SemanticLabels/spatial_envelope_256x256_static_8outdoorcategories/<id>.mat   key S
    DIR/GeoLabels/spatial_envelope_256x256_static_8outdoorcategories/<id>.mat        key S
    DIR/{trainval,test}.txt         ids ("train" and "val" name these two splits)

In the .mat files classes count from 1 and 0 is unlabelled (the geometric maps also use
-1); we shift to 0-32 / 0-2 with void 255. Preprocessing: BGR minus the dataset's mean.

`labels=` picks the target: "semantic" (default), "geometric", or "both", where ds[i]
gives (image, (semantic, geometric)), n_class is (33, 3) and class_names a pair, for the
paper's two-headed net. `ds.semantic(i)` and `ds.geometric(i)` give one map either way.
"""
import os

from .base import FileDataset, find_root, void_zero_labels
from .io import check_same_size, load_mat_label
from .preprocess import Preprocess

SEMANTIC_CLASSES = (
    "awning", "balcony", "bird", "boat", "bridge", "building", "bus", "car", "cow",
    "crosswalk", "desert", "door", "fence", "field", "grass", "moon", "mountain", "person",
    "plant", "pole", "river", "road", "rock", "sand", "sea", "sidewalk", "sign", "sky",
    "staircase", "streetlight", "sun", "tree", "window")
GEOMETRIC_CLASSES = ("sky", "horizontal", "vertical")
CLASS_NAMES = {"semantic": SEMANTIC_CLASSES, "geometric": GEOMETRIC_CLASSES}
LABEL_DIRECTORIES = {"semantic": "SemanticLabels", "geometric": "GeoLabels"}
MEAN_BGR = (114.578, 115.294, 108.353)
SCENES = "spatial_envelope_256x256_static_8outdoorcategories"


class SIFTFlow(FileDataset):
    SPLIT_ALIASES = {"train": ("trainval", "train"), "val": ("test", "val")}

    def __init__(self, directory, split="train", preprocess=None, split_file=None,
                 labels="semantic"):
        if labels not in ("semantic", "geometric", "both"):
            raise ValueError(f"SIFTFlow: labels={labels!r}; choose semantic, geometric or both")
        self.labels = labels
        self.kinds = ("semantic", "geometric") if labels == "both" else (labels,)
        names = tuple(CLASS_NAMES[kind] for kind in self.kinds)
        self.class_names = names if labels == "both" else names[0]
        self.n_class = tuple(map(len, names)) if labels == "both" else len(names[0])
        root = find_root(directory, "Images", [], "SIFT Flow")
        super().__init__(root, split, preprocess or Preprocess(mean=MEAN_BGR), split_file)

    def split_directory(self):
        return self.root

    def image_path(self, name):
        return os.path.join(self.root, "Images", SCENES, f"{name}.jpg")

    def label_path(self, name, kind=None):
        directory = LABEL_DIRECTORIES[kind or self.kinds[0]]
        return os.path.join(self.root, directory, SCENES, f"{name}.mat")

    def read_label(self, path):
        return void_zero_labels(load_mat_label(path, "S"))

    def label_files(self, name):
        return [(self.label_path(name, kind), len(CLASS_NAMES[kind])) for kind in self.kinds]

    def load_label(self, name):
        maps = tuple(self.load_kind(name, kind) for kind in self.kinds)
        if len(maps) == 1:
            return maps[0]
        check_same_size(self.label_path(name, "semantic"), maps[0].shape,
                        self.label_path(name, "geometric"), maps[1].shape)
        return maps

    def load_kind(self, name, kind):
        return self.read_checked_label(self.label_path(name, kind), len(CLASS_NAMES[kind]))

    def semantic(self, index):
        """The semantic label map of image `index` (0-32, void 255)."""
        return self.load_kind(self.names[index], "semantic")

    def geometric(self, index):
        """The geometric label map of image `index` (0 sky, 1 horizontal, 2 vertical)."""
        return self.load_kind(self.names[index], "geometric")
