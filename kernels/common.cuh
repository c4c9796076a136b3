// common.cuh: what every kernel file shares. Each kernels/*.cu file includes it;
// minifcn/cuda.py pastes it in place of the #include line before NVRTC compiles the
// file (NVRTC compiles a string and does not look in kernels/).
//
// scalar_t and acc_t: the storage type and the arithmetic type
//     scalar_t is what the arrays hold, acc_t what a kernel computes in. minifcn/cuda.py
//     compiles every file for float32 (-Dscalar_t=float), float64 (-Dscalar_t=double)
//     and, where the file allows it, bf16 (-DSTORAGE_BF16), so each kernel is written
//     once and serves all three:
//         build     scalar_t         acc_t
//         float32   float            float
//         float64   double           double
//         bf16      unsigned short   float    (the top 16 bits of a float32,
//                                              minifcn/bfloat16.py's convention)
//     A kernel loads with to_acc(x[i]), computes in acc_t, sums in acc_t, and rounds once
//     as it stores: y[i] = from_acc(v). Both are the identity for float and double, so
//     those builds compute exactly what they did before bf16 existed. Pure data movement
//     (im2col, crop, ReLU) copies scalar_t as it is. Real-valued parameters
//     (dropout's scale, LRN's alpha, ...) are acc_t: minifcn/cuda.py passes float32 for
//     the float32 and bf16 builds, float64 for the float64 one. A file that has no bf16
//     build (solver.cu, softmax_loss.cu, implicit_gemm.cu) says why with an #error
//     under STORAGE_BF16, which minifcn/cuda.py also reads (`storage_dtypes`).
//     Without flags it is the float32 build, so that every file also compiles as it
//     stands (`nvcc -ptx kernels/im2col.cu`).
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

#ifdef STORAGE_BF16
#define scalar_t unsigned short
#define acc_t float
#else
#ifndef scalar_t
#define scalar_t float
#endif
#define acc_t scalar_t
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

// ------------------------------------------------------------- loading and storing values
// to_acc: a stored value as acc_t (exact). from_acc: an acc_t value as stored, rounded
// to the nearest bf16, ties to even, a NaN kept a quiet NaN of its sign, overflow to
// +-inf: bit for bit what minifcn/bfloat16.py's from_float32 does (the bits of a float
// are its integer: adding 0x7FFF plus the kept part's lowest bit, then dropping 16
// bits, rounds to nearest even and carries into the exponent where it must).
#ifdef STORAGE_BF16
__device__ __forceinline__ acc_t to_acc(scalar_t bits)
{
    return __uint_as_float((unsigned int)bits << 16);
}

__device__ __forceinline__ scalar_t from_acc(acc_t value)
{
    const unsigned int u = __float_as_uint(value);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (scalar_t)((u >> 16) | 0x0040u);
    return (scalar_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
#else
__device__ __forceinline__ acc_t to_acc(scalar_t value) { return value; }
__device__ __forceinline__ scalar_t from_acc(acc_t value) { return value; }
#endif

// ------------------------------------------------ 16-byte vectors (crop.cu, dropout.cu)
// scalar_vector: SCALAR_VECTOR_WIDTH scalars (4 floats, 2 doubles or 8 bf16) that one
// 16-byte load or store moves. A kernel takes its vector path only when the pointers
// are aligned_16 and every offset is a multiple of the width.
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
// ------------------------------------------------------------------------------------
// Row runs, vector stores and window pairs (im2col.cu, pooling.cu)
//
// RUN_MAX and store_run
//     A "run" is up to RUN_MAX consecutive outputs of one row that one thread computes
//     into registers (v[RUN_MAX], every index a constant after unrolling) and stores
//     with store_run: 4 elements in one store (float4, bf16 as a uint2) or two double2
//     when `vector` is 4, pairs when it is 2, else one element at a time; store_sums
//     rounds acc_t sums once (from_acc) and stores them the same way. vector_width picks
//     it once per launch: the row length and the run must be multiples of it and the
//     array's base aligned to it, so every run starts aligned (outputs are fresh CuPy
//     allocations, 256-byte aligned; the base check keeps any other pointer correct).
//
// window_pairs
//     Along one axis, the (window o, tap i) pairs with o * stride + i * dilation = q,
//     0 <= o < count, 0 <= i < kernel: a gather (col2im) visits exactly those, no
//     per-pair divisibility test. Walking o downwards from the first pair, i rises by
//     stride / g and o falls by dilation / g (g = gcd(stride, dilation)), so a position
//     costs two divisions with dilation 1 and about nine with dilation > 1, once.

#define RUN_MAX 4

// UNROLL: `#pragma unroll` with the compiler's own count (PRAGMA_UNROLL above).
#define UNROLL PRAGMA_UNROLL()

__device__ __forceinline__ int vector_width(const void* base, index_t row_length, index_t run,
                                            int element_bytes)
{
    const unsigned long long address = (unsigned long long)base;
    if (run % 4 == 0 && row_length % 4 == 0 && address % (4 * element_bytes) == 0) return 4;
    if (run % 2 == 0 && row_length % 2 == 0 && address % 16 == 0) return 2;
    return 1;
}

__device__ __forceinline__ void store_pair(float* p, const float* v) { *(float2*)p = make_float2(v[0], v[1]); }
__device__ __forceinline__ void store_pair(double* p, const double* v) { *(double2*)p = make_double2(v[0], v[1]); }
__device__ __forceinline__ void store_four(float* p, const float* v)
{
    *(float4*)p = make_float4(v[0], v[1], v[2], v[3]);
}
__device__ __forceinline__ void store_four(double* p, const double* v)
{
    store_pair(p, v);
    store_pair(p + 2, v + 2);
}
// bf16: two values in one 32-bit word, the first in its low half (little-endian)
__device__ __forceinline__ unsigned int bf16_pair(const unsigned short* v)
{
    return (unsigned int)v[0] | ((unsigned int)v[1] << 16);
}
__device__ __forceinline__ void store_pair(unsigned short* p, const unsigned short* v)
{
    *(unsigned int*)p = bf16_pair(v);
}
__device__ __forceinline__ void store_four(unsigned short* p, const unsigned short* v)
{
    *(uint2*)p = make_uint2(bf16_pair(v), bf16_pair(v + 2));
}

// The run that grid-stride item t names when rows of `width` pixels are cut into runs
// of `run` (the gather kernels: col2im, pooling backward): its row h, its first pixel
// w_first and its length n (<= run; the last run of a row may be short).
struct RowRun {
    index_t h, w_first, n;
};

__device__ __forceinline__ index_t runs_per_row(index_t width, index_t run)
{
    return (width + run - 1) / run;
}

__device__ __forceinline__ RowRun row_run(index_t t, index_t per_row, index_t run,
                                          index_t width)
{
    const index_t h = t / per_row;
    const index_t w_first = (t - h * per_row) * run;
    return {h, w_first, min_index(run, width - w_first)};
}

// p[0 .. n) = v[0 .. n), n <= RUN_MAX; `vector` from vector_width.
__device__ __forceinline__ void store_run(scalar_t* p, const scalar_t* v, index_t n, int vector)
{
    if (vector == 4 && n == 4) {
        store_four(p, v);
        return;
    }
    UNROLL
    for (int e = 0; e < RUN_MAX; e += 2) {
        if (vector >= 2 && e + 1 < n) {
            store_pair(p + e, v + e);
        } else {
            if (e < n) p[e] = v[e];
            if (e + 1 < n) p[e + 1] = v[e + 1];
        }
    }
}

// store_run of acc_t sums, each rounded once to scalar_t.
__device__ __forceinline__ void store_sums(scalar_t* p, const acc_t* sums, index_t n, int vector)
{
    scalar_t v[RUN_MAX];
    UNROLL
    for (int e = 0; e < RUN_MAX; ++e) v[e] = from_acc(sums[e]);
    store_run(p, v, n, vector);
}

// The pairs of one axis: per launch (dilation > 1 only) gcd and inverse, per position q
// the first pair (o, i) with the largest o, and how many there are.
struct Axis {
    index_t kernel, stride, dilation, count;
    index_t gcd, stride_step, dilation_step, inverse;  // step: value / gcd
};

struct Pairs {
    index_t o, i, n;  // first window and tap; n pairs: (o - m * o_step, i + m * i_step)
};

__device__ __forceinline__ Axis make_axis(index_t kernel, index_t stride, index_t dilation,
                                          index_t count)
{
    Axis axis = {kernel, stride, dilation, count, 1, stride, 1, 0};
    if (dilation > 1) {
        index_t a = stride, b = dilation;
        while (b != 0) {
            const index_t t = a % b;
            a = b;
            b = t;
        }
        axis.gcd = a;
        axis.stride_step = stride / a;
        axis.dilation_step = dilation / a;
        // inverse of stride_step modulo dilation_step (coprime): a few steps, once
        for (index_t k = 0; k < axis.dilation_step; ++k) {
            if (k * axis.stride_step % axis.dilation_step == 1 % axis.dilation_step) {
                axis.inverse = k;
                break;
            }
        }
    }
    return axis;
}

__device__ __forceinline__ Pairs window_pairs(const Axis& axis, index_t q)
{
    const index_t o_first = first_window(q, (axis.kernel - 1) * axis.dilation + 1, axis.stride);
    index_t o = last_window(q, axis.stride, axis.count);
    Pairs pairs = {o, q - o * axis.stride, o - o_first + 1};
    if (axis.dilation > 1) {
        // o * stride = q (mod dilation): o = (q / g) * inverse (mod dilation / g)
        const index_t step = axis.dilation_step;
        if (q % axis.gcd != 0 || o < o_first) {
            pairs.n = 0;
            return pairs;
        }
        const index_t residue = (q / axis.gcd) % step * axis.inverse % step;
        o -= ((o - residue) % step + step) % step;
        pairs.o = o;
        pairs.i = (q - o * axis.stride) / axis.dilation;
        pairs.n = o < o_first ? 0 : (o - o_first) / step + 1;
    }
    if (pairs.n < 0) pairs.n = 0;
    return pairs;
}
