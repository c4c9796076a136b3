"""Confusion histogram and the four metrics against hand-computed values."""
import warnings

import numpy
import pytest

from minifcn.metrics import ConfusionMeter, fast_hist, scores

# Four classes; class 3 is neither true nor predicted anywhere counted. Two void pixels
# (255), one of them "predicted" as class 3, must count for nothing.
LABEL = numpy.array([[0, 0, 0, 1], [1, 2, 255, 255]])
PRED = numpy.array([[0, 0, 1, 1], [2, 2, 3, 0]])
HIST = numpy.array([[2, 1, 0, 0],
                    [0, 1, 1, 0],
                    [0, 0, 1, 0],
                    [0, 0, 0, 0]])


def test_fast_hist_counts_true_rows_predicted_columns_and_drops_void():
    hist = fast_hist(LABEL, PRED, 4)
    assert hist.dtype == numpy.int64
    numpy.testing.assert_array_equal(hist, HIST)


def test_scores_by_hand():
    # diag (2, 1, 1, 0); truth (3, 2, 1, 0); predicted (2, 2, 2, 0); 6 pixels counted
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 0/0 for class 3 must stay silent
        result = scores(HIST)
    assert result["pixel_acc"] == pytest.approx(4 / 6)
    assert result["mean_acc"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    numpy.testing.assert_allclose(result["per_class_iu"][:3], [2 / 3, 1 / 3, 1 / 2])
    assert numpy.isnan(result["per_class_iu"][3])  # absent from both: skipped
    assert result["mean_iu"] == pytest.approx((2 / 3 + 1 / 3 + 1 / 2) / 3)
    assert result["fw_iu"] == pytest.approx(3 / 6 * 2 / 3 + 2 / 6 * 1 / 3 + 1 / 6 * 1 / 2)
    assert all(isinstance(result[key], float) for key in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"))


def test_a_class_predicted_but_never_true_has_iu_zero():
    result = scores(fast_hist(numpy.array([0, 0, 0]), numpy.array([0, 0, 1]), 3))
    numpy.testing.assert_allclose(result["per_class_iu"], [2 / 3, 0, numpy.nan])
    assert result["mean_iu"] == pytest.approx(1 / 3)  # (2/3 + 0) / 2: class 2 skipped
    assert result["mean_acc"] == pytest.approx(2 / 3)  # class 1 has no true pixels


def test_perfect_prediction():
    label = numpy.array([[0, 1], [2, 255]])
    result = scores(fast_hist(label, numpy.where(label == 255, 0, label), 3))
    for key in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"):
        assert result[key] == pytest.approx(1.0)


def test_empty_histogram_is_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = scores(numpy.zeros((3, 3), numpy.int64))
    assert all(numpy.isnan(result[key]) for key in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"))


def test_meter_accumulates_images(rng):
    meter = ConfusionMeter(4)
    labels = [rng.integers(0, 5, (3, 4)) for _ in range(3)]  # 4 plays the role of void
    preds = [rng.integers(0, 4, (3, 4)) for _ in range(3)]
    for label, pred in zip(labels, preds):
        meter.update(label, pred)
    numpy.testing.assert_array_equal(meter.hist, fast_hist(numpy.stack(labels), numpy.stack(preds), 4))
    assert meter.scores()["pixel_acc"] == scores(meter.hist)["pixel_acc"]
    meter.reset()
    assert meter.hist.sum() == 0


def test_bad_input():
    with pytest.raises(ValueError, match=r"label shape \(2, 2\) differs from prediction shape \(4,\)"):
        fast_hist(numpy.zeros((2, 2), int), numpy.zeros(4, int), 3)
    with pytest.raises(ValueError, match=r"predicted classes must lie in \[0, 3\)"):
        fast_hist(numpy.zeros(2, int), numpy.array([0, 3]), 3)
