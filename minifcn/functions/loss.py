"""Per-pixel softmax cross-entropy (Caffe SoftmaxWithLoss).

For scores s (N, C, H, W) and integer labels t (N, H, W), over the counted pixels
(t != ignore_index):

    loss      L = sum_pixels [logsumexp_c s[:, c] - s[t]] / D
    gradient  dL/ds[c] = (softmax(s)[c] - [c == t]) / D        (0 at ignored pixels)

D is the number of counted pixels (normalize=True) or the batch size N (Caffe's
`normalize: false`, what the FCN nets use). No counted pixel gives L = 0 and a zero
gradient, never 0/0; an empty batch (N, H or W zero) counts no pixel either, so it gives
L = 0 and an empty gradient on every kernel set, without reaching a kernel. logsumexp
subtracts the per-pixel maximum first, so large scores do not overflow. Backward recomputes the softmax from the saved scores rather than
keeping a second (N, C, H, W) array alive between the passes.

The kernel contract shared by every kernel set (kernel_set.py; NumPy: reference/loss.py):
    softmax_cross_entropy_forward(s, t, ignore) -> (loss_sum, count)   0-d arrays
    softmax_cross_entropy_backward(s, t, ignore, coefficient) -> gs     coefficient 0-d
Both stay on the device: nothing here waits for the GPU.

Labels outside [0, C) other than ignore_index are a ValueError when they are on the
host (`check_labels`). Labels on the GPU are not checked, since reading them back would
make every step wait for the GPU; there such a pixel makes the loss and its gradients
NaN (kernels/softmax_loss.cu). The datasets check every label map as they read it
(data/base.py, naming the file), so training never gets that far.
"""
import numpy

from ..autograd import Function, Tensor
from .. import backend
from .validate import float_tensor


class SoftmaxCrossEntropy(Function):
    def __init__(self, target, ignore_index, normalize):
        self.target, self.ignore_index, self.normalize = target, ignore_index, normalize

    def forward(self, score):
        xp = backend.get_array_module(score)
        self.score = score
        if score.size == 0:  # nothing counted (the kernels assume at least one pixel)
            self.divisor = 1
            return xp.zeros((), dtype=score.dtype)
        loss_sum, count = backend.kernels_for(score).softmax_cross_entropy_forward(
            score, self.target, self.ignore_index)
        # D: counted pixels or batch size; max(., 1) makes "nothing counted" give 0, not NaN.
        self.divisor = xp.maximum(count, 1) if self.normalize else score.shape[0]
        return xp.asarray(loss_sum / self.divisor, dtype=score.dtype)

    def backward(self, gy):
        if self.score.size == 0:
            return backend.get_array_module(gy).zeros_like(self.score)
        coefficient = (gy / self.divisor).astype(gy.dtype)
        return backend.kernels_for(self.score).softmax_cross_entropy_backward(
            self.score, self.target, self.ignore_index, coefficient)


def softmax_cross_entropy(score, target, ignore_index=255, normalize=True):
    """Mean (normalize=True) or per-image (False) multinomial logistic loss per pixel."""
    op = "softmax_cross_entropy"
    score = float_tensor(op, "score", score, ndim=4)
    labels = target.data if isinstance(target, Tensor) else backend.as_array(target)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integers, got {labels.dtype} "
                        f"with shape {labels.shape}")
    n, n_class, height, width = score.shape
    if n_class == 0:
        raise ValueError(f"{op}: score {score.shape} has no classes (C = 0)")
    if labels.shape != (n, height, width):
        raise ValueError(f"{op}: target {labels.shape} must be (N, H, W) = "
                         f"{(n, height, width)} for score {score.shape}")
    if backend.device_of(labels) != score.device:
        raise ValueError(f"{op}: score is on {score.device} but target on {backend.device_of(labels)}")
    xp = backend.get_array_module(labels)
    if xp is numpy:
        check_labels(labels, n_class, ignore_index, op)
    labels = labels.astype(xp.int64 if xp is numpy else xp.int32, copy=False)
    return SoftmaxCrossEntropy(labels, ignore_index, bool(normalize))(score)


def invalid_labels(labels, n_class, ignore_index):
    """Where the label array `labels` holds neither a class in [0, n_class) nor
    ignore_index (the datasets check their label files with it too)."""
    return ((labels < 0) | (labels >= n_class)) & (labels != ignore_index)


def check_labels(labels, n_class, ignore_index=255, op="softmax_cross_entropy"):
    """ValueError unless every label of the host array `labels` is in [0, n_class) or
    is ignore_index."""
    bad = invalid_labels(labels, n_class, ignore_index)
    if bad.any():
        raise ValueError(f"{op}: labels must be in [0, {n_class}) or ignore_index="
                         f"{ignore_index}; found {labels[bad][:5].tolist()} in target {labels.shape}")
