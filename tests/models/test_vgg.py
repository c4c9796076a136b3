"""VGG16 and convolutionalize(): the fully convolutional net scores every 224 x 224
window at stride 32 exactly as the classifier does."""
import numpy
import pytest

import minifcn as mf
from minifcn import functions as F
from minifcn import models
from minifcn.models.vgg import BLOCKS

NARROW = dict(widths=(2, 3, 3, 4, 4), fc_width=5)


@pytest.fixture(scope="module")
def classifier():
    mf.seed(0)
    return models.VGG16(n_class=3, dtype=numpy.float64, **NARROW).eval()


def test_reference_vgg16_shapes():
    net = models.VGG16(init="zero")  # zeros cost no memory until written
    shapes = {name: p.shape for name, p in net.named_parameters()}
    assert list(shapes)[:2] == ["conv1_1.weight", "conv1_1.bias"]
    assert shapes["conv1_1.weight"] == (64, 3, 3, 3)
    assert shapes["conv5_3.weight"] == (512, 512, 3, 3)
    assert shapes["fc6.weight"] == (4096, 25088) and shapes["fc7.weight"] == (4096, 4096)
    assert shapes["fc8.weight"] == (1000, 4096) and len(shapes) == 32
    assert net.conv1_1.padding == 1  # the classifier's own padding (the FCNs use 100)


def test_convolutionalize_gives_the_classifier_scores_at_224(classifier, rng):
    x = mf.Tensor(rng.standard_normal((2, 3, 224, 224)))
    scores = classifier(x).numpy()
    assert scores.shape == (2, 3)
    conv = classifier.convolutionalize()
    score_map = conv(x).numpy()
    assert score_map.shape == (2, 3, 1, 1)
    numpy.testing.assert_allclose(score_map[:, :, 0, 0], scores, rtol=1e-12, atol=1e-12)


def test_convolutionalize_keeps_names_and_copies(classifier):
    conv = classifier.convolutionalize()
    assert isinstance(conv, models.FullyConvVGG16) and not conv.training
    names = [name for name, _ in classifier.named_parameters()]
    assert [name for name, _ in conv.named_parameters()] == names
    assert conv.fc6.weight.shape == (5, 4, 7, 7) and conv.fc7.weight.shape == (5, 5, 1, 1)
    assert conv.fc8.weight.shape == (3, 5, 1, 1)
    numpy.testing.assert_array_equal(conv.fc6.weight.numpy().reshape(5, -1),
                                     classifier.fc6.weight.numpy())
    conv.fc6.weight.data[...] = 0  # a copy: the classifier keeps its weights
    assert classifier.fc6.weight.numpy().any()


def test_convolutionalized_net_scores_every_window_at_stride_32(classifier, rng):
    """At 256 x 256 pool5 is 8 x 8 and the score map 2 x 2: cell (i, j) is the classifier's
    fc6-fc8 applied to the 7 x 7 window of pool5 at (i, j), i.e. to the 224 x 224 image
    window at (32 i, 32 j). (The classifier run on the cropped image itself would differ
    at the window's border, where it sees zero padding instead of the neighbouring pixels.)"""
    x = mf.Tensor(rng.standard_normal((1, 3, 256, 256)))
    score_map = classifier.convolutionalize()(x).numpy()
    assert score_map.shape == (1, 3, 2, 2)
    pool5 = x
    for convs in BLOCKS:
        pool5 = classifier.block(pool5, *convs)
    assert pool5.shape == (1, 4, 8, 8)
    for i in range(2):
        for j in range(2):
            window = mf.Tensor(pool5.data[:, :, i: i + 7, j: j + 7])
            fc7 = F.relu(classifier.fc7(F.relu(classifier.fc6(window))))
            numpy.testing.assert_allclose(score_map[:, :, i, j], classifier.fc8(fc7).numpy(),
                                          rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size, cells", [(193, 1), (224, 1), (225, 2), (300, 4), (320, 4)])
def test_score_map_size(classifier, size, cells):
    conv = classifier.convolutionalize()
    assert conv(mf.Tensor(numpy.zeros((1, 3, size, 230)))).shape == (1, 3, cells, 2)


def test_classifier_rejects_other_sizes(classifier):
    with pytest.raises(ValueError, match="linear"):
        classifier(mf.Tensor(numpy.zeros((1, 3, 256, 256))))
    with pytest.raises(ValueError, match="widths must be 5 positive ints"):
        models.VGG16(widths=(64, 128))
