"""GoogLeNet's layers (Szegedy et al., Caffe's models/bvlc_googlenet), as names and shapes.

    conv1/7x7_s2        7x7 stride 2 pad 3, 64     pool1/3x3_s2, pool1/norm1 (LRN)
    conv2/3x3_reduce    1x1, 64
    conv2/3x3           3x3 pad 1, 192             conv2/norm2 (LRN), pool2/3x3_s2
    inception_3a, 3b                               pool3/3x3_s2
    inception_4a ... 4e                            pool4/3x3_s2
    inception_5a, 5b                               (pool5/7x7_s1, loss3/classifier)

An inception module runs four branches on its input and concatenates them on channels,
in this order: `1x1`; `3x3_reduce` (1x1) then `3x3` (pad 1); `5x5_reduce` (1x1) then
`5x5` (pad 2); `pool` (3x3 max, stride 1, pad 1) then `pool_proj` (1x1). Every
convolution is followed by a ReLU. The widths below are Table 1 of the paper.

`trunk_layers(width)` lists (name, in, out, kernel) in prototxt order for the model
(minifcn/models/googlenet.py) and the converter (convert.py) alike; `width` maps each
of GoogLeNet's channel counts to the one wanted (narrow test nets).
"""
INCEPTION_WIDTHS = {  # 1x1, 3x3_reduce, 3x3, 5x5_reduce, 5x5, pool_proj
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128)}
POOLED_AFTER = ("3b", "4e")  # pool3/3x3_s2 and pool4/3x3_s2 follow these modules
BRANCH_KERNELS = (("1x1", 1), ("3x3_reduce", 1), ("3x3", 3), ("5x5_reduce", 1), ("5x5", 5),
                  ("pool_proj", 1))
CLASSIFIER = "loss3/classifier"  # 1000 x 1024 InnerProduct, kept by convert, not by the FCN
N_IMAGENET = 1000
MEAN_BGR = (104.0, 117.0, 123.0)  # the prototxt's mean_value


def same(channels):
    return channels


def scaled(conv1_width):
    """The width map of a net whose conv1 has conv1_width channels (GoogLeNet: 64): each
    count c becomes max(1, round(c * conv1_width / 64))."""
    if conv1_width == 64:
        return same
    return lambda channels: max(1, round(channels * conv1_width / 64))


def inception_layers(module, in_channels, width=same):
    """(name, in, out, kernel) of the six convolutions of inception_<module>, and the
    module's output width (the four branches concatenated)."""
    b1, r3, b3, r5, b5, bp = (width(c) for c in INCEPTION_WIDTHS[module])
    prefix = f"inception_{module}/"
    inputs = {"1x1": in_channels, "3x3_reduce": in_channels, "3x3": r3,
              "5x5_reduce": in_channels, "5x5": r5, "pool_proj": in_channels}
    outputs = dict(zip([name for name, _ in BRANCH_KERNELS], (b1, r3, b3, r5, b5, bp)))
    layers = [(prefix + name, inputs[name], outputs[name], kernel)
              for name, kernel in BRANCH_KERNELS]
    return layers, b1 + b3 + b5 + bp


def trunk_layers(width=same, in_channels=3):
    """Every convolution of the trunk through inception_5b, in prototxt order, and the
    trunk's output width (1024 for GoogLeNet)."""
    c1, c2r, c2 = width(64), width(64), width(192)
    layers = [("conv1/7x7_s2", in_channels, c1, 7), ("conv2/3x3_reduce", c1, c2r, 1),
              ("conv2/3x3", c2r, c2, 3)]
    channels = c2
    for module in INCEPTION_WIDTHS:
        module_layers, channels = inception_layers(module, channels, width)
        layers += module_layers
    return layers, channels


def expected_shapes(conv1_width=64):
    """{"conv1/7x7_s2.weight": (64, 3, 7, 7), ..., "loss3/classifier.weight": (1000, 1024)}
    (conv1_width: a narrow GoogLeNet's, see `scaled`; the classifier keeps 1000 classes)."""
    layers, channels = trunk_layers(scaled(conv1_width))
    shapes = {}
    for name, c_in, c_out, kernel in layers:
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (c_out, c_in, kernel, kernel), (c_out,)
    shapes[f"{CLASSIFIER}.weight"] = (N_IMAGENET, channels)
    shapes[f"{CLASSIFIER}.bias"] = (N_IMAGENET,)
    return shapes


LAYERS = tuple(name for name, *_ in trunk_layers()[0]) + (CLASSIFIER,)
