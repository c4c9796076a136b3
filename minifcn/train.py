"""Training and evaluation loops: one image (or batch) per step, Caffe's solver.

One step, top to bottom:
    image, label = dataset[order[i]]            data/        (preprocessed, CHW)
    score = net(Tensor(image))                  models/      -> functions/ -> kernels
    loss = F.softmax_cross_entropy(score, label)              functions/loss.py
    loss.backward()                             autograd.py
    opt.lr = learning_rate(...); opt.step()                   optim.py

Every `val_interval` steps the net is scored on held-out images (the paper's four
metrics, metrics.py), the scores appended to `log.jsonl` and `metrics.csv`, and a
checkpoint written atomically (temporary file, then rename: a crash never leaves a
half-written checkpoint in place of the last good one). A checkpoint holds the weights,
the solver's state (momentum), the iteration and the random generator's state at the start of
that iteration, so `resume` continues exactly as an uninterrupted run would: the data
order is a pure function of (seed, epoch) and dropout draws from the saved generator.
"""
import csv
import dataclasses
import json
import math
import os
import time

import numpy

from . import backend, heads, models, runtime
from .autograd import Tensor, no_grad
from .data import open_dataset, shuffled_order
from .data.synthetic import DEFAULT_SIZE as SYNTHETIC_SIZE
from .data.preprocess import Preprocess
from .loss_sampling import probability, sample_step_labels
from .inference import training_meta
from .metrics import ConfusionMeter
from .optim import PRESETS, learning_rate, make_optimizer

# The default run: a VGG-shaped FCN-8s narrow enough to train from scratch on a CPU.
SMALL_NET = dict(widths=(8, 16, 32, 64, 64), fc_width=128)
# Trained from random weights, with no normalization layers: Adam gets it going, and the
# "poly" decay settles it at the end (optim.py).
SMALL_SOLVER = dict(lr=1e-3, momentum=0.9, weight_decay=0.0, iter_size=1, normalize=True,
                    optimizer="adam", lr_policy="poly")
# Defaults that depend on the data: the built-in dataset trains in minutes, real ones in days.
BUILT_IN_RUN = dict(iterations=4500, val_interval=1500)
REAL_DATA_RUN = dict(iterations=100000, val_interval=4000)


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

    def __post_init__(self):
        self.loss_sampling = probability(self.loss_sampling)
        run = BUILT_IN_RUN if self.on_built_in_data() else REAL_DATA_RUN
        for key, value in run.items():
            if getattr(self, key) is None:
                setattr(self, key, value)

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
def save_checkpoint(path, net, opt, iteration, rng_state, config):
    arrays = {f"param.{name}": value for name, value in net.state_dict().items()}
    arrays.update({f"solver.{name}": value for name, value in opt.state_dict().items()})
    arrays["meta.iteration"] = numpy.array(iteration)
    arrays["meta.rng_state"] = numpy.array(json.dumps(rng_state))
    arrays["meta.config"] = numpy.array(json.dumps(dataclasses.asdict(config)))
    for key, value in getattr(net, "input_meta", {}).items():
        arrays[key] = numpy.asarray(value)
    atomic_savez(path, arrays)


def atomic_savez(path, arrays):
    """numpy.savez to `path` through a temporary file, so `path` is always whole."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp.npz")
    try:
        numpy.savez(temporary, **arrays)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def load_checkpoint(path):
    """A checkpoint as {"params", "solver", "iteration", "rng_state", "config", "meta"}."""
    try:
        with numpy.load(path, allow_pickle=False) as archive:
            entries = {key: archive[key] for key in archive.files}
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such checkpoint") from None
    except Exception as error:
        raise ValueError(f"{path}: not a readable minifcn checkpoint ({error})") from None
    if "meta.config" not in entries:
        raise ValueError(f"{path}: not a minifcn checkpoint (no meta.config entry)")
    section = lambda prefix: {k[len(prefix):]: v for k, v in entries.items() if k.startswith(prefix)}
    meta = {k: v for k, v in entries.items() if k.startswith("meta.") and
            k not in ("meta.iteration", "meta.rng_state", "meta.config")}
    return dict(params=section("param."), solver=section("solver."),
                iteration=int(entries["meta.iteration"]), meta=meta,
                rng_state=json.loads(str(entries["meta.rng_state"])),
                config=json.loads(str(entries["meta.config"])))


def config_from_checkpoint(checkpoint, **overrides):
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    saved = {k: v for k, v in checkpoint["config"].items() if k in fields}
    saved.update(overrides)
    return TrainConfig(**saved)


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
    """The trained net a checkpoint holds, in eval mode, and its training config."""
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
    """The four metrics (and per-class IU) of `net` on the first `limit` images."""
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if isinstance(dataset.n_class, tuple):  # a multi-headed net (heads.py)
        return heads.evaluate(net, dataset, device, count)
    meter = ConfusionMeter(dataset.n_class)
    was_training = net.training
    net.eval()
    for index in _progress(range(count), progress, "eval", leave=False):
        image, label = dataset[index]
        meter.update(label, predict(net, image, device))
    if was_training:
        net.train()
    return meter.scores()


def _progress(iterable, enabled, description, **options):
    if not enabled:
        return iterable
    from tqdm import tqdm
    return tqdm(iterable, desc=description, dynamic_ncols=True, **options)


# ----------------------------------------------------------------------------- training
def train(config, resume=False, log=print):
    """Train as `config` says; returns the last validation scores. Sets the process's
    threads and memory for training first (runtime.configure_process)."""
    runtime.configure_process(blas_threads=runtime.blas_threads_for(config.is_small()))
    options = config.data_options()
    if config.weights:  # feed the net as its ImageNet weights expect (channel order, mean, scale)
        options.update(preprocess_options(read_meta(config.weights)))
    train_set = open_dataset(config.data, "train", **options)
    val_set = open_dataset(config.val_data or config.data, "val", **options)
    solver = config.solver()
    backend.seed(config.seed)
    net = build_net(config, train_set.n_class)
    net.input_meta = {**training_meta(train_set), **net.input_meta}  # in the checkpoints
    opt = make_optimizer(net, solver["optimizer"], solver["lr"], solver["momentum"],
                         solver["weight_decay"], solver["iter_size"])
    checkpoint_path = os.path.join(config.out, "checkpoint.npz")
    start = 0
    if resume:
        checkpoint = load_checkpoint(checkpoint_path)
        net.load_state_dict(checkpoint["params"])
        opt.load_state_dict(checkpoint["solver"])
        backend.set_rng_state(checkpoint["rng_state"])
        start = checkpoint["iteration"]
        log(f"resumed from {checkpoint_path} at iteration {start}")
    os.makedirs(config.out, exist_ok=True)
    net.train()
    scores, rng_at_start, iteration = None, backend.rng_state(), start
    bar = _progress(range(start, config.iterations), config.progress, "train",
                    initial=start, total=config.iterations)
    began = time.perf_counter()
    try:
        for iteration in bar:
            rng_at_start = backend.rng_state()
            opt.lr = learning_rate(solver["lr"], solver["lr_policy"], iteration, config.iterations)
            loss = _train_step(net, opt, train_set, config, solver, iteration)
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"the loss became {loss} at iteration {iteration}; stopping. The last good "
                    f"checkpoint, if any, is kept at {checkpoint_path}")
            if config.progress:
                rate = (iteration + 1 - start) * config.batch_size * solver["iter_size"] / (
                    time.perf_counter() - began)
                bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{rate:.1f}")
            done = iteration + 1
            if done % config.val_interval == 0 or done == config.iterations:
                scores = evaluate(net, val_set, config.device, config.val_images)
                _log_scores(config.out, done, loss, scores, log)
                save_checkpoint(checkpoint_path, net, opt, done, backend.rng_state(), config)
    except KeyboardInterrupt:
        # Interrupted mid-step: save the weights of the last finished step with the
        # generator as it was before the unfinished one, so resume replays it.
        save_checkpoint(checkpoint_path, net, opt, iteration, rng_at_start, config)
        log(f"\ninterrupted: checkpoint at iteration {iteration} saved to {checkpoint_path}")
        raise
    if scores is not None:
        picture = save_prediction_pictures(net, val_set, os.path.join(config.out, "predictions.png"),
                                           config.device)
        log(f"prediction pictures: {picture}")
    return scores


def save_prediction_pictures(net, dataset, path, device="cpu", count=4):
    """One PNG with a row per held-out image: the image | its truth | the prediction."""
    from .visualize import prediction_grid
    count = min(count, len(dataset))
    images, labels, predictions = [], [], []
    net.eval()
    for index in range(count):
        image, label = dataset[index]
        images.append(dataset.raw_image(index))
        labels.append(heads.first(label))
        predictions.append(predict(net, image, device))
    net.train()
    prediction_grid(images, labels, predictions, path, class_names=dataset.class_names)
    return path


def _train_step(net, opt, dataset, config, solver, iteration):
    """Forward and backward over iter_size batches, then one solver step; the mean loss.

    The losses are summed where they are (on the GPU: on the device), so a step is read
    back, and the GPU waited for, once, at the end."""
    opt.zero_grad()
    total = 0.0
    for micro in range(solver["iter_size"]):
        position = iteration * solver["iter_size"] + micro
        images, labels = _batch(dataset, config, position)
        labels = sample_step_labels(net, labels, config.loss_sampling, config.seed, position)
        score = net(Tensor(backend.to_device(images, config.device)))
        loss = heads.loss(score, backend.to_device(labels, config.device),
                                     normalize=solver["normalize"])
        loss.backward()
        total = total + loss.data
    opt.step()
    return float(total) / solver["iter_size"]


def _batch(dataset, config, position):
    """Images and labels of batch number `position` in the seeded, per-epoch order."""
    n = len(dataset)
    items = []
    for k in range(config.batch_size):
        flat = position * config.batch_size + k
        order = shuffled_order(n, config.seed, flat // n)
        items.append(dataset[int(order[flat % n])])
    images = numpy.stack([image for image, _ in items])
    labels = numpy.stack([label for _, label in items])
    return images, labels


def _log_scores(out, iteration, loss, scores, log):
    row = dict(iteration=iteration, loss=loss, **{k: float(scores[k]) for k in
                                                  ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")})
    log(f"\niteration {iteration}: loss {loss:.4f}  pixel acc {row['pixel_acc']:.4f}  "
        f"mean acc {row['mean_acc']:.4f}  mean IU {row['mean_iu']:.4f}  f.w. IU {row['fw_iu']:.4f}")
    with open(os.path.join(out, "log.jsonl"), "a") as jsonl:
        jsonl.write(json.dumps(row) + "\n")
    csv_path = os.path.join(out, "metrics.csv")
    new = not os.path.exists(csv_path)
    with open(csv_path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)
