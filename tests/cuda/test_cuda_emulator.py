"""The CPU emulation itself: it must catch the bugs it exists to catch, or its passing
tests prove nothing. Each kernel below has one deliberate bug (or none: `copy`)."""
import numpy
import pytest

import cuda_emulator

TEST_KERNELS = r'''
#include "common.cuh"
extern "C" __global__ void copy(const scalar_t* x, long long count, scalar_t* y)
{
    GRID_STRIDE_LOOP(index, count) y[index] = x[index];
}
extern "C" __global__ void writes_past_the_end(long long count, scalar_t* y)
{
    GRID_STRIDE_LOOP(index, count + 1) y[index] = 1;
}
extern "C" __global__ void forgets_the_last(long long count, scalar_t* y)
{
    GRID_STRIDE_LOOP(index, count - 1) y[index] = 1;
}
extern "C" __global__ void reads_past_the_end(const scalar_t* x, long long count, scalar_t* y)
{
    GRID_STRIDE_LOOP(index, count) y[index] = x[index + 1];
}
extern "C" __global__ void which_thread(long long count, long long* thread_of_index)
{
    GRID_STRIDE_LOOP(index, count) thread_of_index[index] = blockIdx.x * blockDim.x + threadIdx.x;
}
// Cooperating threads: one block of 64 sums x through shared memory.
extern "C" __global__ void block_sum(const scalar_t* x, scalar_t* total)
{
    __shared__ scalar_t partial[64];
    partial[threadIdx.x] = x[threadIdx.x];
    __syncthreads();
    for (int half = 32; half > 0; half /= 2) {
        if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) *total = partial[0];
}
extern "C" __global__ void forgets_a_barrier(const scalar_t* x, scalar_t* y)
{
    __shared__ scalar_t staged[64];
    staged[threadIdx.x] = x[threadIdx.x];
    __syncwarp();  // orders the warp, not the block: lane 31 reads lane 32 too early
    y[threadIdx.x] = staged[(threadIdx.x + 1) % 64];
}
extern "C" __global__ void returns_before_a_barrier(scalar_t* y)
{
    if (threadIdx.x == 3) return;
    __syncthreads();
    y[threadIdx.x] = 1;
}
extern "C" __global__ void warp_sums(const scalar_t* x, scalar_t* down, scalar_t* butterfly)
{
    scalar_t a = x[threadIdx.x], b = a;
    for (int offset = 16; offset > 0; offset /= 2) {
        a += __shfl_down_sync(0xffffffffu, a, offset);
        b += __shfl_xor_sync(0xffffffffu, b, offset);
    }
    if (threadIdx.x % 32 == 0) down[threadIdx.x / 32] = a;
    butterfly[threadIdx.x] = b;
}
extern "C" __global__ void positives_ballot(const scalar_t* x, long long* ballot)
{
    const unsigned int bits = __ballot_sync(0xffffffffu, x[threadIdx.x] > 0);
    if (threadIdx.x == 0) *ballot = bits;
}
// In place, with a barrier: the first (direct) attempt is thrown away, never applied twice.
extern "C" __global__ void add_one_inout(long long count, scalar_t* x_inout)
{
    x_inout[threadIdx.x] += 1;
    __syncthreads();
}
extern "C" __global__ void where_am_i(long long* place)
{
    const long long thread = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    const long long block = blockIdx.y * gridDim.x + blockIdx.x;
    place[block * blockDim.x * blockDim.y * blockDim.z + thread] = 1000 * blockIdx.y + 100 * blockIdx.x
        + 10 * threadIdx.y + threadIdx.x;
}
'''


@pytest.fixture(scope="module")
def test_gpu(tmp_path_factory, emulated_gpu):  # emulated_gpu: skips without g++
    directory = tmp_path_factory.mktemp("emulator_self_test")
    source = directory / "test_kernels.cu"
    source.write_text(TEST_KERNELS)
    library, _ = cuda_emulator.compile_library(source, "float64", directory)
    return cuda_emulator.EmulatedGpu({("test_kernels.cu", "float64", 64): library}, {},
                                     {"test_kernels.cu": cuda_emulator.parameter_names(TEST_KERNELS)})


def _launch(gpu, kernel, *args, grid=(2, 3)):
    gpu.launch("test_kernels.cu", kernel, "float64", *grid, args)


def test_a_correct_kernel_runs(test_gpu):
    x, y = numpy.arange(10.0), numpy.zeros(10)
    _launch(test_gpu, "copy", x, numpy.int64(10), y)
    numpy.testing.assert_array_equal(y, x)


def test_a_write_outside_the_array_is_an_error(test_gpu):
    with pytest.raises(AssertionError, match="wrote outside"):
        _launch(test_gpu, "writes_past_the_end", numpy.int64(10), numpy.zeros(10))


def test_an_element_never_written_stays_nan(test_gpu):
    y = numpy.zeros(10)
    _launch(test_gpu, "forgets_the_last", numpy.int64(10), y)
    assert numpy.isnan(y[-1]) and (y[:-1] == 1).all()


def test_a_read_outside_the_array_gives_nan(test_gpu):
    y = numpy.zeros(10)
    _launch(test_gpu, "reads_past_the_end", numpy.arange(10.0), numpy.int64(10), y)
    assert numpy.isnan(y[-1])


@pytest.mark.parametrize("args, passed", [
    ((numpy.arange(10.0), numpy.int32(10), numpy.zeros(10)), "f8*, i4, f8*"),         # 32-bit count
    ((numpy.arange(10.0, dtype=numpy.float32), numpy.int64(10), numpy.zeros(10)), "f4*, i8, f8*"),
    ((numpy.arange(10.0), numpy.int64(10)), "f8*, i8"),                              # one missing
])
def test_arguments_that_do_not_match_the_signature_are_refused(test_gpu, args, passed):
    with pytest.raises(TypeError, match=r"takes \(const f8\*, i8, f8\*\) but was passed \(" + passed.replace("*", r"\*")):
        _launch(test_gpu, "copy", *args)


def test_threads_stride_over_the_grid(test_gpu):
    thread_of_index = numpy.zeros(14, dtype=numpy.int64)
    _launch(test_gpu, "which_thread", numpy.int64(14), thread_of_index, grid=(2, 3))
    numpy.testing.assert_array_equal(thread_of_index, numpy.arange(14) % 6)


# ------------------------------------------------------------------ cooperating threads
def test_threads_cooperate_through_shared_memory_and_barriers(test_gpu):
    x, total = numpy.random.default_rng(0).standard_normal(64), numpy.zeros(1)
    _launch(test_gpu, "block_sum", x, total, grid=(1, 64))
    numpy.testing.assert_allclose(total[0], x.sum(), rtol=1e-12)
    assert ("test_kernels.cu", "block_sum") in test_gpu.cooperative


def test_a_missing_block_barrier_reads_stale_shared_memory(test_gpu):
    x, y = numpy.arange(1.0, 65.0), numpy.zeros(64)
    _launch(test_gpu, "forgets_a_barrier", numpy.zeros(64), y, grid=(1, 64))  # stale: zeros
    _launch(test_gpu, "forgets_a_barrier", x, y, grid=(1, 64))
    correct = numpy.roll(x, -1)
    assert y[31] == 0 != correct[31]  # warp 0 read warp 1's entry before warp 1 ran
    numpy.testing.assert_array_equal(y[:31], correct[:31])  # inside a warp: ordered
    numpy.testing.assert_array_equal(y[32:], correct[32:])  # warp 0 had written before


def test_a_barrier_that_part_of_the_block_skips_is_an_error(test_gpu):
    with pytest.raises(RuntimeError, match="__syncthreads reached by some threads"):
        _launch(test_gpu, "returns_before_a_barrier", numpy.zeros(8), grid=(1, 8))


def test_warp_shuffles_exchange_between_lanes(test_gpu):
    x = numpy.random.default_rng(1).standard_normal(64)
    down, butterfly = numpy.zeros(2), numpy.zeros(64)
    _launch(test_gpu, "warp_sums", x, down, butterfly, grid=(1, 64))
    warps = x.reshape(2, 32).sum(axis=1)
    numpy.testing.assert_allclose(down, warps, rtol=1e-12)
    numpy.testing.assert_allclose(butterfly, numpy.repeat(warps, 32), rtol=1e-12)


def test_a_ballot_gathers_one_bit_a_lane(test_gpu):
    x = numpy.random.default_rng(2).standard_normal(32)
    ballot = numpy.zeros(1, dtype=numpy.int64)
    _launch(test_gpu, "positives_ballot", x, ballot, grid=(1, 32))
    assert ballot[0] == sum(1 << lane for lane in range(32) if x[lane] > 0)


def test_an_inout_array_keeps_its_contents_and_a_restart_does_not_apply_twice(test_gpu):
    x = numpy.arange(16.0)
    _launch(test_gpu, "add_one_inout", numpy.int64(16), x, grid=(1, 16))
    numpy.testing.assert_array_equal(x, numpy.arange(16.0) + 1)


def test_grids_and_blocks_have_three_dimensions(test_gpu):
    place = numpy.zeros(2 * 3 * 4 * 2, dtype=numpy.int64)
    _launch(test_gpu, "where_am_i", place, grid=((3, 2), (4, 2)))
    expected = [1000 * by + 100 * bx + 10 * ty + tx
                for by in range(2) for bx in range(3) for ty in range(2) for tx in range(4)]
    numpy.testing.assert_array_equal(place, expected)
