"""Per-pixel softmax cross-entropy in NumPy: the reference kernels (the math and the
contract: functions/loss.py). Written against the array API (they also run on CuPy).
"""
from ..backend import get_array_module


def _log_softmax_parts(score, target, ignore_index):
    """Per-pixel logsumexp, the target's score, and which pixels count."""
    xp = get_array_module(score)
    counted = target != ignore_index
    safe_target = xp.where(counted, target, 0)
    peak = score.max(axis=1, keepdims=True)
    logsumexp = xp.log(xp.exp(score - peak).sum(axis=1)) + peak[:, 0]
    picked = xp.take_along_axis(score, safe_target[:, None], axis=1)[:, 0]
    return logsumexp, picked, counted, safe_target


def softmax_cross_entropy_forward_numpy(score, target, ignore_index):
    xp = get_array_module(score)
    logsumexp, picked, counted, _ = _log_softmax_parts(score, target, ignore_index)
    loss_sum = xp.where(counted, logsumexp - picked, 0).sum(dtype=score.dtype)
    return loss_sum, counted.sum()


def softmax_cross_entropy_backward_numpy(score, target, ignore_index, coefficient):
    xp = get_array_module(score)
    logsumexp, _, counted, safe_target = _log_softmax_parts(score, target, ignore_index)
    grad = xp.exp(score - logsumexp[:, None])
    xp.put_along_axis(grad, safe_target[:, None],
                      xp.take_along_axis(grad, safe_target[:, None], axis=1) - 1, axis=1)
    grad *= (counted * coefficient).astype(score.dtype)[:, None]
    return grad
