// Caffe Crop on axes 2, 3 (minifcn/functions/array.py):
//
//     forward   y[n, c, h, w]  = x[n, c, oy + h, ox + w]             y (N, C, crop_h, crop_w)
//     backward  gx[n, c, h, w] = gy[n, c, h - oy, w - ox] inside the crop, else 0
//
// x and gx are (N, C, H, W), all C-contiguous; "planes" is N * C. Both are row copies:
// forward row r of y (planes * crop_h rows) is crop_w contiguous elements of one row of
// x; backward row r of gx (planes * H rows) is zeros, then (if the row lies in the
// crop) crop_w elements of one row of gy, then zeros. gx needs no separate zero fill.
// Pure data movement: every build, bf16 included, copies the stored bits.
//
// THREAD MAPPING
//   2-D blocks: threadIdx.y picks a row, threadIdx.x walks along it. A thread's row
//   costs one division (its plane and its row inside the plane); along the row it moves
//   up to 4 items per step (items blockDim.x apart, all 4 loads issued before the
//   stores), grid-stride in x along the row and in y over the rows, so any grid covers
//   any size. An item is a 16-byte vector (4 floats, 2 doubles, 8 bf16) when the row offsets
//   and widths (ox, W, crop_w) are multiples of the vector width and both pointers are
//   16-byte aligned, else one element. Neighbouring threads take neighbouring items of
//   one row: contiguous loads and stores. minifcn/cuda.py sizes blockDim.x to the row
//   (crop_rows_grid): 32 to 256 threads, the rest of the 256 in y.
//
// WHAT BOUNDS ITS SPEED
//   Bytes: forward reads and writes planes * crop_h * crop_w elements: 2 * size(y);
//   backward reads size(gy) and writes size(gx). No arithmetic to speak of, so it is
//   a copy: bound by DRAM bandwidth when enough bytes are in flight (16 to 64 per
//   thread here, against 4 when each thread moved one element and divided its flat
//   index three times). FCN's crop (offset 19) takes the element path: each warp's row
//   start is unaligned, costing one extra 32-byte sector per row at most. Prediction
//   (benchmarks/gpu_cases.py, 21 x 544 x 544 -> 500 x 500, 42 MB forward, 46 MB
//   backward a batch-1 image): 60-70% of copy bandwidth at batch 1 (launch latency
//   is a visible share of 10 us), 75-85% at batch 8.

#include "common.cuh"

#define CROP_ITEMS_PER_STEP 4

// The rows of one crop pass, in units of T (scalar_t or scalar_vector): out row r
// (rows in all, `out_width` items) is read from row `source_row(r)` of `in`
// (`in_width` items), shifted by `shift` items: out[r][w] = in[source_row(r)][w + shift]
// where 0 <= w + shift < in_width and the row exists (source_row >= 0), else 0.
// Forward: shift = ox, every row exists. Backward: shift = -ox.
template <typename T, typename SourceRow>
__device__ __forceinline__ void crop_rows(const T* __restrict__ in, index_t in_width,
                                          index_t rows, index_t out_width, index_t shift,
                                          SourceRow source_row, T* __restrict__ out)
{
    const index_t step = (index_t)gridDim.x * blockDim.x;
    for (index_t r = (index_t)blockIdx.y * blockDim.y + threadIdx.y; r < rows;
         r += (index_t)gridDim.y * blockDim.y) {
        const index_t from = source_row(r);
        const T* in_row = in + (from < 0 ? 0 : from) * in_width;
        T* out_row = out + r * out_width;
        for (index_t w = (index_t)blockIdx.x * blockDim.x + threadIdx.x; w < out_width;
             w += CROP_ITEMS_PER_STEP * step) {
            T items[CROP_ITEMS_PER_STEP];
PRAGMA_UNROLL()
            for (int k = 0; k < CROP_ITEMS_PER_STEP; ++k) {
                const index_t at = w + k * step, source = at + shift;
                items[k] = T();
                if (from >= 0 && at < out_width && source >= 0 && source < in_width) {
                    items[k] = in_row[source];
                }
            }
PRAGMA_UNROLL()
            for (int k = 0; k < CROP_ITEMS_PER_STEP; ++k) {
                if (w + k * step < out_width) out_row[w + k * step] = items[k];
            }
        }
    }
}

__device__ __forceinline__ bool vector_rows(const void* in, const void* out, index_t width,
                                            index_t offset_x, index_t crop_w)
{
    return width % SCALAR_VECTOR_WIDTH == 0 && offset_x % SCALAR_VECTOR_WIDTH == 0
           && crop_w % SCALAR_VECTOR_WIDTH == 0 && aligned_16(in) && aligned_16(out);
}

extern "C" __global__ void crop_forward(
    const scalar_t* __restrict__ x, index_t planes, index_t height, index_t width,
    index_t offset_y, index_t offset_x, index_t crop_h, index_t crop_w,
    scalar_t* __restrict__ y)
{
    // y's row r = (plane, h) comes from x's row plane * height + offset_y + h
    const auto source_row = [=](index_t r) {
        const index_t plane = r / crop_h;
        return plane * height + offset_y + (r - plane * crop_h);
    };
    if (vector_rows(x, y, width, offset_x, crop_w)) {
        const index_t v = SCALAR_VECTOR_WIDTH;
        crop_rows(reinterpret_cast<const scalar_vector*>(x), width / v, planes * crop_h,
                  crop_w / v, offset_x / v, source_row, reinterpret_cast<scalar_vector*>(y));
    } else {
        crop_rows(x, width, planes * crop_h, crop_w, offset_x, source_row, y);
    }
}

extern "C" __global__ void crop_backward(
    const scalar_t* __restrict__ gy, index_t planes, index_t height, index_t width,
    index_t offset_y, index_t offset_x, index_t crop_h, index_t crop_w,
    scalar_t* __restrict__ gx)
{
    // gx's row r = (plane, h) holds gy's row plane * crop_h + h - offset_y, or none (-1)
    const auto source_row = [=](index_t r) {
        const index_t plane = r / height, h = r - plane * height - offset_y;
        return h >= 0 && h < crop_h ? plane * crop_h + h : (index_t)-1;
    };
    if (vector_rows(gy, gx, width, offset_x, crop_w)) {
        const index_t v = SCALAR_VECTOR_WIDTH;
        crop_rows(reinterpret_cast<const scalar_vector*>(gy), crop_w / v, planes * height,
                  width / v, -(offset_x / v), source_row, reinterpret_cast<scalar_vector*>(gx));
    } else {
        crop_rows(gy, crop_w, planes * height, width, -offset_x, source_row, gx);
    }
}
