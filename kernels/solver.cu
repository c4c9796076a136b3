// The SGD and Adam steps for ALL learned parameters in one launch (the math, the
// arenas and the NumPy reference: minifcn/reference/solver.py; optim.py).
//
// optim.py keeps the parameters of one dtype and device, their gradients and the
// solver state as views into flat arrays (arenas) of `size` elements, so one kernel
// updates them all, where a step used to be several CuPy passes per parameter.
// Parameter k owns elements [start_k, stop_k) of every arena. The chunk table cuts
// each parameter into chunks of at most CHUNK elements (reference/solver.py):
//
//     chunk_start[j], chunk_stop[j]   chunk j's elements (long long: a table built once
//                                     per arena, read as index_t: every value is at
//                                     most `size`, which the host's index check covers)
//     chunk_rate[j]                   lr_mult of its parameter (Caffe: 2 for biases)
//     chunk_decay[j]                  weight_decay * decay_mult (0 for biases)
//
// and `scalars`, a few device values the host rewrites before each step (learning
// rate, Adam's bias corrections): the table never changes, the launch's arguments
// never change, so a captured CUDA graph of the step can replay it as is.
//
//     sgd_step   scalars = [lr, momentum, grad_scale]
//                g = grad_scale grad + decay w;  v = momentum v + lr rate g;  w -= v
//     adam_step  scalars = [lr / (1 - b1^t), b1, 1 - b1, b2, 1 - b2, eps, grad_scale,
//                           1 - b2^t]
//                g as above;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g g
//                w -= (lr / (1 - b1^t)) rate m / (sqrt(v / (1 - b2^t)) + eps)
//
// THREAD MAPPING
//   one BLOCK per chunk, chunks grid-strided over blockIdx.x (any grid in x works);
//   the block's threads stride through the chunk, thread t on elements start + t,
//   start + t + blockDim.x, ... (coalesced loads and stores). A chunk lies inside one
//   parameter, so its constants are loaded once per block. Any block size works.
//
// WHAT BOUNDS ITS SPEED: memory. Bytes per element (s = sizeof(scalar_t)):
//   sgd_step   5 s   (read w, grad, v; write w, v)
//   adam_step  7 s   (read w, grad, m, v; write w, m, v)
// plus the table, 24 bytes per chunk of CHUNK elements (negligible). The CuPy passes
// it replaces moved about 15 s per element for SGD (reference/solver.py's five
// expressions, with temporaries) and over 25 s for Adam, in ~10 launches per
// parameter. Predicted: near the copy bandwidth for FCN-32s' 134 M parameters (one
// launch of ~8 k blocks), e.g. 2.7 GB moved per SGD step in float32.
//
// Built for float32 and float64 only, no bf16 (the #error below says why).

#include "common.cuh"

#ifdef STORAGE_BF16
#error "solver.cu has no bf16 build: the master weights, their gradients and the solver state are float32"
#endif

extern "C" __global__ void sgd_step(
    scalar_t* __restrict__ param_inout, const scalar_t* __restrict__ grad,
    scalar_t* __restrict__ history_inout, index_t chunks,
    const long long* __restrict__ chunk_start, const long long* __restrict__ chunk_stop,
    const scalar_t* __restrict__ chunk_rate, const scalar_t* __restrict__ chunk_decay,
    const scalar_t* __restrict__ scalars)
{
    const scalar_t lr = scalars[0], momentum = scalars[1], grad_scale = scalars[2];
    for (index_t chunk = blockIdx.x; chunk < chunks; chunk += gridDim.x) {
        const scalar_t rate = lr * chunk_rate[chunk], decay = chunk_decay[chunk];
        const index_t stop = (index_t)chunk_stop[chunk];
        for (index_t i = (index_t)chunk_start[chunk] + threadIdx.x; i < stop; i += blockDim.x) {
            const scalar_t w = param_inout[i];
            const scalar_t g = grad_scale * grad[i] + decay * w;
            const scalar_t step = momentum * history_inout[i] + rate * g;
            history_inout[i] = step;
            param_inout[i] = w - step;
        }
    }
}

extern "C" __global__ void adam_step(
    scalar_t* __restrict__ param_inout, const scalar_t* __restrict__ grad,
    scalar_t* __restrict__ first_inout, scalar_t* __restrict__ second_inout, index_t chunks,
    const long long* __restrict__ chunk_start, const long long* __restrict__ chunk_stop,
    const scalar_t* __restrict__ chunk_rate, const scalar_t* __restrict__ chunk_decay,
    const scalar_t* __restrict__ scalars)
{
    const scalar_t rate0 = scalars[0], b1 = scalars[1], one_minus_b1 = scalars[2];
    const scalar_t b2 = scalars[3], one_minus_b2 = scalars[4], eps = scalars[5];
    const scalar_t grad_scale = scalars[6], second_fix = scalars[7];
    for (index_t chunk = blockIdx.x; chunk < chunks; chunk += gridDim.x) {
        const scalar_t rate = rate0 * chunk_rate[chunk], decay = chunk_decay[chunk];
        const index_t stop = (index_t)chunk_stop[chunk];
        for (index_t i = (index_t)chunk_start[chunk] + threadIdx.x; i < stop; i += blockDim.x) {
            const scalar_t w = param_inout[i];
            const scalar_t g = grad_scale * grad[i] + decay * w;
            const scalar_t m = b1 * first_inout[i] + one_minus_b1 * g;
            const scalar_t v = b2 * second_inout[i] + one_minus_b2 * g * g;
            first_inout[i] = m;
            second_inout[i] = v;
            param_inout[i] = w - rate * m / (sqrt(v / second_fix) + eps);
        }
    }
}
