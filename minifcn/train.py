"""Training and evaluation loops: one image (or batch) per step, Caffe's solver.

One step, top to bottom:
    image, label = dataset[order[i]]            data/        (preprocessed, CHW)
    score = net(Tensor(image))                  models/      -> functions/ -> kernels
    loss = F.softmax_cross_entropy(score, label)              functions/loss.py
    loss.backward()                             autograd.py
    opt.lr = learning_rate(...); opt.step()                   optim.py

A run lives in one directory (`config.out`) and never loses work:

- Before the first step every file of the data is checked (data/scan.py), so a bad file
  stops the run at once, with all bad files named.
- Every `val_interval` steps a checkpoint is written (checkpoint.py: atomically, from
  finite weights only), then the net is scored on held-out images (the paper's four
  metrics, metrics.py) and the row appended to `log.jsonl` and `metrics.csv` (runlog.py).
  Checkpoint first: a row is never logged for work the checkpoint does not hold.
- A checkpoint holds the weights and solver state after `iteration` steps, the random
  generator's state at the start of the next step and the run's config, so `resume`
  continues exactly as an uninterrupted run would: the data order is a pure function of
  (seed, epoch), dropout draws from the saved generator. Resuming restores the config;
  only the settings in checkpoint.MAY_CHANGE_ON_RESUME may differ.
- Ctrl-C or SIGTERM (interrupts.py) stops the loop between steps (a second one abandons
  the step under way, which has changed no weight yet), writes a checkpoint of the steps
  done and raises Interrupted (`minifcn train` exits with 128 + the signal's number).
  While the run is set up (the data checked, the checkpoint read) it stops at once.
- A non-finite loss, or non-finite weights when a checkpoint is due, stops the run with
  TrainingDiverged naming the step; the last good checkpoint stays.
- A fresh run into a directory that holds a run is refused (RunExists) unless told to
  overwrite it, and the old run is removed only once the new one has a checkpoint.
- Under `mpiexec -n N minifcn train --distributed` N ranks share each step, rank 0
  writing the run (distributed.py: the hooks are its `current()` world's methods).
"""
import dataclasses
import functools
import math
import os
import time

import numpy

from . import backend, distributed, graph, heads, models, precision, runtime
from .autograd import Tensor, no_grad
from .checkpoint import (OWN_META, RUN_FILES, RUN_META, CheckpointError, NoCheckpoint, NonFiniteState, RunWriteError, atomic_savez,
                         checkpoint_arrays, load_checkpoint, read_config, refuse_changes,
                         remove_stale_temporaries, settings_changed)
from .data import DataError, open_dataset, shuffled_order
from .errors import UserError
from .data.scan import check_files
from .data.prefetch import Prefetcher
from .data.synthetic import DEFAULT_SIZE as SYNTHETIC_SIZE
from .data.preprocess import Preprocess
from .loss_sampling import probability
from .inference import training_meta
from .interrupts import Abandoned, StopRequest
from .metrics import ConfusionMeter
from .optim import learning_rate, make_optimizer
from .presets import BUILT_IN_RUN, PRESETS, REAL_DATA_RUN, SMALL_NET, SMALL_SOLVER
from .runlog import RunLog

# Held-out images drawn in predictions.png at the end of a run.
PICTURES = 4


@dataclasses.dataclass
class TrainConfig:
    model: str = "fcn8s"
    data: str = "synthetic"
    val_data: str = None         # validation source; None: the "val" split of `data`
    weights: str = None          # converted VGG16 .npz to start from (None: from scratch)
    init_from: str = None        # a trained checkpoint of a coarser net (32s -> 16s -> 8s)
    device: str = "cpu"
    iterations: int = None       # None: BUILT_IN_RUN's or REAL_DATA_RUN's
    batch_size: int = 1
    lr: float = None             # None: the preset of the model (or of the small net)
    momentum: float = None
    weight_decay: float = None
    iter_size: int = None
    normalize: bool = None
    optimizer: str = None        # "sgd" or "adam"; None: the preset's
    lr_policy: str = None        # "fixed" or "poly"; None: the preset's
    small: bool = None           # narrow widths; None: small on synthetic data only
    widths: tuple = None         # trunk widths (None: SMALL_NET's or the reference VGG16's)
    fc_width: int = None
    image_size: int = SYNTHETIC_SIZE  # side of the built-in dataset's scenes
    val_interval: int = None     # None: BUILT_IN_RUN's or REAL_DATA_RUN's
    val_images: int = 100
    out: str = "runs/default"
    seed: int = 1337
    learn_upsampling: bool = False
    progress: bool = True
    loss_sampling: float = 1.0   # P: keep each final-layer cell in the loss (loss_sampling.py)
    data_check: bool = True      # check every data file before the first step
    log_interval: int = 20       # steps between reads of the loss (each waits for the GPU)
    cuda_graphs: str = "auto"    # capture the step as a CUDA graph: on, off, auto (on with cuda)
    precision: str = "fp32"      # fp32, tf32 or bf16 (the last two on the GPU: precision.py)
    ranks: int = 1               # processes sharing each step (mpiexec -n; distributed.py)

    def __post_init__(self):
        self.loss_sampling = probability(self.loss_sampling)
        run = BUILT_IN_RUN if self.on_built_in_data() else REAL_DATA_RUN
        for key, value in run.items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        graph.check_mode(self.cuda_graphs, self.device)
        precision.check(self.precision)  # its device: when it runs (train, precision.use)
        if self.log_interval < 1:
            raise ValueError(f"log_interval must be a positive number of steps, not {self.log_interval!r}")

    def solver(self):
        """The solver settings: explicit options over the preset."""
        preset = SMALL_SOLVER if self.is_small() else PRESETS[self.model]
        chosen = {key: getattr(self, key) for key in preset}
        return {key: preset[key] if value is None else value for key, value in chosen.items()}

    def data_options(self):
        options = {"size": self.image_size} if self.on_built_in_data() else {}
        return {**options, **models.data_options(self.model, self.data)}  # e.g. NYUD's tops

    def on_built_in_data(self):
        return self.data == "synthetic"

    def is_small(self):
        return self.on_built_in_data() if self.small is None else self.small


class TrainingDiverged(RuntimeError):
    pass


class RunError(UserError, ValueError):
    """A run asked for that cannot be made as asked (the message says why and what to do)."""


class RunExists(RunError):
    """A fresh run was asked for in a directory that holds a run."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM stopped the run cleanly; `status` is the exit status for it
    (128 + the signal's number: 130 for Ctrl-C, 143 for SIGTERM)."""

    def __init__(self, message, signal_number):
        super().__init__(message)
        self.signal_number = signal_number
        self.status = 128 + signal_number


def build_net(config, n_class):
    extra = dict(SMALL_NET) if config.is_small() else {}
    if config.widths is not None:
        extra["widths"] = tuple(config.widths)
    if config.fc_width is not None:
        extra["fc_width"] = config.fc_width
    if config.learn_upsampling:
        extra["learn_upsampling"] = True
    net = models.build(config.model, n_class, **extra)
    if config.weights:
        net.load_vgg16(config.weights)
    if config.init_from:
        net.load_state_dict(load_checkpoint(config.init_from)["params"], strict=False)
    return net.to(config.device)


# -------------------------------------------------------------------------- checkpoints
def save_checkpoint(path, net, opt, iteration, rng_state, config, loss=None, before_replace=None):
    """Write a checkpoint atomically (checkpoint.py); NonFiniteState, writing nothing, if
    the weights or solver state hold NaN or inf."""
    arrays = checkpoint_arrays(net.state_dict(), opt.state_dict(), iteration, rng_state,
                               dataclasses.asdict(config), loss, getattr(net, "input_meta", {}))
    atomic_savez(path, arrays, before_replace, what="checkpoint")


def config_from_checkpoint(checkpoint, **overrides):
    """The TrainConfig a checkpoint (or its config dict) records, with `overrides`."""
    saved = checkpoint.get("config", checkpoint)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    saved = {k: v for k, v in saved.items() if k in fields}
    saved.update(overrides)
    return TrainConfig(**saved)


def resumed_config(out, **given):
    """The config of the run in `out` with the options `given` again on the command line;
    ValueError naming any of them that would change the run (see MAY_CHANGE_ON_RESUME)."""
    path = _checkpoint_to_resume(out)
    saved = _complete(read_config(path))
    refuse_changes(settings_changed(saved, given), path)
    return config_from_checkpoint(saved, **given, out=out)


def _checkpoint_to_resume(out):
    path = os.path.join(out, "checkpoint.npz")
    if not os.path.isfile(path):
        raise NoCheckpoint(f"{out}: no checkpoint.npz to resume from; start a run there "
                           f"without --resume")
    return path


def _complete(saved):
    """A saved config dict with the defaults of fields it predates."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    return {**defaults, **saved}


def read_meta(path):
    """The `meta.*` entries of a converted-weights or checkpoint .npz (nothing else is read)."""
    try:
        with numpy.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files if key.startswith("meta.")}
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such weights file") from None
    except Exception as error:
        raise ValueError(f"{path}: not a readable .npz ({error})") from None


def preprocess_options(meta):
    """{"preprocess": ...} matching the input convention `meta` records, else {}."""
    if "meta.channel_order" not in meta:
        return {}
    return {"preprocess": Preprocess.from_meta(meta)}


def net_from_checkpoint(path, device="cpu"):
    """The trained net a checkpoint holds, in eval mode, and its training config.
    A checkpoint with NaN or inf in it is refused (load_checkpoint)."""
    checkpoint = load_checkpoint(path)
    config = config_from_checkpoint(checkpoint, weights=None, init_from=None, device=device)
    net = build_net(config, n_class=models.n_class_of(checkpoint["params"]))
    net.load_state_dict(checkpoint["params"])
    net.input_meta = checkpoint["meta"]
    net.to(device)
    net.eval()
    return net, config


# --------------------------------------------------------------------------- evaluation
def predict(net, image, device="cpu"):
    """Label map (H, W) for one preprocessed image (3, H, W)."""
    with no_grad():
        score = heads.first(net(Tensor(backend.to_device(image[None], device))))
    return backend.to_numpy(score.data[0].argmax(axis=0))


def evaluate(net, dataset, device="cpu", limit=None, progress=False):
    """The four metrics (and per-class IU) of `net` on the first `limit` images. In a
    distributed run each rank scores every ranks-th image and the confusion matrices
    are summed (distributed.py); a multi-headed net is scored by rank 0 alone."""
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if isinstance(dataset.n_class, tuple):  # a multi-headed net (heads.py)
        return heads.evaluate(net, dataset, device, count)
    world = distributed.current()
    meter = ConfusionMeter(dataset.n_class)
    was_training = net.training
    net.eval()
    try:
        for index in _progress(range(world.rank, count, world.size), progress, "eval", leave=False):
            image, label = dataset[index]
            meter.update(label, predict(net, image, device))
    finally:
        net.train(was_training)
    meter.hist = world.sum_counts(meter.hist)
    return meter.scores()


def _progress(iterable, enabled, description, **options):
    if not enabled:
        return iterable
    from tqdm import tqdm
    return tqdm(iterable, desc=description, dynamic_ncols=True, **options)


# ----------------------------------------------------------------------------- training
def train(config, resume=False, overwrite=False, log=print):
    """Train as `config` says; returns the last validation scores.

    resume: continue the run in `config.out` from its checkpoint, exactly (the config,
    `precision` included, must match the run's but for MAY_CHANGE_ON_RESUME). overwrite:
    a directory that holds a run gets a new one, the old removed once the new one's
    first checkpoint is written.
    Without either, a directory that holds a run is refused (RunExists). Raises
    Interrupted after Ctrl-C or SIGTERM (with a checkpoint saved), TrainingDiverged
    (the last good checkpoint kept), RunWriteError (a file could not be written, the
    message names it; nothing half-written is left). Sets the process's threads and
    memory for training first (runtime.configure_process), BLAS's threads for the run
    once it is set up: the cores other processes leave free, or a resumed run's own
    count (runtime.blas_threads_for_run), and runs at `config.precision` (precision.use:
    tf32 or bf16 on the CPU is an OptionError, raised before anything is written)."""
    runtime.configure_process(blas_threads=runtime.blas_threads_for(config.is_small()))
    load = runtime.LoadReading()  # over the set-up: what other processes keep busy
    with precision.use(config.precision, config.device), StopRequest() as stop, \
            distributed.world_for(config) as world:
        try:
            with stop.abandonable(eager=True):  # nothing to save yet: any signal stops it
                run, checkpoint, train_set, solver = world.set_up(
                    lambda: _set_up(config, resume, overwrite, log), log)
        except Abandoned:
            message = f"stopped by {stop.name} before training began: nothing to save"
            log(message)
            raise Interrupted(message, stop.signal) from None
        if config.ranks == 1:  # ranks split the cores between them (distributed.py)
            _set_blas_threads(run.net, load, resume, config.is_small())
        if run.row_pending:  # a kill or Ctrl-C came between the checkpoint and its row
            run.validate()
        if run.position < config.iterations and not world.stopping(stop):
            _loop(run, train_set, solver, stop)
        if not run.finished():  # only Ctrl-C or SIGTERM gets here
            run.stop(stop)
        return run.finish()


def _set_blas_threads(net, load, resumed, small_net):
    """BLAS's count, chosen once a run and kept in its checkpoints as
    meta.blas_threads (runtime.py says why): a resumed run takes its own back."""
    recorded = net.input_meta.get("meta.blas_threads") if resumed else None
    count = runtime.blas_threads_for_run(load, recorded, runtime.blas_threads_for(small_net))
    if count is not None:
        net.input_meta["meta.blas_threads"] = numpy.array(count)


def _set_up(config, resume, overwrite, log):
    """Check the run directory and the data, build the net and solver, restore the
    checkpoint when resuming: the run, its checkpoint, the training data and solver."""
    checkpoint = _open_run(config, resume, overwrite)
    meta = checkpoint["meta"] if resume else _starting_meta(config)
    options = {**config.data_options(), **preprocess_options(meta)}
    train_set = open_dataset(config.data, "train", **options)
    val_set = open_dataset(config.val_data or config.data, "val", **options)
    if config.data_check:
        check_files([("training data", train_set, None),
                     ("validation data", val_set, max(config.val_images, PICTURES))],
                    config.progress)
    backend.seed(config.seed)
    starting = dataclasses.replace(config, weights=None, init_from=None) if resume else config
    net = build_net(starting, train_set.n_class)
    net.input_meta = {**training_meta(train_set), **meta}  # in the checkpoints
    solver = config.solver()
    opt = make_optimizer(net, solver["optimizer"], solver["lr"], solver["momentum"],
                         solver["weight_decay"], solver["iter_size"])
    run = distributed.current().make_run(_Run, config, net, opt, val_set, log,
                                         replaces=overwrite and _holds_run(config.out))
    run.prepare_directory()
    if resume:
        run.restore(checkpoint)
    return run, checkpoint, train_set, solver


def _open_run(config, resume, overwrite):
    """The checkpoint to resume (checked against `config`), or None for a fresh run,
    which a directory holding a run refuses unless `overwrite`."""
    if resume and overwrite:
        raise RunError("--resume and --overwrite exclude each other: continue the run, "
                       "or replace it")
    if config.iterations < 1 or config.val_interval < 1:
        raise RunError(f"a run needs iterations >= 1 and val_interval >= 1, got "
                       f"{config.iterations} and {config.val_interval}")
    if not resume:
        if _holds_run(config.out) and not overwrite:
            found = ", ".join(name for name in RUN_FILES if os.path.exists(os.path.join(config.out, name)))
            raise RunExists(f"{config.out} holds a run ({found}); pass --resume to continue "
                            f"it, or --overwrite to replace it with a new run, or choose "
                            f"another --out (from Python: train(config, resume=True) or "
                            f"overwrite=True, or another TrainConfig.out)")
        return None
    path = _checkpoint_to_resume(config.out)
    checkpoint = load_checkpoint(path)
    refuse_changes(settings_changed(_complete(checkpoint["config"]), dataclasses.asdict(config)),
                   path)
    return checkpoint


def _holds_run(out):
    return any(os.path.exists(os.path.join(out, name)) for name in RUN_FILES)


def _starting_meta(config):
    """The input convention the starting weights record (converted VGG16 weights, or the
    checkpoint of a coarser net), as meta.* entries; {} when they record none."""
    path = config.weights or config.init_from
    if not path:
        return {}
    return {key: value for key, value in read_meta(path).items()
            if key not in OWN_META + RUN_META}


def _loop(run, dataset, solver, stop):
    """Steps until the last, or until Ctrl-C or SIGTERM: checkpoint, then validation row,
    at each validation point."""
    config = run.config
    bar = _progress(range(run.position, config.iterations), config.progress, "train",
                    initial=run.position, total=config.iterations)
    began, first = time.perf_counter(), run.position
    batches = Prefetcher(functools.partial(_step_batch, run.net, dataset, config),
                         first * solver["iter_size"], config.iterations * solver["iter_size"],
                         config.device)
    try:
        for iteration in bar:
            if distributed.current().stopping(stop):  # all ranks agree (distributed.py)
                return
            rng_before = backend.rng_state()
            run.opt.lr = learning_rate(solver["lr"], solver["lr_policy"], iteration,
                                       config.iterations)
            try:
                step_loss = _train_step(run.net, run.opt, batches.get, config, solver, iteration)
            except Abandoned:  # no weight changed: the next run replays this step
                backend.set_rng_state(rng_before)
                return
            except DataError:  # a bad file (--no-data-check): keep the steps done
                backend.set_rng_state(rng_before)
                run.save_on_failure()
                raise
            run.position = iteration + 1
            if _loss_due(run, run.position):
                run.loss = _read_loss(step_loss, iteration, run.last_good())
            if config.progress:
                rate = (run.position - first) * config.batch_size * config.ranks * solver["iter_size"] / (
                    time.perf_counter() - began)
                bar.set_postfix(loss=f"{math.nan if run.loss is None else run.loss:.4f}",
                                img_s=f"{rate:.1f}")
            if run.is_validation_point(run.position):
                run.save_checkpoint()
                run.validate()
    finally:
        batches.close()  # queued batches are dropped; a worker's error was raised by get()
        if config.progress:
            bar.close()


class _Run:
    """The state of a run between steps, and what it writes in its directory."""

    def __init__(self, config, net, opt, val_set, log, replaces):
        self.config, self.net, self.opt, self.val_set, self.log = config, net, opt, val_set, log
        self.path = os.path.join(config.out, "checkpoint.npz")
        self.runlog = RunLog(config.out)
        self.replaces = replaces      # an old run to remove once a checkpoint is written
        self.position = 0             # steps the weights hold
        self.saved = None             # steps the checkpoint on disk holds
        self.loss = None              # loss of the last step taken
        self.row_pending = False      # the checkpoint's validation row is not logged yet
        self.resumed_finished = False
        self.scores = None

    def is_validation_point(self, position):
        return position % self.config.val_interval == 0 or position == self.config.iterations

    def finished(self):
        return (self.saved is not None and self.saved >= self.config.iterations
                and not self.row_pending)

    def prepare_directory(self):
        with _writing(self.config.out, "run directory"):
            os.makedirs(self.config.out, exist_ok=True)
            for path in remove_stale_temporaries(self.config.out):
                self.log(f"removed {path}, left by a run killed while writing")

    def restore(self, checkpoint):
        try:
            self.net.load_state_dict(checkpoint["params"])
            self.opt.load_state_dict(checkpoint["solver"])
        except (KeyError, ValueError, TypeError) as error:
            said = error.args[0] if error.args else error  # a KeyError's str() adds quotes
            raise CheckpointError(f"{self.path}: does not fit the net its config describes "
                             f"({said})") from None
        backend.set_rng_state(checkpoint["rng_state"])
        self.position = self.saved = checkpoint["iteration"]
        self.loss = checkpoint["loss"]
        dropped = self.runlog.trim(self.saved)
        self.row_pending = (self.is_validation_point(self.saved) and self.loss is not None
                            and self.runlog.row(self.saved) is None)
        self.resumed_finished = self.saved >= self.config.iterations
        self.log(f"resumed from {self.path} at iteration {self.saved}"
                 + (f"; dropped {dropped} log lines past it or cut off" if dropped else ""))

    def save_checkpoint(self):
        """The weights after `position` steps, with the generator as the next step finds it."""
        try:
            save_checkpoint(self.path, self.net, self.opt, self.position, backend.rng_state(),
                            self.config, self.loss,
                            before_replace=self._remove_old_run if self.replaces else None)
        except NonFiniteState as error:
            raise TrainingDiverged(f"the weights or solver state became non-finite by "
                                   f"iteration {self.position} ({error}), so they were not "
                                   f"saved. {self.last_good()}") from None
        self.saved, self.replaces = self.position, False
        self.row_pending = self.is_validation_point(self.position)

    def save_on_failure(self):
        """A bad file met mid-run (--no-data-check): keep the steps done before it."""
        if self.position > 0 and self.saved != self.position:
            self.save_checkpoint()
            self.log(f"\nsaved the {self.saved} steps done to {self.path}; once the data is "
                     f"fixed, `{distributed.current().resume_command(self.config.out)}` goes on")

    def _remove_old_run(self):
        """--overwrite: the new checkpoint is whole; the old run's other files go."""
        self.runlog.remove()
        pictures = os.path.join(self.config.out, "predictions.png")
        if os.path.exists(pictures):
            os.remove(pictures)

    def last_good(self):
        if self.saved is None:
            return "No checkpoint was due yet, so none was written"
        return f"The last good checkpoint, of iteration {self.saved}, is kept at {self.path}"

    def validate(self):
        """Score the checkpoint's weights and log the row (unless a second signal cuts
        the scoring short: then the row stays pending for the next run)."""
        try:
            with distributed.current().abandonable():
                scores = evaluate(self.net, self.val_set, self.config.device, self.config.val_images)
        except Abandoned:
            return
        row = dict(iteration=self.saved, loss=self.loss,
                   **{k: float(scores[k]) for k in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")})
        self.log(f"\niteration {self.saved}: loss {self.loss:.4f}  pixel acc "
                 f"{row['pixel_acc']:.4f}  mean acc {row['mean_acc']:.4f}  mean IU "
                 f"{row['mean_iu']:.4f}  f.w. IU {row['fw_iu']:.4f}")
        self.runlog.append(row)
        self.row_pending, self.scores = False, scores

    def stop(self, stop):
        """After Ctrl-C or SIGTERM: save the steps done, say how to go on, raise Interrupted."""
        if self.position > 0 and self.saved != self.position:
            self.save_checkpoint()  # never a validation point: those are saved at once
        if self.saved is None:
            said = "no step was finished, so nothing was saved"
        else:
            said = (f"the checkpoint {self.path} holds {self.saved} steps; continue with "
                    f"`{distributed.current().resume_command(self.config.out)}`")
        message = f"stopped by {stop.name} at iteration {self.position}: {said}"
        self.log("\n" + message)
        raise Interrupted(message, stop.signal)

    def finish(self):
        """Draw the prediction pictures of the finished run; its last scores."""
        path = os.path.join(self.config.out, "predictions.png")
        if self.resumed_finished:
            self.log(f"the run in {self.config.out} has finished: its checkpoint holds "
                     f"{self.saved} steps of --iterations {self.config.iterations}; nothing "
                     f"to do (resume with a larger --iterations to train further)")
        if not (self.resumed_finished and os.path.exists(path)):
            with _writing(path, "prediction pictures"):
                save_prediction_pictures(self.net, self.val_set, path, self.config.device)
            self.log(f"prediction pictures: {path}")
        return self.scores or self.runlog.row(self.saved)


class _writing:
    """Turns an OSError while writing into a one-line RunWriteError naming the file."""

    def __init__(self, path, what):
        self.path, self.what = path, what

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        if isinstance(error, OSError):
            raise RunWriteError(f"{getattr(error, 'filename', None) or self.path}: could not "
                                f"write the {self.what}: {error.strerror or error}") from None


def save_prediction_pictures(net, dataset, path, device="cpu", count=PICTURES):
    """One PNG with a row per held-out image: the image | its truth | the prediction."""
    from .visualize import prediction_grid
    count = min(count, len(dataset))
    images, labels, predictions = [], [], []
    was_training = net.training
    net.eval()
    try:
        for index in range(count):
            image, label = dataset[index]
            images.append(dataset.raw_image(index))
            labels.append(heads.first(label))
            predictions.append(predict(net, image, device))
    finally:
        net.train(was_training)
    prediction_grid(images, labels, predictions, path, class_names=dataset.class_names)
    return path


def _train_step(net, opt, batch_of, config, solver, iteration):
    """Forward and backward over iter_size batches, then one solver step; the mean loss.

    `batch_of(position)` is the batch (the prefetcher's, data/prefetch.py). The passes
    may be abandoned (interrupts.py: a second Ctrl-C) since they change no weight; the
    solver step may not (graph.TrainStep). The losses are summed where they are (on the
    GPU: on the device) and the mean is returned there: a step never waits for the GPU;
    `_read_loss` reads it every `log_interval` steps (`_loss_due`). On the GPU the step
    is captured once as a CUDA graph and replayed (graph.py; `cuda_graphs`). In a
    distributed run (distributed.py) the rank takes its share of the batch and of the
    loss, and the gradients are summed over the ranks before the update (graph.TrainStep
    asks distributed.current()); such a step is not captured."""
    with distributed.current().abandonable():  # waiting for the batch is part of the passes
        batches = [batch_of(iteration * solver["iter_size"] + micro)
                   for micro in range(solver["iter_size"])]
    return graph.train_step(net, opt, solver["normalize"], config.device, config.cuda_graphs)(batches)


def _loss_due(run, position):
    """Whether the loss of the step that makes `position` is read: every `log_interval`
    steps, and at each validation point (its checkpoint and log row hold the loss)."""
    return position % run.config.log_interval == 0 or run.is_validation_point(position)


def _read_loss(step_loss, iteration, last_good):
    """The step's loss on the host (on the GPU this waits for the step to finish);
    TrainingDiverged if it is not finite. A NaN stays NaN through later steps (the
    weights it reaches keep it), so reading every few steps still catches it, and a
    checkpoint is only written after a read (and from finite weights, checkpoint.py)."""
    loss = float(step_loss)
    if not math.isfinite(loss):
        raise TrainingDiverged(f"the loss became {loss} at iteration {iteration}; "
                               f"stopping. {last_good}")
    return loss


def _step_batch(net, dataset, config, position):
    """Batch `position` as a step trains on it: `_batch`, then the loss-sampling hook (a
    pure function of the position too, so the prefetcher's workers run it)."""
    images, labels = _batch(dataset, config, position)
    return images, distributed.current().sample_labels(net, labels, config.loss_sampling,
                                                        config.seed, position)


def _batch(dataset, config, position):
    """Images and labels of batch number `position` in the seeded, per-epoch order (in a
    distributed run, the rank's share of the global batch of ranks * batch_size)."""
    world = distributed.current()
    n = len(dataset)
    items = []
    for k in range(world.rank * config.batch_size, (world.rank + 1) * config.batch_size):
        flat = position * config.batch_size * world.size + k
        order = shuffled_order(n, config.seed, flat // n)
        items.append(dataset[int(order[flat % n])])
    images = numpy.stack([image for image, _ in items])
    labels = numpy.stack([label for _, label in items])
    return images, labels
