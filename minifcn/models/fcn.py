"""The reference VGG16 FCNs (Long, Shelhamer, Darrell): FCN-32s, FCN-16s, FCN-8s, and
FCN-8s "at once", layer for layer as the Caffe nets voc-fcn*/net.py.

Each starts as the convolutionalized VGG16 (vgg.py) with conv1_1 padded by 100, so that
even a small image leaves fc6 something to see, scores its coarsest layer with a 1x1
convolution (score_fr), and upsamples back to the input with fixed bilinear
deconvolutions; FCN-16s and -8s first add scores of pool4 and pool3 ("skips"). The
padding makes every map larger than the part aligned with the input, so each map is
cropped before it is fused; the offsets are Caffe's crop layer's, worked out here:

Where does a cell's receptive field centre lie, in input pixels? conv1_1 (3x3, pad 100)
centres output p on input p - 99; a 3x3 pad 1 conv keeps coordinates; a 2x2/2 pool
centres q on 2q + 0.5 of its input; fc6 (7x7, no pad) centres r on r + 3. So

    score_fr    cell y  is centred on  32 (y + 3) + 15.5 - 99  =  32 y + 12.5
    score_pool4 cell p                 16 p + 7.5 - 99         =  16 p - 91.5
    score_pool3 cell q                 8 q + 3.5 - 99          =   8 q - 95.5

A deconvolution with kernel 2s and stride s puts input cell y at output s y + s - 0.5.

    32s  upscore (64/32) puts score_fr y at 32 y + 31.5 = (32 y + 12.5) + 19   -> crop 19
    16s  upscore2 (4/2) puts y at z = 2 y + 1.5, centred on 16 z - 11.5;
         score_pool4 cell z + 5 is centred on 16 (z + 5) - 91.5 = 16 z - 11.5 -> crop 5
         upscore16 (32/16) puts z at 16 z + 15.5 = (16 z - 11.5) + 27          -> crop 27
     8s  upscore_pool4 (4/2) puts z at v = 2 z + 1.5, centred on 8 v - 23.5;
         score_pool3 cell v + 9 is centred on 8 (v + 9) - 95.5 = 8 v - 23.5   -> crop 9
         upscore8 (16/8) puts v at 8 v + 7.5 = (8 v - 23.5) + 31                -> crop 31

Options shared by every net here: `widths` (the five VGG blocks' channels) and
`fc_width` (fc6/fc7) default to VGG16's (64, 128, 256, 512, 512) and 4096; narrow ones
give a VGG-shaped FCN that trains from scratch on a CPU. `init` is the trunk's filler
(nn/init.py: "msra" by default; `load_vgg16` overwrites it). `learn_upsampling=True`
learns the intermediate 2x upsamplings (upscore2, upscore_pool4), as the paper did; the
reference nets fix all of them, and the final one is always fixed.
"""
import numpy

from .. import functions as F
from ..nn import Conv2d, ConvTranspose2d
from ..weights.convert import META_PREFIX, load_converted
from ..weights.errors import WeightsFileError
from .segmenter import Segmenter
from .vgg import (TRUNK_LAYERS, VGG16_FC_WIDTH, VGG16_WIDTHS, VGGTrunk, positive_ints,
                  transplant)

SCORE_32S_OFFSET = 19
SCORE_POOL4_OFFSET = 5
SCORE_16S_OFFSET = 27
SCORE_POOL3_OFFSET = 9
SCORE_8S_OFFSET = 31



def score_layer(in_channels, n_class, dtype):
    """1x1 convolution to class scores, zero-initialized as in the reference nets."""
    return Conv2d(in_channels, n_class, 1, init="zero", dtype=dtype)


def upsampling_layer(n_class, stride, kernel_size=None, learn=False, dtype=numpy.float32):
    """Bilinear upsampling by `stride` (kernel 2 * stride unless given), no bias."""
    return ConvTranspose2d(n_class, n_class, kernel_size or 2 * stride, stride=stride,
                           bias=False, learn=learn, init="bilinear", dtype=dtype)


class VGGFCN(Segmenter, VGGTrunk):
    """What the four VGG16 FCNs share: the trunk (conv1_1 pad 100, fc6 7x7 and fc7 1x1
    convolutions), score_fr, and loading ImageNet VGG16 weights."""

    def __init__(self, n_class=21, widths=VGG16_WIDTHS, fc_width=VGG16_FC_WIDTH, init="msra",
                 learn_upsampling=False, dtype=numpy.float32):
        """Options (every FCN here takes them):

        n_class           classes scored (21 for PASCAL VOC: background and 20 objects)
        widths            channels of the five conv blocks (VGG16: 64, 128, 256, 512, 512);
                          narrow ones give a net that trains from scratch on a CPU
                          (`minifcn train`'s default: 8, 16, 32, 64, 64)
        fc_width          channels of fc6 and fc7 (VGG16: 4096)
        init              the trunk's filler: "msra" (He), "xavier", "gaussian" (nn/init.py);
                          load_vgg16 overwrites it
        learn_upsampling  learn the intermediate 2x upsamplings (the reference fixes them
                          bilinear); the final upsampling is always fixed
        dtype             numpy.float32 (default) or numpy.float64 (gradient checks)
        """
        super().__init__(widths, fc_width, conv1_1_pad=100, fc_as_conv=True, init=init,
                         dtype=dtype)
        self.n_class = positive_ints("n_class", n_class, 1)
        self.learn_upsampling = bool(learn_upsampling)
        self.input_meta = {}  # the input convention of loaded weights (load_vgg16)
        self.score_fr = score_layer(fc_width, n_class, dtype)

    def load_vgg16(self, path):
        """Start from converted ImageNet VGG16 weights (`minifcn convert`'s .npz).

        conv1_1 ... fc7 are copied, fc6 reshaped from (4096, 25088) to (4096, 512, 7, 7)
        and fc7 to (4096, 4096, 1, 1); fc8 is dropped. The file's `meta.*` entries (the
        channel order, pixel scale, mean and std the weights expect) are kept in
        `self.input_meta`, keyed and typed as in the file, for the data pipeline and the
        checkpoints. Returns self.
        """
        weights, meta = load_converted(path, expect_vgg16_shapes=False)
        names = [f"{layer}.{part}" for layer in TRUNK_LAYERS for part in ("weight", "bias")]
        try:
            transplant(self, {name: weights[name] for name in names})
        except ValueError as error:
            raise WeightsFileError(path, f"{error}. VGG16 weights need the widths they were "
                                   f"trained with (the reference: widths={VGG16_WIDTHS}, "
                                   f"fc_width={VGG16_FC_WIDTH}; `minifcn train --full`)") from None
        self.input_meta = {META_PREFIX + key: numpy.asarray(value) for key, value in meta.items()}
        return self


def skip_input(pool, scale):
    """A pool as its score layer sees it: FCN-8s at-once scales it down first."""
    return pool if scale == 1 else pool * scale


class FCN32s(VGGFCN):
    """FCN-32s: score_fr upsampled 32x in one step."""

    def __init__(self, n_class=21, **options):
        super().__init__(n_class, **options)
        self.upscore = upsampling_layer(n_class, 32, dtype=self.dtype)

    def forward(self, data):
        _, _, drop7 = self.features(data)
        score_fr = self.score_fr(drop7)
        upscore = self.upscore(score_fr)
        return F.crop(upscore, data, SCORE_32S_OFFSET)


class FCN16s(VGGFCN):
    """FCN-16s: score_fr upsampled 2x, plus the scores of pool4, upsampled 16x."""

    def __init__(self, n_class=21, **options):
        super().__init__(n_class, **options)
        self.upscore2 = upsampling_layer(n_class, 2, learn=self.learn_upsampling, dtype=self.dtype)
        self.score_pool4 = score_layer(self.widths[3], n_class, self.dtype)
        self.upscore16 = upsampling_layer(n_class, 16, dtype=self.dtype)

    def forward(self, data):
        _, pool4, drop7 = self.features(data)
        score_fr = self.score_fr(drop7)
        upscore2 = self.upscore2(score_fr)
        score_pool4 = self.score_pool4(pool4)
        score_pool4c = F.crop(score_pool4, upscore2, SCORE_POOL4_OFFSET)
        fuse_pool4 = upscore2 + score_pool4c
        upscore16 = self.upscore16(fuse_pool4)
        return F.crop(upscore16, data, SCORE_16S_OFFSET)


class FCN8s(VGGFCN):
    """FCN-8s: as FCN-16s, then once more 2x and the scores of pool3, upsampled 8x."""

    pool4_scale = pool3_scale = 1.0  # the skips enter unscaled (see FCN8sAtOnce)

    def __init__(self, n_class=21, **options):
        super().__init__(n_class, **options)
        learn, dtype = self.learn_upsampling, self.dtype
        self.upscore2 = upsampling_layer(n_class, 2, learn=learn, dtype=dtype)
        self.score_pool4 = score_layer(self.widths[3], n_class, dtype)
        self.upscore_pool4 = upsampling_layer(n_class, 2, learn=learn, dtype=dtype)
        self.score_pool3 = score_layer(self.widths[2], n_class, dtype)
        self.upscore8 = upsampling_layer(n_class, 8, dtype=dtype)

    def forward(self, data):
        pool3, pool4, drop7 = self.features(data)
        score_fr = self.score_fr(drop7)
        upscore2 = self.upscore2(score_fr)
        score_pool4 = self.score_pool4(skip_input(pool4, self.pool4_scale))
        score_pool4c = F.crop(score_pool4, upscore2, SCORE_POOL4_OFFSET)
        fuse_pool4 = upscore2 + score_pool4c
        upscore_pool4 = self.upscore_pool4(fuse_pool4)
        score_pool3 = self.score_pool3(skip_input(pool3, self.pool3_scale))
        score_pool3c = F.crop(score_pool3, upscore_pool4, SCORE_POOL3_OFFSET)
        fuse_pool3 = upscore_pool4 + score_pool3c
        upscore8 = self.upscore8(fuse_pool3)
        return F.crop(upscore8, data, SCORE_8S_OFFSET)


class FCN8sAtOnce(FCN8s):
    """FCN-8s trained in one stage from VGG16 rather than from a trained FCN-16s.

    pool4 and pool3 are scaled by fixed factors (Caffe Scale layers scale_pool4 0.01 and
    scale_pool3 0.0001, lr 0) before they are scored: VGG16's features there are far
    larger than fc7's, and the scaling brings the three streams to comparable scales so
    that one learning rate suits them all.
    """

    pool4_scale = 0.01
    pool3_scale = 0.0001
