"""SBD on a tiny tree with GTcls.Segmentation written as the MATLAB struct SBD uses."""
import os

import numpy
import pytest
import scipy.io

from minifcn.data import SBD, DataError

from .writers import random_rgb, write_mat, write_picture, write_sbd_mat, write_split

NAMES = ["2008_000002", "2008_000003"]


@pytest.fixture
def sbd(tmp_path, rng):
    dataset = tmp_path / "benchmark_RELEASE" / "dataset"
    labels = {}
    for name in NAMES:
        write_picture(str(dataset / "img" / f"{name}.jpg"), random_rgb(rng, 5, 7))
        labels[name] = rng.integers(0, 21, (5, 7)).astype(numpy.uint8)
        write_sbd_mat(str(dataset / "cls" / f"{name}.mat"), labels[name])
    write_split(str(dataset / "train.txt"), NAMES)
    write_split(str(dataset / "val.txt"), NAMES[:1])
    return str(tmp_path / "benchmark_RELEASE"), labels


def test_written_struct_has_the_real_layout(sbd):
    """The reference code reads mat['GTcls'][0]['Segmentation'][0]; so can these files."""
    directory, labels = sbd
    contents = scipy.io.loadmat(os.path.join(directory, "dataset", "cls", f"{NAMES[0]}.mat"))
    numpy.testing.assert_array_equal(contents["GTcls"][0]["Segmentation"][0], labels[NAMES[0]])


def test_items(sbd):
    directory, labels = sbd
    dataset = SBD(directory)
    assert len(dataset) == 2 and dataset.n_class == 21 and dataset.class_names[0] == "background"
    image, label = dataset[1]
    assert image.shape == (3, 5, 7) and image.dtype == numpy.float32
    assert label.dtype == numpy.int64
    numpy.testing.assert_array_equal(label, labels[NAMES[1]])
    decoded = dataset.raw_image(1)
    assert image[0, 4, 6] == pytest.approx(decoded[4, 6, 2] - 104.00698793, abs=1e-4)
    assert SBD(directory, split="val").names == NAMES[:1]


def test_directory_may_be_dataset_itself(sbd):
    directory, _ = sbd
    assert SBD(os.path.join(directory, "dataset")).names == NAMES


def test_missing_directory_and_label(sbd, tmp_path):
    directory, _ = sbd
    with pytest.raises(DataError, match="SBD directory not found"):
        SBD(str(tmp_path / "missing"))
    dataset = SBD(directory)
    os.remove(dataset.label_path(NAMES[0]))
    with pytest.raises(DataError, match=r"2008_000002\.mat: no such file"):
        dataset[0]


def test_mat_without_gtcls(sbd):
    directory, _ = sbd
    dataset = SBD(directory)
    write_mat(dataset.label_path(NAMES[0]), GTinst=numpy.zeros((5, 7)))
    with pytest.raises(DataError, match=r"no 'GTcls.Segmentation' entry \(the file has \['GTinst'\]\)"):
        dataset[0]
