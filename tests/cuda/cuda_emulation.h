// cuda_emulation.h: just enough CUDA for g++ to compile kernels/*.cu as plain C++, so
// that the tests run every kernel on the CPU (tests/cuda/cuda_emulator.py builds and calls
// them).
//
// Why running them here proves something: every kernel in kernels/ is a grid-stride
// loop in which a thread reads inputs and writes elements that no other thread writes;
// none uses shared memory, __syncthreads, atomics or warp intrinsics. Running the
// threads of a grid one after another therefore computes what the GPU computes in
// parallel. A kernel that used any of those would not compile here (this header does
// not define them), and would need a reduction written so that blockDim = 1 is valid.
//
// launch() sets gridDim/blockDim/blockIdx/threadIdx and calls the kernel once per
// (block, thread). The arguments arrive the way CUDA's driver API takes them (the
// kernelParams of cuLaunchKernel): an array of pointers, one to each argument's value;
// their types come from the kernel's C signature. EMULATE_KERNEL(name) exports, for
// ctypes:
//     run_<name>(grid, block, args)   the launch
//     signature_<name>()              the parameter types, such as "const f4*,i8,f4*",
//                                     which the Python side checks before every launch
#include <cmath>
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>

// The overloads CUDA provides for float and double (exp(float) is expf, ...).
using std::exp;
using std::log;
using std::pow;

#define __global__
#define __device__
#define __forceinline__ inline

struct dim3 {
    unsigned int x, y, z;
};
static thread_local dim3 gridDim, blockDim, blockIdx, threadIdx;

template <typename... Params, std::size_t... I>
static void call_with(void (*kernel)(Params...), void** args, std::index_sequence<I...>)
{
    kernel(*static_cast<std::remove_reference_t<Params>*>(args[I])...);
}

template <typename... Params>
static void launch(void (*kernel)(Params...), unsigned int grid, unsigned int block, void** args)
{
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    for (unsigned int b = 0; b < grid; ++b) {
        for (unsigned int t = 0; t < block; ++t) {
            blockIdx = {b, 0, 0};
            threadIdx = {t, 0, 0};
            call_with(kernel, args, std::index_sequence_for<Params...>{});
        }
    }
}

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
    extern "C" void run_##name(unsigned int grid, unsigned int block, void** args)       \
    {                                                                                    \
        launch(name, grid, block, args);                                                 \
    }                                                                                    \
    extern "C" const char* signature_##name() { return signature_of(name); }
