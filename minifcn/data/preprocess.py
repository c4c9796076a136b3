"""Turning a uint8 RGB picture into the float input a net expects, and back.

Each set of weights was trained on one input convention, and a net only works when fed
the same one:

    Caffe VGG16 / the FCN reference   BGR, pixels 0..255, minus the mean BGR pixel
                                      (104.00698793, 116.66876762, 122.67891434)
    torchvision VGG16                 RGB, pixels 0..1, minus (0.485, 0.456, 0.406),
                                      divided by (0.229, 0.224, 0.225)

Preprocess holds one convention and applies it in this order:

    reorder channels (RGB -> channel_order)
    scale:            x * pixel_scale / 255      (255 keeps 0..255, 1 gives 0..1)
    normalize:        (x - mean) / std           (mean and std in channel_order)
    layout:           HWC -> CHW

`minifcn convert` records the convention next to the weights (`meta.channel_order`,
`meta.mean`, `meta.std`, `meta.pixel_scale`); `Preprocess.from_meta` reads it back.
"""
import dataclasses
import re

import numpy

VGG_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
CHANNEL_ORDERS = ("RGB", "BGR")


@dataclasses.dataclass(frozen=True)
class Preprocess:
    channel_order: str = "BGR"
    mean: tuple = VGG_MEAN_BGR
    std: tuple = (1.0, 1.0, 1.0)
    pixel_scale: float = 255.0

    def __post_init__(self):
        # frozen: the normalized values are set through object.__setattr__
        order = str(self.channel_order).upper()
        if order not in CHANNEL_ORDERS:
            raise ValueError(f"Preprocess: channel_order {self.channel_order!r} is not one of "
                             f"{CHANNEL_ORDERS}")
        object.__setattr__(self, "channel_order", order)
        object.__setattr__(self, "mean", _three_floats(self.mean, "mean"))
        object.__setattr__(self, "std", _three_floats(self.std, "std"))
        object.__setattr__(self, "pixel_scale", float(self.pixel_scale))
        if 0.0 in self.std:
            raise ValueError(f"Preprocess: std {self.std} has a zero")

    def __call__(self, rgb):
        """float32 (3, H, W) net input from a uint8 (H, W, 3) RGB picture."""
        rgb = numpy.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"Preprocess: expected an (H, W, 3) RGB picture, got shape "
                             f"{rgb.shape}")
        pixels = rgb.astype(numpy.float32)  # a copy: the in-place steps below leave rgb alone
        if self.channel_order == "BGR":
            pixels = pixels[:, :, ::-1]
        if self.pixel_scale != 255.0:
            pixels *= numpy.float32(self.pixel_scale / 255.0)
        pixels -= numpy.asarray(self.mean, numpy.float32)
        if self.std != (1.0, 1.0, 1.0):
            pixels /= numpy.asarray(self.std, numpy.float32)
        return numpy.ascontiguousarray(pixels.transpose(2, 0, 1))

    def deprocess(self, image):
        """uint8 (H, W, 3) RGB picture from a (3, H, W) net input: __call__ undone."""
        image = numpy.asarray(image, dtype=numpy.float64)
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"Preprocess.deprocess: expected a (3, H, W) input, got shape "
                             f"{image.shape}")
        pixels = image.transpose(1, 2, 0) * self.std + self.mean
        pixels *= 255.0 / self.pixel_scale
        if self.channel_order == "BGR":
            pixels = pixels[:, :, ::-1]
        return numpy.clip(numpy.rint(pixels), 0, 255).astype(numpy.uint8)

    @classmethod
    def from_meta(cls, meta):
        """The convention recorded with converted weights or a checkpoint.

        `meta` maps "meta.channel_order", "meta.mean", "meta.std", "meta.pixel_scale" (the
        "meta." prefix may be left out) to strings, numbers, sequences or numpy arrays, as
        numpy.load returns them; std defaults to ones and pixel_scale to 255."""
        def entry(key, default=None):
            for name in (f"meta.{key}", key):
                if name in meta:
                    return _plain(meta[name])
            if default is None:
                raise ValueError(f"Preprocess.from_meta: no 'meta.{key}' entry "
                                 f"(found {sorted(meta)})")
            return default
        return cls(channel_order=entry("channel_order"), mean=entry("mean"),
                   std=entry("std", (1.0, 1.0, 1.0)), pixel_scale=entry("pixel_scale", 255.0))


def _plain(value):
    """A numpy array or 0-d array as the Python value it holds (str, float or list)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, numpy.ndarray):
        return value.item() if value.ndim == 0 else value.tolist()
    return value


def _three_floats(value, what):
    """Three floats from a sequence or from text such as "104.0, 116.7, 122.7"."""
    if isinstance(value, (str, bytes)):
        text = value.decode() if isinstance(value, bytes) else value
        value = [part for part in re.split(r"[\s,;()\[\]]+", text) if part]
    try:
        floats = tuple(float(v) for v in numpy.ravel(numpy.asarray(value, dtype=object)))
    except (TypeError, ValueError):
        raise ValueError(f"Preprocess: {what} {value!r} is not three numbers") from None
    if len(floats) != 3:
        raise ValueError(f"Preprocess: {what} needs one value per channel (3), got {floats}")
    return floats
