"""The kernel contract (minifcn/kernel_set.py): each of the three kernel sets implements
all of it or names what it does not, a set that drops a kernel fails when its class is
defined, the intended fallbacks are exactly the listed ones, and kernels_for picks the
set by device and by MINIFCN_CPU_KERNELS / use_cpu_kernels."""
import ast
import inspect
from pathlib import Path

import numpy
import pytest

import minifcn
from minifcn import backend, cpu, cuda, reference
from minifcn.kernel_set import CAPABILITIES, KERNELS, KernelSet

SETS = [reference.NumpyKernels, cpu.NumbaKernels, cuda.CudaKernels]


def _lacked(cls):
    return {name for capability in cls.lacks for name in CAPABILITIES[capability]}


def _namespace(cls, **changes):
    """The class body of `cls` as `type()` takes it (without what check() added for the
    capabilities it lacks), with `changes`."""
    namespace = {key: value for key, value in vars(cls).items()
                 if key not in _lacked(cls) and key not in ("__dict__", "__weakref__")}
    return dict(namespace, **changes)


def _parameters(function):
    return list(inspect.signature(getattr(function, "py_func", function)).parameters)  # numba: py_func


def test_the_contract_lists_every_kernel_an_op_calls():
    assert sorted(KERNELS) == sorted([
        "accumulate", "adam_step", "add", "add_bias", "avg_pool_backward", "avg_pool_forward",
        "bias_grad", "cast", "col2im", "col2im_tile", "conv_implicit_gemm", "crop_backward",
        "crop_forward", "dropout", "im2col", "im2col_tile", "lrn_backward", "lrn_forward",
        "max_pool_backward", "max_pool_forward", "relu_backward", "relu_forward", "sgd_step",
        "softmax_cross_entropy_backward", "softmax_cross_entropy_forward", "winograd_gy",
        "winograd_input", "winograd_output"])
    called = set()
    for path in Path(minifcn.__file__).parent.rglob("*.py"):
        tree = ast.parse(path.read_text())
        called |= {node.func.attr for node in ast.walk(tree) if isinstance(node, ast.Call)
                   and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Call)
                   and getattr(node.func.value.func, "attr", None) == "kernels_for"}
    assert called and called <= set(KERNELS)


@pytest.mark.parametrize("cls", SETS, ids=lambda cls: cls.__name__)
def test_every_set_implements_the_whole_contract(cls):
    kernels = cls()
    for name in KERNELS:
        kernel = getattr(kernels, name)
        assert callable(kernel), name
        if name not in _lacked(cls):
            assert _parameters(kernel) == _parameters(getattr(KernelSet, name)), name


@pytest.mark.parametrize("cls", SETS, ids=lambda cls: cls.__name__)
def test_a_set_missing_any_one_kernel_is_refused_when_defined(cls):
    namespace = _namespace(cls)
    for name in KERNELS:
        if name in _lacked(cls):
            continue
        without = {key: value for key, value in namespace.items() if key != name}
        with pytest.raises(TypeError, match=rf"does not implement \['{name}'\]"):
            type(cls.__name__, (KernelSet,), without)
    type(cls.__name__, (KernelSet,), dict(namespace))  # and the whole namespace is accepted


def test_the_intended_fallbacks_are_exactly_the_listed_ones():
    assert reference.NumpyKernels.fallbacks == ()
    assert sorted(cpu.NumbaKernels.fallbacks) == ["add", "add_bias", "cast", "conv_implicit_gemm",
                                                  "crop_backward", "crop_forward", "lrn_backward",
                                                  "lrn_forward", "relu_forward"]
    assert cuda.CudaKernels.fallbacks == ()
    for cls in SETS[1:]:
        taken = [name for name in KERNELS if name not in _lacked(cls)
                 and getattr(cls, name) is getattr(reference.NumpyKernels, name)]
        assert sorted(taken) == sorted(cls.fallbacks), cls.__name__


def test_an_unlisted_fallback_or_a_listed_one_that_is_not_is_refused():
    with pytest.raises(TypeError, match="takes .*lrn_backward.* from the NumPy references"):
        type("Sloppy", (KernelSet,), _namespace(cpu.NumbaKernels,
                                                 fallbacks=("crop_backward", "crop_forward")))
    with pytest.raises(TypeError, match="name each intended one"):
        type("Sloppy", (KernelSet,), _namespace(cpu.NumbaKernels,
                                                 fallbacks=cpu.NumbaKernels.fallbacks + ("dropout",)))
    with pytest.raises(TypeError, match="takes .*dropout.* from the NumPy references"):
        type("Sloppy", (KernelSet,), _namespace(cuda.CudaKernels, dropout=reference.dropout_numpy))


def test_capabilities_the_cuda_set_lacks_are_off_and_their_kernels_refuse_to_run():
    assert (cuda.KERNELS.row_tiles, cuda.KERNELS.winograd) == (False, False)
    assert all(k.row_tiles and k.winograd for k in (reference.KERNELS, cpu.KERNELS))
    with pytest.raises(NotImplementedError, match="cuda kernels have no im2col_tile"):
        cuda.KERNELS.im2col_tile(numpy.zeros((1, 3, 3)), 1, 1, 1, 1, 0, 0, 1, 1, 0, None)
    with pytest.raises(TypeError, match="unknown capabilities"):
        type("Bad", (KernelSet,), _namespace(cuda.CudaKernels, lacks=("tiles",)))
    with pytest.raises(TypeError, match="defines .*im2col_tile.* its `lacks` says"):
        type("Bad", (KernelSet,), _namespace(cuda.CudaKernels, im2col_tile=cuda.im2col))


def test_kernels_for_picks_the_set_by_device_and_cpu_choice():
    x = numpy.zeros((1, 1), numpy.float32)
    with backend.use_cpu_kernels("numpy"):
        assert backend.kernels_for(x) is reference.KERNELS
    with backend.use_cpu_kernels("numba"):
        assert backend.kernels_for(x) is cpu.KERNELS


def test_the_kernel_sets_import_only_references_not_the_autograd():
    """No cycle backend -> cpu/cuda -> functions -> autograd -> backend: the kernel sets,
    the references and the contract import neither functions/ nor autograd."""
    package = Path(minifcn.__file__).parent
    files = [package / "kernel_set.py", package / "cuda.py", *sorted((package / "reference").glob("*.py")),
             *sorted((package / "cpu").glob("*.py"))]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            assert not any(name.split(".")[-1] in ("functions", "autograd") or
                           name.startswith(("functions", "autograd")) for name in names), (path, names)
