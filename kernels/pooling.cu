// Max and average pooling, forward and backward (the math, Caffe's window sizes and
// the NumPy reference: minifcn/functions/pooling.py, minifcn/reference/pooling.py).
//
//     max  y[oy, ox] = max of xpad over the window (padding is -inf; NaN is above
//                      everything: a NaN anywhere in the window gives NaN)
//          argmax    = i * kw + j, the cell of the FIRST maximum in scan order (rows,
//                      then columns: a cell is taken when strictly larger, or when it
//                      is the first NaN); a window whose real pixels are all -inf
//                      names its first real pixel. uint8 (max_pool_forward) for windows
//                      of up to 255 cells, int32 (max_pool_forward_wide) beyond.
//          gx[h, w]  = sum of gy[oy, ox] over the windows whose argmax cell is (h, w)
//     avg  y[oy, ox] = (sum of x over the window) / pool_size(oy, ox)
//          gx[h, w]  = sum of gy[oy, ox] / pool_size(oy, ox) over the windows
//                      that cover (h, w)
//
// Window (oy, ox) covers rows [oy*sy - ph, oy*sy - ph + kh) and the same for columns;
// pool_size is Caffe's: the window clipped to the padded input [-p, H + p) (padded
// cells count, the overhang that ceil rounding adds does not). x and gx are
// (N, C, H, W), y, argmax and gy (N, C, out_h, out_w), all C-contiguous; "planes" is
// N * C: every plane is pooled the same way. Values are compared, summed and divided
// in acc_t and rounded once as they are stored (common.cuh): max pooling's outputs are
// its inputs' values, its and avg pooling's gradients acc_t sums rounded once.
//
// THREAD MAPPING (grids built by minifcn/cuda.py, _plane_grid)
//   forward:  grid z = plane, grid x = grid-stride over the plane's outputs, one output
//             per thread and iteration: oy = p / out_w is its one division. A thread
//             scans the real cells of its window (the clipped ranges computed once, no
//             per-cell bounds test). Neighbouring threads take neighbouring ox: every
//             tap's load of a warp spans 32 * sx elements, y's stores 128 bytes and
//             argmax's 32 bytes (one sector). (Runs of consecutive outputs per thread,
//             as in the backward pass, would spread each load of a warp over 4 times
//             the cache lines; a window of 2x2 is already 4 independent loads.)
//   backward: grid z = plane, grid x = grid-stride over the (h, run) pairs of the
//             plane, a run `run` (1 or 4) consecutive pixels of row h. The thread
//             GATHERS: the windows whose rows cover h (first_window..last_window, once
//             per run) times those whose columns cover any pixel of the run (two
//             divisions per run); each window's gy (and argmax) is loaded once and added
//             to the pixels of the run it covers. No atomics, no scatter: each gradient
//             is written once, the same on every run. max adds windows in scan order
//             (max_pool_backward_numpy's bincount order); avg from last to first, so
//             that the offsets inside the window rise, the order avg_pool_backward_numpy
//             adds in (equal bit for bit). Stores as in im2col.cu (16-byte when
//             W % 4 == 0, pairs when W is even).
//
// WHAT BOUNDS THE SPEED (bytes per call, s = sizeof(scalar_t), a = argmax's 1 or 4)
//   max forward:  s*planes*H*W + (s + a)*planes*out_h*out_w. For pool1 (2x2, s2, on
//                 64 x 698 x 698) that is 1 read of x and 1.25 outputs per 4 inputs:
//                 DRAM bound: an estimated 60 instructions per output, where an H200
//                 can issue about 200 per output at the copy bandwidth (132 SMs x 128
//                 lanes x 1.98 GHz over 21 bytes an output). Predicted at batch 8:
//                 75-80% of copy bandwidth.
//   max backward: s*planes*H*W + (s + a)*planes*out_h*out_w (gx written, gy and
//                 argmax read once, each by the run that covers it): DRAM-write bound.
//                 Predicted 70-75%.
//   avg forward / backward: the same without argmax; predicted 75-80% / 70-75%.
//   Loads are scalar (2, 4 or 8 bytes): a window starts at any column (stride, padding),
//   and lane-neighbouring loads already use every line they touch; the 16-byte
//   accesses are the gradient's stores, the larger side of the backward pass.

#include "common.cuh"

// Output (oy, ox)'s window along one axis: its first cell (may be padding), and its
// real cells [lo, hi).
struct Span {
    index_t start, lo, hi;
};

__device__ __forceinline__ Span window_span(index_t o, index_t stride, index_t pad,
                                            index_t kernel, index_t size)
{
    const index_t start = o * stride - pad;
    return {start, max_index(start, 0), min_index(start + kernel, size)};
}

// Caffe's pool_size along one axis: the window clipped to [-pad, size + pad).
__device__ __forceinline__ index_t clipped_extent(const Span& span, index_t kernel,
                                                  index_t size, index_t pad)
{
    return min_index(span.start + kernel, size + pad) - span.start;
}

template <typename offset_t>
__device__ __forceinline__ void max_pool_forward_body(
    const scalar_t* __restrict__ x, index_t planes, index_t height, index_t width,
    index_t kernel_h, index_t kernel_w, index_t stride_h, index_t stride_w,
    index_t pad_h, index_t pad_w, index_t out_h, index_t out_w,
    scalar_t* __restrict__ y, offset_t* __restrict__ argmax)
{
    const index_t out_size = out_h * out_w;
    for (index_t plane = blockIdx.z; plane < planes; plane += gridDim.z) {
        const scalar_t* x_plane = x + plane * height * width;
        GRID_STRIDE_LOOP(p, out_size) {
            const index_t oy = p / out_w, ox = p - oy * out_w;
            const Span rows = window_span(oy, stride_h, pad_h, kernel_h, height);
            const Span cols = window_span(ox, stride_w, pad_w, kernel_w, width);
            // Nothing beats -inf strictly: then the first real pixel is named.
            acc_t best = -(acc_t)(1.0 / 0.0);
            index_t best_cell = (rows.lo - rows.start) * kernel_w + cols.lo - cols.start;
            for (index_t h = rows.lo; h < rows.hi; ++h) {
                const scalar_t* x_row = x_plane + h * width;
                const index_t row_cell = (h - rows.start) * kernel_w - cols.start;
                for (index_t w = cols.lo; w < cols.hi; ++w) {
                    const acc_t value = to_acc(x_row[w]);
                    // a NaN, once taken, stays: NaN > value is false, and best is NaN
                    if (value > best || (value != value && best == best)) {
                        best = value;
                        best_cell = row_cell + w;
                    }
                }
            }
            y[plane * out_size + p] = from_acc(best);
            argmax[plane * out_size + p] = (offset_t)best_cell;
        }
    }
}

extern "C" __global__ void max_pool_forward(
    const scalar_t* __restrict__ x, index_t planes, index_t height, index_t width,
    index_t kernel_h, index_t kernel_w, index_t stride_h, index_t stride_w,
    index_t pad_h, index_t pad_w, index_t out_h, index_t out_w,
    scalar_t* __restrict__ y, unsigned char* __restrict__ argmax)
{
    max_pool_forward_body(x, planes, height, width, kernel_h, kernel_w, stride_h, stride_w,
                          pad_h, pad_w, out_h, out_w, y, argmax);
}

extern "C" __global__ void max_pool_forward_wide(
    const scalar_t* __restrict__ x, index_t planes, index_t height, index_t width,
    index_t kernel_h, index_t kernel_w, index_t stride_h, index_t stride_w,
    index_t pad_h, index_t pad_w, index_t out_h, index_t out_w,
    scalar_t* __restrict__ y, int* __restrict__ argmax)
{
    max_pool_forward_body(x, planes, height, width, kernel_h, kernel_w, stride_h, stride_w,
                          pad_h, pad_w, out_h, out_w, y, argmax);
}

// The windows that cover a run of pixels: rows [oy_lo, oy_hi] of the run's row h,
// columns [ox_lo, ox_hi] of any of its pixels w_first .. w_first + n - 1.
struct Cover {
    index_t oy_lo, oy_hi, ox_lo, ox_hi;
};

__device__ __forceinline__ Cover covering_windows(
    index_t h, index_t w_first, index_t n, index_t kernel_h, index_t kernel_w,
    index_t stride_h, index_t stride_w, index_t pad_h, index_t pad_w,
    index_t out_h, index_t out_w)
{
    return {first_window(h + pad_h, kernel_h, stride_h),
            last_window(h + pad_h, stride_h, out_h),
            first_window(w_first + pad_w, kernel_w, stride_w),
            last_window(w_first + n - 1 + pad_w, stride_w, out_w)};
}

template <typename offset_t>
__device__ __forceinline__ void max_pool_backward_body(
    const scalar_t* __restrict__ gy, const offset_t* __restrict__ argmax, index_t planes,
    index_t height, index_t width, index_t kernel_h, index_t kernel_w,
    index_t stride_h, index_t stride_w, index_t pad_h, index_t pad_w,
    index_t out_h, index_t out_w, index_t run, scalar_t* __restrict__ gx)
{
    const index_t per_row = runs_per_row(width, run);
    const int vector = vector_width(gx, width, run, (int)sizeof(scalar_t));
    for (index_t plane = blockIdx.z; plane < planes; plane += gridDim.z) {
        const scalar_t* gy_plane = gy + plane * out_h * out_w;
        const offset_t* argmax_plane = argmax + plane * out_h * out_w;
        GRID_STRIDE_LOOP(t, height * per_row) {
            const RowRun r = row_run(t, per_row, run, width);
            const index_t h = r.h, w_first = r.w_first, n = r.n;
            const Cover cover = covering_windows(h, w_first, n, kernel_h, kernel_w, stride_h,
                                                 stride_w, pad_h, pad_w, out_h, out_w);
            acc_t total[RUN_MAX];
            UNROLL
            for (int e = 0; e < RUN_MAX; ++e) total[e] = 0;
            for (index_t oy = cover.oy_lo; oy <= cover.oy_hi; ++oy) {
                // cell index of (h, w_first) in window (oy, ox): row_cell - ox * stride_w
                const index_t row_cell = (h + pad_h - oy * stride_h) * kernel_w + w_first + pad_w;
                for (index_t ox = cover.ox_lo; ox <= cover.ox_hi; ++ox) {
                    const index_t j_first = w_first + pad_w - ox * stride_w;
                    const index_t cell = (index_t)argmax_plane[oy * out_w + ox];
                    const acc_t g = to_acc(gy_plane[oy * out_w + ox]);
                    UNROLL
                    for (int e = 0; e < RUN_MAX; ++e) {
                        const index_t j = j_first + e;
                        if (e < n && j >= 0 && j < kernel_w && cell == row_cell - ox * stride_w + e) {
                            total[e] += g;
                        }
                    }
                }
            }
            store_sums(gx + (plane * height + h) * width + w_first, total, n, vector);
        }
    }
}

extern "C" __global__ void max_pool_backward(
    const scalar_t* __restrict__ gy, const unsigned char* __restrict__ argmax, index_t planes,
    index_t height, index_t width, index_t kernel_h, index_t kernel_w,
    index_t stride_h, index_t stride_w, index_t pad_h, index_t pad_w,
    index_t out_h, index_t out_w, index_t run, scalar_t* __restrict__ gx)
{
    max_pool_backward_body(gy, argmax, planes, height, width, kernel_h, kernel_w, stride_h,
                           stride_w, pad_h, pad_w, out_h, out_w, run, gx);
}

extern "C" __global__ void max_pool_backward_wide(
    const scalar_t* __restrict__ gy, const int* __restrict__ argmax, index_t planes,
    index_t height, index_t width, index_t kernel_h, index_t kernel_w,
    index_t stride_h, index_t stride_w, index_t pad_h, index_t pad_w,
    index_t out_h, index_t out_w, index_t run, scalar_t* __restrict__ gx)
{
    max_pool_backward_body(gy, argmax, planes, height, width, kernel_h, kernel_w, stride_h,
                           stride_w, pad_h, pad_w, out_h, out_w, run, gx);
}

extern "C" __global__ void avg_pool_forward(
    const scalar_t* __restrict__ x, index_t planes, index_t height, index_t width,
    index_t kernel_h, index_t kernel_w, index_t stride_h, index_t stride_w,
    index_t pad_h, index_t pad_w, index_t out_h, index_t out_w,
    scalar_t* __restrict__ y)
{
    const index_t out_size = out_h * out_w;
    for (index_t plane = blockIdx.z; plane < planes; plane += gridDim.z) {
        const scalar_t* x_plane = x + plane * height * width;
        GRID_STRIDE_LOOP(p, out_size) {
            const index_t oy = p / out_w, ox = p - oy * out_w;
            const Span rows = window_span(oy, stride_h, pad_h, kernel_h, height);
            const Span cols = window_span(ox, stride_w, pad_w, kernel_w, width);
            const index_t pool_size = clipped_extent(rows, kernel_h, height, pad_h)
                                      * clipped_extent(cols, kernel_w, width, pad_w);
            acc_t total = 0;
            for (index_t h = rows.lo; h < rows.hi; ++h) {
                const scalar_t* x_row = x_plane + h * width;
                for (index_t w = cols.lo; w < cols.hi; ++w) total += to_acc(x_row[w]);
            }
            y[plane * out_size + p] = from_acc(total / (acc_t)pool_size);
        }
    }
}

extern "C" __global__ void avg_pool_backward(
    const scalar_t* __restrict__ gy, index_t planes, index_t height, index_t width,
    index_t kernel_h, index_t kernel_w, index_t stride_h, index_t stride_w,
    index_t pad_h, index_t pad_w, index_t out_h, index_t out_w, index_t run,
    scalar_t* __restrict__ gx)
{
    const index_t per_row = runs_per_row(width, run);
    const int vector = vector_width(gx, width, run, (int)sizeof(scalar_t));
    for (index_t plane = blockIdx.z; plane < planes; plane += gridDim.z) {
        const scalar_t* gy_plane = gy + plane * out_h * out_w;
        GRID_STRIDE_LOOP(t, height * per_row) {
            const RowRun r = row_run(t, per_row, run, width);
            const index_t h = r.h, w_first = r.w_first, n = r.n;
            const Cover cover = covering_windows(h, w_first, n, kernel_h, kernel_w, stride_h,
                                                 stride_w, pad_h, pad_w, out_h, out_w);
            acc_t total[RUN_MAX];
            UNROLL
            for (int e = 0; e < RUN_MAX; ++e) total[e] = 0;
            for (index_t oy = cover.oy_hi; oy >= cover.oy_lo; --oy) {
                const Span rows = window_span(oy, stride_h, pad_h, kernel_h, height);
                const index_t pool_h = clipped_extent(rows, kernel_h, height, pad_h);
                for (index_t ox = cover.ox_hi; ox >= cover.ox_lo; --ox) {
                    const Span cols = window_span(ox, stride_w, pad_w, kernel_w, width);
                    const acc_t share = to_acc(gy_plane[oy * out_w + ox])
                        / (acc_t)(pool_h * clipped_extent(cols, kernel_w, width, pad_w));
                    UNROLL
                    for (int e = 0; e < RUN_MAX; ++e) {
                        const index_t w = w_first + e;
                        if (e < n && w >= cols.start && w < cols.start + kernel_w) total[e] += share;
                    }
                }
            }
            store_sums(gx + (plane * height + h) * width + w_first, total, n, vector);
        }
    }
}
