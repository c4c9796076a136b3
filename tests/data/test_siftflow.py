"""SIFT Flow: label shifts (0 and -1 become void), both label maps, its mean."""
import numpy
import pytest

from minifcn.data import DataError, SIFTFlow
from minifcn.data.siftflow import SCENES

from .writers import random_rgb, write_mat, write_picture, write_split

# raw .mat values: classes from 1, 0 unlabelled; geometric maps may also hold -1
SEMANTIC = numpy.array([[0, 1, 2, 33], [28, 28, 0, 5]])
GEOMETRIC = numpy.array([[-1, 0, 1, 2], [3, 3, 1, 2]])


@pytest.fixture
def siftflow(tmp_path, rng):
    for name in ("coast_arnat59", "street_par1"):
        write_picture(str(tmp_path / "Images" / SCENES / f"{name}.jpg"), random_rgb(rng, 2, 4))
        write_mat(str(tmp_path / "SemanticLabels" / SCENES / f"{name}.mat"), S=SEMANTIC.astype(numpy.int16))
        write_mat(str(tmp_path / "GeoLabels" / SCENES / f"{name}.mat"), S=GEOMETRIC.astype(numpy.int16))
    write_split(str(tmp_path / "trainval.txt"), ["coast_arnat59", "street_par1"])
    write_split(str(tmp_path / "test.txt"), ["street_par1"])
    return str(tmp_path)


def test_semantic_labels_shift_down_with_void(siftflow):
    dataset = SIFTFlow(siftflow)
    assert dataset.n_class == 33 and dataset.class_names[27] == "sky"
    image, label = dataset[0]
    assert label.dtype == numpy.int64
    numpy.testing.assert_array_equal(label, [[255, 0, 1, 32], [27, 27, 255, 4]])
    decoded = dataset.raw_image(0)
    assert image[0, 1, 2] == pytest.approx(decoded[1, 2, 2] - 114.578, abs=1e-4)  # blue first
    assert image[2, 1, 2] == pytest.approx(decoded[1, 2, 0] - 108.353, abs=1e-4)


def test_geometric_labels(siftflow):
    dataset = SIFTFlow(siftflow, labels="geometric")
    assert dataset.n_class == 3 and dataset.class_names == ("sky", "horizontal", "vertical")
    expected = [[255, 255, 0, 1], [2, 2, 0, 1]]
    numpy.testing.assert_array_equal(dataset[0][1], expected)
    numpy.testing.assert_array_equal(SIFTFlow(siftflow).geometric(0), expected)


def test_both_label_maps(siftflow):
    dataset = SIFTFlow(siftflow, labels="both")
    assert dataset.n_class == (33, 3)
    image, (semantic, geometric) = dataset[1]
    assert image.shape == (3, 2, 4)
    numpy.testing.assert_array_equal(semantic, dataset.semantic(1))
    numpy.testing.assert_array_equal(geometric, dataset.geometric(1))


def test_train_and_val_are_trainval_and_test(siftflow):
    assert len(SIFTFlow(siftflow, split="train")) == 2
    assert SIFTFlow(siftflow, split="val").names == ["street_par1"]


def test_errors(siftflow, tmp_path):
    with pytest.raises(ValueError, match="labels='depth'"):
        SIFTFlow(siftflow, labels="depth")
    with pytest.raises(DataError, match="SIFT Flow directory not found"):
        SIFTFlow(str(tmp_path / "absent"))
    dataset = SIFTFlow(siftflow, labels="both")
    write_mat(dataset.label_path("street_par1", "geometric"), S=numpy.ones((2, 5)))
    with pytest.raises(DataError, match=r"SemanticLabels.*street_par1\.mat is 2x4 but .*GeoLabels.*is 2x5"):
        dataset[1]
    write_mat(dataset.label_path("coast_arnat59", "semantic"), S=numpy.full((2, 4), 34))
    with pytest.raises(DataError, match=r"label value 33 is neither a class in \[0, 33\)"):
        dataset.semantic(0)
