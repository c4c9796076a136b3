// im2col and col2im: the data movement that turns a convolution into one GEMM
// (the math and the NumPy reference: minifcn/reference/im2col.py).
//
//     col[c, i, j, oy, ox] = xpad[c, oy*sy + i*dy, ox*sx + j*dx]           (im2col)
//     x[c, h, w] = sum of col[c, i, j, oy, ox] over the (i, j, oy, ox)      (col2im)
//                  with oy*sy + i*dy = h + ph and ox*sx + j*dx = w + pw
//
// xpad is x with ph rows and pw columns of zeros on each side; x is (C, H, W), col is
// (C, kh, kw, out_h, out_w), all C-contiguous.
//
// THREAD MAPPING
//   im2col: one thread per (c, oy, ox), C * out_h * out_w in all; it writes the kh*kw
//           entries col[c, :, :, oy, ox]. Neighbouring threads take neighbouring ox,
//           so every store of a warp lands in one contiguous run of col.
//   col2im: one thread per input pixel (c, h, w), C * H * W in all; it GATHERS the col
//           entries that map to its pixel, visiting only the windows that cover it
//           (first_window..last_window, kernels/common.cuh) and skipping offsets that
//           the dilation jumps over. No two threads write the same pixel, so there are
//           no atomics and the sum is the same on every run. Windows are walked from
//           last to first so the kernel offsets (i, j) rise: the order in which
//           col2im_numpy adds, which makes the two agree bit for bit.
//   Grid: 1-D, any size (grid-stride loops), launched by minifcn/cuda.py.

#include "common.cuh"

extern "C" __global__ void im2col(
    const scalar_t* __restrict__ x, index_t channels, index_t height, index_t width,
    index_t kernel_h, index_t kernel_w, index_t stride_h, index_t stride_w,
    index_t pad_h, index_t pad_w, index_t dilation_h, index_t dilation_w,
    index_t out_h, index_t out_w, scalar_t* __restrict__ col)
{
    const index_t out_size = out_h * out_w;
    GRID_STRIDE_LOOP(index, channels * out_size) {
        const index_t ox = index % out_w;
        const index_t oy = (index / out_w) % out_h;
        const index_t c = index / out_size;
        const scalar_t* x_channel = x + c * height * width;
        scalar_t* col_entry = col + c * kernel_h * kernel_w * out_size + oy * out_w + ox;
        for (index_t i = 0; i < kernel_h; ++i) {
            const index_t h = oy * stride_h - pad_h + i * dilation_h;
            for (index_t j = 0; j < kernel_w; ++j) {
                const index_t w = ox * stride_w - pad_w + j * dilation_w;
                const bool inside = h >= 0 && h < height && w >= 0 && w < width;
                *col_entry = inside ? x_channel[h * width + w] : (scalar_t)0;
                col_entry += out_size;  // next (i, j): the next out_h x out_w plane
            }
        }
    }
}

extern "C" __global__ void col2im(
    const scalar_t* __restrict__ col, index_t channels, index_t height, index_t width,
    index_t kernel_h, index_t kernel_w, index_t stride_h, index_t stride_w,
    index_t pad_h, index_t pad_w, index_t dilation_h, index_t dilation_w,
    index_t out_h, index_t out_w, scalar_t* __restrict__ x)
{
    const index_t extent_h = (kernel_h - 1) * dilation_h + 1;
    const index_t extent_w = (kernel_w - 1) * dilation_w + 1;
    GRID_STRIDE_LOOP(index, channels * height * width) {
        const index_t w_padded = index % width + pad_w;
        const index_t h_padded = (index / width) % height + pad_h;
        const index_t c = index / (height * width);
        const scalar_t* col_channel = col + c * kernel_h * kernel_w * out_h * out_w;
        const index_t oy_first = first_window(h_padded, extent_h, stride_h);
        const index_t ox_first = first_window(w_padded, extent_w, stride_w);
        scalar_t total = 0;
        for (index_t oy = last_window(h_padded, stride_h, out_h); oy >= oy_first; --oy) {
            const index_t i_dilated = h_padded - oy * stride_h;
            if (i_dilated % dilation_h != 0) continue;
            const index_t i = i_dilated / dilation_h;
            for (index_t ox = last_window(w_padded, stride_w, out_w); ox >= ox_first; --ox) {
                const index_t j_dilated = w_padded - ox * stride_w;
                if (j_dilated % dilation_w != 0) continue;
                const index_t j = j_dilated / dilation_w;
                total += col_channel[((i * kernel_w + j) * out_h + oy) * out_w + ox];
            }
        }
        x[index] = total;
    }
}
