"""SIFT Flow's two-headed FCN-16s (the reference's siftflow-fcn16s, the paper's table 5).

One VGG16 trunk, two FCN-16s heads on it: semantic (33 classes) and geometric (3: sky,
horizontal, vertical). Each head is FCN-16s's: score_fr_<head> on fc7, upscore2_<head>
(4/2), score_pool4_<head> cropped by 5 and added, upscore16_<head> (32/16), cropped by
27 (fcn.py derives both offsets). Layer names as the reference's net.py, heads `sem` and
`geo`. forward returns the pair (semantic scores, geometric scores); training sums the
two losses, as the reference's two SoftmaxWithLoss layers (minifcn/heads.py).
"""
from .. import functions as F
from .fcn import (SCORE_16S_OFFSET, SCORE_POOL4_OFFSET, VGGFCN, score_layer,
                  upsampling_layer)
from .vgg import positive_ints

HEADS = ("sem", "geo")


class FCN16sSiftFlow(VGGFCN):
    """(N, 3, H, W) -> ((N, 33, H, W), (N, 3, H, W)). `n_class`: the two heads' sizes."""

    DATA_OPTIONS = {"siftflow": {"labels": "both"}}

    def __init__(self, n_class=(33, 3), **options):
        n_class = positive_ints("n_class", n_class, 2)
        super().__init__(n_class[0], **options)
        self.n_class = n_class
        del self._modules["score_fr"]  # one score layer per head instead
        object.__delattr__(self, "score_fr")
        learn, dtype = self.learn_upsampling, self.dtype
        for head, n in zip(HEADS, n_class):
            setattr(self, f"score_fr_{head}", score_layer(self.fc_width, n, dtype))
            setattr(self, f"upscore2_{head}", upsampling_layer(n, 2, learn=learn, dtype=dtype))
            setattr(self, f"score_pool4_{head}", score_layer(self.widths[3], n, dtype))
            setattr(self, f"upscore16_{head}", upsampling_layer(n, 16, dtype=dtype))

    def head(self, name, data, pool4, drop7):
        def layer(kind):
            return getattr(self, f"{kind}_{name}")
        upscore2 = layer("upscore2")(layer("score_fr")(drop7))
        score_pool4c = F.crop(layer("score_pool4")(pool4), upscore2, SCORE_POOL4_OFFSET)
        upscore16 = layer("upscore16")(upscore2 + score_pool4c)
        return F.crop(upscore16, data, SCORE_16S_OFFSET)

    def forward(self, data):
        _, pool4, drop7 = self.features(data)
        return tuple(self.head(name, data, pool4, drop7) for name in HEADS)
