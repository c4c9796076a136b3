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
//     thread at a time.
//
// index_t
//     int or long long: every file is compiled both ways (-Dindex_t=...), and
//     minifcn/cuda.py launches the 32-bit build when every index the launch can form
//     fits: each array's size and the work count plus the grid's threads are below
//     2^31. A 64-bit division is a software routine on a GPU, a 32-bit one a few
//     instructions, and index arithmetic is most of what a data-movement kernel does.
//     The 64-bit build serves larger tensors: FCN activations at 500x500 with pad 100
//     (conv1_2: 64 x 698 x 698 = 31 M elements per image) pass 2^31 elements from
//     batch 69 on. The rule for kernel authors: form no index larger than the largest
//     array the kernel is passed (or the work count), so the host's check covers it.
//
// Windows along one axis
//     With padding p, a window w of extent e (kernel k, dilation d: e = (k - 1) d + 1)
//     and stride s covers the padded positions [w s, w s + e). The windows that cover
//     padded position q are first_window(q, e, s) .. last_window(q, s, count); the
//     gather kernels (col2im, pooling backward) loop over exactly those.

#ifndef scalar_t
#define scalar_t float
#endif
#ifndef index_t
#define index_t long long
#endif

#define GRID_STRIDE_LOOP(index, count)                                           \
    for (index_t index = (index_t)blockIdx.x * (index_t)blockDim.x + (index_t)threadIdx.x; \
         index < (count); index += (index_t)gridDim.x * (index_t)blockDim.x)

// The first window w (>= 0) with w * stride + extent > position.
__device__ __forceinline__ index_t first_window(index_t position, index_t extent,
                                                  index_t stride)
{
    return position < extent ? 0 : (position - extent) / stride + 1;
}

// The last window w (< count) with w * stride <= position; may be < first_window.
__device__ __forceinline__ index_t last_window(index_t position, index_t stride,
                                                 index_t count)
{
    const index_t last = position / stride;
    return last < count - 1 ? last : count - 1;
}

__device__ __forceinline__ index_t max_index(index_t a, index_t b) { return a > b ? a : b; }
__device__ __forceinline__ index_t min_index(index_t a, index_t b) { return a < b ? a : b; }

// ------------------------------------------------ 16-byte vectors (crop.cu, dropout.cu)
// scalar_vector: SCALAR_VECTOR_WIDTH scalars (4 floats or 2 doubles) that one 16-byte
// load or store moves (ld.global.v4.f32 / .v2.f64). A kernel takes its vector path
// only when the pointers are aligned_16 and every offset is a multiple of the width.
#define SCALAR_VECTOR_WIDTH ((int)(16 / sizeof(scalar_t)))
struct alignas(16) scalar_vector {
    scalar_t v[SCALAR_VECTOR_WIDTH];
};

__device__ __forceinline__ bool aligned_16(const void* pointer)
{
    return ((unsigned long long)pointer & 15ull) == 0;
}

// PRAGMA_UNROLL(n): `#pragma unroll n` for nvcc and NVRTC, nothing for g++ (the CPU
// emulation in tests/cuda, which knows no such pragma and would warn).
#define PRAGMA_TEXT(text) _Pragma(#text)
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define PRAGMA_UNROLL(count) PRAGMA_TEXT(unroll count)
#else
#define PRAGMA_UNROLL(count)
#endif
