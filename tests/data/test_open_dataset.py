"""open_dataset specs and the training order."""
import numpy
import pytest

from minifcn.data import (NYUD, SBD, VOC, DataError, SIFTFlow, SyntheticShapes, open_dataset,
                          shuffled_order)

from .writers import make_voc


def test_synthetic_spec():
    train = open_dataset("synthetic")
    val = open_dataset("synthetic", split="val", n_images=7)
    assert isinstance(train, SyntheticShapes) and train.split == "train" and len(train) == 1000
    assert val.split == "val" and len(val) == 7
    with pytest.raises(ValueError, match="takes no directory"):
        open_dataset("synthetic:/data")


def test_directory_specs(tmp_path, rng):
    make_voc(str(tmp_path / "VOC2011"), ["a", "b"], rng)
    voc = open_dataset(f"voc:{tmp_path}", split="val")
    assert isinstance(voc, VOC) and voc.names == ["a", "b"]


@pytest.mark.parametrize("kind, cls", [("voc", VOC), ("sbd", SBD), ("siftflow", SIFTFlow),
                                       ("nyud", NYUD)])
def test_missing_directory_is_named(kind, cls, tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(DataError, match=f"directory not found: {missing}"):
        open_dataset(f"{kind}:{missing}")


def test_unknown_and_incomplete_specs():
    with pytest.raises(ValueError, match="unknown dataset 'coco:/x'; expected one of: synthetic, "
                                         "voc:DIR, sbd:DIR, siftflow:DIR, nyud:DIR"):
        open_dataset("coco:/x")
    with pytest.raises(ValueError, match="voc needs a directory, as in voc:DIR"):
        open_dataset("voc")


def test_shuffled_order_is_a_pure_function_of_seed_and_epoch():
    order = shuffled_order(50, 1337, 3)
    assert sorted(order) == list(range(50))
    numpy.testing.assert_array_equal(order, shuffled_order(50, 1337, 3))
    assert not numpy.array_equal(order, shuffled_order(50, 1337, 4))
    assert not numpy.array_equal(order, shuffled_order(50, 1338, 3))
    numpy.testing.assert_array_equal(shuffled_order(50), shuffled_order(50, 1337, 0))
