"""FCN-GoogLeNet (the paper's section 5.1; the Caffe reference never released it).

GoogLeNet's trunk (weights/googlenet.py lists its layers) decapitated as the paper says:
the final average pooling and the classifier are dropped, and with them the dropout
before the classifier and the two auxiliary classifiers (only the final loss is kept).
What is left ends with inception_5b (1024 channels, stride 32), scored by a 1x1
convolution (score_fr), upsampled by a fixed bilinear 64/32 deconvolution (upscore) and
cropped to the input. Caffe's layer names: `conv1/7x7_s2.weight`, `inception_3a/1x1.bias`.

The crop offset, by fcn.py's bookkeeping (where in the input is a cell centred?):
conv1 (7x7, stride 2, pad P) centres output p on input 2 p + 3 - P; a 3x3 stride 2 pool
(no pad) centres q on 2 q + 1 of its input; every other layer (1x1, 3x3 pad 1, 5x5 pad 2,
the inception pools 3x3/1 pad 1, LRN) keeps coordinates. Four pools after conv1:

    score_fr cell y is centred on 2 (2 (2 (2 (2 y + 1) + 1) + 1) + 1) + 3 - P = 32 y + 33 - P.

Every kernel here is odd, so that centre is a whole pixel, whatever P. A 64/32
deconvolution puts cell y at 32 y + 31.5, half-way between two pixels: no integer crop
(Caffe's crop layer takes integers only) can make an even upsampling kernel exact on
this trunk. The offset P - 2 leaves the upsampled scores half a pixel below and right
of their centres (1/64 of a cell); `upscore_kernel=63` (FCN-AlexNet's choice for its own
odd-kernel trunk) centres cell y on 32 y + 31 and makes the same crop exact.
tests/models/test_googlenet.py measures both.

P = 26 is the least padding with which every input of 1 pixel or more still leaves each
3x3/2 pool at least one whole window and the upsampled map covers the crop: the crop is
then P - 2 = 24, for every input size (the test runs many odd ones).

Options: `width` (GoogLeNet's conv1 width, 64, by default) scales every layer to
max(1, round(c * width / 64)) channels, for narrow nets that train on a CPU; a VGG-style
5-tuple of widths (what the small-net preset gives every model) uses its first entry.
`fc_width` is accepted for the same common interface and unused: there is no fc layer.
"""
import numpy

from .. import functions as F
from ..nn import Conv2d, Module
from ..weights import googlenet as layout
from ..weights.convert import META_PREFIX, load_converted
from .fcn import score_layer, upsampling_layer
from .segmenter import Segmenter
from .vgg import positive_ints, transplant

CONV1_PAD = 26
SCORE_OFFSET = CONV1_PAD - 2
GOOGLENET_WIDTH = 64


def pool(x):
    return F.max_pool2d(x, 3, stride=2, ceil_mode=True)


def norm(x):
    return F.local_response_norm(x, size=5, alpha=1e-4, beta=0.75)


class FCNGoogLeNet(Segmenter, Module):
    """FCN-GoogLeNet: (N, 3, H, W) -> (N, n_class, H, W) scores for any H, W >= 1."""

    def __init__(self, n_class=21, widths=None, fc_width=None, init="msra",
                 learn_upsampling=False, upscore_kernel=64, dtype=numpy.float32):
        """Options:

        n_class           classes scored (21 for PASCAL VOC)
        widths            conv1's width (GoogLeNet: 64); every later layer scales with it,
                          so a narrow net trains from scratch on a CPU
        fc_width          accepted for the command line's sake; GoogLeNet has no fc layers
        init              the trunk's filler: "msra" (He), "xavier", "gaussian" (nn/init.py)
        learn_upsampling  accepted for symmetry: the one upsampling is the final, fixed one
        upscore_kernel    64 (the paper's 64/32, half a pixel off centre) or 63 (centred)
        dtype             numpy.float32 (default) or numpy.float64 (gradient checks)
        """
        super().__init__()
        self.n_class = positive_ints("n_class", n_class, 1)
        first = widths[0] if isinstance(widths, (tuple, list)) else widths
        self.width = GOOGLENET_WIDTH if first is None else positive_ints("widths", first, 1)
        if upscore_kernel not in (63, 64):
            raise ValueError(f"FCNGoogLeNet: upscore_kernel must be 64 (the issue's 64/32) or "
                             f"63 (exactly centred), got {upscore_kernel!r}")
        self.dtype = numpy.dtype(dtype)
        self.learn_upsampling = bool(learn_upsampling)  # one upsampling: the final, fixed one
        self.input_meta = {}
        layers, channels = layout.trunk_layers(layout.scaled(self.width))
        for name, c_in, c_out, kernel in layers:
            padding = CONV1_PAD if name == "conv1/7x7_s2" else (kernel - 1) // 2
            stride = 2 if name == "conv1/7x7_s2" else 1
            setattr(self, name, Conv2d(c_in, c_out, kernel, stride=stride, padding=padding,
                                       init=init, dtype=dtype))
        self.trunk_names = [name for name, *_ in layers]
        self.score_fr = score_layer(channels, n_class, dtype)
        self.upscore = upsampling_layer(n_class, 32, kernel_size=upscore_kernel, dtype=dtype)

    def conv_relu(self, name, x):
        return F.relu(getattr(self, name)(x))

    def inception(self, module, x):
        prefix = f"inception_{module}/"
        def c(name, t):
            return self.conv_relu(prefix + name, t)
        branch_pool = F.max_pool2d(x, 3, stride=1, padding=1, ceil_mode=True)
        return F.concat([c("1x1", x), c("3x3", c("3x3_reduce", x)),
                         c("5x5", c("5x5_reduce", x)), c("pool_proj", branch_pool)])

    def features(self, data):
        """inception_5b's output: 1024 channels (GoogLeNet's widths) at stride 32."""
        x = norm(pool(self.conv_relu("conv1/7x7_s2", data)))
        x = self.conv_relu("conv2/3x3", self.conv_relu("conv2/3x3_reduce", x))
        x = pool(norm(x))
        for module in layout.INCEPTION_WIDTHS:
            x = self.inception(module, x)
            if module in layout.POOLED_AFTER:
                x = pool(x)
        return x

    def forward(self, data):
        score_fr = self.score_fr(self.features(data))
        return F.crop(self.upscore(score_fr), data, SCORE_OFFSET)

    def load_googlenet(self, path):
        """Start from converted ImageNet GoogLeNet weights (`minifcn convert
        bvlc_googlenet.caffemodel out.npz`): every trunk layer is copied, the classifier
        dropped; the file's input convention goes to `self.input_meta`. Returns self."""
        weights, meta = load_converted(path, expect_vgg16_shapes=False)
        names = [f"{layer}.{part}" for layer in self.trunk_names for part in ("weight", "bias")]
        missing = [name for name in names if name not in weights]
        if missing:
            raise ValueError(f"load_googlenet({path}): not a converted GoogLeNet (no "
                             f"{', '.join(missing[:3])}...)")
        try:
            transplant(self, {name: weights[name] for name in names})
        except ValueError as error:
            raise ValueError(f"load_googlenet({path}): {error}. GoogLeNet weights need "
                             f"GoogLeNet's widths (width={GOOGLENET_WIDTH})") from None
        self.input_meta = {META_PREFIX + key: numpy.asarray(value) for key, value in meta.items()}
        return self

    load_vgg16 = load_googlenet  # what `minifcn train --weights` calls on every model

    def device(self):
        return self.score_fr.weight.device
