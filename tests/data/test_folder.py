"""folder:DIR, your own images: pairing by name, palette and greyscale masks, classes from
the masks or classes.txt, splits from train.txt/val.txt or seeded, all on real files."""
import os

import numpy
import pytest
from PIL import Image

from minifcn.data import DataError, Folder, open_dataset
from minifcn.data.folder import seeded_split
from tests.data.writers import random_rgb, write_palette_png, write_picture, write_split


def write_grey_png(path, label):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(numpy.asarray(label, numpy.uint8), mode="L").save(path)


def make_folder(root, rng, n=5, n_class=3, size=(12, 16)):
    """n PNG pictures with palette masks, one JPEG with a greyscale mask; returns
    {name: (rgb, label)}."""
    written = {}
    for i in range(n):
        name = f"img{i}"
        rgb = random_rgb(rng, *size)
        label = rng.integers(0, n_class, size)
        label[0, :3] = 255  # void
        if i == n - 1:  # JPEG, lossy: a smooth picture, so it reads back close
            rgb = numpy.broadcast_to(numpy.linspace(40, 200, size[1], dtype=numpy.uint8)[None, :, None],
                                     (*size, 3)).copy()
            write_picture(str(root / "images" / f"{name}.JPG"), rgb)
            write_grey_png(str(root / "masks" / f"{name}.png"), label)
        else:
            write_picture(str(root / "images" / f"{name}.png"), rgb)
            write_palette_png(str(root / "masks" / f"{name}.png"), label)
        written[name] = (rgb, label)
    return written


def test_pictures_pair_with_masks_by_name_and_read_back_exactly(tmp_path, rng):
    written = make_folder(tmp_path, rng)
    train = open_dataset(f"folder:{tmp_path}", "train")
    val = open_dataset(f"folder:{tmp_path}", "val")
    assert isinstance(train, Folder)
    assert sorted(train.names + val.names) == sorted(written)
    assert len(val) == 1 and not set(train.names) & set(val.names)  # round(0.2 * 5)
    for dataset in (train, val):
        for index, name in enumerate(dataset.names):
            rgb, label = written[name]
            image, got = dataset[index]
            numpy.testing.assert_array_equal(got, label)
            assert got.dtype == numpy.int64 and image.shape == (3, *label.shape)
            if name == "img4":  # JPEG: lossy
                assert numpy.abs(dataset.raw_image(index).astype(int) - rgb).mean() < 4
            else:
                numpy.testing.assert_array_equal(dataset.raw_image(index), rgb)
    # classes read from the masks: 0 .. the largest value, void left out
    assert train.n_class == 3 and train.class_names == ("class 0", "class 1", "class 2")


def test_classes_txt_names_the_classes_and_bounds_the_values(tmp_path, rng):
    make_folder(tmp_path, rng, n_class=2)
    (tmp_path / "classes.txt").write_text("background\ncat\ndog\n")
    dataset = Folder(str(tmp_path))
    assert dataset.n_class == 3 and dataset.class_names == ("background", "cat", "dog")
    (tmp_path / "classes.txt").write_text("background\n")
    dataset = Folder(str(tmp_path))
    with pytest.raises(DataError, match=r"img\d\.png: label value 1 is neither a class in \[0, 1\)"):
        [dataset[i] for i in range(len(dataset))]


def test_split_files_choose_the_splits_and_one_alone_leaves_the_rest_to_the_other(tmp_path, rng):
    make_folder(tmp_path, rng)
    write_split(str(tmp_path / "val.txt"), ["img3", "img0"])
    assert Folder(str(tmp_path), "val").names == ["img3", "img0"]
    assert Folder(str(tmp_path), "train").names == ["img1", "img2", "img4"]
    write_split(str(tmp_path / "train.txt"), ["img1"])
    assert Folder(str(tmp_path), "train").names == ["img1"]
    write_split(str(tmp_path / "val.txt"), ["img9"])
    with pytest.raises(DataError, match=r"val.txt: lists 1 name\(s\) with no picture .*'img9'"):
        Folder(str(tmp_path), "val")
    with pytest.raises(DataError, match="test.txt: no such split file"):
        Folder(str(tmp_path), "test")


def test_seeded_split_is_a_seeded_partition():
    names = [f"n{i:02d}" for i in range(20)]
    val, train = (seeded_split(names, split, 0.25, 7) for split in ("val", "train"))
    assert len(val) == 5 and sorted(val + train) == names
    expected = sorted(names[i] for i in numpy.random.default_rng(7).permutation(20)[:5])
    assert val == expected
    assert seeded_split(names, "val", 0.25, 8) != val
    assert len(seeded_split(names[:2], "val", 0.01, 0)) == 1  # at least one each side
    with pytest.raises(ValueError, match="val_fraction must lie strictly between 0 and 1"):
        seeded_split(names, "val", 1.0, 0)


def test_unpaired_files_rgb_masks_and_missing_folders_are_named(tmp_path, rng):
    with pytest.raises(DataError, match="image folder directory not found"):
        Folder(str(tmp_path / "nothing"))
    make_folder(tmp_path, rng, n=3)
    os.remove(tmp_path / "masks" / "img1.png")
    with pytest.raises(DataError, match=r"masks: no file for 1 name\(s\) .* 'img1'"):
        Folder(str(tmp_path))
    write_picture(str(tmp_path / "masks" / "img1.png"), random_rgb(rng, 12, 16))  # colours
    with pytest.raises(DataError, match=r"img1.png: label PNG has mode 'RGB'"):
        Folder(str(tmp_path))


def test_masks_with_one_class_are_refused(tmp_path, rng):
    write_picture(str(tmp_path / "images" / "a.png"), random_rgb(rng, 4, 4))
    write_grey_png(str(tmp_path / "masks" / "a.png"), numpy.zeros((4, 4)))
    with pytest.raises(DataError, match="the masks hold no class but 0; segmentation needs two"):
        Folder(str(tmp_path))
