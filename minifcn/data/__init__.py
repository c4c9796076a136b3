"""Datasets for FCN training: the built-in synthetic scenes and the paper's four.

    open_dataset("synthetic")                SyntheticShapes, drawn on the fly
    open_dataset("voc:DIR", split="val")     PASCAL VOC (val = seg11valid when present)
    open_dataset("sbd:DIR")                  SBD
    open_dataset("siftflow:DIR")             SIFT Flow (semantic labels; labels=... for more)
    open_dataset("nyud:DIR", tops=("color", "hha"))   NYUDv2
    open_dataset("context:DIR")              PASCAL-Context, 59 classes and background
    open_dataset("folder:DIR")               your own: DIR/images + DIR/masks (folder.py)

Every dataset gives ds[i] = (image float32 (C, H, W) preprocessed, label int64 (H, W)
with void 255), plus len(ds), ds.n_class, ds.class_names, ds.names, ds.raw_image(i) and
ds.preprocess (base.py says more). "train" and "val" name each dataset's reference
training and validation splits.
"""
import numpy

from .base import VOID, FileDataset, SegmentationDataset
from .context import PASCALContext
from .folder import Folder
from .io import DataError, load_image, load_label_png
from .nyud import NYUD
from .preprocess import Preprocess
from .sbd import SBD
from .siftflow import SIFTFlow
from .synthetic import SyntheticShapes
from .voc import VOC, VOC_PALETTE

DATASETS = {"synthetic": SyntheticShapes, "voc": VOC, "sbd": SBD, "siftflow": SIFTFlow,
            "nyud": NYUD, "context": PASCALContext, "folder": Folder}
SPECS = "synthetic, voc:DIR, sbd:DIR, siftflow:DIR, nyud:DIR, context:DIR, folder:DIR"
DEFAULT_SEED = 1337  # the reference data layers' seed


def open_dataset(spec, split="train", **options):
    """The dataset a spec names ("synthetic" or "KIND:DIR"); `options` go to its class."""
    kind, has_directory, directory = str(spec).partition(":")
    if kind not in DATASETS:
        raise ValueError(f"unknown dataset {spec!r}; expected one of: {SPECS}")
    if kind == "synthetic":
        if has_directory:
            raise ValueError(f"dataset {spec!r}: the synthetic dataset takes no directory")
        return SyntheticShapes(split=split, **options)
    if not directory:
        raise ValueError(f"dataset {spec!r}: {kind} needs a directory, as in {kind}:DIR")
    return DATASETS[kind](directory, split=split, **options)


def shuffled_order(n, seed=DEFAULT_SEED, epoch=0):
    """The order training visits n images in during `epoch`: a permutation that depends
    on (seed, epoch) alone, so a resumed run sees exactly the order it would have seen."""
    return numpy.random.default_rng([seed, epoch]).permutation(n)


__all__ = ["DATASETS", "DataError", "FileDataset", "Folder", "NYUD", "PASCALContext", "Preprocess", "SBD",
           "SIFTFlow",
           "SegmentationDataset", "SyntheticShapes", "VOC", "VOC_PALETTE", "VOID", "load_image",
           "load_label_png", "open_dataset", "shuffled_order"]
