// im2col and col2im: the data movement that turns a convolution into one GEMM
// (the math and the NumPy reference: minifcn/reference/im2col.py).
//
//     col[c, i, j, oy, ox] = xpad[c, oy*sy + i*dy, ox*sx + j*dx]           (im2col)
//     x[c, h, w] = sum of col[c, i, j, oy, ox] over the (i, j, oy, ox)      (col2im)
//                  with oy*sy + i*dy = h + ph and ox*sx + j*dx = w + pw
//
// xpad is x with ph rows and pw columns of zeros on each side; x is (C, H, W), col is
// (C, kh, kw, out_h, out_w), all C-contiguous. im2col copies stored values as they are;
// col2im sums in acc_t and rounds each pixel's total once (common.cuh).
//
// THREAD MAPPING (grids built by minifcn/cuda.py, _plane_grid)
//   im2col: grid z = channel c, grid y = tap (i, j), grid x = grid-stride over the
//           (oy, run) pairs of that (c, i, j) plane of col; a run is `run` (1 or 4)
//           consecutive ox of row oy. The thread reads x[c, oy*sy - ph + i*dy, ...] at
//           run columns and writes col[c, i, j, oy, ox .. ox + run) with one 16-byte
//           store when out_w % 4 == 0 (fc6: 16 x 16), 8/16-byte pairs when it is even
//           (conv1_2: 698), else element by element. Neighbouring threads take
//           neighbouring runs: a warp writes 32 * run consecutive elements of col.
//           Divisions: one per run (row_run), one per tap (tap / kw).
//   col2im: grid z = channel c, grid x = grid-stride over the (h, run) pairs of the
//           image; a run is `run` consecutive pixels w of row h. The thread GATHERS,
//           for its pixels, the col entries that map to them: the (i, oy) pairs of row
//           h computed once for the run, the (j, ox) pairs of each pixel w
//           (window_pairs, common.cuh: no per-pair dilation test), i rising, then j
//           rising: the order in which col2im_numpy adds, so the two agree bit for bit.
//           No two threads write the same pixel: no atomics, the same sum on every run.
//           Stores as im2col's, by the image's width.
//   run: 4 when the launch has at least 2^20 outputs, else 1 (cuda.py, _runs):
//   a small launch (fc6's col2im: 512 x 22 x 22 pixels) needs every thread an H200 can
//   hold (132 SMs x 2048), a large one amortises the index arithmetic over 4 outputs.
//
// WHAT BOUNDS THE SPEED (bytes per call, s = sizeof(scalar_t); a call is one image,
// so benchmarks/gpu_cases.py's batch 8 is 8 launches)
//   im2col: s * (C*H*W + C*kh*kw*out_h*out_w): the col writes. x is read once from
//           DRAM and kh*kw times from L2/L1 (a plane is re-read by the kh*kw taps of
//           its channel, consecutive in the grid). About 15 instructions per output
//           where an H200 issues about 45 at the copy bandwidth. Predicted at batch 8:
//           conv1_2 (1.25 GB a launch, pair stores) 75-80% of copy bandwidth; fc6
//           (26 MB, float4 stores, about 6 us of traffic against 2-3 us of launch and
//           tail) 40-55%.
//   col2im: s * (C*kh*kw*out_h*out_w + C*H*W): the col reads. conv1_2 (3x3, s1):
//           each pixel reads 9 entries at unit stride in ox, DRAM-read bound: 70-75%.
//           upscore (64x64, stride 32): a pixel's 4 entries lie in taps (i, j) 1 KB
//           apart, so a warp's load touches 8 lines; the block (1024 pixels, two image
//           rows) uses every line it loads, through L1: 65-70%. fc6 (7x7 on 22 x 22,
//           49 entries per pixel, one pixel per thread, 7 MB a launch) is latency
//           bound: 35-50%.

#include "common.cuh"

extern "C" __global__ void im2col(
    const scalar_t* __restrict__ x, index_t channels, index_t height, index_t width,
    index_t kernel_h, index_t kernel_w, index_t stride_h, index_t stride_w,
    index_t pad_h, index_t pad_w, index_t dilation_h, index_t dilation_w,
    index_t out_h, index_t out_w, index_t run, scalar_t* __restrict__ col)
{
    const index_t per_row = runs_per_row(out_w, run);
    const index_t out_size = out_h * out_w;
    const index_t taps = kernel_h * kernel_w;
    const int vector = vector_width(col, out_w, run, (int)sizeof(scalar_t));
    for (index_t c = blockIdx.z; c < channels; c += gridDim.z) {
        const scalar_t* x_plane = x + c * height * width;
        for (index_t tap = blockIdx.y; tap < taps; tap += gridDim.y) {
            const index_t i = tap / kernel_w, j = tap - i * kernel_w;
            const index_t h_offset = i * dilation_h - pad_h, w_offset = j * dilation_w - pad_w;
            scalar_t* col_plane = col + (c * taps + tap) * out_size;
            GRID_STRIDE_LOOP(t, out_h * per_row) {
                const RowRun r = row_run(t, per_row, run, out_w);  // output row oy, from ox
                const index_t oy = r.h, ox = r.w_first;
                const index_t h = oy * stride_h + h_offset;
                const bool row_inside = h >= 0 && h < height;
                const scalar_t* x_row = x_plane + (row_inside ? h * width : 0);
                const index_t w_first = ox * stride_w + w_offset;
                scalar_t v[RUN_MAX];
                UNROLL
                for (int e = 0; e < RUN_MAX; ++e) {
                    const index_t w = w_first + e * stride_w;
                    v[e] = row_inside && e < run && w >= 0 && w < width ? x_row[w] : (scalar_t)0;
                }
                store_run(col_plane + oy * out_w + ox, v, r.n, vector);
            }
        }
    }
}

extern "C" __global__ void col2im(
    const scalar_t* __restrict__ col, index_t channels, index_t height, index_t width,
    index_t kernel_h, index_t kernel_w, index_t stride_h, index_t stride_w,
    index_t pad_h, index_t pad_w, index_t dilation_h, index_t dilation_w,
    index_t out_h, index_t out_w, index_t run, scalar_t* __restrict__ x)
{
    const index_t per_row = runs_per_row(width, run);
    const index_t out_size = out_h * out_w;
    const Axis rows = make_axis(kernel_h, stride_h, dilation_h, out_h);
    const Axis cols = make_axis(kernel_w, stride_w, dilation_w, out_w);
    const int vector = vector_width(x, width, run, (int)sizeof(scalar_t));
    for (index_t c = blockIdx.z; c < channels; c += gridDim.z) {
        const scalar_t* col_channel = col + c * kernel_h * kernel_w * out_size;
        GRID_STRIDE_LOOP(t, height * per_row) {
            const RowRun r = row_run(t, per_row, run, width);
            const index_t h = r.h, w_first = r.w_first, n = r.n;
            const Pairs row = window_pairs(rows, h + pad_h);
            Pairs column[RUN_MAX];
            acc_t total[RUN_MAX];
            UNROLL
            for (int e = 0; e < RUN_MAX; ++e) {
                column[e] = window_pairs(cols, w_first + e + pad_w);
                if (e >= n) column[e].n = 0;
                total[e] = 0;
            }
            index_t oy = row.o, i = row.i;
            for (index_t m = 0; m < row.n; ++m, oy -= rows.dilation_step, i += rows.stride_step) {
                const scalar_t* col_row = col_channel + i * kernel_w * out_size + oy * out_w;
                UNROLL
                for (int e = 0; e < RUN_MAX; ++e) {
                    index_t ox = column[e].o, j = column[e].i;
                    for (index_t k = 0; k < column[e].n;
                         ++k, ox -= cols.dilation_step, j += cols.stride_step) {
                        total[e] += to_acc(col_row[j * out_size + ox]);
                    }
                }
            }
            store_sums(x + (c * height + h) * width + w_first, total, n, vector);
        }
    }
}
