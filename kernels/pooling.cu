// Max and average pooling, forward and backward (the math, Caffe's window sizes and
// the NumPy reference: minifcn/functions/pooling.py, minifcn/reference/pooling.py).
//
//     max  y[oy, ox] = max of xpad over the window (padding is -inf)
//          argmax    = h * W + w of the FIRST maximum in scan order (rows, then
//                      columns); a window of -inf only points at its first real pixel
//          gx[h, w]  = sum of gy[oy, ox] over the windows whose argmax is (h, w)
//     avg  y[oy, ox] = (sum of x over the window) / pool_size(oy, ox)
//          gx[h, w]  = sum of gy[oy, ox] / pool_size(oy, ox) over the windows
//                      that cover (h, w)
//
// Window (oy, ox) covers rows [oy*sy - ph, oy*sy - ph + kh) and the same for columns;
// pool_size is Caffe's: the window clipped to the padded input [-p, H + p) (padded
// cells count, the overhang that ceil rounding adds does not). x and gx are
// (N, C, H, W), y, argmax and gy (N, C, out_h, out_w), all C-contiguous; "planes" is
// N * C: every plane is pooled the same way.
//
// THREAD MAPPING
//   forward:  one thread per output (plane, oy, ox), planes * out_h * out_w in all; it
//             scans its kh x kw window.
//   backward: one thread per input pixel (plane, h, w), planes * H * W in all; it
//             GATHERS from the windows that cover its pixel (first_window..last_window,
//             kernels/common.cuh): at most ceil(kh/sy) * ceil(kw/sx) of them. No
//             atomics, no scatter: each gradient is written once, the same on every run.
//             avg_pool_backward walks the windows from last to first so that the offsets
//             inside the window rise, the order avg_pool_backward_numpy adds in.
//   Grid: 1-D, any size (grid-stride loops), launched by minifcn/cuda.py.

#include "common.cuh"

// x_plane[h, w], or -infinity in the padding.
__device__ __forceinline__ scalar_t value_or_minus_infinity(
    const scalar_t* x_plane, index_t h, index_t w, index_t height, index_t width)
{
    const scalar_t minus_infinity = -(scalar_t)(1.0 / 0.0);
    const bool inside = h >= 0 && h < height && w >= 0 && w < width;
    return inside ? x_plane[h * width + w] : minus_infinity;
}

// Caffe's pool_size along one axis: the window starting at `start`, clipped to
// [-pad, size + pad).
__device__ __forceinline__ index_t clipped_extent(index_t start, index_t kernel,
                                                    index_t size, index_t pad)
{
    return min_index(start + kernel, size + pad) - start;
}

extern "C" __global__ void max_pool_forward(
    const scalar_t* __restrict__ x, index_t planes, index_t height, index_t width,
    index_t kernel_h, index_t kernel_w, index_t stride_h, index_t stride_w,
    index_t pad_h, index_t pad_w, index_t out_h, index_t out_w,
    scalar_t* __restrict__ y, int* __restrict__ argmax)
{
    GRID_STRIDE_LOOP(index, planes * out_h * out_w) {
        const index_t ox = index % out_w;
        const index_t oy = (index / out_w) % out_h;
        const index_t plane = index / (out_h * out_w);
        const scalar_t* x_plane = x + plane * height * width;
        const index_t h_start = oy * stride_h - pad_h, w_start = ox * stride_w - pad_w;
        // Start from cell (0, 0), padding included, and take a cell only when it is
        // strictly larger: ties keep the first maximum in scan order.
        scalar_t best = value_or_minus_infinity(x_plane, h_start, w_start, height, width);
        index_t best_h = h_start, best_w = w_start;
        for (index_t h = h_start; h < h_start + kernel_h; ++h) {
            for (index_t w = w_start; w < w_start + kernel_w; ++w) {
                const scalar_t value = value_or_minus_infinity(x_plane, h, w, height, width);
                if (value > best) {
                    best = value;
                    best_h = h;
                    best_w = w;
                }
            }
        }
        y[index] = best;
        // Only cell (0, 0) can lie in the padding here (padding never wins a strict
        // comparison); then no real pixel beat -inf and the first real one is named.
        argmax[index] = (int)(max_index(best_h, 0) * width + max_index(best_w, 0));
    }
}

extern "C" __global__ void max_pool_backward(
    const scalar_t* __restrict__ gy, const int* __restrict__ argmax, index_t planes,
    index_t height, index_t width, index_t kernel_h, index_t kernel_w,
    index_t stride_h, index_t stride_w, index_t pad_h, index_t pad_w,
    index_t out_h, index_t out_w, scalar_t* __restrict__ gx)
{
    GRID_STRIDE_LOOP(index, planes * height * width) {
        const index_t w = index % width;
        const index_t h = (index / width) % height;
        const index_t plane = index / (height * width);
        const index_t pixel = h * width + w;
        const scalar_t* gy_plane = gy + plane * out_h * out_w;
        const int* argmax_plane = argmax + plane * out_h * out_w;
        const index_t oy_last = last_window(h + pad_h, stride_h, out_h);
        const index_t ox_last = last_window(w + pad_w, stride_w, out_w);
        scalar_t total = 0;
        for (index_t oy = first_window(h + pad_h, kernel_h, stride_h); oy <= oy_last; ++oy) {
            for (index_t ox = first_window(w + pad_w, kernel_w, stride_w); ox <= ox_last; ++ox) {
                if (argmax_plane[oy * out_w + ox] == pixel) total += gy_plane[oy * out_w + ox];
            }
        }
        gx[index] = total;
    }
}

extern "C" __global__ void avg_pool_forward(
    const scalar_t* __restrict__ x, index_t planes, index_t height, index_t width,
    index_t kernel_h, index_t kernel_w, index_t stride_h, index_t stride_w,
    index_t pad_h, index_t pad_w, index_t out_h, index_t out_w,
    scalar_t* __restrict__ y)
{
    GRID_STRIDE_LOOP(index, planes * out_h * out_w) {
        const index_t ox = index % out_w;
        const index_t oy = (index / out_w) % out_h;
        const index_t plane = index / (out_h * out_w);
        const scalar_t* x_plane = x + plane * height * width;
        const index_t h_start = oy * stride_h - pad_h, w_start = ox * stride_w - pad_w;
        const index_t pool_size = clipped_extent(h_start, kernel_h, height, pad_h)
                                  * clipped_extent(w_start, kernel_w, width, pad_w);
        const index_t h_end = min_index(h_start + kernel_h, height);
        const index_t w_end = min_index(w_start + kernel_w, width);
        scalar_t total = 0;
        for (index_t h = max_index(h_start, 0); h < h_end; ++h) {
            for (index_t w = max_index(w_start, 0); w < w_end; ++w) {
                total += x_plane[h * width + w];
            }
        }
        y[index] = total / (scalar_t)pool_size;
    }
}

extern "C" __global__ void avg_pool_backward(
    const scalar_t* __restrict__ gy, index_t planes, index_t height, index_t width,
    index_t kernel_h, index_t kernel_w, index_t stride_h, index_t stride_w,
    index_t pad_h, index_t pad_w, index_t out_h, index_t out_w,
    scalar_t* __restrict__ gx)
{
    GRID_STRIDE_LOOP(index, planes * height * width) {
        const index_t w = index % width;
        const index_t h = (index / width) % height;
        const index_t plane = index / (height * width);
        const scalar_t* gy_plane = gy + plane * out_h * out_w;
        const index_t oy_first = first_window(h + pad_h, kernel_h, stride_h);
        const index_t ox_first = first_window(w + pad_w, kernel_w, stride_w);
        scalar_t total = 0;
        for (index_t oy = last_window(h + pad_h, stride_h, out_h); oy >= oy_first; --oy) {
            const index_t pool_h = clipped_extent(oy * stride_h - pad_h, kernel_h, height, pad_h);
            for (index_t ox = last_window(w + pad_w, stride_w, out_w); ox >= ox_first; --ox) {
                const index_t pool_w = clipped_extent(ox * stride_w - pad_w, kernel_w, width, pad_w);
                total += gy_plane[oy * out_w + ox] / (scalar_t)(pool_h * pool_w);
            }
        }
        gx[index] = total;
    }
}
