// Caffe Crop on axes 2, 3 (minifcn/functions/array.py):
//
//     forward   y[n, c, h, w]  = x[n, c, oy + h, ox + w]             y (N, C, crop_h, crop_w)
//     backward  gx[n, c, h, w] = gy[n, c, h - oy, w - ox] inside the crop, else 0
//
// x and gx are (N, C, H, W), all C-contiguous; "planes" is N * C.
//
// THREAD MAPPING
//   forward:  one thread per output element, planes * crop_h * crop_w in all.
//   backward: one thread per element of gx, planes * H * W in all: it writes either the
//             gradient or 0, so gx needs no separate zero fill (one pass, not two).
//   Grid: 1-D, any size (grid-stride loops).

#include "common.cuh"

extern "C" __global__ void crop_forward(
    const scalar_t* __restrict__ x, index_t planes, index_t height, index_t width,
    index_t offset_y, index_t offset_x, index_t crop_h, index_t crop_w,
    scalar_t* __restrict__ y)
{
    GRID_STRIDE_LOOP(index, planes * crop_h * crop_w) {
        const index_t w = index % crop_w;
        const index_t h = (index / crop_w) % crop_h;
        const index_t plane = index / (crop_h * crop_w);
        y[index] = x[(plane * height + offset_y + h) * width + offset_x + w];
    }
}

extern "C" __global__ void crop_backward(
    const scalar_t* __restrict__ gy, index_t planes, index_t height, index_t width,
    index_t offset_y, index_t offset_x, index_t crop_h, index_t crop_w,
    scalar_t* __restrict__ gx)
{
    GRID_STRIDE_LOOP(index, planes * height * width) {
        const index_t w = index % width - offset_x;
        const index_t h = (index / width) % height - offset_y;
        const index_t plane = index / (height * width);
        const bool inside = h >= 0 && h < crop_h && w >= 0 && w < crop_w;
        gx[index] = inside ? gy[(plane * crop_h + h) * crop_w + w] : (scalar_t)0;
    }
}
