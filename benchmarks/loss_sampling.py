"""Patchwise training as loss sampling against whole images (paper section 4.4, figure 5).

    python -m benchmarks.loss_sampling [--probabilities 1,0.5,0.25] [--iterations 4500]
                                       [--val-interval 500] [--val-images 50] [--model fcn8s]
                                       [--image-size 64] [--out runs/loss-sampling]
                                       [--results benchmarks/results] [--plot docs/loss-sampling.png]

Trains the default small net on the built-in data once per P (`minifcn train
--loss-sampling P`; P = 1 is whole-image training), same seed, same data order, same
solver, and validates every `val_interval` steps. Records for every validation: the
step, the images seen (step x batch size x iter_size), the wall time since the run
began and the mean IU. Wall time includes the validations, which cost the same in every
run (same count, same images), so the runs stay comparable. The paper's finding to
compare with: sampling does not speed convergence per image seen, and costs time.

Each run goes first through one untimed step (numba compiles its kernels once, for all
runs alike). Writes benchmarks/results/loss-sampling-<machine>-<date>.json and .md and
a two-panel plot (mean IU against wall time, and against images seen).
"""
import argparse
import json
import os
import time

from PIL import Image, ImageDraw, ImageFont

from minifcn.train import TrainConfig, train

from . import common

COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189))


def run(p, args, directory):
    """One training run with loss sampling P; its validation points."""
    config = TrainConfig(model=args.model, iterations=args.iterations,
                         val_interval=args.val_interval, val_images=args.val_images,
                         image_size=args.image_size, out=directory, loss_sampling=p,
                         progress=False, **small_net(args))
    stamps = []

    def log(message):
        if message.lstrip().startswith("iteration"):
            stamps.append(time.perf_counter() - began)

    began = time.perf_counter()
    train(config, overwrite=True, log=log)  # the benchmark's own scratch directory
    with open(os.path.join(directory, "log.jsonl")) as handle:
        rows = [json.loads(line) for line in handle]
    per_step = config.batch_size * config.solver()["iter_size"]
    return [dict(iteration=row["iteration"], images=row["iteration"] * per_step, seconds=seconds,
                 mean_iu=row["mean_iu"], loss=row["loss"]) for row, seconds in zip(rows, stamps)]


def small_net(args):
    return {} if args.widths is None else dict(widths=args.widths, fc_width=args.fc_width)


def warm_up(args, directory):
    config = TrainConfig(model=args.model, iterations=1, val_interval=1, val_images=1,
                         image_size=args.image_size, out=directory, progress=False,
                         **small_net(args))
    train(config, overwrite=True, log=lambda *_: None)


def markdown(report):
    rows = []
    for p, points in report["runs"].items():
        last = points[-1]
        best = max(point["mean_iu"] for point in points)
        load = report.get("load_average", {}).get(p)
        rows.append([p, last["iteration"], last["images"], common.format_seconds(last["seconds"]),
                     f"{last['mean_iu']:.4f}", f"{best:.4f}",
                     "not recorded" if load is None else f"{load[0]:.1f} / {load[1]:.1f}"])
    settings = ", ".join(f"{k} {v}" for k, v in report["settings"].items())
    return "\n".join([
        "# Loss sampling (patchwise training) against whole images", "",
        common.machine_sentence(report["machine"]), "", f"Settings: {settings}.", "",
        common.markdown_table(["P", "steps", "images seen", "wall time", "final mean IU",
                               "best mean IU", "load average before / after"], rows), "",
        "Every validation point is in the JSON file; the plot is "
        f"`{report['plot']}`. Wall time includes the validations (the same in every run). The "
        "1-minute load average before and after each run says whether it had the machine "
        "to itself (this run's own training counts about 1)."])


# ------------------------------------------------------------------------- the plot
def line_chart(path, panels, size=(560, 380)):
    """A PNG of side-by-side panels, each (title, x label, {name: (xs, ys)}), y in [0, 1]
    scaled to the data; drawn with Pillow (no plotting library needed)."""
    font = ImageFont.load_default()
    width, height = size
    picture = Image.new("RGB", (width * len(panels), height), "white")
    draw = ImageDraw.Draw(picture)
    left, right, top, bottom = 60, 40, 30, 50
    for index, (title, x_label, series) in enumerate(panels):
        x0 = index * width + left
        x1, y0, y1 = (index + 1) * width - right, top, height - bottom
        xs = [x for values, _ in series.values() for x in values] or [0, 1]
        ys = [y for _, values in series.values() for y in values] or [0, 1]
        x_max = max(xs) or 1.0
        y_low, y_high = min(0.0, min(ys)), max(ys) * 1.05 or 1.0

        def at(x, y):  # this panel's coordinates; used within this iteration only
            return (x0 + (x1 - x0) * x / x_max,  # noqa: B023
                    y1 - (y1 - y0) * (y - y_low) / (y_high - y_low))  # noqa: B023

        draw.rectangle([x0, y0, x1, y1], outline="black")
        for k in range(5):
            y = y_low + (y_high - y_low) * k / 4
            draw.text((x0 - 45, at(0, y)[1] - 6), f"{y:.2f}", fill="black", font=font)
            x = x_max * k / 4
            draw.text((at(x, 0)[0] - 12, y1 + 5), f"{x:.4g}", fill="black", font=font)
        draw.text((x0, 8), title, fill="black", font=font)
        draw.text(((x0 + x1) / 2 - 30, y1 + 25), x_label, fill="black", font=font)
        for number, (name, (values_x, values_y)) in enumerate(series.items()):
            colour = COLOURS[number % len(COLOURS)]
            points = [at(x, y) for x, y in zip(values_x, values_y)]
            if len(points) > 1:
                draw.line(points, fill=colour, width=2)
            for px, py in points:
                draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=colour)
            draw.text((x0 + 10, y0 + 8 + 14 * number), name, fill=colour, font=font)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    picture.save(path)
    return path


def plot(report, path):
    def series(key):
        return {f"P = {p}": ([point[key] for point in points], [point["mean_iu"] for point in points])
                for p, points in report["runs"].items()}
    return line_chart(path, [("mean IU against wall time", "seconds", series("seconds")),
                             ("mean IU against images seen", "images", series("images"))])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probabilities", default="1,0.5,0.25",
                        help="the values of P to train with, comma-separated")
    parser.add_argument("--model", default="fcn8s")
    parser.add_argument("--iterations", type=int, default=4500)
    parser.add_argument("--val-interval", type=int, default=500)
    parser.add_argument("--val-images", type=int, default=50)
    parser.add_argument("--image-size", type=int, default=TrainConfig.image_size)
    parser.add_argument("--widths", type=lambda text: tuple(int(w) for w in text.split(",")),
                        help="trunk widths (default: the small net's)")
    parser.add_argument("--fc-width", type=int)
    parser.add_argument("--out", default=os.path.join("runs", "loss-sampling"))
    parser.add_argument("--results", default=str(common.RESULTS_DIR))
    parser.add_argument("--replace", metavar="JSON",
                        help="rerun only --probabilities and put their runs in this earlier "
                             "report, same settings (a run that shared the machine, redone)")
    parser.add_argument("--plot", default=os.path.join(str(common.REPO_ROOT), "docs",
                                                       "loss-sampling.png"))
    args = parser.parse_args(argv)
    probabilities = [float(p) for p in args.probabilities.split(",")]
    settings = {key: getattr(args, key) for key in
                ("model", "iterations", "val_interval", "val_images", "image_size")}
    report = {"machine": common.describe_machine(), "settings": settings, "runs": {},
              "load_average": {}, "plot": os.path.relpath(args.plot, str(common.REPO_ROOT))}
    if args.replace:
        with open(args.replace) as handle:
            report = json.load(handle)
        if report["settings"] != settings:
            parser.error(f"--replace: {args.replace} was run with {report['settings']}, "
                         f"not {settings}")
    warm_up(args, os.path.join(args.out, "warm-up"))
    for p in probabilities:  # each run's 1-minute load average before and after: was it alone?
        before = common.load_average()
        report["runs"][str(p)] = run(p, args, os.path.join(args.out, f"p{p}"))
        report.setdefault("load_average", {})[str(p)] = [before, common.load_average()]
    report["runs"] = dict(sorted(report["runs"].items(), key=lambda item: -float(item[0])))
    plot(report, args.plot)
    common.publish("loss-sampling", common.machine_slug(report["machine"]), report,
                   markdown(report), directory=args.results)
    return report


if __name__ == "__main__":
    main()
