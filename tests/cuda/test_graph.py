"""CUDA graphs for the training step (minifcn/graph.py), on the emulated CuPy, whose
stream capture records the step's launches and replays them on Graph.launch() against
the same buffers, and refuses host reads during a capture as CUDA does; the first three
tests run on a real GPU too (marked gpu)."""
import numpy
import pytest

from minifcn import backend, graph, train as training
from minifcn.models import FCN8s
from minifcn.optim import SGD, Adam
from minifcn.train import TrainConfig

import emulated_cupy as emulated_cupy_module


@pytest.fixture(params=[pytest.param("gpu", marks=pytest.mark.gpu), "emulated"])
def device(request):
    """CuPy on a GPU (TF32 off), or the emulated CuPy. Returns how close a replayed step
    must come to a plain one: bit for bit on the emulator (the same operations on the same
    numbers); on a GPU to float32 rounding, since cuBLAS may pick another algorithm on
    the capture's stream and workspace than on the default stream."""
    if request.param == "emulated":
        request.getfixturevalue("emulated_cupy")
        yield dict(rtol=0, atol=0)
        return
    from minifcn import cuda
    previous = cuda.allow_tf32(False)
    yield dict(rtol=1e-5, atol=1e-7)
    cuda.allow_tf32(previous)


def _same(a, b, tolerance, what=""):
    numpy.testing.assert_allclose(a, b, **tolerance, err_msg=what)


def _batches(rng, shape, count=1):
    return [(rng.standard_normal((2, 3, *shape)).astype(numpy.float32),
             rng.integers(0, 3, size=(2, *shape)).astype(numpy.int64)) for _ in range(count)]


def _run_steps(mode, solver_class, shapes, iter_size=1):
    """Steps of a small FCN-8s (dropout included) on the given input shapes; the final
    parameters, the generator's state and the TrainStep."""
    backend.seed(3)
    net = FCN8s(n_class=3, widths=(4, 8, 8, 16, 16), fc_width=16).to("cuda").train()
    opt = solver_class(net, lr=1e-2)
    step = graph.TrainStep(net, opt, normalize=True, device="cuda", mode=mode)
    rng = numpy.random.default_rng(0)
    losses = []
    for shape in shapes:
        opt.lr *= 0.9  # a learning rate that changes every step, as "poly" does
        losses.append(float(step(_batches(rng, shape, iter_size))))
    return {k: v.copy() for k, v in net.state_dict().items()}, backend.rng_state(), step, losses


@pytest.mark.slow  # emulated, whole FCN steps: tens of seconds each (CI runs -m slow too)
@pytest.mark.parametrize("solver_class, iter_size", [(Adam, 1), (SGD, 2)])
def test_a_replayed_step_gives_the_parameters_of_a_plain_one(device, solver_class, iter_size):
    shapes = [(29, 35)] * 5
    plain, plain_rng, plain_step, plain_losses = _run_steps("off", solver_class, shapes, iter_size)
    replayed, replayed_rng, step, losses = _run_steps("auto", solver_class, shapes, iter_size)
    assert plain_step.captured is None
    # step 1 plain (counts the dropout draws), 2 plain on the graph's buffers, 3 captured
    # and launched, 4-5 launched
    assert step.captured is not None and step.captured.launches == 3
    assert len(step.captured.seeds) == 2 * iter_size  # fc6's and fc7's dropout per micro-batch
    _same(losses, plain_losses, device)
    for name in plain:
        _same(replayed[name], plain[name], device, name)
    assert replayed_rng == plain_rng  # the same dropout draws: resume stays exact


@pytest.mark.slow  # emulated, whole FCN steps: tens of seconds each (CI runs -m slow too)
def test_a_shape_change_falls_back_to_plain_launches(device):
    shapes = [(29, 35), (29, 35), (21, 24), (29, 35), (29, 35), (21, 24)]
    plain, _, _, plain_losses = _run_steps("off", Adam, shapes)
    replayed, _, step, losses = _run_steps("auto", Adam, shapes)
    assert step.captured.key[0][0] == (2, 3, 29, 35)
    assert step.captured.launches == 2  # steps 4 and 5; 1, 2, 3, 6 ran plainly
    _same(losses, plain_losses, device)
    for name in plain:
        _same(replayed[name], plain[name], device, name)


@pytest.mark.slow  # emulated, whole FCN steps: tens of seconds each (CI runs -m slow too)
def test_training_with_graphs_writes_the_checkpoint_of_a_run_without(device, tmp_path):
    tiny = dict(widths=(3, 4, 4, 6, 6), fc_width=6, image_size=40, val_images=1, progress=False,
                device="cuda", iterations=5, val_interval=5, log_interval=2)
    for mode in ("off", "on"):
        training.train(TrainConfig(out=str(tmp_path / mode), cuda_graphs=mode, **tiny),
                       log=lambda *a: None)
    with_graphs = training.load_checkpoint(tmp_path / "on" / "checkpoint.npz")
    without = training.load_checkpoint(tmp_path / "off" / "checkpoint.npz")
    for name, value in without["params"].items():
        _same(with_graphs["params"][name], value, device, name)
    assert with_graphs["rng_state"] == without["rng_state"]


def test_the_option(tmp_path):
    assert graph.check_mode("auto", "cuda") and not graph.check_mode("auto", "cpu")
    assert not graph.check_mode("off", "cuda")
    with pytest.raises(ValueError, match="cuda_graphs=on needs device cuda"):
        TrainConfig(cuda_graphs="on")
    with pytest.raises(ValueError, match="on, off or auto"):
        TrainConfig(cuda_graphs="yes", device="cuda")


# ------------------------------------------------------- the emulated capture itself
def test_the_emulated_capture_replays_on_the_same_buffers(emulated_cupy):
    cupy = emulated_cupy
    x = cupy.asarray(numpy.arange(4.0))
    total = cupy.zeros(4)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        y = x * 2
        total += y
        g = stream.end_capture()
    # nothing has run yet, as on a GPU: y holds no result, total is as it was
    assert numpy.isnan(y.get()).all() and (total.get() == 0).all()
    g.launch()
    numpy.testing.assert_array_equal(total.get(), [0, 2, 4, 6])
    x[...] = cupy.asarray(numpy.ones(4))  # a new input in the same buffer
    g.launch()
    numpy.testing.assert_array_equal(y.get(), [2, 2, 2, 2])
    numpy.testing.assert_array_equal(total.get(), [2, 4, 6, 8])


@pytest.mark.parametrize("forbidden", [
    lambda cupy, x: float(x.sum()),
    lambda cupy, x: x.get(),
    lambda cupy, x: cupy.asarray(numpy.ones(3)),
    lambda cupy, x: x.set(numpy.ones(3)),
    lambda cupy, x: cupy.cuda.get_current_stream().synchronize(),
], ids=["float", "get", "asarray of host data", "set", "synchronize"])
def test_a_capture_refuses_what_cuda_refuses(emulated_cupy, forbidden):
    x = emulated_cupy.asarray(numpy.arange(3.0))
    stream = emulated_cupy.cuda.Stream(non_blocking=True)
    reads = emulated_cupy_module.host_reads[0]
    with stream:
        stream.begin_capture()
        try:
            with pytest.raises(RuntimeError, match="capturing"):
                forbidden(emulated_cupy, x)
        finally:
            stream.end_capture()
    assert emulated_cupy_module.host_reads[0] == reads
    with pytest.raises(RuntimeError, match="default"):
        emulated_cupy.cuda.Stream(null=True).begin_capture()


def test_work_on_another_stream_during_a_capture_is_an_error(emulated_cupy):
    x = emulated_cupy.asarray(numpy.arange(3.0))
    stream = emulated_cupy.cuda.Stream(non_blocking=True)
    stream.begin_capture()  # not made current: x * 2 would go to the default stream
    try:
        with pytest.raises(RuntimeError, match="another stream"):
            x * 2
    finally:
        stream.end_capture()


def test_a_step_that_reads_the_host_cannot_be_captured(emulated_cupy):
    net = FCN8s(n_class=3, widths=(4, 8, 8, 16, 16), fc_width=16).to("cuda").train()
    opt = Adam(net, lr=1e-3)
    step = graph.TrainStep(net, opt, normalize=True, device="cuda", mode="on")
    original = step.forward_backward

    def reading(batches):
        loss = original(batches)
        float(loss)  # e.g. a loss check inside the step
        return loss
    step.forward_backward = reading
    rng = numpy.random.default_rng(0)
    for _ in range(2):  # plain runs: reading is allowed (and waits)
        step(_batches(rng, (29, 35)))
    with pytest.raises(RuntimeError, match="capturing"):
        step(_batches(rng, (29, 35)))
