"""Preprocess: channel order, scale, mean, std and layout against hand-computed values."""
import numpy
import pytest

from minifcn.data.preprocess import VGG_MEAN_BGR, Preprocess

PIXELS = numpy.array([[[10, 20, 30], [255, 0, 128]]], numpy.uint8)  # (H=1, W=2, RGB)


def test_caffe_default_is_bgr_minus_the_vgg_mean():
    image = Preprocess()(PIXELS)
    assert image.shape == (3, 1, 2) and image.dtype == numpy.float32
    assert image.flags.c_contiguous
    # channel 0 is blue: pixel (0, 0) has B = 30, pixel (0, 1) has B = 128
    assert image[0, 0, 0] == pytest.approx(30 - 104.00698793, abs=1e-4)
    assert image[0, 0, 1] == pytest.approx(128 - 104.00698793, abs=1e-4)
    assert image[1, 0, 0] == pytest.approx(20 - 116.66876762, abs=1e-4)
    assert image[2, 0, 1] == pytest.approx(255 - 122.67891434, abs=1e-4)


def test_torchvision_convention_scales_then_normalizes():
    torch_style = Preprocess("RGB", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                             pixel_scale=1.0)
    image = torch_style(PIXELS)
    assert image[0, 0, 0] == pytest.approx((10 / 255 - 0.485) / 0.229, rel=1e-5)
    assert image[2, 0, 1] == pytest.approx((128 / 255 - 0.406) / 0.225, rel=1e-5)


def test_input_is_left_alone():
    pixels = PIXELS.copy()
    Preprocess()(pixels)
    numpy.testing.assert_array_equal(pixels, PIXELS)


@pytest.mark.parametrize("preprocess", [
    Preprocess(), Preprocess("RGB", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 1.0)])
def test_deprocess_undoes_it(preprocess, rng):
    rgb = rng.integers(0, 256, (4, 5, 3), dtype=numpy.uint8)
    numpy.testing.assert_array_equal(preprocess.deprocess(preprocess(rgb)), rgb)


def test_bad_arguments():
    with pytest.raises(ValueError, match="channel_order 'BRG'"):
        Preprocess("BRG")
    with pytest.raises(ValueError, match="one value per channel"):
        Preprocess(mean=(1.0, 2.0))
    with pytest.raises(ValueError, match="zero"):
        Preprocess(std=(1, 0, 1))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        Preprocess()(numpy.zeros((4, 4), numpy.uint8))


def test_from_meta_as_written_by_convert(tmp_path):
    """numpy.load gives back 0-d string arrays and float arrays."""
    numpy.savez(tmp_path / "w.npz", **{
        "meta.channel_order": numpy.asarray("RGB"), "meta.pixel_scale": numpy.asarray(1.0),
        "meta.mean": numpy.array([0.485, 0.456, 0.406]),
        "meta.std": numpy.array([0.229, 0.224, 0.225])})
    with numpy.load(tmp_path / "w.npz", allow_pickle=False) as archive:
        meta = {key: archive[key] for key in archive.files}
    assert Preprocess.from_meta(meta) == Preprocess(
        "RGB", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 1.0)


def test_from_meta_with_strings_and_without_prefix():
    meta = {"channel_order": "BGR", "mean": "104.00698793, 116.66876762,122.67891434",
            "std": "[1 1 1]", "pixel_scale": "255"}
    assert Preprocess.from_meta(meta) == Preprocess()
    assert Preprocess.from_meta({"meta.channel_order": numpy.asarray("BGR"),
                                 "meta.mean": numpy.asarray(VGG_MEAN_BGR)}) == Preprocess()


def test_from_meta_errors():
    with pytest.raises(ValueError, match="no 'meta.mean' entry"):
        Preprocess.from_meta({"meta.channel_order": "BGR"})
    with pytest.raises(ValueError, match="not three numbers"):
        Preprocess.from_meta({"meta.channel_order": "BGR", "meta.mean": "a,b,c"})
