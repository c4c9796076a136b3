"""minifcn/cuda.py's pure-Python parts: the contracts, the loader's source handling,
launch sizes and argument conversion. None of this needs CuPy or a GPU."""
import inspect
import re
import subprocess
import sys

import numpy
import pytest

import minifcn
from minifcn import cuda, kernel_set, reference

import cuda_emulator

# The kernels of the contract (kernel_set.py) that the CUDA set runs from kernels/*.cu.
OWN_KERNELS = ["accumulate", "adam_step", "add", "add_bias", "avg_pool_backward",
               "avg_pool_forward", "bias_grad", "cast", "col2im", "conv_implicit_gemm",
               "crop_backward", "crop_forward", "dropout", "im2col", "lrn_backward", "lrn_forward",
               "max_pool_backward", "max_pool_forward", "relu_backward", "relu_forward",
               "sgd_step", "softmax_cross_entropy_backward", "softmax_cross_entropy_forward"]


def test_the_cuda_set_runs_its_own_kernel_for_exactly_these():
    own = [name for name in kernel_set.KERNELS if getattr(cuda.KERNELS, name) is getattr(cuda, name, None)]
    assert sorted(own) == OWN_KERNELS


@pytest.mark.parametrize("name", OWN_KERNELS)
def test_each_kernel_has_the_signature_of_the_contract_and_the_reference(name):
    parameters = list(inspect.signature(getattr(cuda, name)).parameters)
    assert parameters == list(inspect.signature(getattr(kernel_set.KernelSet, name)).parameters)
    assert parameters == list(inspect.signature(getattr(reference.KERNELS, name)).parameters)


def test_every_kernel_cuda_py_launches_is_defined():
    source = open(cuda.__file__).read()
    launched = set(re.findall(r'_launch\("(\w+\.cu)", "(\w+)"', source))
    launched |= {("elementwise.cu", name) for name in re.findall(r'_launch_items\("(\w+)"', source)}
    defined = {(filename, name) for filename in cuda.kernel_files()
               for name in cuda_emulator.defined_kernels(cuda.kernel_source(filename))}
    # each kernel of the contract, dropout's variant for captured steps (graph.py),
    # the second pass of the loss's forward (its partials' total), bias_grad's two
    # passes (its per-range sums, then their total per channel) and cast's two ways
    assert {name for _, name in launched} == {*OWN_KERNELS, "dropout_seed_on_device",
                                              "softmax_cross_entropy_total", "bias_grad_partial",
                                              "bias_grad_finish", "cast_to_acc",
                                              "cast_from_acc"} - {"bias_grad", "cast"}
    assert launched <= defined, launched - defined


def test_imports_without_cupy():
    code = ("import sys; sys.modules['cupy'] = None\n"
            "import minifcn.cuda as c; print(c.launch_shape(1000))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(4, 256)"


@pytest.mark.parametrize("filename", cuda.kernel_files())
def test_kernel_source_pastes_the_includes_in(filename):
    text = cuda.kernel_source(filename)
    assert not re.search(r"^\s*#include", text, re.MULTILINE)
    assert text.count("#define GRID_STRIDE_LOOP") == 1


@pytest.mark.parametrize("filename", cuda.kernel_files())
def test_each_kernel_file_opens_with_its_thread_mapping(filename):
    header = (cuda.KERNEL_DIR / filename).read_text().split("#include")[0]
    assert "THREAD MAPPING" in header


@pytest.mark.parametrize("dtype, bits, defines", [
    ("float32", 32, ("-Dscalar_t=float", "-Dindex_t=int")),
    ("float64", 64, ("-Dscalar_t=double", "-Dindex_t=long long")),
    ("uint16", 32, ("-DSTORAGE_BF16", "-Dindex_t=int"))])
def test_compile_options_pick_the_scalar_and_index_types(dtype, bits, defines):
    assert cuda.compile_options(dtype, bits) == defines


@pytest.mark.parametrize("dtype", ["float16", "int32", "complex64"])
def test_other_dtypes_are_refused(dtype):
    with pytest.raises(TypeError, match=r"float32, float64 or bf16 \(uint16\)"):
        cuda.compile_options(dtype)


def test_the_files_without_a_bf16_build_say_why():
    bf16 = {filename for filename in cuda.kernel_files() if "uint16" in cuda.storage_dtypes(filename)}
    assert bf16 == {"crop.cu", "dropout.cu", "elementwise.cu", "im2col.cu", "lrn.cu", "pooling.cu"}
    assert "master weights" in cuda.bf16_refusal("solver.cu")
    assert cuda.variants("solver.cu") == [("float32", 32), ("float32", 64), ("float64", 32),
                                          ("float64", 64)]
    assert ("uint16", 32) in cuda.variants("im2col.cu")


@pytest.mark.parametrize("filename, kernel", [("solver.cu", "sgd_step"),
                                              ("softmax_loss.cu", "softmax_cross_entropy_forward"),
                                              ("implicit_gemm.cu", "conv_implicit_gemm")])
def test_a_bf16_array_is_refused_by_the_files_without_a_bf16_build(monkeypatch, filename, kernel):
    monkeypatch.setattr(cuda, "_enqueue", lambda *call: pytest.fail("launched"))
    with pytest.raises(TypeError, match=rf"{kernel} \(kernels/{filename}\) takes float32 or "
                                        rf"float64 arrays, not bf16: {filename} has no bf16 build"):
        cuda._launch(filename, kernel, numpy.uint16, 1)


@pytest.mark.parametrize("filename", cuda.kernel_files())
def test_every_kernel_can_be_launched_in_every_build_of_its_file(filename):
    # a real parameter of a bf16-built file must be acc_t: a scalar_t one would be the
    # bf16 bits (unsigned short), which Python cannot pass as a number
    for dtype in cuda.storage_dtypes(filename):
        for kernel in cuda.kernel_parameters(filename):
            prepared = cuda._Prepared(filename, kernel, dtype)
            assert prepared.real == cuda.acc_dtype(dtype)


@pytest.mark.parametrize("dtype, real", [("float32", numpy.float32), ("uint16", numpy.float32),
                                         ("float64", numpy.float64)])
def test_acc_t_parameters_take_the_accumulation_type(monkeypatch, dtype, real):
    queued = []
    monkeypatch.setattr(cuda, "_enqueue", lambda *call: queued.append(call))
    x = numpy.zeros(3, dtype)
    cuda._launch("dropout.cu", "dropout", dtype, 3, x, 3, 1, 2, 0.5, x)
    _, _, variant, _, _, args = queued[0]
    assert variant == (dtype, 32) and type(args[4]) is real and args[4] == 0.5


@pytest.mark.parametrize("work_items, blocks", [(1, 1), (256, 1), (257, 2), (10**12, cuda.MAX_BLOCKS)])
def test_launch_shape(work_items, blocks):
    assert cuda.launch_shape(work_items) == (blocks, cuda.THREADS_PER_BLOCK)


def test_kernel_parameters_are_read_from_the_source():
    assert cuda.kernel_parameters("crop.cu")["crop_forward"] == (
        ("scalar_t*", "x"), ("index_t", "planes"), ("index_t", "height"), ("index_t", "width"),
        ("index_t", "offset_y"), ("index_t", "offset_x"), ("index_t", "crop_h"),
        ("index_t", "crop_w"), ("scalar_t*", "y"))
    assert ("long long", "seed") in cuda.kernel_parameters("dropout.cu")["dropout"]


def _queued_crop(monkeypatch, x, *numbers):
    queued = []
    monkeypatch.setattr(cuda, "_enqueue", lambda *call: queued.append(call))
    cuda._launch("crop.cu", "crop_forward", x.dtype, 3, x, *numbers, x)
    return queued[0]


def test_arguments_take_the_declared_types_and_small_launches_32_bit_indices(monkeypatch):
    x = numpy.zeros(3, numpy.float32)
    filename, kernel, variant, blocks, threads, args = _queued_crop(
        monkeypatch, x, 1, numpy.int64(2), 3, 4, 5, 6, 7)
    assert (filename, kernel, variant, blocks, threads) == (
        "crop.cu", "crop_forward", ("float32", 32), 1, 256)
    assert args[0] is x and args[-1] is x
    assert [type(value) for value in args[1:-1]] == [numpy.int32] * 7


def test_an_index_past_2_to_the_31_takes_the_64_bit_build(monkeypatch):
    x = numpy.zeros(3, numpy.float64)
    _, _, variant, _, _, args = _queued_crop(monkeypatch, x, 2**31, 2, 3, 4, 5, 6, 7)
    assert variant == ("float64", 64) and type(args[1]) is numpy.int64 and args[1] == 2**31


def test_64_bit_indices_can_be_forced(monkeypatch):
    with cuda.forced_index_bits(64):
        _, _, variant, _, _, _ = _queued_crop(monkeypatch, numpy.zeros(3), 1, 2, 3, 4, 5, 6, 7)
    assert variant == ("float64", 64)


def test_nothing_is_launched_for_no_work(monkeypatch):
    monkeypatch.setattr(cuda, "_enqueue", lambda *call: pytest.fail("launched"))
    x = numpy.zeros(0)
    cuda._launch("crop.cu", "crop_forward", numpy.float64, 0, x, 1, 1, 1, 0, 0, 0, 0, x)


@pytest.mark.parametrize("bad, error, what", [
    (numpy.zeros((3, 4))[:, ::2], ValueError, "C-contiguous"), (True, TypeError, "number"),
    ("3", TypeError, "number"), (1.5, TypeError, "integer"), (7, TypeError, "must be an array")])
def test_bad_kernel_arguments_are_refused(monkeypatch, bad, error, what):
    monkeypatch.setattr(cuda, "_enqueue", lambda *call: None)
    x = numpy.zeros(3)
    args = [x, 1, 1, 3, 0, 0, 1, 3, x]
    args[0 if what in ("C-contiguous", "must be an array") else 1] = bad
    with pytest.raises(error, match=f"crop_forward.*{what}"):
        cuda._launch("crop.cu", "crop_forward", numpy.float64, 1, *args)


def test_a_wrong_argument_count_is_refused(monkeypatch):
    monkeypatch.setattr(cuda, "_enqueue", lambda *call: None)
    with pytest.raises(TypeError, match=r"crop_forward takes 9 arguments \(x, planes"):
        cuda._launch("crop.cu", "crop_forward", numpy.float64, 1, numpy.zeros(3))


@pytest.mark.skipif(minifcn.gpu_available(), reason="checks the error without a GPU")
def test_tf32_switch_without_a_gpu_says_what_is_missing():
    with pytest.raises(RuntimeError, match="CuPy|GPU"):
        cuda.allow_tf32(True)
