"""The emulated CuPy refuses what CuPy refuses: otherwise test_gpu.py's "emulated" runs
could pass on code that fails on a GPU."""
import numpy
import pytest

import minifcn as mf
from minifcn import backend, cuda, functions as F
from minifcn.models import FCN8s
from minifcn.optim import SGD, Adam

import emulated_cupy as emulated_cupy_module
from emulated_cupy import EmulatedCupy


@pytest.fixture
def cupy():
    return EmulatedCupy()


@pytest.fixture
def array(cupy):
    return cupy.asarray(numpy.arange(12.0).reshape(3, 4))


def test_no_implicit_copy_to_the_host(array):
    with pytest.raises(TypeError, match="Implicit conversion"):
        numpy.asarray(array)
    with pytest.raises(TypeError, match="Implicit conversion"):
        numpy.array(array)
    numpy.testing.assert_array_equal(array.get(), numpy.arange(12.0).reshape(3, 4))


@pytest.mark.parametrize("mix", [
    lambda a, host: a + host,
    lambda a, host: host * a,
    lambda a, host: numpy.maximum(a, host),
    lambda a, host: a.__setitem__(0, host),
    lambda a, host: a.__iadd__(host),
], ids=["operator", "reflected operator", "ufunc", "setitem", "in-place"])
def test_host_arrays_do_not_mix_with_device_arrays(array, mix):
    with pytest.raises(TypeError, match="device array is needed"):
        mix(array, numpy.ones(4))


def test_module_functions_take_device_arrays_but_asarray_moves_host_ones(cupy):
    host = numpy.ones((2, 2), numpy.float32)
    with pytest.raises(TypeError, match="cupy.ascontiguousarray"):
        cupy.ascontiguousarray(host)
    moved = cupy.asarray(host)
    assert isinstance(moved, cupy.ndarray) and moved.dtype == numpy.float32
    host[...] = 5  # asarray copied: the device array does not see the host change
    assert float(moved.sum()) == 4.0


def test_results_stay_on_the_device(cupy, array):
    total = array.sum()
    assert isinstance(total, cupy.ndarray) and total.shape == ()  # not a NumPy scalar
    assert isinstance(numpy.sum(array), cupy.ndarray)  # NumPy functions dispatch to CuPy's
    assert isinstance(array.T, cupy.ndarray) and isinstance(array[1:], cupy.ndarray)
    assert float(total) == 66.0 and array.shape == (3, 4)


def test_in_place_operations_write_the_same_memory(array):
    view = array[0]
    array *= 2
    numpy.testing.assert_array_equal(view.get(), [0, 2, 4, 6])


def test_a_kernel_launch_refuses_host_arrays(emulated_cupy):
    x = numpy.zeros((2, 5, 5), numpy.float32)
    with pytest.raises(TypeError, match="im2col launch"):
        cuda.im2col(x, 3, 3, 1, 1, 1, 1, 1, 1, 5, 5)
    on_device = cuda.im2col(emulated_cupy.asarray(x), 3, 3, 1, 1, 1, 1, 1, 1, 5, 5)
    assert backend.is_cupy_array(on_device) and on_device.shape == (2, 3, 3, 5, 5)


@pytest.mark.parametrize("solver_class, normalize", [(SGD, False), (Adam, True)])
def test_a_training_step_never_waits_for_the_device(emulated_cupy, solver_class, normalize):
    # Forward, loss, backward and update only queue work: no value is read on the host
    # (cuda.py's promise), so a GPU step is never stalled by Python.
    net = FCN8s(n_class=3, widths=(4, 8, 8, 16, 16), fc_width=16).to("cuda").train()
    solver = solver_class(net, lr=1e-3)
    rng = numpy.random.default_rng(0)
    image = mf.Tensor(backend.to_device(rng.standard_normal((2, 3, 29, 35)).astype(numpy.float32), "cuda"))
    labels = rng.integers(0, 3, size=(2, 29, 35)).astype(numpy.int32)
    labels[:, :4] = 255
    target = backend.to_device(labels, "cuda")
    before = emulated_cupy_module.host_reads[0]
    for _ in range(2):
        solver.zero_grad()
        loss = F.softmax_cross_entropy(net(image), target, normalize=normalize)
        loss.backward()
        solver.step()
    assert emulated_cupy_module.host_reads[0] == before
    assert numpy.isfinite(float(loss.item()))
    assert emulated_cupy_module.host_reads[0] == before + 1  # item() is the one read
