"""numba per-pixel softmax cross-entropy (contracts: functions/loss.py;
the NumPy versions: reference/loss.py).

For scores s (N, C, H, W), labels t (N, H, W) and each counted pixel (t != ignore):

    m = max_c s[c],  lse = log(sum_c exp(s[c] - m)) + m
    forward    loss_sum = sum_pixels (lse - s[t]),  count = number of counted pixels
    backward   gs[c] = (exp(s[c] - lse) - [c == t]) * coefficient   (0 at ignored pixels)

Loop mapping: prange over blocks of PIXELS_PER_BLOCK pixels of one image. A pixel's C
scores lie H*W apart, so each pass runs over the classes outside and the block's
pixels inside (unit stride); the per-pixel maximum and sum live in two small arrays.
The forward pass writes one partial loss (float64) and count per block and adds them
up at the end, in block order, so the result does not depend on the thread count.
"""
import math

import numpy
from numba import njit, prange

PIXELS_PER_BLOCK = 1024


@njit(inline="always")
def _n_blocks(n_images, pixels):
    return n_images * -(-pixels // PIXELS_PER_BLOCK)


@njit(inline="always")
def _block_span(block, pixels):
    """The image of block number `block` and its pixels [start, stop)."""
    blocks_per_image = -(-pixels // PIXELS_PER_BLOCK)
    start = block % blocks_per_image * PIXELS_PER_BLOCK
    return block // blocks_per_image, start, min(start + PIXELS_PER_BLOCK, pixels)


@njit(inline="always")
def _logsumexp(scores, start, stop):
    """lse[p - start] for pixels [start, stop) of scores (C, H*W)."""
    lse = scores[0, start:stop].copy()
    for c in range(1, scores.shape[0]):
        for p in range(start, stop):
            lse[p - start] = max(lse[p - start], scores[c, p])
    peak = lse.copy()
    lse[:] = 0
    for c in range(scores.shape[0]):
        for p in range(start, stop):
            lse[p - start] += math.exp(scores[c, p] - peak[p - start])
    for b in range(stop - start):
        lse[b] = math.log(lse[b]) + peak[b]
    return lse


@njit(parallel=True, cache=True)
def _forward(score, target, ignore_index, block_loss, block_count):
    for block in prange(block_loss.shape[0]):
        n, start, stop = _block_span(block, target.shape[1])
        lse = _logsumexp(score[n], start, stop)
        loss, count = 0.0, 0
        for p in range(start, stop):
            label = target[n, p]
            if label != ignore_index:
                loss += lse[p - start] - score[n, label, p]
                count += 1
        block_loss[block], block_count[block] = loss, count


@njit(parallel=True, cache=True)
def _backward(score, target, ignore_index, coefficient, grad):
    for block in prange(_n_blocks(target.shape[0], target.shape[1])):
        n, start, stop = _block_span(block, target.shape[1])
        lse = _logsumexp(score[n], start, stop)
        for c in range(score.shape[1]):
            for p in range(start, stop):
                label = target[n, p]
                weight = coefficient if label != ignore_index else 0.0
                probability = math.exp(score[n, c, p] - lse[p - start])
                grad[n, c, p] = (probability - (c == label)) * weight


def _flat(score, target):
    """score (N, C, H*W) and target (N, H*W) views, contiguous."""
    n, c = score.shape[:2]
    return (numpy.ascontiguousarray(score).reshape(n, c, -1),
            numpy.ascontiguousarray(target).reshape(n, -1))


def softmax_cross_entropy_forward(score, target, ignore_index):
    """-> (loss_sum, count), 0-d arrays of score's dtype and int64."""
    flat_score, flat_target = _flat(score, target)
    blocks = _n_blocks(*flat_target.shape)
    block_loss = numpy.zeros(blocks)
    block_count = numpy.zeros(blocks, dtype=numpy.int64)
    _forward(flat_score, flat_target, ignore_index, block_loss, block_count)
    return numpy.asarray(block_loss.sum(), dtype=score.dtype), numpy.asarray(block_count.sum())


def softmax_cross_entropy_backward(score, target, ignore_index, coefficient):
    """-> gs, score's shape and dtype; coefficient a 0-d array (gy / D)."""
    flat_score, flat_target = _flat(score, target)
    grad = numpy.empty_like(flat_score)
    _backward(flat_score, flat_target, ignore_index, score.dtype.type(coefficient), grad)
    return grad.reshape(score.shape)
