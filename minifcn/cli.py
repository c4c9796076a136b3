"""The `minifcn` command: train, eval, predict, convert, bench.

Each subcommand is a thin layer over a library call (train.train, train.evaluate,
weights.convert, benchmarks/), so everything it does can also be done from Python.
"""
import argparse
import dataclasses
import importlib.util
import math
import os
import subprocess
import sys

from . import models
from .checkpoint import MAY_CHANGE_ON_RESUME, option_name
from .precision import PRECISIONS
from .errors import UserError
from .presets import BUILT_IN_RUN, REAL_DATA_RUN, SMALL_SOLVER
from .train import TrainConfig

MODELS = tuple(models.MODELS)
DATA_HELP = ("synthetic (built in, generated on the fly), voc:DIR (PASCAL VOC), sbd:DIR (SBD), "
             "siftflow:DIR, nyud:DIR, context:DIR (PASCAL-Context), or folder:DIR (your own: "
             "DIR/images/*.jpg|png and "
             "DIR/masks/*.png of class numbers)")
BENCHMARKS = {"cpu_ops": "each op at FCN-32s's shapes, numba and NumPy kernels (and PyTorch)",
              "cpu_nets": "whole FCN-32s and FCN-8s at 500x500 (and PyTorch)",
              "conv_tiles": "the blocked convolution's tile size",
              "contention": "the default run alone and beside a busy process",
              "distributed": "steps/s of 1 rank against 2 MPI ranks on the CPU (needs .[mpi])",
              "gpu_kernels": "each CUDA kernel, and FCN-32s, on the GPU (and PyTorch)",
              "kernel_resources": "registers and occupancy of the CUDA kernels (nvcc)"}
USES_TORCH = ("cpu_ops", "cpu_nets", "gpu_kernels")
PRECISION_HELP = ("fp32, tf32 (float32 storage, TF32 GEMMs) or bf16 (bf16 activations and "
                  "GEMMs, float32 weights, loss and sums); tf32 and bf16 need --device cuda")


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except KeyboardInterrupt:
        return 130
    except UserError as error:  # anything else is a bug, and shows its traceback
        print(f"minifcn {args.command}: error: {error}", file=sys.stderr)
        return 1


def positive_int(text):
    """argparse type: an int >= 1."""
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def _loss_sampling(text):
    from .loss_sampling import probability
    try:
        return probability(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).replace("--loss-sampling: ", "")) from None


def nonnegative_int(text):
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def positive_float(text):
    return _number(text, float, lambda v: v > 0, "a positive number")


def nonnegative_float(text):
    return _number(text, float, lambda v: v >= 0, "a number >= 0")


def unit_interval(text):
    return _number(text, float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def _number(text, kind, valid, what):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or math.isnan(value) or not valid(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def data_spec(text):
    """argparse type: a dataset spec whose kind exists and whose directory is there."""
    from .data import DATASETS, SPECS
    kind, has_directory, directory = text.partition(":")
    if kind not in DATASETS:
        raise argparse.ArgumentTypeError(f"unknown data source {text!r}; expected one of: {SPECS}")
    if kind == "synthetic":
        if has_directory:
            raise argparse.ArgumentTypeError("the built-in data (synthetic) takes no directory")
    elif not directory:
        raise argparse.ArgumentTypeError(f"{kind} needs a directory, as in {kind}:DIR")
    elif not os.path.isdir(directory):
        raise argparse.ArgumentTypeError(f"{text}: no such directory {directory}")
    return text


def existing_file(text):
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return text


def _parser():
    parser = argparse.ArgumentParser(
        prog="minifcn", description="Fully Convolutional Networks on a from-scratch engine.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser(
        "train", help="train an FCN (default: a small FCN-8s on the built-in dataset)",
        description="Train an FCN. With no options: a narrow FCN-8s learns the built-in "
                    "synthetic dataset on the CPU in a few minutes, then writes its prediction "
                    "pictures. With --data voc:DIR --weights VGG16.npz it runs the paper's recipe.",
        epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    # Options left out stay None, so TrainConfig's defaults (train.py) are the only ones.
    train.add_argument("--model", choices=MODELS, help=f"which net (default {TrainConfig.model})")
    train.add_argument("--data", type=data_spec,
                       help=f"data source: {DATA_HELP} (default {TrainConfig.data})")
    train.add_argument("--val-data", type=data_spec,
                       help="validation source, e.g. voc:DIR when training on "
                       "sbd:DIR as the paper does (default: the val split of --data)")
    train.add_argument("--weights", type=existing_file, metavar="VGG16.npz",
                       help="ImageNet VGG16 weights to start from, converted by "
                            "`minifcn convert` (not a checkpoint: see --init-from)")
    train.add_argument("--init-from", type=existing_file, metavar="CHECKPOINT",
                       help="checkpoint of a trained coarser net (32s for 16s, 16s for 8s)")
    train.add_argument("--device", choices=("cpu", "cuda"), help="default cpu")
    train.add_argument("--iterations", type=positive_int,
                       help=f"solver steps (default: {BUILT_IN_RUN['iterations']} on synthetic "
                            f"data, {REAL_DATA_RUN['iterations']} otherwise)")
    train.add_argument("--batch-size", type=positive_int,
                       help=f"images per forward pass (default {TrainConfig.batch_size})")
    train.add_argument("--lr", type=positive_float, help="base learning rate (default: the model's Caffe "
                       f"preset, or {SMALL_SOLVER['lr']} for the small net on synthetic data)")
    train.add_argument("--lr-policy", choices=("fixed", "poly"),
                       help="Caffe's lr_policy: fixed, or poly (decays to 0 at the last step); "
                            "default: fixed for the paper's nets, poly for the small net")
    train.add_argument("--optimizer", choices=("sgd", "adam"),
                       help="solver (default: the preset: Caffe's SGD for the paper's nets, Adam "
                            "for the small net trained from scratch)")
    train.add_argument("--momentum", type=unit_interval, help="SGD momentum or Adam's beta1 (default: the preset)")
    train.add_argument("--weight-decay", type=nonnegative_float, help="default: the preset (5e-4)")
    train.add_argument("--iter-size", type=positive_int, help="backward passes accumulated per step "
                       "(Caffe iter_size; default: the preset)")
    width = train.add_mutually_exclusive_group()
    width.add_argument("--small", dest="small", action="store_true", default=None,
                       help="narrow trunk that trains on a CPU (default on synthetic data)")
    width.add_argument("--full", dest="small", action="store_false",
                       help="the reference VGG16 widths (default on real data)")
    train.add_argument("--widths", type=_widths, metavar="W1,...,W5",
                       help="trunk widths of the five conv blocks (default: by --small/--full)")
    train.add_argument("--fc-width", type=positive_int, help="width of fc6/fc7 (default: by --small/--full)")
    train.add_argument("--image-size", type=positive_int,
                       help=f"side of the built-in dataset's scenes in pixels (default "
                            f"{TrainConfig.image_size})")
    train.add_argument("--learn-upsampling", action="store_true", default=None,
                       help="learn the deconvolutions (the reference keeps them fixed bilinear)")
    train.add_argument("--val-interval", type=positive_int,
                       help=f"steps between validations and checkpoints (default "
                            f"{BUILT_IN_RUN['val_interval']} on synthetic data, "
                            f"{REAL_DATA_RUN['val_interval']} otherwise)")
    train.add_argument("--log-interval", type=positive_int,
                       help=f"steps between reads of the loss for the progress bar and the "
                            f"divergence check; on the GPU each read waits for the device "
                            f"(default {TrainConfig.log_interval})")
    train.add_argument("--cuda-graphs", choices=("on", "off", "auto"),
                       help="capture the training step once as a CUDA graph and replay it while "
                            "the batch shape repeats (default auto: on with --device cuda)")
    train.add_argument("--precision", choices=PRECISIONS, help=PRECISION_HELP
                       + f" (default {TrainConfig.precision}; part of the run: --resume keeps it)")
    train.add_argument("--val-images", type=positive_int,
                       help=f"held-out images scored (default {TrainConfig.val_images})")
    train.add_argument("--out", help="run directory (default runs/<model>-<data>)")
    train.add_argument("--seed", type=nonnegative_int, help=f"default {TrainConfig.seed}")
    train.add_argument("--loss-sampling", type=_loss_sampling, metavar="P",
                       help="patchwise training: keep each final score cell in the loss with "
                            "probability P in (0, 1] (default 1: whole images)")
    existing = train.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true",
                          help="continue the run in --out from its checkpoint, exactly, with "
                               "its own settings (see below)")
    existing.add_argument("--overwrite", action="store_true",
                          help="replace the run in --out with a new one; the old one is "
                               "removed once the new one's first checkpoint is written")
    train.add_argument("--no-data-check", action="store_true",
                       help="skip checking every image and label file before the first step "
                            "(for huge datasets already known good)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel over the ranks of `mpiexec -n N`: each takes "
                            "--batch-size images of a global batch of N x that, gradients "
                            "summed every step (MPI; NCCL with --device cuda); needs "
                            "pip install -e \".[mpi]\" (docs/scaling.md)")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser(
        "eval", help="score a checkpoint: the four metrics and per-class IU",
        description="Score a trained checkpoint on held-out images: pixel accuracy, mean "
                    "accuracy, mean IU, frequency-weighted IU, and the IU of each class.")
    _checkpoint_option(evaluate)
    evaluate.add_argument("--data", type=data_spec, default=None,
                          help=f"data source (default: the one trained on): {DATA_HELP}")
    evaluate.add_argument("--split", default="val", help="split to score (default val)")
    evaluate.add_argument("--limit", type=positive_int, help="score only the first N images")
    evaluate.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    evaluate.add_argument("--precision", choices=PRECISIONS, default="fp32",
                          help=PRECISION_HELP + " (default fp32)")
    evaluate.set_defaults(run=_eval)

    predict = commands.add_parser(
        "predict", help="label your own pictures with a trained checkpoint",
        description="Label each pixel of your pictures (JPEG/PNG) with a trained checkpoint. "
                    "For each picture NAME it writes NAME_seg.png (the class colours), "
                    "NAME_overlay.png (the colours over the picture) and NAME_panel.png (the "
                    "three side by side, with headings and the key of class colours and names).")
    predict.add_argument("images", nargs="+", metavar="IMAGE", type=existing_file)
    _checkpoint_option(predict)
    predict.add_argument("--out", required=True, help="directory for the pictures (created)")
    predict.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    predict.add_argument("--precision", choices=PRECISIONS, default="fp32",
                         help=PRECISION_HELP + " (default fp32)")
    predict.set_defaults(run=_predict)

    convert = commands.add_parser(
        "convert", help="VGG16 weights (Caffe .caffemodel or torchvision .pth) to minifcn .npz",
        description="Convert ImageNet VGG16 weights to the .npz that `minifcn train --weights` "
                    "reads: Caffe's VGG_ILSVRC_16_layers.caffemodel or torchvision's "
                    "vgg16-397923af.pth. Neither Caffe nor PyTorch is needed, and nothing in "
                    "the file is run.")
    convert.add_argument("source", metavar="SRC", type=existing_file)
    convert.add_argument("output", metavar="OUT.npz")
    convert.set_defaults(run=_convert)

    bench = commands.add_parser(
        "bench", help="run a benchmark from benchmarks/ (needs the source tree)",
        description="Run a benchmark; it writes its tables to benchmarks/results/. "
                    "`minifcn bench NAME --help` lists its options.",
        epilog="benchmarks: " + "; ".join(f"{name}: {what}" for name, what in BENCHMARKS.items()))
    bench.add_argument("name", nargs="?", default="cpu_ops", choices=BENCHMARKS,
                       metavar="NAME", help=f"one of {', '.join(BENCHMARKS)} (default cpu_ops)")
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="options passed to the benchmark")
    bench.set_defaults(run=_bench)
    return parser


TRAIN_EPILOG = f"""\
run directory:
  A run writes checkpoint.npz, log.jsonl, metrics.csv and predictions.png into --out. A
  directory that holds a run is refused unless --resume or --overwrite is given.

resuming:
  --resume restores the run's own settings from its checkpoint. Only
  {", ".join(option_name(field) for field in MAY_CHANGE_ON_RESUME)} may be given
  with other values; any other option that differs is refused. Resuming a finished run
  says so and exits 0; a larger --iterations trains it further.

interrupting:
  Ctrl-C or SIGTERM stops the run after the step under way (a second Ctrl-C abandons
  that step) and writes a checkpoint that --resume continues exactly. Before the first
  step (while the data is checked, say) it stops at once: there is nothing to save.

exit status:
  0 finished; 1 error (bad option or data, a diverged run, a file that cannot be
  written: the message names it); 2 usage; 130 stopped by Ctrl-C (SIGINT), 143 stopped
  by SIGTERM, a checkpoint of the steps done saved.
"""


def _widths(text):
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        widths = ()
    if len(widths) != 5 or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"expected five positive widths like 16,32,48,64,64, got {text!r}")
    return widths


def _checkpoint_option(command):
    command.add_argument("--checkpoint", metavar="CHECKPOINT.npz", type=existing_file,
                         help="a checkpoint written by `minifcn train` (its --out folder's "
                              "checkpoint.npz)")
    # the name these commands had before; kept so that scripts keep working
    command.add_argument("--weights", dest="checkpoint", type=existing_file,
                         help=argparse.SUPPRESS)


def _require_checkpoint(args):
    from .inference import check_checkpoint
    if args.checkpoint is None:
        raise UserError("the following argument is required: --checkpoint "
                        "(a checkpoint.npz written by `minifcn train`)")
    check_checkpoint(args.checkpoint)


def _prepare(device, small_net, precision="fp32"):
    """What every computing command does first: a precision the device has (else one
    line, precision.check), the process's threads and memory for the net (runtime.py),
    the notice when numba compiles, and a usable GPU if asked for."""
    from . import backend, runtime
    from .precision import check
    check(precision, device)
    runtime.configure_process(blas_threads=runtime.blas_threads_for(small_net))
    runtime.announce_compiling()
    if device == "cuda":
        try:
            backend.require_cupy()
        except RuntimeError as error:
            raise UserError(str(error)) from None


def _check_vgg16_weights(path):
    """Before training starts: `path` must be `minifcn convert`'s output."""
    from .weights import WeightsFileError
    from .weights.convert import NOT_CONVERTED_HINTS
    from .weights.sniff import describe, file_kind
    kind = file_kind(path)
    if kind != "converted":
        raise WeightsFileError(path, f"{describe(kind)}, not converted VGG16 weights. "
                               + NOT_CONVERTED_HINTS.get(kind, NOT_CONVERTED_HINTS[None])
                               .format(path=path))


# The solver options: when none is given, the preset decides them all.
SOLVER_OPTIONS = ("lr", "momentum", "weight_decay", "iter_size", "optimizer", "lr_policy")


def _solver_for_random_weights(config, given, say):
    """The paper's solvers (SGD at lr 1e-10 to 1e-14 on an unnormalized loss) fine-tune
    ImageNet weights; from random weights they cannot learn. When the full-width net
    starts from random weights (no --weights, no --init-from), use the small net's
    solver instead, and say so (a resumed run makes the same choice again, so it goes
    on with the solver it began with); when solver options were given, keep them and
    warn."""
    if config.is_small() or config.weights or config.init_from:
        return
    preset = config.solver()
    if preset["optimizer"] != "sgd" or preset["normalize"]:
        return  # not the paper's fine-tuning solver (fcn-alexnet's normalizes, at lr 1e-4)
    if any(key in given for key in SOLVER_OPTIONS):
        say(f"warning: {config.model} starts from random weights (no --weights) with SGD at "
            f"lr {preset['lr']:g}: that fine-tunes ImageNet weights and will not learn from "
            f"scratch. Give --weights vgg16.npz (minifcn convert), or --optimizer adam --lr 1e-3")
        return
    for key, value in SMALL_SOLVER.items():
        setattr(config, key, value)
    say(f"note: {config.model} starts from random weights (no --weights), where the paper's "
        f"solver (SGD, lr {preset['lr']:g}, unnormalized loss) cannot learn; using Adam, lr "
        f"{SMALL_SOLVER['lr']:g}, poly decay, normalized loss instead. For the paper's recipe "
        f"give --weights vgg16.npz (minifcn convert); --optimizer/--lr choose another solver")


def _train(args):
    from .train import Interrupted, TrainingDiverged, resumed_config, train
    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    given = {key: value for key, value in vars(args).items() if key in fields and value is not None}
    if args.weights:
        _check_vgg16_weights(args.weights)
    if args.init_from:
        from .inference import check_checkpoint
        check_checkpoint(args.init_from)
    given.update(progress=not args.no_progress, data_check=not args.no_data_check)
    if args.distributed:  # rank 0 speaks for the job (distributed.py)
        from .distributed import launched_rank, launched_size
        given["ranks"] = launched_size()
        if launched_rank() > 0:
            given.update(progress=False, data_check=False)  # rank 0 checks the data
            sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the process
    config = TrainConfig(**given)
    if args.out is None:
        config.out = os.path.join("runs", f"{config.model}-{config.data.split(':')[0]}")
    if args.resume:  # the run's own settings, from its checkpoint
        config = resumed_config(config.out, **{k: v for k, v in given.items()
                                               if k not in ("out", "ranks")})
        if config.ranks != given.get("ranks", 1):
            from .distributed import DistributedError
            raise DistributedError(f"the run in {config.out} was trained on {config.ranks} "
                                   f"rank(s); resume it with the same: "
                                   + ("minifcn train --resume" if config.ranks == 1 else
                                      f"mpiexec -n {config.ranks} minifcn train --distributed --resume"))
    else:
        _solver_for_random_weights(config, given, print)
    _prepare(config.device, config.is_small(), config.precision)
    print(f"{'resuming' if args.resume else 'training'} {config.model} on {config.data} "
          f"({config.device}), {config.iterations} iterations, solver {config.solver()}, "
          f"writing to {config.out}")
    try:
        scores = train(config, resume=args.resume, overwrite=args.overwrite)
    except TrainingDiverged as error:
        print(f"minifcn train: {error}", file=sys.stderr)
        return 1
    except Interrupted as error:
        return error.status
    if scores is not None:
        print(f"final mean IU {scores['mean_iu']:.4f}; checkpoint {config.out}/checkpoint.npz; "
              f"predictions {config.out}/predictions.png (columns: image | truth | prediction; "
              f"a prediction all black, i.e. all background, is normal early in training)")


def _eval(args):
    from .data import open_dataset
    from .inference import load_checkpoint
    from .precision import use
    from .train import evaluate
    _require_checkpoint(args)
    net = load_checkpoint(args.checkpoint)
    _prepare(args.device, net.config.is_small(), args.precision)
    net.to(args.device)
    config = net.config
    data = args.data or config.data
    options = config.data_options() if data == config.data else {}  # e.g. the scenes' size
    dataset = open_dataset(data, split=args.split, preprocess=net.preprocess, **options)
    with use(args.precision, args.device):
        scores = evaluate(net, dataset, args.device, args.limit, progress=True)
    if "heads" in scores:  # a multi-headed net: every head's report
        from .heads import format_scores
        return print(format_scores(scores, dataset.class_names))
    for key in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"):
        print(f"{key:10s} {scores[key]:.4f}")
    names = getattr(dataset, "class_names", None) or net.class_names
    print("per-class IU:")
    for name, iu in zip(names, scores["per_class_iu"]):
        print(f"  {name:16s} {iu:.4f}")


def _predict(args):
    from .data.io import load_image
    from .inference import load_checkpoint
    from .precision import use
    from .visualize import colorize, key_entries, overlay, panel, save_png
    _require_checkpoint(args)
    pictures = [load_image(path) for path in args.images]  # every input read before --out is made
    stems = output_stems(args.images)
    net = load_checkpoint(args.checkpoint)
    _prepare(args.device, net.config.is_small(), args.precision)
    net.to(args.device)
    os.makedirs(args.out, exist_ok=True)
    for path, rgb, stem in zip(args.images, pictures, stems):
        with use(args.precision, args.device):
            label = net.predict(rgb)
        base = os.path.join(args.out, stem)
        save_png(f"{base}_seg.png", colorize(label))
        save_png(f"{base}_overlay.png", overlay(rgb, label))
        panel(rgb, label, f"{base}_panel.png", class_names=net.class_names)
        print(f"{path} -> {base}_seg.png, {base}_overlay.png, {base}_panel.png")
    print("class colours: " + ", ".join(f"{text} {colour}" for colour, text in
                                        key_entries(net.class_names)))


def output_stems(paths):
    """A distinct output name for each input: its file name without the extension, and
    for names met before, -2, -3, ... in input order (a/x.png, b/x.jpg -> x, x-2)."""
    stems, taken = [], set()
    for path in paths:
        stem = base = os.path.splitext(os.path.basename(path))[0]
        number = 1
        while stem in taken:
            number += 1
            stem = f"{base}-{number}"
        taken.add(stem)
        stems.append(stem)
    return stems


def _convert(args):
    from .weights.convert import convert
    convert(args.source, args.output)
    print(f"wrote {args.output}")


def _bench(args):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isdir(os.path.join(root, "benchmarks")):
        raise UserError("the benchmarks live in the source tree (benchmarks/), which "
                        "this installation does not have; run from a git checkout")
    if args.name in USES_TORCH and importlib.util.find_spec("torch") is None:
        print(f"minifcn bench {args.name}: PyTorch is not installed, so the tables have no "
              f"PyTorch column (pip install -e \".[bench]\" adds it)", file=sys.stderr)
    return subprocess.call([sys.executable, "-m", f"benchmarks.{args.name}", *args.rest], cwd=root)


if __name__ == "__main__":
    sys.exit(main())
