"""NYUDv2: colour, HHA and both stacked; labels shifted with 0 as void."""
import numpy
import pytest

from minifcn.data import NYUD, DataError

from .writers import random_rgb, write_mat, write_picture, write_split

RAW_LABEL = numpy.array([[0, 1, 40], [2, 0, 39]], numpy.uint8)


@pytest.fixture
def nyud(tmp_path, rng):
    for name in ("5001", "5002"):
        write_picture(str(tmp_path / "data" / "images" / f"img_{name}.png"), random_rgb(rng, 2, 3))
        write_picture(str(tmp_path / "data" / "hha" / f"img_{name}.png"), random_rgb(rng, 2, 3))
        write_mat(str(tmp_path / "segmentation" / f"img_{name}.mat"), segmentation=RAW_LABEL)
    write_split(str(tmp_path / "trainval.txt"), ["5001", "5002"])
    write_split(str(tmp_path / "test.txt"), ["5002"])
    return str(tmp_path)


def test_colour(nyud):
    dataset = NYUD(nyud)
    assert dataset.n_class == 40 and len(dataset.class_names) == 40
    image, label = dataset[0]
    numpy.testing.assert_array_equal(label, [[255, 0, 39], [1, 255, 38]])
    rgb = dataset.raw_image(0)  # PNG: exact pixels
    assert image.shape == (3, 2, 3)
    assert image[0, 1, 2] == pytest.approx(rgb[1, 2, 2] - 116.190, abs=1e-4)
    assert image[2, 0, 1] == pytest.approx(rgb[0, 1, 0] - 92.318, abs=1e-4)


def test_hha_keeps_file_channel_order(nyud):
    dataset = NYUD(nyud, tops=("hha",))
    hha = dataset.raw_image(0)
    image, _ = dataset[0]
    assert image[0, 1, 1] == pytest.approx(hha[1, 1, 0] - 132.431, abs=1e-4)
    assert image[2, 1, 1] == pytest.approx(hha[1, 1, 2] - 118.477, abs=1e-4)


def test_both_tops_stack_six_channels(nyud):
    both, _ = NYUD(nyud, tops=("color", "hha"))[1]
    colour, _ = NYUD(nyud)[1]
    hha, _ = NYUD(nyud, tops="hha")[1]
    assert both.shape == (6, 2, 3)
    numpy.testing.assert_array_equal(both[:3], colour)
    numpy.testing.assert_array_equal(both[3:], hha)


def test_splits(nyud):
    assert len(NYUD(nyud)) == 2 and NYUD(nyud, split="val").names == ["5002"]


def test_errors(nyud, tmp_path, rng):
    with pytest.raises(ValueError, match="tops=\\('thermal',\\)"):
        NYUD(nyud, tops=("thermal",))
    with pytest.raises(DataError, match="NYUDv2 directory not found"):
        NYUD(str(tmp_path / "absent"))
    dataset = NYUD(nyud, tops=("color", "hha"))
    write_picture(dataset.image_path("5001", "hha"), random_rgb(rng, 3, 3))
    with pytest.raises(DataError, match=r"images/img_5001\.png is 2x3 but .*hha/img_5001\.png is 3x3"):
        dataset[0]
    write_mat(dataset.label_path("5002"), other=RAW_LABEL)
    with pytest.raises(DataError, match=r"img_5002\.mat: no 'segmentation' entry"):
        dataset[1]


def write_depth(path, depth_mm):
    """A 16-bit greyscale PNG, as the reference's data/depth/img_<id>.png."""
    import os
    from PIL import Image
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(numpy.asarray(depth_mm, numpy.uint16)).save(path)


def test_depth_is_log_depth_minus_its_mean_and_stacks_after_colour(nyud, rng):
    depth = rng.integers(500, 9000, (2, 3))
    for name in ("5001", "5002"):
        write_depth(f"{nyud}/data/depth/img_{name}.png", depth)
    rgbd, _ = NYUD(nyud, tops=("color", "depth"))[0]
    colour, _ = NYUD(nyud)[0]
    assert rgbd.shape == (4, 2, 3)
    numpy.testing.assert_array_equal(rgbd[:3], colour)
    numpy.testing.assert_allclose(rgbd[3], numpy.log(depth) - 7.844, rtol=0, atol=1e-5)
    alone, _ = NYUD(nyud, tops="depth")[1]
    assert alone.shape == (1, 2, 3)


def test_a_depth_hole_is_an_error(nyud):
    write_depth(f"{nyud}/data/depth/img_5001.png", [[0, 1000, 1000], [1000, 1000, 1000]])
    with pytest.raises(DataError, match=r"img_5001.png: depth must be .* positive .* 1 pixels"):
        NYUD(nyud, tops=("color", "depth"))[0]
