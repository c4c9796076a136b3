"""Convert ImageNet VGG16 weights (Caffe or torchvision), or Caffe's GoogLeNet
(bvlc_googlenet.caffemodel), into minifcn's `.npz`.

The .npz (read it with `numpy.load(path, allow_pickle=False)` or `load_converted`) holds
`conv1_1.weight` ... `conv5_3.bias`, `fc6.weight` (4096, 25088), `fc7.weight` (4096, 4096),
`fc8.weight` (1000, 4096) and their biases, float32, in the VGG16 classifier's shapes, and
the input the weights were trained on, as 0-d and 1-d entries:

    meta.source         str     "caffemodel" or "torch_pth": the format converted from
    meta.channel_order  str     "BGR" (Caffe) or "RGB" (torchvision)
    meta.pixel_scale    float   255.0 (Caffe) or 1.0 (torchvision)
    meta.mean           (3,)    float64, per channel in channel_order, in pixel_scale units
    meta.std            (3,)    float64, likewise (Caffe: ones)

so that the network's input, from an image with values in [0, 1] and its channels put in
channel_order, is `(image * pixel_scale - mean) / std`. For Caffe that is "0..255 pixels
minus the BGR mean"; for torchvision "[0, 1] pixels normalized by the ImageNet mean/std".

A GoogLeNet file (recognised by its layer `conv1/7x7_s2`) gives `conv1/7x7_s2.weight`
... `inception_5b/pool_proj.bias` and `loss3/classifier.*` under Caffe's names, in the
shapes googlenet.py lists (the auxiliary classifiers loss1/*, loss2/* are left out: the
FCN drops them), with Caffe's meta and GoogLeNet's mean (104, 117, 123).
"""
import math
import os
import secrets
import zipfile

import numpy

from . import googlenet
from .caffemodel import read_caffemodel
from .errors import WeightsFileError
from .sniff import describe, file_kind
from .torch_pth import read_torch_state_dict

CONV_LAYERS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
               "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3")
FC_LAYERS = ("fc6", "fc7", "fc8")
LAYERS = CONV_LAYERS + FC_LAYERS
VGG16_CONV_WIDTHS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
VGG16_FC_WIDTHS = (4096, 4096, 1000)
VGG16_FC6_GRID = 7  # fc6 sees conv5_3's output after pool5: 512 x 7 x 7 for a 224 x 224 input

# torchvision's vgg16: the convolutions in `features` (ReLUs and pools in between carry no
# weights) and the Linear layers in `classifier` (ReLU and Dropout in between).
TORCHVISION_NAMES = dict(zip(LAYERS, [f"features.{i}" for i in
                                      (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)]
                             + ["classifier.0", "classifier.3", "classifier.6"]))

CAFFE_META = {"source": "caffemodel", "channel_order": "BGR", "pixel_scale": 255.0,
              "mean": (104.00698793, 116.66876762, 122.67891434), "std": (1.0, 1.0, 1.0)}
TORCHVISION_META = {"source": "torch_pth", "channel_order": "RGB", "pixel_scale": 1.0,
                    "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
GOOGLENET_META = dict(CAFFE_META, mean=googlenet.MEAN_BGR)
META_PREFIX = "meta."


def convert(src_path, out_path, expect_vgg16_shapes=True):
    """Convert `src_path` (a .caffemodel or a torchvision .pth) to the .npz `out_path`.

    The file is written under a temporary name beside `out_path` and renamed into place, so
    an error at any point leaves no output behind. `expect_vgg16_shapes=False` accepts any
    widths that fit together as a VGG16 (for small test nets). Returns the meta dict.
    Raises WeightsFileError, naming the file and what is wrong, for a file it cannot use.
    """
    weights, meta = read_vgg16(src_path)
    names = check_layout(weights, src_path, expect_vgg16_shapes)
    arrays = {name: weights[name] for name in names}
    arrays.update({META_PREFIX + key: numpy.asarray(value) for key, value in meta.items()})
    write_npz_atomically(out_path, arrays)
    return meta


def load_converted(path, expect_vgg16_shapes=True):
    """(weights, meta) from a file `convert` wrote: weights {"conv1_1.weight": array, ...},
    meta {"source": str, "channel_order": str, "pixel_scale": float, "mean": (3 floats),
    "std": (3 floats)}. Raises WeightsFileError on a missing key or a wrong shape, and
    on a file of another kind, saying which kind and what to do with it."""
    kind = _kind(path)
    if kind != "converted":
        raise WeightsFileError(path, f"{describe(kind)}, not converted VGG16 weights. "
                               + NOT_CONVERTED_HINTS.get(kind, NOT_CONVERTED_HINTS[None]).format(path=path))
    try:
        with numpy.load(path, allow_pickle=False) as npz:
            entries = {name: npz[name] for name in npz.files}
    except OSError as error:
        raise WeightsFileError(path, f"cannot read the file: {error.strerror or error}") from None
    except (ValueError, EOFError, zipfile.BadZipFile) as error:  # not an .npz, or damaged
        raise WeightsFileError(path, f"not a converted weights file (.npz): {error}") from None
    meta = read_meta(entries, path)
    weights = {name: value for name, value in entries.items() if not name.startswith(META_PREFIX)}
    net = "GoogLeNet" if is_googlenet(weights) else "VGG16"
    known = googlenet_shapes(weights) if net == "GoogLeNet" else expected_shapes()
    unexpected = sorted(set(weights) - set(known))
    if unexpected:
        raise WeightsFileError(path, f"unexpected entries {', '.join(unexpected)}: "
                               f"not a converted {net} file")
    check_layout(weights, path, expect_vgg16_shapes)
    return weights, meta


def is_googlenet(weights):
    return "conv1/7x7_s2.weight" in weights


def googlenet_shapes(weights):
    """GoogLeNet's shapes at the width of the file's conv1 (64 for the real one)."""
    conv1 = weights["conv1/7x7_s2.weight"]
    return googlenet.expected_shapes(conv1.shape[0] if conv1.ndim == 4 else 64)


def check_layout(weights, path, exact):
    """check_shapes for VGG16, or its like for GoogLeNet (exact: GoogLeNet's own widths;
    else the narrower ones its conv1 implies); returns the names of the entries to keep."""
    if not is_googlenet(weights):
        check_shapes(weights, path, exact)
        return list(expected_shapes())
    shapes = googlenet.expected_shapes() if exact else googlenet_shapes(weights)
    for name, shape in shapes.items():
        if name not in weights:
            raise WeightsFileError(path, f"missing {name}: not a whole GoogLeNet")
        if weights[name].shape != shape:
            raise WeightsFileError(path, f"{name} has shape {weights[name].shape}, expected "
                                   f"{shape}")
    return list(shapes)
# What to do with a file that is not converted weights, by its kind (sniff.py).
NOT_CONVERTED_HINTS = {
    "caffemodel": "Convert it first: minifcn convert {path} vgg16.npz, then use vgg16.npz",
    "pytorch": "Convert it first: minifcn convert {path} vgg16.npz, then use vgg16.npz",
    "checkpoint": "To start from a trained net use `minifcn train --init-from` with it; "
                  "`minifcn eval` and `predict` take it as --checkpoint",
    None: "`minifcn convert SRC vgg16.npz` makes them from a Caffe VGG_ILSVRC_16_layers"
          ".caffemodel or torchvision's vgg16-397923af.pth",
}
NOT_A_SOURCE_HINTS = {
    "converted": "it is already converted: give it to `minifcn train --weights` as it is",
    "checkpoint": "it is trained already: `minifcn eval`/`predict --checkpoint` use it",
}


def read_vgg16(path):
    """({"conv1_1.weight": float32 array, ...}, meta) from either source format, told
    apart by the file's first bytes; any other kind of file is named as what it is."""
    kind = _kind(path)
    if kind == "pytorch":
        return read_torchvision_vgg16(path), dict(TORCHVISION_META)
    if kind == "caffemodel":
        layers = read_caffemodel(path)
        if "conv1/7x7_s2" in layers:
            return read_caffe_googlenet(path, layers), dict(GOOGLENET_META)
        return read_caffe_vgg16(path, layers), dict(CAFFE_META)
    hint = NOT_A_SOURCE_HINTS.get(kind, "`minifcn convert` reads VGG16 weights in one of "
                                        "those two formats")
    raise WeightsFileError(path, f"{describe(kind)}, not a Caffe model (.caffemodel) or a "
                           f"PyTorch file (.pth): {hint}")


def _kind(path):
    try:
        return file_kind(path)
    except OSError as error:
        raise WeightsFileError(path, f"cannot read the file: {error.strerror or error}") from None


def read_torchvision_vgg16(path):
    state = read_torch_state_dict(path)
    if any(name.endswith("running_mean") for name in state):
        raise WeightsFileError(path, "a VGG16 with batch norm (vgg16_bn): only torchvision's "
                               "plain vgg16 is supported")
    blobs = {layer: [state.get(f"{prefix}.weight"), state.get(f"{prefix}.bias")]
             for layer, prefix in TORCHVISION_NAMES.items()}
    missing = [f"{TORCHVISION_NAMES[layer]}.{part} ({layer})" for layer in LAYERS
               for part, blob in zip(("weight", "bias"), blobs[layer]) if blob is None]
    if missing:
        raise WeightsFileError(path, f"no {', '.join(missing)}: not a torchvision vgg16")
    return as_weights(blobs)


def read_caffe_vgg16(path, layers):
    check_caffe_layers(path, layers, LAYERS, "VGG16")
    return as_weights(layers)


def read_caffe_googlenet(path, layers):
    """{"conv1/7x7_s2.weight": float32, ..., "loss3/classifier.bias": ...}."""
    check_caffe_layers(path, layers, googlenet.LAYERS, "GoogLeNet")
    return {f"{layer}.{part}": numpy.asarray(blob, numpy.float32)
            for layer in googlenet.LAYERS
            for part, blob in zip(("weight", "bias"), layers[layer])}


def check_caffe_layers(path, layers, names, net):
    for layer in names:
        if layer not in layers:
            raise WeightsFileError(path, f"no layer {layer!r} with weights (layers with weights: "
                                   f"{', '.join(layers)}): not a Caffe {net}")
        if len(layers[layer]) != 2:
            raise WeightsFileError(path, f"layer {layer!r} has {len(layers[layer])} blobs, "
                                   "expected 2 (weight and bias)")


def as_weights(blobs):
    """{layer: [weight, bias]} -> {"layer.weight": float32, "layer.bias": float32}."""
    weights = {}
    for layer in LAYERS:
        weight, bias = (numpy.asarray(blob, numpy.float32) for blob in blobs[layer])
        if layer in FC_LAYERS and weight.ndim > 2:
            # fc weights kept as convolutions (FCN models: fc6 (4096, 512, 7, 7)) have the
            # same memory order as the (4096, 25088) matrix
            weight = weight.reshape(weight.shape[0], -1)
        weights[f"{layer}.weight"], weights[f"{layer}.bias"] = weight, bias
    return weights


def expected_shapes(conv_widths=VGG16_CONV_WIDTHS, fc_widths=VGG16_FC_WIDTHS,
                    fc6_grid=VGG16_FC6_GRID, kernel=3):
    """{"conv1_1.weight": (64, 3, 3, 3), ...}: the shapes of a VGG16 of these widths."""
    shapes, inputs = {}, 3  # RGB or BGR
    for layer, width in zip(CONV_LAYERS, conv_widths):
        shapes[f"{layer}.weight"] = (width, inputs, kernel, kernel)
        shapes[f"{layer}.bias"] = (width,)
        inputs = width
    inputs *= fc6_grid * fc6_grid
    for layer, width in zip(FC_LAYERS, fc_widths):
        shapes[f"{layer}.weight"], shapes[f"{layer}.bias"] = (width, inputs), (width,)
        inputs = width
    return shapes


def check_shapes(weights, path, expect_vgg16_shapes):
    """Raise WeightsFileError for the first missing or mis-shaped entry.

    With expect_vgg16_shapes the shapes must be VGG16's; without, the widths are read off
    the weights themselves and only have to fit together as a VGG16 does.
    """
    missing = [name for name in expected_shapes() if name not in weights]
    if missing:
        raise WeightsFileError(path, f"missing {', '.join(missing)}")
    expected = expected_shapes() if expect_vgg16_shapes else expected_shapes(*widths_of(weights))
    context = "" if expect_vgg16_shapes else " to fit the layers around it"
    for name, shape in expected.items():
        if weights[name].shape != shape:
            raise WeightsFileError(path, f"{name} has shape {weights[name].shape}, "
                                   f"expected {shape}{context}")


def widths_of(weights):
    """(conv widths, fc widths, fc6 grid, kernel) as the weights have them."""
    def width(layer):
        weight = weights[f"{layer}.weight"]
        return weight.shape[0] if weight.ndim else 0
    conv_widths = [width(layer) for layer in CONV_LAYERS]
    fc6, conv1_1 = weights["fc6.weight"], weights["conv1_1.weight"]
    grid = math.isqrt(fc6.shape[1] // max(conv_widths[-1], 1)) if fc6.ndim == 2 else VGG16_FC6_GRID
    kernel = conv1_1.shape[-1] if conv1_1.ndim else 3
    return conv_widths, [width(layer) for layer in FC_LAYERS], grid, kernel


def read_meta(entries, path):
    """The meta.* entries of a converted file as plain Python values, checked."""
    meta = {}
    for key, kind in (("source", str), ("channel_order", str), ("pixel_scale", float),
                      ("mean", tuple), ("std", tuple)):
        value = entries.get(META_PREFIX + key)
        if value is None:
            raise WeightsFileError(path, f"missing {META_PREFIX}{key}: not written by "
                                   "minifcn convert")
        if kind is tuple:
            if value.shape != (3,) or value.dtype.kind != "f":
                raise WeightsFileError(path, f"{META_PREFIX}{key} has shape {value.shape} "
                                       f"and dtype {value.dtype}, expected 3 floats")
            meta[key] = tuple(float(v) for v in value)
        elif value.shape != () or value.dtype.kind != ("U" if kind is str else "f"):
            raise WeightsFileError(path, f"{META_PREFIX}{key} has shape {value.shape} and "
                                   f"dtype {value.dtype}, expected one {kind.__name__}")
        else:
            meta[key] = kind(value[()])
    if meta["channel_order"] not in ("RGB", "BGR"):
        raise WeightsFileError(path, f"{META_PREFIX}channel_order is "
                               f"{meta['channel_order']!r}, expected 'RGB' or 'BGR'")
    return meta


def write_npz_atomically(out_path, arrays):
    """Write the .npz under a temporary name in the same directory, then rename it into
    place: a reader never sees half a file, and a failure leaves nothing behind."""
    directory, name = os.path.split(os.path.abspath(out_path))
    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as file:  # "x": never clobber another file of that name
            numpy.savez(file, **arrays)
        os.replace(temporary, out_path)
    except BaseException as error:
        if os.path.exists(temporary):
            os.remove(temporary)
        if isinstance(error, OSError):
            raise WeightsFileError(out_path, f"cannot write: {error.strerror or error}") from None
        raise
