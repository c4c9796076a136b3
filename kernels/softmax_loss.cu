// Per-pixel softmax cross-entropy (Caffe SoftmaxWithLoss; the math and the NumPy
// reference: minifcn/functions/loss.py, minifcn/reference/loss.py).
//
//     lse(p)       = log sum_c exp(s[c, p]),  computed as log sum_c exp(s - m) + m
//                    with m = max_c s[c, p], so large scores do not overflow
//     loss(p)      = lse(p) - s[t(p), p]                        (0 where t(p) is ignored)
//     gscore[c, p] = (exp(s[c, p] - lse(p)) - [c == t(p)]) * coefficient
//                                                               (0 where t(p) is ignored)
//
// score and gscore are (N, C, H, W), target (N, H, W) int32, all C-contiguous; a pixel
// p = (n, h, w) reads its C scores with a stride of H * W. `coefficient` points to a
// 0-d array on the device (gy / D), so no host ever waits for the loss to be computed.
//
// A label outside [0, C) that is not ignore_index makes that pixel's loss and
// gradients NaN: checking the labels on the host first would make it wait for the GPU
// (F.softmax_cross_entropy checks host labels, the datasets every label map they
// read), and reading scores[label] would read another pixel's memory.
//
// THREAD MAPPING
//   forward:  one thread per pixel, N * H * W in all; it writes that pixel's loss and
//             whether it counts (0/1). minifcn/cuda.py then sums both arrays on the
//             device (cupy sum), the reduction that gives (loss_sum, count).
//   backward: one thread per pixel; it recomputes lse from the scores (cheaper than
//             keeping a second N x C x H x W array alive between the passes) and
//             writes the C gradients of its pixel.
//   Neighbouring threads take neighbouring pixels, so each channel's loads and stores
//   are contiguous across a warp. Grid: 1-D, any size (grid-stride loops).

#include "common.cuh"

// log sum_c exp(scores[c * stride]) over `channels` scores.
__device__ __forceinline__ scalar_t log_sum_exp(const scalar_t* scores, index_t channels,
                                                index_t stride)
{
    scalar_t peak = scores[0];
    for (index_t c = 1; c < channels; ++c) {
        if (scores[c * stride] > peak) peak = scores[c * stride];
    }
    scalar_t total = 0;
    for (index_t c = 0; c < channels; ++c) total += exp(scores[c * stride] - peak);
    return log(total) + peak;
}

extern "C" __global__ void softmax_cross_entropy_forward(
    const scalar_t* __restrict__ score, const int* __restrict__ target, index_t images,
    index_t channels, index_t pixels_per_image, index_t ignore_index,
    scalar_t* __restrict__ pixel_loss, int* __restrict__ counted)
{
    GRID_STRIDE_LOOP(pixel, images * pixels_per_image) {
        const index_t label = target[pixel];
        if (label == ignore_index) {
            pixel_loss[pixel] = 0;
            counted[pixel] = 0;
            continue;
        }
        counted[pixel] = 1;
        if (label < 0 || label >= channels) {
            pixel_loss[pixel] = nan("");
            continue;
        }
        const index_t n = pixel / pixels_per_image;
        const scalar_t* scores = score + n * channels * pixels_per_image + pixel % pixels_per_image;
        pixel_loss[pixel] = log_sum_exp(scores, channels, pixels_per_image)
                          - scores[label * pixels_per_image];
    }
}

extern "C" __global__ void softmax_cross_entropy_backward(
    const scalar_t* __restrict__ score, const int* __restrict__ target, index_t images,
    index_t channels, index_t pixels_per_image, index_t ignore_index,
    const scalar_t* __restrict__ coefficient, scalar_t* __restrict__ gscore)
{
    GRID_STRIDE_LOOP(pixel, images * pixels_per_image) {
        const index_t label = target[pixel];
        const index_t offset = (pixel / pixels_per_image) * channels * pixels_per_image
                               + pixel % pixels_per_image;
        const scalar_t* scores = score + offset;
        scalar_t* grads = gscore + offset;
        if (label == ignore_index || label < 0 || label >= channels) {
            const scalar_t value = label == ignore_index ? scalar_t(0) : scalar_t(nan(""));
            for (index_t c = 0; c < channels; ++c) grads[c * pixels_per_image] = value;
            continue;
        }
        const scalar_t lse = log_sum_exp(scores, channels, pixels_per_image);
        const scalar_t scale = *coefficient;
        for (index_t c = 0; c < channels; ++c) {
            const scalar_t probability = exp(scores[c * pixels_per_image] - lse);
            grads[c * pixels_per_image] = (probability - (c == label ? 1 : 0)) * scale;
        }
    }
}
