"""Tile size of the blocked convolution: FCN-32s at 500x500, inference and an SGD train
step, with functions/conv.py's `column_buffer_bytes` set to each of several sizes.

    python -m benchmarks.conv_tiles [--mib 2 4 8 16 32 64] [--rounds 5]
                                    [--passes inference train] [--out DIR]

The sizes take turns in one process: each round times one call of every pass at every
size, so a change in the machine's load (other tenants share its last-level cache and
memory bandwidth) falls on all sizes alike rather than on whichever ran last. The table
gives each size's median over the rounds, and its min and max.

Writes benchmarks/results/conv-tiles-<machine>-<date>.json and .md.
"""
import argparse
import datetime
import sys
import time

from minifcn.functions import conv

from . import common, nets

MIB = 2**20


def markdown_report(report):
    passes = report["passes"]
    headers = ["column buffer"] + [f"{name} median (min-max)" for name in passes]
    rows = []
    for mib in report["mib"]:
        cells = [f"{mib} MiB" + (" (default)" if mib * MIB == report["default_bytes"] else "")]
        for name in passes:
            s = common.summary(report["times_s"][name][str(mib)])
            cells.append(f"{common.format_seconds(s['median_s'])} "
                         f"({common.format_seconds(s['min_s'])}-{common.format_seconds(s['max_s'])})")
        rows.append(cells)
    return "\n".join([
        f"# Convolution tile size, FCN-32s 500x500 ({report['date']})", "",
        f"{common.machine_sentence(report['machine'])}. {report['rounds']} rounds, the sizes in turn within each; 1-minute load average "
        f"{report['load_before']:.1f} before, {report['load_after']:.1f} after.", "",
        common.markdown_table(headers, rows, "l" + "r" * len(passes)), ""])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, nargs="+", default=[2, 4, 8, 16, 32, 64],
                        help="column buffer sizes to try, in MiB")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--passes", nargs="+", default=["inference", "train"],
                        choices=["inference", "train"])
    parser.add_argument("--out", default=str(common.RESULTS_DIR))
    args = parser.parse_args(argv)
    from minifcn.runtime import configure_process
    configure_process()

    train_step, inference = nets.minifcn_passes("fcn32s", 500)
    functions = {"inference": inference, "train": train_step}
    default_bytes = conv.column_buffer_bytes
    report = {"date": datetime.date.today().isoformat(), "machine": common.describe_machine(),
              "rounds": args.rounds, "mib": args.mib, "passes": args.passes,
              "default_bytes": default_bytes, "load_before": common.load_average(),
              "times_s": {name: {str(mib): [] for mib in args.mib} for name in args.passes}}
    for name in args.passes:  # warm-up: numba's compilation, BLAS's buffers, the heap
        functions[name]()
    try:
        for round_ in range(args.rounds):
            for mib in args.mib:
                conv.column_buffer_bytes = mib * MIB
                for name in args.passes:
                    began = time.perf_counter()
                    functions[name]()
                    seconds = time.perf_counter() - began
                    report["times_s"][name][str(mib)].append(seconds)
                    print(f"round {round_ + 1}  {mib:3d} MiB  {name:9s} "
                          f"{common.format_seconds(seconds):>9s}", flush=True)
    finally:
        conv.column_buffer_bytes = default_bytes
    report["load_after"] = common.load_average()
    common.publish("conv-tiles", common.machine_slug(report["machine"]), report,
                   markdown_report(report), directory=args.out)


if __name__ == "__main__":
    sys.exit(main())
