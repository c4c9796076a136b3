"""The paper's four segmentation metrics, from a confusion histogram.

hist[t, p] counts the pixels of true class t predicted as class p, over pixels whose true
label lies in [0, n) (void, 255, is left out). With diag = the correctly labelled pixels
per class, truth = hist.sum(1) (pixels of each class), predicted = hist.sum(0):

    pixel accuracy      diag.sum() / hist.sum()
    mean accuracy       nanmean(diag / truth)
    mean IU             nanmean(diag / (truth + predicted - diag))
    frequency-weighted  sum(freq * iu) over classes with freq = truth / hist.sum() > 0

A class absent from both truth and prediction has IU 0/0 = NaN and nanmean skips it, so it
neither helps nor hurts; a class predicted but never true has IU 0. Histograms add, so
scores over a dataset come from the sum of the per-image histograms (ConfusionMeter).
"""
import numpy


def fast_hist(label, pred, n_class):
    """(n_class, n_class) int64 confusion histogram, rows true classes, columns predicted;
    pixels whose label is outside [0, n_class) are dropped."""
    label, pred = _host_array(label), _host_array(pred)
    if label.shape != pred.shape:
        raise ValueError(f"fast_hist: label shape {label.shape} differs from prediction "
                         f"shape {pred.shape}")
    counted = (label >= 0) & (label < n_class)
    label, pred = label[counted].astype(numpy.int64), pred[counted].astype(numpy.int64)
    if pred.size and (pred.min() < 0 or pred.max() >= n_class):
        raise ValueError(f"fast_hist: predicted classes must lie in [0, {n_class}), found "
                         f"{pred.min()}..{pred.max()}")
    # each (true, predicted) pair becomes one cell number, counted in a single pass
    cells = numpy.bincount(label * n_class + pred, minlength=n_class * n_class)
    return cells.reshape(n_class, n_class)


def scores(hist):
    """dict(pixel_acc, mean_acc, mean_iu, fw_iu as floats, per_class_iu and
    per_class_acc as arrays with NaN for classes with no pixels to judge)."""
    hist = numpy.asarray(hist, dtype=numpy.float64)
    diag, truth, predicted, total = numpy.diag(hist), hist.sum(1), hist.sum(0), hist.sum()
    with numpy.errstate(divide="ignore", invalid="ignore"):  # 0/0 is an expected NaN here
        per_class_acc = diag / truth
        per_class_iu = diag / (truth + predicted - diag)
        freq = truth / total
        pixel_acc = diag.sum() / total
    present = freq > 0  # also leaves out every class when the histogram is empty
    fw_iu = (freq[present] * per_class_iu[present]).sum() if present.any() else numpy.nan
    return dict(pixel_acc=float(pixel_acc), mean_acc=_nanmean(per_class_acc),
                mean_iu=_nanmean(per_class_iu), fw_iu=float(fw_iu),
                per_class_iu=per_class_iu, per_class_acc=per_class_acc)


def _nanmean(values):
    """numpy.nanmean without its warning when every value is NaN (then NaN)."""
    finite = values[~numpy.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _host_array(array):
    """A NumPy array, copying a CuPy one to the host."""
    return numpy.asarray(array.get() if hasattr(array, "get") else array)


class ConfusionMeter:
    """Sums the confusion histograms of many (label, prediction) pairs."""

    def __init__(self, n_class):
        self.n_class = n_class
        self.hist = numpy.zeros((n_class, n_class), numpy.int64)

    def update(self, label, pred):
        """Add one image (or a batch of any shape, label and prediction alike)."""
        self.hist += fast_hist(label, pred, self.n_class)

    def reset(self):
        self.hist[...] = 0

    def scores(self):
        return scores(self.hist)
