// Per-pixel softmax cross-entropy (Caffe SoftmaxWithLoss; the math and the NumPy
// reference: minifcn/functions/loss.py, minifcn/reference/loss.py).
//
//     lse(p)       = log sum_c exp(s[c, p]),  computed online over the channels: a
//                    running maximum m and a running sum of exp(s - m), rescaled by
//                    exp(m_old - m_new) when the maximum grows, so each score is read
//                    once and large scores do not overflow; lse = m + log(sum)
//     loss(p)      = lse(p) - s[t(p), p]                        (0 where t(p) is ignored)
//     gscore[c, p] = (exp(s[c, p] - lse(p)) - [c == t(p)]) * coefficient
//                                                               (0 where t(p) is ignored)
//
// score and gscore are (N, C, H, W), target (N, H, W) int32, all C-contiguous; a pixel
// p = (n, h, w) reads its C scores with a stride of H * W. `coefficient` points to a
// 0-d array on the device (gy / D), so no host ever waits for the loss to be computed.
//
// A label outside [0, C) that is not ignore_index makes that pixel's loss and
// gradients NaN (and the pixel counts): checking the labels on the host first would
// make it wait for the GPU (F.softmax_cross_entropy checks host labels, the datasets
// every label map they read), and reading scores[label] would read another pixel's
// memory.
//
// THREAD MAPPING
//   forward, two kernels, no atomics, the same bits on every run and with any grid:
//   - softmax_cross_entropy_forward: blockIdx.y walks the images, blockIdx.x the chunks
//     of `chunk_pixels` pixels of an image (both grid-stride). A block's threads take
//     neighbouring pixels of its chunk, blockDim.x apart, each summing its pixels'
//     losses and counting them; the block then adds its threads' sums in a fixed tree
//     (warp shuffles, then one warp over the warps' sums) and writes one partial
//     (loss, count) per chunk.
//   - softmax_cross_entropy_total: one block (block 0; others return) adds the
//     partials in a fixed order, the same tree, into the 0-d loss_sum and count.
//     minifcn/cuda.py sizes the chunks: a pixel a thread, more when that would make
//     more than about 4096 partials.
//   backward: one thread per pixel, blockIdx.y over the images, x over the pixels of
//   an image (both grid-stride): no division anywhere. It recomputes lse online from
//   the scores (keeping lse from the forward would change the kernel contract for
//   4 bytes a pixel; the second read of a pixel's C scores comes from L1/L2, the
//   thread read them a moment before), then writes its C gradients.
//   Neighbouring threads take neighbouring pixels, so each channel's loads and stores
//   are contiguous across a warp.
//
// WHAT BOUNDS ITS SPEED
//   Bytes: forward reads score and target: (C * sizeof(scalar_t) + 4) a pixel, plus
//   12 bytes a chunk of partials; backward reads score and target and writes gscore:
//   (2 C * sizeof(scalar_t) + 4) a pixel. One exp a score in the forward, two in the
//   backward: at C = 21 in float32 well under the MUFU throughput at full bandwidth.
//   Predictions (benchmarks/gpu_cases.py, 21 x 500 x 500 with 10% ignored: 22 MB
//   forward, 43 MB backward a batch-1 image): forward 40-50% of copy bandwidth at
//   batch 1 (two launches where there were three to five: the kernel, CuPy's two sums)
//   and 70-80% at batch 8; backward 60-70% at batch 1 and 75-85% at batch 8 (was one
//   64-bit division a pixel and three passes over the scores).
//
// Built for float32 and float64 only, no bf16 (the #error below says why).

#include "common.cuh"

#ifdef STORAGE_BF16
#error "softmax_loss.cu has no bf16 build: the softmax and the loss are float32"
#endif

#define FULL_WARP 0xffffffffu

// Per-pixel lse, online: one pass over the scores. `picked` gets s[label] on the way
// (label < 0: none).
__device__ __forceinline__ scalar_t online_log_sum_exp(const scalar_t* scores, index_t channels,
                                                       index_t stride, index_t label,
                                                       scalar_t& picked)
{
    scalar_t peak = scores[0], total = 1;
    picked = scores[0];
PRAGMA_UNROLL(4)
    for (index_t c = 1; c < channels; ++c) {
        const scalar_t value = scores[c * stride];
        // one exp either way: exp(low - high) rescales the sum (a new maximum) or adds
        // the new term; the comparison keeps a NaN score's NaN in the sum
        const bool grows = value > peak;
        const scalar_t low = grows ? peak : value, high = grows ? value : peak;
        const scalar_t term = exp(low - high);
        total = grows ? total * term + 1 : total + term;
        peak = high;
        if (c == label) picked = value;
    }
    return peak + log(total);
}

// The block's sum of every thread's (loss, count), in a fixed order; valid in thread 0.
// blockDim.x a multiple of 32, at most 1024; every thread of the block must call it.
__device__ __forceinline__ void block_sum(scalar_t& loss, long long& count)
{
    __shared__ scalar_t warp_loss[32];
    __shared__ long long warp_count[32];
    for (int offset = 16; offset > 0; offset /= 2) {
        loss += __shfl_down_sync(FULL_WARP, loss, offset);
        count += __shfl_down_sync(FULL_WARP, count, offset);
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    if (lane == 0) {
        warp_loss[warp] = loss;
        warp_count[warp] = count;
    }
    __syncthreads();
    if (warp == 0) {
        loss = lane < warps ? warp_loss[lane] : (scalar_t)0;
        count = lane < warps ? warp_count[lane] : 0;
        for (int offset = 16; offset > 0; offset /= 2) {
            loss += __shfl_down_sync(FULL_WARP, loss, offset);
            count += __shfl_down_sync(FULL_WARP, count, offset);
        }
    }
    __syncthreads();  // warp_loss is free for the next call
}

extern "C" __global__ void softmax_cross_entropy_forward(
    const scalar_t* __restrict__ score, const int* __restrict__ target, index_t images,
    index_t channels, index_t pixels_per_image, index_t ignore_index, index_t chunk_pixels,
    scalar_t* __restrict__ partial_loss, long long* __restrict__ partial_count)
{
    const index_t chunks = (pixels_per_image + chunk_pixels - 1) / chunk_pixels;
    for (index_t n = blockIdx.y; n < images; n += gridDim.y) {
        const scalar_t* image_scores = score + n * channels * pixels_per_image;
        const int* labels = target + n * pixels_per_image;
        for (index_t chunk = blockIdx.x; chunk < chunks; chunk += gridDim.x) {
            const index_t begin = chunk * chunk_pixels;
            const index_t end = begin + min_index(chunk_pixels, pixels_per_image - begin);
            scalar_t loss = 0;
            long long count = 0;
            for (index_t p = begin + threadIdx.x; p < end; p += blockDim.x) {
                const index_t label = labels[p];
                if (label == ignore_index) continue;
                ++count;
                if (label < 0 || label >= channels) {
                    loss += nan("");
                    continue;
                }
                scalar_t picked;
                loss += online_log_sum_exp(image_scores + p, channels, pixels_per_image, label,
                                           picked) - picked;
            }
            block_sum(loss, count);
            if (threadIdx.x == 0) {
                partial_loss[n * chunks + chunk] = loss;
                partial_count[n * chunks + chunk] = count;
            }
        }
    }
}

extern "C" __global__ void softmax_cross_entropy_total(
    const scalar_t* __restrict__ partial_loss, const long long* __restrict__ partial_count,
    index_t partials, scalar_t* __restrict__ loss_sum, long long* __restrict__ count)
{
    if (blockIdx.x != 0) return;  // one block adds them all (a grid of more does no harm)
    scalar_t loss = 0;
    long long counted = 0;
    for (index_t i = threadIdx.x; i < partials; i += blockDim.x) {
        loss += partial_loss[i];
        counted += partial_count[i];
    }
    block_sum(loss, counted);
    if (threadIdx.x == 0) {
        *loss_sum = loss;
        *count = counted;
    }
}

extern "C" __global__ void softmax_cross_entropy_backward(
    const scalar_t* __restrict__ score, const int* __restrict__ target, index_t images,
    index_t channels, index_t pixels_per_image, index_t ignore_index,
    const scalar_t* __restrict__ coefficient, scalar_t* __restrict__ gscore)
{
    const scalar_t scale = *coefficient;
    for (index_t n = blockIdx.y; n < images; n += gridDim.y) {
        const index_t image = n * channels * pixels_per_image;
        for (index_t p = (index_t)blockIdx.x * blockDim.x + threadIdx.x; p < pixels_per_image;
             p += (index_t)gridDim.x * blockDim.x) {
            const index_t label = target[n * pixels_per_image + p];
            const scalar_t* scores = score + image + p;
            scalar_t* grads = gscore + image + p;
            if (label == ignore_index || label < 0 || label >= channels) {
                const scalar_t value = label == ignore_index ? scalar_t(0) : scalar_t(nan(""));
                for (index_t c = 0; c < channels; ++c) grads[c * pixels_per_image] = value;
                continue;
            }
            scalar_t picked;
            const scalar_t lse = online_log_sum_exp(scores, channels, pixels_per_image, -1, picked);
PRAGMA_UNROLL(4)
            for (index_t c = 0; c < channels; ++c) {
                const scalar_t probability = exp(scores[c * pixels_per_image] - lse);
                grads[c * pixels_per_image] = (probability - (c == label ? 1 : 0)) * scale;
            }
        }
    }
}
