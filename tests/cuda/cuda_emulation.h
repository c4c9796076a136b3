// cuda_emulation.h: just enough CUDA for g++ to compile kernels/*.cu as plain C++, so
// that the tests run every kernel on the CPU (tests/cuda/cuda_emulator.py builds and calls
// them).
//
// Why running them here proves something. A launch runs its blocks one after another
// and, inside a block, its threads in one of two modes:
// - direct: thread after thread, each to completion. Right for every kernel in which a
//   thread reads inputs and writes elements that no other thread writes (grid-stride
//   loops with no block-level cooperation), and fast.
// - cooperative: every thread of the block is a fiber (ucontext) with its own stack.
//   __syncthreads() parks the calling fiber until every thread of the block has reached
//   a barrier; a warp primitive (__shfl_*_sync, __syncwarp, __ballot_sync) parks it
//   until every lane its mask names has reached one. So shared memory written before
//   a barrier is seen after it, exactly as on the GPU, and a kernel that forgets a
//   barrier reads what the threads scheduled after it have not yet written.
// A launch starts in direct mode; the first barrier or warp primitive called there
// aborts it (a C++ exception) and the Python side runs the launch again, cooperatively,
// from fresh copies of its arrays (cuda_emulator.py keeps them), so nothing written by
// the aborted attempt survives. It then remembers the kernel as cooperative.
//
// Stricter than a GPU, never more lenient: a barrier that some threads of the block
// reach while others have returned, or a warp primitive whose mask names a lane that
// returned or waits elsewhere, is an error here (undefined or a hang on a GPU).
//
// Shared memory: `__shared__` declarations must have a size known at compile time
// (no `extern __shared__`). Here they are function-level statics: one copy, shared by
// the fibers of the block that runs, as the blocks run one at a time.
//
// launch() sets gridDim/blockDim/blockIdx/threadIdx (3-D) and runs the kernel once per
// (block, thread). The arguments arrive the way CUDA's driver API takes them (the
// kernelParams of cuLaunchKernel): an array of pointers, one to each argument's value;
// their types come from the kernel's C signature. EMULATE_KERNEL(name) exports, for
// ctypes:
//     run_<name>(grid[3], block[3], args, cooperative)  the launch: 0 done, 1 needs the
//                                     cooperative mode, 2 error (last_error() says which)
//     signature_<name>()              the parameter types, such as "const f4*,i8,f4*",
//                                     which the Python side checks before every launch
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>
#include <ucontext.h>

// The overloads CUDA provides for float and double (exp(float) is expf, ...).
using std::exp;
using std::log;
using std::pow;
using std::sqrt;
using std::fabs;
using std::fmin;
using std::fmax;
using std::isnan;
using std::isinf;
using std::isfinite;
using std::min;
using std::max;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __shared__ static
template <typename T> inline T __ldg(const T* pointer) { return *pointer; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline int __float_as_int(float x) { int i; std::memcpy(&i, &x, 4); return i; }
inline float __int_as_float(int i) { float x; std::memcpy(&x, &i, 4); return x; }
inline unsigned int __float_as_uint(float x) { unsigned int u; std::memcpy(&u, &x, 4); return u; }
inline float __uint_as_float(unsigned int u) { float x; std::memcpy(&x, &u, 4); return x; }
inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }

// The vector types of 16-byte (and 8-byte) loads and stores.
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) double2 { double x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(8) uint2 { unsigned int x, y; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
inline double2 make_double2(double x, double y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned int x, unsigned int y) { return {x, y}; }

struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};
static thread_local dim3 gridDim, blockDim, blockIdx, threadIdx;
static constexpr int warpSize = 32;

// ------------------------------------------------------------------ the block's threads
namespace emulation {

struct NeedsCooperative {};  // thrown by a barrier in direct mode

enum class State { runnable, block_barrier, warp_barrier, done };

struct Fiber {
    ucontext_t context;
    State state = State::runnable;
    unsigned int warp_mask = 0;
    dim3 thread;
};

struct Block {
    std::vector<Fiber> fibers;
    ucontext_t scheduler;
    int current = -1;
    std::vector<unsigned char> exchange;  // 16 bytes a thread, for the warp primitives
    std::string error;
};

static thread_local Block* block = nullptr;  // null: direct mode
static thread_local std::vector<std::unique_ptr<char[]>> stacks;  // reused by every block
static constexpr size_t stack_size = 256 * 1024;
static thread_local std::string last_error;

// Park the calling fiber in `state` and return to the scheduler.
inline void park(State state, unsigned int mask = 0)
{
    if (block == nullptr) throw NeedsCooperative{};
    Fiber& fiber = block->fibers[block->current];
    fiber.state = state;
    fiber.warp_mask = mask;
    swapcontext(&fiber.context, &block->scheduler);
}

inline int linear_thread() { return block ? block->current : 0; }
inline int lane() { return linear_thread() % warpSize; }

}  // namespace emulation

inline void __syncthreads() { emulation::park(emulation::State::block_barrier); }
inline void __syncwarp(unsigned int mask = 0xffffffffu)
{
    emulation::park(emulation::State::warp_barrier, mask);
}

// A warp primitive: each lane publishes `value`, the lanes of `mask` meet, each reads
// the value of the lane `source(lane)` (its own where that lane is out of range), and
// they meet again before anyone may publish the next value.
template <typename T, typename Source>
inline T exchange_in_warp(unsigned int mask, T value, Source source)
{
    static_assert(sizeof(T) <= 16, "warp primitives exchange at most 16 bytes");
    if (emulation::block == nullptr) throw emulation::NeedsCooperative{};
    const int me = emulation::linear_thread();
    unsigned char* slots = emulation::block->exchange.data();
    std::memcpy(slots + 16 * me, &value, sizeof(T));
    __syncwarp(mask);
    const int from = source(me % warpSize);
    T result = value;
    if (from >= 0 && from < warpSize) {
        std::memcpy(&result, slots + 16 * (me - me % warpSize + from), sizeof(T));
    }
    __syncwarp(mask);
    return result;
}

template <typename T>
inline T __shfl_sync(unsigned int mask, T value, int source, int width = warpSize)
{
    return exchange_in_warp(mask, value, [=](int lane) {
        return lane - lane % width + ((source % width) + width) % width; });
}
template <typename T>
inline T __shfl_down_sync(unsigned int mask, T value, unsigned int delta, int width = warpSize)
{
    return exchange_in_warp(mask, value, [=](int lane) {
        const int to = lane % width + (int)delta;
        return to < width ? lane + (int)delta : lane; });
}
template <typename T>
inline T __shfl_up_sync(unsigned int mask, T value, unsigned int delta, int width = warpSize)
{
    return exchange_in_warp(mask, value, [=](int lane) {
        return lane % width >= (int)delta ? lane - (int)delta : lane; });
}
template <typename T>
inline T __shfl_xor_sync(unsigned int mask, T value, int lane_mask, int width = warpSize)
{
    return exchange_in_warp(mask, value, [=](int lane) {
        const int to = lane ^ lane_mask;
        return to / width == lane / width ? to : lane; });
}
inline unsigned int __ballot_sync(unsigned int mask, int predicate)
{
    unsigned int ballot = 0;
    for (int from = 0; from < warpSize; ++from) {
        if (!(mask >> from & 1u)) continue;
        const int bit = exchange_in_warp(mask, predicate ? 1 : 0, [=](int) { return from; });
        ballot |= (unsigned int)(bit != 0) << from;
    }
    return ballot;
}
inline int __any_sync(unsigned int mask, int predicate) { return __ballot_sync(mask, predicate) != 0; }
inline int __all_sync(unsigned int mask, int predicate)
{
    return __ballot_sync(mask, predicate) == __ballot_sync(mask, 1);
}

// ---------------------------------------------------------------------------- launching
template <typename... Params, std::size_t... I>
static void call_with(void (*kernel)(Params...), void** args, std::index_sequence<I...>)
{
    kernel(*static_cast<std::remove_reference_t<Params>*>(args[I])...);
}

namespace emulation {

static thread_local void (*fiber_body)(void*) = nullptr;
static thread_local void* fiber_argument = nullptr;

inline void fiber_entry()
{
    fiber_body(fiber_argument);
    block->fibers[block->current].state = State::done;
    // returning resumes uc_link: the scheduler
}

inline dim3 thread_of(int linear)
{
    return {linear % blockDim.x, linear / blockDim.x % blockDim.y, linear / (blockDim.x * blockDim.y)};
}

// Release warp [first, end) if its waiting lanes are all that their mask names. False
// on a mask that names a lane which cannot arrive (returned, or parked at the block
// barrier).
inline bool release_warp(Block& run, int first, int end)
{
    for (int t = first; t < end; ++t) {
        if (run.fibers[t].state != State::warp_barrier) continue;
        const unsigned int mask = run.fibers[t].warp_mask;
        bool all_there = true, impossible = false;
        for (int u = first; u < end; ++u) {
            if (!(mask >> (u - first) & 1u)) continue;
            const State s = run.fibers[u].state;
            if (s == State::runnable) all_there = false;
            else if (s != State::warp_barrier) impossible = true;
        }
        for (int lane = end - first; lane < warpSize; ++lane) {
            if (mask >> lane & 1u) impossible = true;  // a lane past the block's end
        }
        if (impossible) {
            run.error = "a warp primitive's mask names a lane that returned or waits at "
                        "__syncthreads (thread " + std::to_string(t) + ")";
            return false;
        }
        if (all_there) {
            for (int u = first; u < end; ++u) {
                if (mask >> (u - first) & 1u) run.fibers[u].state = State::runnable;
            }
        }
    }
    return true;
}

// One block, each thread a fiber, until all return. False on a barrier misuse.
inline bool run_block_cooperatively(void (*body)(void*), void* argument, int threads)
{
    Block run;
    run.fibers.resize(threads);
    run.exchange.assign(16 * (size_t)threads, 0);
    fiber_body = body;
    fiber_argument = argument;
    while ((int)stacks.size() < threads) stacks.emplace_back(new char[stack_size]);
    for (int t = 0; t < threads; ++t) {
        Fiber& fiber = run.fibers[t];
        fiber.thread = thread_of(t);
        getcontext(&fiber.context);
        fiber.context.uc_stack.ss_sp = stacks[t].get();
        fiber.context.uc_stack.ss_size = stack_size;
        fiber.context.uc_link = &run.scheduler;
        makecontext(&fiber.context, fiber_entry, 0);
    }
    block = &run;
    bool ok = true;
    for (;;) {
        // Each warp runs as far as it can before the next one starts: a read of another
        // warp's shared data that lacks a __syncthreads then sees it unwritten.
        for (int first = 0; ok && first < threads; first += warpSize) {
            const int end = std::min(first + warpSize, threads);
            for (bool ran = true; ran && ok;) {
                ran = false;
                for (int t = first; t < end; ++t) {
                    if (run.fibers[t].state != State::runnable) continue;
                    run.current = t;
                    threadIdx = run.fibers[t].thread;
                    swapcontext(&run.scheduler, &run.fibers[t].context);
                    ran = true;
                }
                ok = release_warp(run, first, end);
                for (int t = first; t < end && !ran; ++t) ran = run.fibers[t].state == State::runnable;
            }
        }
        if (!ok) break;
        bool any_runnable = false, any_block = false, any_done = false, all_done = true;
        for (const Fiber& fiber : run.fibers) {
            any_runnable |= fiber.state == State::runnable;
            any_block |= fiber.state == State::block_barrier;
            any_done |= fiber.state == State::done;
            all_done &= fiber.state == State::done;
        }
        if (all_done) break;
        if (any_runnable) continue;  // not reached: every warp ran until it could not
        if (any_block && any_done) {
            run.error = "__syncthreads reached by some threads of a block while others returned";
            ok = false;
            break;
        }
        if (any_block) {
            bool all_at_block = true;
            for (const Fiber& fiber : run.fibers) all_at_block &= fiber.state == State::block_barrier;
            if (!all_at_block) {
                run.error = "__syncthreads reached while other threads wait at a warp primitive";
                ok = false;
                break;
            }
            for (Fiber& fiber : run.fibers) fiber.state = State::runnable;
            continue;
        }
        run.error = "threads wait at warp primitives that can never complete";
        ok = false;
        break;
    }
    block = nullptr;
    if (!ok) last_error = run.error;
    return ok;
}

template <typename... Params>
struct Call {
    void (*kernel)(Params...);
    void** args;
    static void body(void* self)
    {
        Call* call = static_cast<Call*>(self);
        call_with(call->kernel, call->args, std::index_sequence_for<Params...>{});
    }
};

}  // namespace emulation

template <typename... Params>
static int launch(void (*kernel)(Params...), const unsigned int* grid, const unsigned int* threads,
                  void** args, int cooperative)
{
    gridDim = {grid[0], grid[1], grid[2]};
    blockDim = {threads[0], threads[1], threads[2]};
    const int per_block = (int)(threads[0] * threads[1] * threads[2]);
    emulation::Call<Params...> call{kernel, args};
    for (unsigned int bz = 0; bz < grid[2]; ++bz)
    for (unsigned int by = 0; by < grid[1]; ++by)
    for (unsigned int bx = 0; bx < grid[0]; ++bx) {
        blockIdx = {bx, by, bz};
        if (cooperative) {
            if (!emulation::run_block_cooperatively(&emulation::Call<Params...>::body, &call, per_block)) {
                return 2;
            }
            continue;
        }
        try {
            for (int t = 0; t < per_block; ++t) {
                threadIdx = emulation::thread_of(t);
                call_with(kernel, args, std::index_sequence_for<Params...>{});
            }
        } catch (const emulation::NeedsCooperative&) {
            return 1;
        }
    }
    return 0;
}

extern "C" const char* last_error() { return emulation::last_error.c_str(); }

// "f4" float, "f8" double, "i8" long long, "i4" int, "const f4*" const float*, ...
// (NumPy's dtype kind and item size, so the Python side can compare directly).
template <typename T>
static std::string type_code()
{
    if constexpr (std::is_pointer_v<T>) {
        using Pointee = std::remove_pointer_t<T>;
        return (std::is_const_v<Pointee> ? "const " : "") +
               type_code<std::remove_const_t<Pointee>>() + "*";
    } else {
        const char kind = std::is_floating_point_v<T> ? 'f' : std::is_signed_v<T> ? 'i' : 'u';
        return kind + std::to_string(sizeof(T));
    }
}

template <typename... Params>
static const char* signature_of(void (*)(Params...))
{
    static const std::string text = [] {
        std::string joined;
        ((joined += (joined.empty() ? "" : ",") + type_code<Params>()), ...);
        return joined;
    }();
    return text.c_str();
}

#define EMULATE_KERNEL(name)                                                             \
    extern "C" int run_##name(const unsigned int* grid, const unsigned int* block,       \
                              void** args, int cooperative)                              \
    {                                                                                    \
        return launch(name, grid, block, args, cooperative);                             \
    }                                                                                    \
    extern "C" const char* signature_##name() { return signature_of(name); }
