"""SyntheticShapes: deterministic, every class present, and colour alone cannot tell
the classes apart."""
import numpy
import pytest

from minifcn.data import SyntheticShapes
from minifcn.data.synthetic import CLASS_NAMES
from minifcn.metrics import fast_hist, scores


def test_items():
    dataset = SyntheticShapes(10, size=(48, 56))
    assert len(dataset) == 10 and dataset.n_class == 6 and dataset.class_names == CLASS_NAMES
    image, label = dataset[3]
    assert image.shape == (3, 48, 56) and image.dtype == numpy.float32
    assert label.shape == (48, 56) and label.dtype == numpy.int64
    rgb = dataset.raw_image(3)
    assert rgb.shape == (48, 56, 3) and rgb.dtype == numpy.uint8
    # simple mean subtraction at unit scale, channels stay RGB
    numpy.testing.assert_allclose(image[:, 5, 7], rgb[5, 7] / 255 - 0.5, atol=1e-6)
    numpy.testing.assert_array_equal(dataset.label(3), label)


def test_same_seed_and_index_give_identical_scenes():
    first, second = SyntheticShapes(5, seed=7), SyntheticShapes(5, seed=7)
    for index in (0, 4):
        numpy.testing.assert_array_equal(first[index][0], second[index][0])
        numpy.testing.assert_array_equal(first[index][1], second[index][1])
    numpy.testing.assert_array_equal(first[-1][1], first[4][1])


def test_scenes_differ_by_index_seed_and_split():
    scene = SyntheticShapes(5, seed=7).raw_image(0)
    assert not numpy.array_equal(scene, SyntheticShapes(5, seed=7).raw_image(1))
    assert not numpy.array_equal(scene, SyntheticShapes(5, seed=8).raw_image(0))
    assert not numpy.array_equal(scene, SyntheticShapes(5, seed=7, split="val").raw_image(0))


def test_every_class_appears_with_a_fair_share():
    dataset = SyntheticShapes(60)
    counts = numpy.bincount(numpy.concatenate([dataset.label(i).ravel() for i in range(60)]))
    assert len(counts) == 6  # no values beyond the classes, no void
    shares = counts / counts.sum()
    assert 0.6 < shares[0] < 0.95
    assert (shares[1:] > 0.015).all()
    assert all(len(numpy.unique(dataset.label(i))) >= 2 for i in range(60))


def test_shapes_are_not_tiny():
    dataset = SyntheticShapes(30)
    for index in range(30):
        label = dataset.label(index)
        for class_number in numpy.unique(label)[1:]:
            # a radius of 7 or more covers well over 20 pixels even when partly hidden
            assert (label == class_number).sum() >= 15


def _colour_bins(rgb):
    """Each pixel's colour in 8 x 8 x 8 bins."""
    q = rgb.astype(numpy.int64) // 32
    return (q[..., 0] * 8 + q[..., 1]) * 8 + q[..., 2]


def test_colour_alone_cannot_decide_the_class():
    """The best classifier that sees only a pixel's colour (the most frequent class of its
    colour bin, learned on 60 scenes) scores far below what shape allows on 40 others."""
    dataset = SyntheticShapes(100)
    counts = numpy.zeros((512, 6))
    for index in range(60):
        rgb, label = dataset.scene(index)
        numpy.add.at(counts, (_colour_bins(rgb).ravel(), label.ravel()), 1)
    by_colour = counts.argmax(1)
    shape_by_colour = counts[:, 1:].argmax(1) + 1  # told it is some shape, which one?
    hist, right, total = numpy.zeros((6, 6), numpy.int64), 0, 0
    for index in range(60, 100):
        rgb, label = dataset.scene(index)
        bins = _colour_bins(rgb)
        hist += fast_hist(label, by_colour[bins], 6)
        on_shape = label > 0
        right += (shape_by_colour[bins][on_shape] == label[on_shape]).sum()
        total += on_shape.sum()
    assert scores(hist)["mean_iu"] < 0.3
    assert right / total < 0.35  # chance among five shapes is about 0.2


def test_each_class_spans_the_colour_range():
    dataset = SyntheticShapes(60)
    colours = {c: [] for c in range(6)}
    for index in range(60):
        rgb, label = dataset.scene(index)
        for c in range(6):
            colours[c].append(rgb[label == c])
    for c in range(6):
        pixels = numpy.concatenate(colours[c])
        low, high = numpy.percentile(pixels, [5, 95], axis=0)
        assert (low < 60).all() and (high > 195).all(), (CLASS_NAMES[c], low, high)


def test_small_scenes_get_smaller_shapes():
    label = SyntheticShapes(3, size=24).label(0)
    assert label.shape == (24, 24) and len(numpy.unique(label)) >= 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="split 'test'"):
        SyntheticShapes(split="test")
    with pytest.raises(ValueError, match="too small"):
        SyntheticShapes(size=12)
    with pytest.raises(IndexError):
        SyntheticShapes(3)[3]
