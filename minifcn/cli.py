"""The `minifcn` command: train, eval, predict, convert, bench.

Each subcommand is a thin layer over a library call (train.train, train.evaluate,
weights.convert, benchmarks/), so everything it does can also be done from Python.
"""
import argparse
import dataclasses
import os
import subprocess
import sys

from .checkpoint import MAY_CHANGE_ON_RESUME, option_name
from .train import BUILT_IN_RUN, REAL_DATA_RUN, SMALL_SOLVER, TrainConfig

MODELS = ("fcn32s", "fcn16s", "fcn8s", "fcn8s-atonce", "fcn-alexnet")
DATA_HELP = ("synthetic (built in, generated on the fly), voc:DIR (PASCAL VOC), sbd:DIR (SBD), "
             "siftflow:DIR or nyud:DIR")


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
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as error:
        print(f"minifcn {args.command}: error: {error}", file=sys.stderr)
        return 1


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
    train.add_argument("--data", help=f"data source: {DATA_HELP} (default {TrainConfig.data})")
    train.add_argument("--val-data", help="validation source, e.g. voc:DIR when training on "
                       "sbd:DIR as the paper does (default: the val split of --data)")
    train.add_argument("--weights", help="converted VGG16 .npz to start from (see `minifcn convert`)")
    train.add_argument("--init-from", help="checkpoint of a trained coarser net (32s for 16s, 16s for 8s)")
    train.add_argument("--device", choices=("cpu", "cuda"), help="default cpu")
    train.add_argument("--iterations", type=int,
                       help=f"solver steps (default: {BUILT_IN_RUN['iterations']} on synthetic "
                            f"data, {REAL_DATA_RUN['iterations']} otherwise)")
    train.add_argument("--batch-size", type=int,
                       help=f"images per forward pass (default {TrainConfig.batch_size})")
    train.add_argument("--lr", type=float, help="base learning rate (default: the model's Caffe "
                       f"preset, or {SMALL_SOLVER['lr']} for the small net on synthetic data)")
    train.add_argument("--lr-policy", choices=("fixed", "poly"),
                       help="Caffe's lr_policy: fixed, or poly (decays to 0 at the last step); "
                            "default: fixed for the paper's nets, poly for the small net")
    train.add_argument("--optimizer", choices=("sgd", "adam"),
                       help="solver (default: the preset: Caffe's SGD for the paper's nets, Adam "
                            "for the small net trained from scratch)")
    train.add_argument("--momentum", type=float, help="SGD momentum or Adam's beta1 (default: the preset)")
    train.add_argument("--weight-decay", type=float, help="default: the preset (5e-4)")
    train.add_argument("--iter-size", type=int, help="backward passes accumulated per step "
                       "(Caffe iter_size; default: the preset)")
    width = train.add_mutually_exclusive_group()
    width.add_argument("--small", dest="small", action="store_true", default=None,
                       help="narrow trunk that trains on a CPU (default on synthetic data)")
    width.add_argument("--full", dest="small", action="store_false",
                       help="the reference VGG16 widths (default on real data)")
    train.add_argument("--widths", type=_widths, metavar="W1,...,W5",
                       help="trunk widths of the five conv blocks (default: by --small/--full)")
    train.add_argument("--fc-width", type=int, help="width of fc6/fc7 (default: by --small/--full)")
    train.add_argument("--image-size", type=int,
                       help=f"side of the built-in dataset's scenes in pixels (default "
                            f"{TrainConfig.image_size})")
    train.add_argument("--learn-upsampling", action="store_true", default=None,
                       help="learn the deconvolutions (the reference keeps them fixed bilinear)")
    train.add_argument("--val-interval", type=int,
                       help=f"steps between validations and checkpoints (default "
                            f"{BUILT_IN_RUN['val_interval']} on synthetic data, "
                            f"{REAL_DATA_RUN['val_interval']} otherwise)")
    train.add_argument("--val-images", type=int,
                       help=f"held-out images scored (default {TrainConfig.val_images})")
    train.add_argument("--out", help="run directory (default runs/<model>-<data>)")
    train.add_argument("--seed", type=int, help=f"default {TrainConfig.seed}")
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
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("eval", help="score a checkpoint: the four metrics and per-class IU")
    evaluate.add_argument("--weights", required=True, help="checkpoint .npz written by `minifcn train`")
    evaluate.add_argument("--data", default=None, help=f"data source (default: the one trained on): {DATA_HELP}")
    evaluate.add_argument("--split", default="val", help="split to score (default val)")
    evaluate.add_argument("--limit", type=int, help="score only the first N images")
    evaluate.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    evaluate.set_defaults(run=_eval)

    predict = commands.add_parser("predict", help="colour segmentation PNGs and overlays for images")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--weights", required=True, help="checkpoint .npz written by `minifcn train`")
    predict.add_argument("--out", required=True, help="directory for <name>_seg.png and <name>_overlay.png")
    predict.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    predict.set_defaults(run=_predict)

    convert = commands.add_parser(
        "convert", help="VGG16 weights (Caffe .caffemodel or torchvision .pth) to minifcn .npz")
    convert.add_argument("source", metavar="SRC")
    convert.add_argument("output", metavar="OUT.npz")
    convert.set_defaults(run=_convert)

    bench = commands.add_parser("bench", help="run a benchmark from benchmarks/ (needs the source tree)")
    bench.add_argument("name", nargs="?", default="cpu_ops",
                       help="cpu_ops, cpu_nets, conv_tiles, gpu_kernels or kernel_resources "
                            "(default cpu_ops)")
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


def _train(args):
    from .train import Interrupted, TrainingDiverged, resumed_config, train
    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    given = {key: value for key, value in vars(args).items() if key in fields and value is not None}
    given.update(progress=not args.no_progress, data_check=not args.no_data_check)
    config = TrainConfig(**given)
    if args.out is None:
        config.out = os.path.join("runs", f"{config.model}-{config.data.split(':')[0]}")
    if args.resume:
        config = resumed_config(config.out, **{k: v for k, v in given.items() if k != "out"})
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
              f"predictions {config.out}/predictions.png")


def _eval(args):
    from .data import open_dataset
    from .train import evaluate, net_from_checkpoint
    net, config = net_from_checkpoint(args.weights, args.device)
    data = args.data or config.data
    options = config.data_options() if data == config.data else {}  # e.g. the scenes' size
    dataset = open_dataset(data, split=args.split, **options, **_preprocess(net))
    scores = evaluate(net, dataset, args.device, args.limit, progress=True)
    for key in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"):
        print(f"{key:10s} {scores[key]:.4f}")
    names = getattr(dataset, "class_names", None) or [str(i) for i in range(dataset.n_class)]
    print("per-class IU:")
    for name, iu in zip(names, scores["per_class_iu"]):
        print(f"  {name:16s} {iu:.4f}")


def _preprocess(net):
    """The input convention the net's weights expect, when they recorded one."""
    from .train import preprocess_options
    return preprocess_options(getattr(net, "input_meta", None) or {})


def _predict(args):
    from .data.io import load_image
    from .data import open_dataset
    from .train import net_from_checkpoint, predict
    from .visualize import colorize, overlay, save_png
    net, config = net_from_checkpoint(args.weights, args.device)
    preprocess = _preprocess(net).get("preprocess") or open_dataset(config.data, "val").preprocess
    os.makedirs(args.out, exist_ok=True)
    for path in args.images:
        rgb = load_image(path)
        label = predict(net, preprocess(rgb), args.device)
        stem = os.path.join(args.out, os.path.splitext(os.path.basename(path))[0])
        save_png(f"{stem}_seg.png", colorize(label))
        save_png(f"{stem}_overlay.png", overlay(rgb, label))
        print(f"{path} -> {stem}_seg.png, {stem}_overlay.png")


def _convert(args):
    from .weights.convert import convert
    convert(args.source, args.output)
    print(f"wrote {args.output}")


def _bench(args):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isdir(os.path.join(root, "benchmarks")):
        raise FileNotFoundError("the benchmarks live in the source tree (benchmarks/), which "
                                "this installation does not have; run from a git checkout")
    return subprocess.call([sys.executable, "-m", f"benchmarks.{args.name}", *args.rest], cwd=root)


if __name__ == "__main__":
    sys.exit(main())
