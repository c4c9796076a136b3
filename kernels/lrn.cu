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
// arrive precomputed (in double, then rounded to acc_t, as NumPy rounds them). The
// arithmetic is in acc_t (float for bf16), the window sums in double, and each stored
// value (y, scale, gx) is rounded once (common.cuh); in bf16 the saved scale is
// rounded too, and backward reads it so.
//
// THREAD MAPPING
//   forward and backward: one thread per (image, run of `run` channels, pixel), pixel
//   fastest: N * ceil(C / run) * H * W threads, grid-stride (1-D, any size); run = 16
//   (minifcn/cuda.py's LRN_RUN).
//   A thread sums the window of its run's first channel once, then walks the run's
//   channels with a sliding window: one add (the channel entering) and one subtract
//   (the channel leaving) per channel instead of n adds. The sums are kept in double
//   (in float32 still far below the memory time: two adds and two conversions an
//   element); a large value leaving the window leaves a residue of about 2^-52 of its
//   square in the sums of the later channels of its run, and each run starts afresh
//   (tests/cuda/test_emulated_crop_lrn.py bounds it). Neighbouring
//   threads take neighbouring pixels of the same channel: every load and store of a
//   warp is contiguous. Runs of channels rather than whole pixels keep enough
//   threads in flight for few pixels (AlexNet's norm1: 173 x 173 pixels, 96 channels).
//
// WHAT BOUNDS ITS SPEED
//   Bytes: forward reads x and writes y and scale: 3 * size(x); backward reads x, y,
//   scale, gy and writes gx: 5 * size(x). Each value is fetched from DRAM once: the
//   leaving channel and the output channel were read a few channels earlier by the
//   same thread (L1). pow is the only costly arithmetic (once an element forward and
//   backward), well under the memory time in float32. Prediction (benchmarks/
//   gpu_cases.py, norm1 96 x 173 x 173: 34 MB forward, 57 MB backward a batch-1
//   image): 55-65% of copy bandwidth at batch 1, 70-80% at batch 8.

#include "common.cuh"

// The channels [first, last) of thread `thread`'s run, and where its pixel's channel 0
// lies: start = (n, 0, h, w). Both passes map threads the same way.
struct ChannelRun {
    index_t first, last, start;
};

__device__ __forceinline__ ChannelRun channel_run(index_t thread, index_t channels,
                                                  index_t pixels_per_channel, index_t run,
                                                  index_t runs)
{
    const index_t run_and_image = thread / pixels_per_channel;
    const index_t pixel = thread - run_and_image * pixels_per_channel;
    const index_t image = run_and_image / runs;
    const index_t first = (run_and_image - image * runs) * run;
    return {first, min_index(first + run, channels),
            image * channels * pixels_per_channel + pixel};
}

extern "C" __global__ void lrn_forward(
    const scalar_t* __restrict__ x, index_t images, index_t channels,
    index_t pixels_per_channel, index_t run, index_t size, acc_t alpha_over_size,
    acc_t beta, acc_t k, scalar_t* __restrict__ y, scalar_t* __restrict__ scale)
{
    const index_t runs = (channels + run - 1) / run;
    const index_t pre = (size - 1) / 2;
    GRID_STRIDE_LOOP(thread, images * runs * pixels_per_channel) {
        const ChannelRun cr = channel_run(thread, channels, pixels_per_channel, run, runs);
        const index_t first = cr.first, last = cr.last, start = cr.start;
        const scalar_t* x_pixel = x + start;
        double sum_of_squares = 0;  // the window of `first`: [first - pre, first - pre + n)
        for (index_t c = max_index(first - pre, 0); c < min_index(first - pre + size, channels); ++c) {
            const double value = to_acc(x_pixel[c * pixels_per_channel]);
            sum_of_squares += value * value;
        }
PRAGMA_UNROLL(4)
        for (index_t c = first; c < last; ++c) {
            const index_t at = start + c * pixels_per_channel;
            const acc_t scale_here = k + alpha_over_size * (acc_t)sum_of_squares;
            scale[at] = from_acc(scale_here);
            y[at] = from_acc(to_acc(x[at]) * pow(scale_here, -beta));
            const index_t entering = c - pre + size, leaving = c - pre;
            if (entering < channels) {
                const double value = to_acc(x_pixel[entering * pixels_per_channel]);
                sum_of_squares += value * value;
            }
            if (leaving >= 0) {
                const double value = to_acc(x_pixel[leaving * pixels_per_channel]);
                sum_of_squares -= value * value;
            }
        }
    }
}

extern "C" __global__ void lrn_backward(
    const scalar_t* __restrict__ x, const scalar_t* __restrict__ y,
    const scalar_t* __restrict__ scale, const scalar_t* __restrict__ gy, index_t images,
    index_t channels, index_t pixels_per_channel, index_t run, index_t size,
    acc_t two_alpha_beta_over_size, acc_t beta, scalar_t* __restrict__ gx)
{
    const index_t runs = (channels + run - 1) / run;
    const index_t pre = (size - 1) / 2, post = size - 1 - pre;
    GRID_STRIDE_LOOP(thread, images * runs * pixels_per_channel) {
        const ChannelRun cr = channel_run(thread, channels, pixels_per_channel, run, runs);
        const index_t first = cr.first, last = cr.last, start = cr.start;
        // ratio(c') = gy y / scale at channel c'; the window of c is [c - post, c + pre]
        const auto ratio = [=](index_t c) {
            const index_t at = start + c * pixels_per_channel;
            return (double)(to_acc(gy[at]) * to_acc(y[at]) / to_acc(scale[at]));
        };
        double spread = 0;
        for (index_t c = max_index(first - post, 0); c < min_index(first + pre + 1, channels); ++c) {
            spread += ratio(c);
        }
PRAGMA_UNROLL(4)
        for (index_t c = first; c < last; ++c) {
            const index_t at = start + c * pixels_per_channel;
            gx[at] = from_acc(to_acc(gy[at]) * pow(to_acc(scale[at]), -beta)
                              - two_alpha_beta_over_size * to_acc(x[at]) * (acc_t)spread);
            if (c + pre + 1 < channels) spread += ratio(c + pre + 1);
            if (c - post >= 0) spread -= ratio(c - post);
        }
    }
}
