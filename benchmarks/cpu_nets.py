"""Whole-net CPU benchmark: FCN-32s and FCN-8s at 500x500, batch 1, minifcn against
the same nets in PyTorch (when torch is installed), side by side in one run.

    python -m benchmarks.cpu_nets [--nets fcn32s fcn8s] [--repeat 3] [--numpy-kernels]
                                  [--im2col-only] [--glibc-malloc] [--copying-relu]
                                  [--no-torch] [--out DIR]

For each net, pass (train step or inference, as nets.py builds them) and engine a
fresh Python process builds the net, runs one warm-up and `repeat` timed passes and
reports its times and its peak resident memory (getrusage ru_maxrss, so the peak is
that configuration's alone).

For each net and pass the engines run one right after the other, so that a change in
the machine's load between them is unlikely; the load average is recorded with each
configuration. The targets are docs/design.md's (Speed).

Writes benchmarks/results/cpu-nets-<machine>-<date>.json and .md.
"""
import argparse
import datetime
import os
import sys

from . import common, nets
from .nets import N_CLASS

TARGETS = {"train": 1.0, "inference": 1.2, "memory": 1.0}
ENGINES = {"minifcn": "minifcn (numba kernels)", "minifcn-numpy": "minifcn (NumPy kernels)",
           "minifcn-glibc-malloc": "minifcn (malloc returns freed memory)",
           "minifcn-copying-relu": "minifcn (ReLU not in place)",
           "minifcn-im2col": "minifcn (im2col only, no Winograd)", "torch": "PyTorch"}


# ------------------------------------------------------------------- the child process
def child(engine, net_name, pass_name, size, repeat):
    if engine != "torch":  # minifcn's process settings, as `minifcn train` makes them
        from minifcn.runtime import configure_process
        configure_process()
    if engine == "minifcn-copying-relu":
        from minifcn.models.vgg import VGGTrunk
        VGGTrunk.inplace_relu = False
    if engine == "minifcn-im2col":
        from minifcn.functions import winograd
        winograd.min_channels = float("inf")  # no layer qualifies
    build = nets.torch_passes if engine == "torch" else nets.minifcn_passes
    train_step, inference = build(net_name, size)
    function = train_step if pass_name == "train" else inference
    load_before = common.load_average()
    times = common.time_calls(function, repeat=repeat, warmup=1)
    common.child_reply({"times_s": times, "peak_rss_bytes": common.peak_rss_bytes(),
                        "load_before": load_before, "load_after": common.load_average()})


# ------------------------------------------------------------------------ the parent
def run_config(engine, net_name, pass_name, size, repeat):
    env = dict(os.environ)
    env["MINIFCN_CPU_KERNELS"] = "numpy" if engine == "minifcn-numpy" else "numba"
    if engine == "minifcn-glibc-malloc":  # glibc's default: large arrays mapped afresh
        env["MINIFCN_KEEP_FREED_MEMORY"] = "0"
    reply = common.run_child(["-m", "benchmarks.cpu_nets", "--child", engine, net_name, pass_name,
                              str(size), str(repeat)], env=env)
    reply.update(common.summary(reply["times_s"]))
    return reply


def markdown_report(report):
    engines = report["engines"]
    headers = ["net", "pass"] + [ENGINES[e] for e in engines]
    has_torch = "torch" in engines
    if has_torch:
        headers += ["minifcn / PyTorch", "target"]
    time_rows, memory_rows = [], []
    for row in report["results"]:
        runs = row["runs"]
        cells = [row["net"], row["pass"]] + [common.format_seconds(runs[e]["median_s"])
                                             if e in runs else "-" for e in engines]
        memory = [row["net"], row["pass"]] + [f"{runs[e]['peak_rss_bytes'] / 2**30:.2f} GiB"
                                              if e in runs else "-" for e in engines]
        if has_torch and "torch" in runs:
            cells += [common.format_ratio(runs["minifcn"]["median_s"], runs["torch"]["median_s"]),
                      f"<= {TARGETS[row['pass']]:.1f}x"]
            memory += [common.format_ratio(runs["minifcn"]["peak_rss_bytes"],
                                           runs["torch"]["peak_rss_bytes"]),
                       f"<= {TARGETS['memory']:.1f}x"]
        time_rows.append(cells)
        memory_rows.append(memory)
    loads = [run.get(key) for row in report["results"] for run in row["runs"].values()
             for key in ("load_before", "load_after") if run.get(key) is not None]
    lines = [f"# CPU whole-net benchmark ({report['date']})", "",
             common.machine_sentence(report["machine"]) + "; packages: "
             + ", ".join(f"{k} {v}" for k, v in report["machine"]["packages"].items() if v) + ".", "",
             f"Batch 1, {report['size']}x{report['size']}, {N_CLASS} classes, float32. Median of "
             f"{report['repeat']} timed runs after one warm-up, each configuration in its own "
             "process. 1-minute load average during the runs: "
             + (f"{min(loads):.1f} to {max(loads):.1f}" if loads else "unknown")
             + " (other work on the machine slows both engines).", "",
             "## Time per pass", "", common.markdown_table(headers, time_rows), "",
             "## Peak resident memory of the process", "",
             common.markdown_table(headers, memory_rows), ""]
    return "\n".join(lines + report.get("notes", []))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", nargs="+", default=list(nets.NETS), choices=nets.NETS)
    parser.add_argument("--passes", nargs="+", default=["train", "inference"],
                        choices=["train", "inference"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--numpy-kernels", action="store_true",
                        help="also run minifcn with MINIFCN_CPU_KERNELS=numpy")
    parser.add_argument("--im2col-only", action="store_true",
                        help="also run minifcn with every convolution through im2col")
    parser.add_argument("--glibc-malloc", action="store_true",
                        help="also run minifcn with MINIFCN_KEEP_FREED_MEMORY=0")
    parser.add_argument("--copying-relu", action="store_true",
                        help="also run minifcn with the ReLUs writing a new array")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--out", default=str(common.RESULTS_DIR))
    parser.add_argument("--child", nargs=5, metavar=("ENGINE", "NET", "PASS", "SIZE", "REPEAT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        engine, net_name, pass_name, size, repeat = args.child
        return child(engine, net_name, pass_name, int(size), int(repeat))

    has_torch = not args.no_torch and common.package_versions(["torch"])["torch"] is not None
    engines = (["minifcn"] + (["minifcn-numpy"] if args.numpy_kernels else [])
               + (["minifcn-im2col"] if args.im2col_only else [])
               + (["minifcn-glibc-malloc"] if args.glibc_malloc else [])
               + (["minifcn-copying-relu"] if args.copying_relu else [])
               + (["torch"] if has_torch else []))
    report = {"date": datetime.date.today().isoformat(), "machine": common.describe_machine(),
              "size": args.size, "repeat": args.repeat, "engines": engines, "results": []}
    for net_name in args.nets:
        for pass_name in args.passes:
            runs = {}
            for engine in engines:
                runs[engine] = run_config(engine, net_name, pass_name, args.size, args.repeat)
                print(f"{net_name} {pass_name:9s} {engine:14s} "
                      f"{runs[engine]['median_s']:7.2f} s  "
                      f"{runs[engine]['peak_rss_bytes'] / 2**30:5.2f} GiB  "
                      f"load {runs[engine]['load_before']:.1f}", flush=True)
            report["results"].append({"net": net_name, "pass": pass_name, "runs": runs})
    markdown = markdown_report(report)
    common.publish("cpu-nets", common.machine_slug(report["machine"]), report, markdown,
                   directory=args.out)


if __name__ == "__main__":
    sys.exit(main())
