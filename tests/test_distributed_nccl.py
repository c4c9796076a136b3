"""The NCCL path of distributed.py: gradients of CuPy arrays summed by cupy.cuda.nccl,
its communicator bootstrapped over MPI (rank 0's unique id broadcast).

In CI: 2 real ranks train with --device cuda on the emulated CuPy (tests/cuda/
emulated_cupy.py, with its NCCL stand-in, which sums over MPI and checks that every
rank was given rank 0's unique id) and match one process on the CPU with --batch-size
2, to the emulated kernels' float32 tolerance against NumPy's (cuda_emulator.tolerance)
widened for a few steps (rtol 1e-4, atol 1e-5). On a machine with a GPU (marked gpu):
NCCL itself, one rank per GPU.
"""
import os
import re
import shutil
import sys

import numpy
import pytest

from minifcn import backend
from minifcn.checkpoint import load_checkpoint

from test_distributed import ROOT, TINY, assert_same_state, options, run_ranks, single

CUDA_TESTS = os.path.join(ROOT, "tests", "cuda")

# Each rank: the emulated CuPy with NCCL, its kernels the libraries the test built.
EMULATED_RANK = """
    import atexit, ctypes, os, sys
    sys.path.insert(0, os.environ["CUDA_TESTS"])
    import cuda_emulator, emulated_cupy
    from mpi4py import MPI
    from minifcn import backend, cli, cuda
    libraries = {(name, dtype, bits): ctypes.CDLL(os.path.join(
                     os.environ["KERNELS"], f"lib{name[:-3]}_{dtype}_{bits}.so"))
                 for name in cuda.kernel_files() for dtype, bits in cuda.variants(name)}
    names = {name: cuda_emulator.parameter_names(cuda.kernel_source(name))
             for name in cuda.kernel_files()}
    gpu = cuda_emulator.EmulatedGpu(libraries, {}, names)
    backend._cupy = emulated_cupy.with_nccl(emulated_cupy.EmulatedCupy())
    cuda._cupy_linalg = lambda: backend._cupy.cuda.routines_linalg  # the TF32 switch
    cuda._enqueue = emulated_cupy.kernel_launcher(gpu.enqueuer())
    calls, real = [], emulated_cupy._NcclCommunicator.allReduce
    emulated_cupy._NcclCommunicator.allReduce = lambda self, *a: calls.append(a[2]) or real(self, *a)
    atexit.register(lambda: print(f"rank {MPI.COMM_WORLD.Get_rank()}: NCCL all-reduces of "
                                  f"{calls} elements", flush=True))
    sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def emulated_kernels(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed: the CPU emulation of kernels/*.cu needs it")
    sys.path.insert(0, CUDA_TESTS)
    import cuda_emulator
    directory = tmp_path_factory.mktemp("emulated_kernels")
    cuda_emulator.build(directory)
    return str(directory)


@pytest.mark.slow  # builds the CPU emulation of every kernel (g++)
def test_two_ranks_on_the_emulated_gpu_sum_gradients_with_nccl(tmp_path, emulated_kernels):
    steps = dict(iterations=2, val_interval=2, optimizer="sgd", lr=0.05)
    out = str(tmp_path / "ranks")
    done, _ = run_ranks(options(**TINY, out=out, device="cuda", batch_size=1, **steps),
                        script=EMULATED_RANK,
                        environment={"CUDA_TESTS": CUDA_TESTS, "KERNELS": emulated_kernels},
                        timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    got = load_checkpoint(os.path.join(out, "checkpoint.npz"))
    calls = re.search(r"rank 0: NCCL all-reduces of \[([\d, ]+)\]", done.stdout)
    assert calls, done.stdout[-2000:]
    sizes = [int(n) for n in calls.group(1).split(",")]
    assert len(sizes) == steps["iterations"]  # one bucket a step at this size
    learned = sum(got["solver"][name].size for name in got["solver"])  # SGD: a history each
    assert sizes == [learned + 1] * steps["iterations"]  # the gradients and the loss
    assert_same_state(got, single(tmp_path / "one", batch_size=2, **steps), atol=1e-5, rtol=1e-4)


@pytest.mark.gpu
def test_nccl_sums_gradients_on_the_gpus_present(tmp_path):
    if not backend.gpu_available():
        pytest.skip("no usable GPU")
    cupy = backend.require_cupy()
    gpus = cupy.cuda.runtime.getDeviceCount()
    steps = dict(iterations=2, val_interval=2, optimizer="sgd", lr=0.05)
    if gpus >= 2:  # one rank per GPU, against one process on one GPU with their batch
        out = str(tmp_path / "ranks")
        done, _ = run_ranks(options(**TINY, out=out, device="cuda", batch_size=1, **steps),
                            ranks=gpus, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        want = single(tmp_path / "one", batch_size=gpus, device="cuda", **steps)
        assert_same_state(load_checkpoint(os.path.join(out, "checkpoint.npz")), want,
                          atol=1e-5, rtol=1e-4)
        return
    # One GPU: NCCL cannot put two ranks on one device, so a communicator of one rank
    # sums the gradient buckets of a real net (an identity, through the real NCCL calls).
    from minifcn import distributed
    from minifcn.models import FCN8s
    from minifcn.optim import SGD
    from minifcn.train import TrainConfig
    net = FCN8s(n_class=3, widths=(4, 4, 4, 4, 4), fc_width=8).to("cuda")
    opt = SGD(net, lr=0.1)
    rng = numpy.random.default_rng(0)
    for _, param in opt.params:
        param.grad = cupy.asarray(rng.standard_normal(param.shape).astype(param.dtype))
    want = {name: param.grad.get() for name, param in opt.params}
    world = distributed.World(TrainConfig(ranks=1, device="cuda"))
    with world:
        total = world.sum_gradients(opt, cupy.asarray(numpy.float32(2.5)))
    assert world._nccl is not None
    assert float(total) == 2.5
    for name, param in opt.params:
        numpy.testing.assert_array_equal(param.grad.get(), want[name])
