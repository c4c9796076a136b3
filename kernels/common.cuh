// common.cuh: what every kernel file shares. Each kernels/*.cu file includes it;
// minifcn/cuda.py pastes it in place of the #include line before NVRTC compiles the
// file (NVRTC compiles a string and does not look in kernels/).
//
// scalar_t
//     float or double. minifcn/cuda.py compiles every file twice, with
//     -Dscalar_t=float and -Dscalar_t=double, so each kernel is written once and serves
//     float32 and float64 arrays. Without the flag it is float, so that every file also
//     compiles as it stands (`nvcc -ptx kernels/im2col.cu`).
//
// GRID_STRIDE_LOOP(index, count)
//     One thread handles index = its global id, then id + (threads in the grid), and so
//     on while index < count. Any grid covers any count, so the launch may cap the grid
//     (minifcn/cuda.py, launch_shape), and the CPU emulation in tests/cuda may run one
//     thread at a time. Indices are 64-bit: FCN activations at 500x500 with pad 100
//     (conv1_2: 64 x 698 x 698 = 31 M elements per image) pass 2^31 elements from
//     batch 69 on.
//
// Windows along one axis
//     With padding p, a window w of extent e (kernel k, dilation d: e = (k - 1) d + 1)
//     and stride s covers the padded positions [w s, w s + e). The windows that cover
//     padded position q are first_window(q, e, s) .. last_window(q, s, count); the
//     gather kernels (col2im, pooling backward) loop over exactly those.

#ifndef scalar_t
#define scalar_t float
#endif

#define GRID_STRIDE_LOOP(index, count)                                           \
    for (long long index = (long long)blockIdx.x * blockDim.x + threadIdx.x;     \
         index < (count); index += (long long)gridDim.x * blockDim.x)

// The first window w (>= 0) with w * stride + extent > position.
__device__ __forceinline__ long long first_window(long long position, long long extent,
                                                  long long stride)
{
    return position < extent ? 0 : (position - extent) / stride + 1;
}

// The last window w (< count) with w * stride <= position; may be < first_window.
__device__ __forceinline__ long long last_window(long long position, long long stride,
                                                 long long count)
{
    const long long last = position / stride;
    return last < count - 1 ? last : count - 1;
}

__device__ __forceinline__ long long max_ll(long long a, long long b) { return a > b ? a : b; }
__device__ __forceinline__ long long min_ll(long long a, long long b) { return a < b ? a : b; }
