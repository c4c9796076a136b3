"""The training step, and on the GPU the same step captured once as a CUDA graph and replayed.

A GPU training step of the default small net is about a thousand small launches, and
Python issuing them one by one is what bounds it: the device idles most of the 44 ms
step of ../shared/gpu-results/2026-11-30/cprofile.txt. A CUDA graph records every
launch of a step once (CuPy's stream capture) and replays them all with one call.

    step = TrainStep(net, opt, normalize=True, device="cuda", mode="auto")
    loss = step([(images, labels), ...])     # one solver step over its micro-batches

Shapes. The first step of a batch shape runs plainly (it creates the solver's state and
counts the dropout draws); the second runs plainly too, but on the buffers below (so
every kernel the graph will hold is compiled and loaded before the capture); the third
captures the step and launches the graph; later ones only launch it. A step of any
other shape falls back to plain launches (the graph is kept for its own shape): an FCN
trained at a fixed size, such as the default run, replays every step from the third on.

What changes between replays lives in device buffers the graph reads, refilled before
each launch (each refill an asynchronous copy, or a copy kernel):
- the batch: copied into the graph's static input buffers;
- the solver's per-step numbers (the learning rate, Adam's bias corrections):
  `opt.step_scalars()` computed on the host as a plain step does, into one device vector
  that the captured `opt.update` reads as 0-d arrays (optim.py);
- the dropout seeds: drawn from minifcn's generator in the order a plain step draws them
  (`draw_seed`), so a replayed and a plain run draw the same masks and leave the
  generator in the same state (resume stays exact); the captured dropout reads its seed
  from device memory (kernels/dropout.cu: dropout_seed_on_device).
Every other argument of a launch (shapes, the solver's constants, cuBLAS's alpha and
beta) is a constant of the step and is baked into the graph.

Memory. The capture allocates from a memory pool of its own, kept with the graph: the
arrays a step creates have the same addresses at every replay, and nothing else can be
handed those blocks between replays. The solver's state (created by the plain first
step) and the parameters are updated in place, as in a plain step.

Nothing inside waits for the device: a host read during capture is an error on a GPU
(it would invalidate the capture) and in the emulated CuPy (tests/cuda/emulated_cupy.py),
which records a capture and replays it on Graph.launch().
"""
import contextlib
import weakref

import numpy

from . import backend
from .interrupts import abandonable

MODES = ("on", "off", "auto")
_capture = None  # the _CapturedStep being captured: draw_seed hands out its seed slots
_draws = [0]     # dropout seeds drawn so far (a plain step's count sizes a capture's slots)


def draw_seed():
    """One dropout seed from minifcn's generator: an int; while a step is captured, the
    1-element device array that holds it, and before each replay the seed a plain step
    would draw in its place."""
    seed = int(backend.rng().integers(2**63))
    _draws[0] += 1
    return seed if _capture is None else _capture.seed_slot(seed)


def check_mode(mode, device):
    """Whether `mode` ("on", "off", "auto") captures steps on `device`."""
    if mode not in MODES:
        raise ValueError(f"cuda_graphs must be on, off or auto, not {mode!r}")
    if mode == "on" and device != "cuda":
        raise ValueError(f"cuda_graphs=on needs device cuda, not {device!r}")
    return mode != "off" and device == "cuda"


_steps = weakref.WeakKeyDictionary()


def train_step(net, opt, normalize, device="cpu", mode="auto"):
    """The TrainStep of the solver `opt`, made once: its captured graph lives as long as
    the solver (train.py asks for it every step)."""
    step = _steps.get(opt)
    if step is None or step.net is not net:
        step = _steps[opt] = TrainStep(net, opt, normalize, device, mode)
    return step


class TrainStep:
    """Forward, loss and backward over a step's micro-batches, then the solver update.
    With graphs (`mode`, on the GPU) a repeated batch shape is captured and replayed."""

    def __init__(self, net, opt, normalize, device="cpu", mode="auto"):
        self.net, self.opt, self.normalize, self.device = net, opt, normalize, device
        from . import distributed  # (here: distributed imports the ops, which import us)
        # a distributed step holds collectives between the passes and the update: plain
        self.graphs = check_mode(mode, device) and distributed.current().size == 1
        self.captured, self.seen = None, {}  # seen: batch shape -> dropout draws of a step

    def __call__(self, batches):
        """The mean loss over `batches` [(images, labels), ...] (host or device arrays),
        left on the device."""
        key = _shape_key(batches)
        if self.graphs and self.captured is None and key in self.seen:
            self.captured = _CapturedStep(self, batches, key, self.seen[key])
        if self.captured is not None and self.captured.key == key:
            return self.captured.run(batches)
        from . import distributed
        drawn, world = _draws[0], distributed.current()
        with world.abandonable():  # the passes change no weight; the solver step must not be cut
            loss = self.forward_backward([(backend.to_device(images, self.device),
                                           backend.to_device(labels, self.device))
                                          for images, labels in batches])
        loss = world.sum_gradients(self.opt, loss * len(batches)) / len(batches)
        self.opt.step()
        self.seen[key] = _draws[0] - drawn
        return loss

    def forward_backward(self, batches):
        from .autograd import Tensor
        self.opt.zero_grad()
        total = 0.0
        from . import distributed
        world = distributed.current()  # a rank's term of the global batch's loss
        for images, labels in batches:
            loss = world.loss(self.net(Tensor(images)), labels, self.device, self.normalize)
            loss.backward()
            total = total + loss.data
        return total / len(batches)


def _shape_key(batches):
    return tuple((images.shape, str(images.dtype), labels.shape) for images, labels in batches)


class _CapturedStep:
    """A training step run on fixed device buffers, then captured as a CUDA graph: the
    buffers every run reads, refilled before it, and (from the second run) the graph.

    The first run is plain, but on these buffers (the solver's numbers and the dropout
    seeds read from device memory), so every kernel the capture records has been
    compiled and loaded before it: nothing but launches happens inside the capture."""

    def __init__(self, step, batches, key, seed_count):
        cupy = self.cupy = backend.require_cupy()
        self.step, self.key, opt = step, key, step.opt
        dtypes = {param.dtype for _, param in opt.params}
        if len(dtypes) != 1:
            raise ValueError(f"graph capture: the parameters have several dtypes {sorted(map(str, dtypes))}")
        self.inputs = [(cupy.empty(images.shape, images.dtype), cupy.empty(labels.shape, numpy.int32))
                       for images, labels in batches]
        widths = {name: len(values) for name, values in opt.step_scalars(advance=False).items()}
        self.scalars = cupy.empty(sum(widths.values()), dtypes.pop())
        self.views, at = {}, 0
        for name, width in widths.items():  # 0-d views the update reads
            self.views[name] = tuple(self.scalars[at + i:at + i + 1].reshape(()) for i in range(width))
            at += width
        self.seeds, self.drawn, self.capturing = cupy.empty(seed_count, numpy.int64), [], False
        self.graph = self.loss = None
        self.launches = 0
        self.pool = cupy.cuda.MemoryPool()  # kept with the graph: its blocks are the graph's

    def run(self, batches):
        """One step on `batches`: plainly the first time, captured and launched the second,
        launched from then on. The step's loss, on the device."""
        first = self.graph is None and self.loss is None
        self._fill(self.scalars, self.step.opt.step_scalars(advance=not first))
        self._copy_inputs(batches)
        if first:  # plain, on the buffers; the step counts once its passes are done
            self.loss = self._body()  # (they may be abandoned, as a plain step's)
            self.step.opt.step_scalars()
            return self.loss
        if self.graph is None:
            self._capture()
        elif len(self.seeds):
            self._fill(self.seeds, {"": [draw_seed() for _ in range(len(self.seeds))]})
        self.graph.launch(stream=self.cupy.cuda.get_current_stream())
        self.launches += 1
        return self.loss.copy()  # the graph rewrites self.loss at its next launch

    def _body(self):
        """Forward, loss, backward and update on the buffers; the loss."""
        global _capture
        self.drawn, _capture = [], self
        try:
            # a capture runs nothing, so it is never cut; the first run's passes may be
            with contextlib.nullcontext() if self.capturing else abandonable():
                loss = self.step.forward_backward(self.inputs)
            self.step.opt.update(self.views)
        finally:
            _capture = None
        if len(self.drawn) != len(self.seeds):
            raise RuntimeError(f"graph capture: the step drew {len(self.drawn)} dropout seeds, "
                               f"its first run {len(self.seeds)}")
        return loss

    def _capture(self):
        cupy = self.cupy
        stream = cupy.cuda.Stream(non_blocking=True)  # capture cannot run on the default stream
        with cupy.cuda.using_allocator(self.pool.malloc), stream:
            stream.begin_capture()
            self.capturing = True
            try:
                self.loss = self._body()
            finally:
                self.capturing = False
                self.graph = stream.end_capture()
        if len(self.seeds):  # the capture's own draws, for its first launch
            self._fill(self.seeds, {"": self.drawn})
        # the plain runs' blocks stay cached in the default pool; the graph has its own
        cupy.get_default_memory_pool().free_all_blocks()

    def seed_slot(self, seed):
        """The device slot of the run's next dropout seed: `seed` is written there now,
        or, during the capture, before the first launch."""
        if len(self.drawn) == len(self.seeds):
            raise RuntimeError("graph capture: the step draws more dropout seeds than its first run")
        self.drawn.append(seed)
        slot = self.seeds[len(self.drawn) - 1:len(self.drawn)]
        if not self.capturing:
            self._fill(slot, {"": [seed]})
        return slot

    def _fill(self, device, values):
        """device[:] = the numbers of {name: (value, ...)}, one asynchronous copy from host
        memory (staged at once, so the host array may go)."""
        host = numpy.array([v for group in values.values() for v in group], device.dtype)
        device.set(host, stream=self.cupy.cuda.get_current_stream())

    def _copy_inputs(self, batches):
        for (images, labels), (static_images, static_labels) in zip(batches, self.inputs):
            for source, target in ((images, static_images), (labels, static_labels)):
                if backend.is_cupy_array(source):
                    target[...] = source  # a copy kernel (labels: int64 to int32)
                else:
                    target.set(numpy.ascontiguousarray(source, target.dtype),
                               stream=self.cupy.cuda.get_current_stream())
