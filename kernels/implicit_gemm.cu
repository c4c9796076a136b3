// Convolution as an implicit GEMM: the im2col indexing done inside a tiled GEMM, so
// the column matrix never reaches memory (the math and the NumPy reference:
// minifcn/reference/implicit_gemm.py).
//
//     y[n, m, oy, ox] = sum over k = (c, i, j) of  w[m, k] * xpad[n, c, oy*sy + i*dy, ox*sx + j*dx]
//
// As a GEMM: Y (M, P) = W (M, K) B (K, P), with M = C_out, K = C_in*kh*kw, and the
// batch's output pixels p = (n, oy, ox) as the P columns; B[k, p] is the im2col entry,
// computed where it is loaded (a padded position reads 0). x is (N, C_in, H, W), w
// (C_out, C_in, kh, kw), y (N, C_out, out_h, out_w), all C-contiguous; groups = 1.
//
// THREAD MAPPING
//   A block of 256 threads computes a TILE_M x TILE_P = 64 x 64 tile of Y, each thread
//   a 4 x 4 block of it (thread t: rows 4*(t / 16) + 0..3, columns 4*(t % 16) + 0..3).
//   The K axis is walked in slices of TILE_K = 8: the block loads the 64 x 8 slice of W
//   and the 8 x 64 slice of B (2 + 2 elements a thread; neighbouring threads take
//   neighbouring pixels, so the x loads of a warp are mostly one run of a row) into
//   shared memory, then each thread does its 4 x 4 x 8 multiply-adds from there.
//   Grid: 2-D, x over the P tiles and y over the M tiles, grid-stride in both (any grid
//   covers the output); every thread of a block runs the same loops, so the barriers
//   are reached by all.
//
// WHAT BOUNDS IT
//   Bytes it must move: x, w and y once each, 4 (N C H W + C_out K + N C_out out_h out_w)
//   in float32, against im2col + GEMM's 4 (N C H W + 2 K P + C_out K + C_out P): the
//   columns' write and read (2 K P, 9x the input for a 3x3 layer) are what it saves.
//   Loads it issues: x kh*kw*ceil(C_out/64) times (each M tile gathers its own B
//   slices; the taps of neighbouring windows hit L1/L2), w ceil(P/64) times. FLOPs: the
//   GEMM's, 2 C_out K P, on CUDA cores in a plain 4 x 4 register tile (no tensor cores,
//   no double buffering): with TF32 on, cuBLAS's tensor cores win wherever the layer is
//   compute-bound, so this can only win where the columns' traffic dominates (few
//   channels, large maps: conv1_2 and the like). Which layers take it is decided by
//   measurement only (functions/conv.py, implicit_gemm_layers: empty until a GPU run).
//
// Built for float32 and float64 only, no bf16 (the #error below says why).

#include "common.cuh"

#ifdef STORAGE_BF16
#error "implicit_gemm.cu has no bf16 build: bf16 convolutions are cuBLAS GEMMs on im2col's columns"
#endif

#define TILE_M 64
#define TILE_P 64
#define TILE_K 8

extern "C" __global__ void conv_implicit_gemm(
    const scalar_t* __restrict__ x, const scalar_t* __restrict__ w, index_t batch,
    index_t channels, index_t height, index_t width, index_t out_channels,
    index_t kernel_h, index_t kernel_w, index_t stride_h, index_t stride_w,
    index_t pad_h, index_t pad_w, index_t dilation_h, index_t dilation_w,
    index_t out_h, index_t out_w, scalar_t* __restrict__ y)
{
    __shared__ scalar_t w_tile[TILE_K][TILE_M];
    __shared__ scalar_t b_tile[TILE_K][TILE_P];
    const int thread = threadIdx.x;
    const int row0 = 4 * (thread / 16), col0 = 4 * (thread % 16);
    const index_t taps = kernel_h * kernel_w;
    const index_t depth = channels * taps;               // K
    const index_t out_size = out_h * out_w;
    const index_t pixels = batch * out_size;             // P
    const index_t tiles_p = (pixels + TILE_P - 1) / TILE_P;
    const index_t tiles_m = (out_channels + TILE_M - 1) / TILE_M;
    for (index_t tile_m = blockIdx.y; tile_m < tiles_m; tile_m += gridDim.y) {
        for (index_t tile_p = blockIdx.x; tile_p < tiles_p; tile_p += gridDim.x) {
            const index_t m_first = tile_m * TILE_M, p_first = tile_p * TILE_P;
            scalar_t sum[4][4] = {};
            for (index_t k_first = 0; k_first < depth; k_first += TILE_K) {
                // two entries of each slice per thread: (k, m) and (k, p), k = e / 64
                for (int e = thread; e < TILE_K * TILE_M; e += 256) {
                    const int kk = e / TILE_M, mm = e % TILE_M;
                    const index_t k = k_first + kk, m = m_first + mm;
                    w_tile[kk][mm] = (k < depth && m < out_channels) ? w[m * depth + k] : (scalar_t)0;
                }
                for (int e = thread; e < TILE_K * TILE_P; e += 256) {
                    const int kk = e / TILE_P, pp = e % TILE_P;
                    const index_t k = k_first + kk, p = p_first + pp;
                    scalar_t value = 0;
                    if (k < depth && p < pixels) {
                        const index_t c = k / taps, i = (k % taps) / kernel_w, j = k % kernel_w;
                        const index_t n = p / out_size, oy = (p % out_size) / out_w, ox = p % out_w;
                        const index_t h = oy * stride_h - pad_h + i * dilation_h;
                        const index_t v = ox * stride_w - pad_w + j * dilation_w;
                        if (h >= 0 && h < height && v >= 0 && v < width)
                            value = x[((n * channels + c) * height + h) * width + v];
                    }
                    b_tile[kk][pp] = value;
                }
                __syncthreads();
                for (int kk = 0; kk < TILE_K; ++kk) {
                    scalar_t a[4], b[4];
                    for (int r = 0; r < 4; ++r) a[r] = w_tile[kk][row0 + r];
                    for (int s = 0; s < 4; ++s) b[s] = b_tile[kk][col0 + s];
                    for (int r = 0; r < 4; ++r)
                        for (int s = 0; s < 4; ++s) sum[r][s] += a[r] * b[s];
                }
                __syncthreads();  // the slices are overwritten next
            }
            for (int s = 0; s < 4; ++s) {
                const index_t p = p_first + col0 + s;
                if (p >= pixels) break;
                const index_t n = p / out_size, pixel = p % out_size;
                for (int r = 0; r < 4; ++r) {
                    const index_t m = m_first + row0 + r;
                    if (m < out_channels)
                        y[(n * out_channels + m) * out_size + pixel] = sum[r][s];
                }
            }
        }
    }
}
