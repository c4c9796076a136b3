// Local response normalization across channels (Caffe LRN; the math and the NumPy
// reference: functions/norm.py, reference/norm.py). With n = size, pre = (n - 1) / 2:
//
//     scale[c] = k + (alpha / n) * sum of x[c']^2 for c' in [c - pre, c - pre + n)
//     y[c]     = x[c] * scale[c]^(-beta)
//     gx[c]    = gy[c] * scale[c]^(-beta)
//                - (2 alpha beta / n) * x[c] * sum of gy[c'] y[c'] / scale[c']
//                  for c' in [c - (n - 1 - pre), c + pre]   (the c' whose window holds c)
//
// Channels outside [0, C) add nothing. x, y, scale, gy, gx are (N, C, H, W),
// C-contiguous; a pixel's channels lie H * W apart. alpha / n and 2 alpha beta / n
// arrive precomputed (in double, then rounded to scalar_t, as NumPy rounds them).
//
// THREAD MAPPING
//   forward and backward: one thread per element (n, c, h, w), N * C * H * W in all; it
//   sums over its window of n channels. Neighbouring threads take neighbouring pixels
//   of the same channel, so every load of a warp is contiguous, and the n - 1 loads a
//   thread shares with its channel neighbours come from cache.
//   Grid: 1-D, any size (grid-stride loops).

#include "common.cuh"

extern "C" __global__ void lrn_forward(
    const scalar_t* __restrict__ x, index_t images, index_t channels,
    index_t pixels_per_channel, index_t size, scalar_t alpha_over_size, scalar_t beta,
    scalar_t k, scalar_t* __restrict__ y, scalar_t* __restrict__ scale)
{
    GRID_STRIDE_LOOP(index, images * channels * pixels_per_channel) {
        const index_t c = (index / pixels_per_channel) % channels;
        const scalar_t* x_pixel = x + index - c * pixels_per_channel;  // x[n, 0, h, w]
        scalar_t sum_of_squares = 0;
        for (index_t other = c - (size - 1) / 2; other < c - (size - 1) / 2 + size; ++other) {
            if (other < 0 || other >= channels) continue;
            const scalar_t value = x_pixel[other * pixels_per_channel];
            sum_of_squares += value * value;
        }
        const scalar_t scale_here = k + alpha_over_size * sum_of_squares;
        scale[index] = scale_here;
        y[index] = x[index] * pow(scale_here, -beta);
    }
}

extern "C" __global__ void lrn_backward(
    const scalar_t* __restrict__ x, const scalar_t* __restrict__ y,
    const scalar_t* __restrict__ scale, const scalar_t* __restrict__ gy, index_t images,
    index_t channels, index_t pixels_per_channel, index_t size,
    scalar_t two_alpha_beta_over_size, scalar_t beta, scalar_t* __restrict__ gx)
{
    GRID_STRIDE_LOOP(index, images * channels * pixels_per_channel) {
        const index_t c = (index / pixels_per_channel) % channels;
        const index_t pixel_start = index - c * pixels_per_channel;  // (n, 0, h, w)
        const index_t first = c - (size - 1 - (size - 1) / 2);
        scalar_t spread = 0;
        for (index_t other = first; other < first + size; ++other) {
            if (other < 0 || other >= channels) continue;
            const index_t at = pixel_start + other * pixels_per_channel;
            spread += gy[at] * y[at] / scale[at];
        }
        gx[index] = gy[index] * pow(scale[index], -beta)
                  - two_alpha_beta_over_size * x[index] * spread;
    }
}
