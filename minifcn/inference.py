"""Using a trained net: load a checkpoint with its preprocessing, label a picture.

    import minifcn as mf
    net = mf.load_checkpoint("runs/fcn8s-synthetic/checkpoint.npz")
    labels = net.predict(rgb)   # uint8 (H, W, 3) RGB picture -> int64 (H, W) class numbers
    net.class_names[labels[0, 0]]

A net is fed pictures as its weights were trained on them (channel order, scale, mean:
data/preprocess.py). A checkpoint records that convention and the class names (entries
`meta.channel_order`, `meta.mean`, `meta.std`, `meta.pixel_scale`, `meta.class_names`,
written by `train` through `training_meta`); for checkpoints written before it did, the
convention of the dataset trained on is used.
"""
import numpy

from . import backend
from .errors import UserError
from .weights.sniff import describe, file_kind


class CheckpointError(UserError, ValueError):
    """A file given as a checkpoint that is not one; the message says what it is."""


# What a file of each kind is for, when it was given as a checkpoint.
NOT_A_CHECKPOINT_HINTS = {
    "converted": "ImageNet weights to start training from, not a trained segmentation net: "
                 "train with `minifcn train --weights {path}`",
    "caffemodel": "ImageNet weights, not a trained segmentation net: convert them "
                  "(`minifcn convert {path} vgg16.npz`) and train from them "
                  "(`minifcn train --weights vgg16.npz`)",
    "pytorch": "ImageNet weights, not a trained segmentation net: convert them "
               "(`minifcn convert {path} vgg16.npz`) and train from them "
               "(`minifcn train --weights vgg16.npz`)",
}


def check_checkpoint(path):
    """CheckpointError unless `path` is a checkpoint `minifcn train` wrote (a look at
    the file's kind and entry names; no array is read)."""
    try:
        kind = file_kind(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file (a checkpoint is the checkpoint.npz "
                              f"that `minifcn train` writes in its --out folder)") from None
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read the file: {error.strerror or error}") from None
    if kind != "checkpoint":
        hint = NOT_A_CHECKPOINT_HINTS.get(kind, "a checkpoint is the checkpoint.npz that "
                                                "`minifcn train` writes in its --out folder")
        raise CheckpointError(f"{path}: {describe(kind)}, not a minifcn checkpoint; "
                              + hint.format(path=path))


def load_checkpoint(path, device="cpu"):
    """The trained net in a checkpoint, in eval mode on `device`, ready to `predict`:
    its `preprocess` (the input convention it was trained with), `class_names` and
    `config` (the TrainConfig it was trained with) are set."""
    from .train import net_from_checkpoint
    check_checkpoint(path)
    net, config = net_from_checkpoint(path, device)
    net.config = config
    net.preprocess = checkpoint_preprocess(net.input_meta, config.data)
    net.class_names = checkpoint_class_names(net.input_meta, config.data, net.n_class)
    return net


def training_meta(dataset):
    """The `meta.*` entries a checkpoint records about the data trained on."""
    preprocess = dataset.preprocess
    return {"meta.channel_order": numpy.array(preprocess.channel_order),
            "meta.mean": numpy.array(preprocess.mean), "meta.std": numpy.array(preprocess.std),
            "meta.pixel_scale": numpy.array(preprocess.pixel_scale),
            "meta.class_names": numpy.array([str(name) for name in dataset.class_names]
                                            or [f"class {i}" for i in range(dataset.n_class)])}


def checkpoint_preprocess(meta, data):
    """The convention `meta` records, else that of the dataset named by `data`."""
    from .data import Preprocess, SyntheticShapes
    if "meta.channel_order" in meta:
        return Preprocess.from_meta(meta)
    if str(data).partition(":")[0] == "synthetic":
        return SyntheticShapes(n_images=1, size=16).preprocess
    return Preprocess()  # the file datasets' default: Caffe's


def checkpoint_class_names(meta, data, n_class):
    from .data import DATASETS
    if "meta.class_names" in meta:
        return tuple(str(name) for name in numpy.asarray(meta["meta.class_names"]).ravel())
    names = getattr(DATASETS.get(str(data).partition(":")[0]), "class_names", ())
    return tuple(names) if len(names) == n_class else tuple(f"class {i}" for i in range(n_class))


def predict_picture(net, rgb):
    """int64 (H, W) class numbers for a uint8 (H, W, 3) RGB picture, preprocessed with
    net.preprocess (set by load_checkpoint) or, for a net that has none, the convention
    of the weights it loaded (load_vgg16), else Caffe's."""
    from .data import Preprocess
    from .train import predict
    rgb = numpy.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != numpy.uint8:
        raise TypeError(f"{type(net).__name__}.predict: expected a uint8 (H, W, 3) RGB picture, "
                        f"got {rgb.dtype} {rgb.shape}")
    preprocess = getattr(net, "preprocess", None)
    if preprocess is None:
        meta = getattr(net, "input_meta", {})
        preprocess = Preprocess.from_meta(meta) if "meta.channel_order" in meta else Preprocess()
    was_training = net.training
    net.eval()
    try:
        device = backend.device_of(net.parameters()[0].data)
        return predict(net, preprocess(rgb), device).astype(numpy.int64)
    finally:
        net.train(was_training)
