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
'''


@pytest.fixture(scope="module")
def test_gpu(tmp_path_factory, emulated_gpu):  # emulated_gpu: skips without g++
    directory = tmp_path_factory.mktemp("emulator_self_test")
    source = directory / "test_kernels.cu"
    source.write_text(TEST_KERNELS)
    library, _ = cuda_emulator.compile_library(source, "float64", directory)
    return cuda_emulator.EmulatedGpu({("test_kernels.cu", "float64"): library}, {})


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
