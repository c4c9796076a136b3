"""Training steps per second of one process against two MPI ranks on this machine's CPU.

    python -m benchmarks.distributed [--steps 10] [--repeat 3] [--size 160] [--batch 1] [--out DIR]

Three cases of the default run's net (small FCN-8s, Adam, the built-in scenes), each in
fresh processes, timed after a warm-up step (minifcn/distributed.py is what is timed):

    1 rank, batch B        one process, --batch-size B
    1 rank, batch 2B       one process with the global batch of the next case
    2 ranks, batch B each  mpiexec -n 2 ... --distributed: the same steps as the case
                           above, the ranks splitting the cores and summing the
                           gradients with MPI every step

The table gives each case's median seconds per step, steps/s and images/s (the
speed-up that matters is 2 ranks against 1 rank on the same global batch). On a
machine with a GPU per rank the same comparison is the scaling curve of docs/scaling.md.

Needs mpi4py and mpiexec (pip install -e ".[mpi]"). Writes
benchmarks/results/distributed-<machine>-<date>.json and .md.
"""
import argparse
import datetime
import itertools
import json
import os
import shutil
import subprocess
import sys
import time

from minifcn.cli import positive_int

from . import common


# ------------------------------------------------------------------- the child process
def child(ranks, steps, size, batch, repeat):
    """Time blocks of `steps` training steps as rank of a job of `ranks`; rank 0 replies."""
    from minifcn import backend, distributed, runtime
    from minifcn.data import open_dataset
    from minifcn.optim import make_optimizer
    from minifcn.train import TrainConfig, _step_batch, _train_step, build_net

    config = TrainConfig(image_size=size, batch_size=batch, ranks=ranks, progress=False)
    runtime.configure_process(blas_threads=runtime.blas_threads_for(config.is_small()))
    dataset = open_dataset(config.data, "train", **config.data_options())
    solver = config.solver()
    backend.seed(config.seed)
    net = build_net(config, dataset.n_class)
    opt = make_optimizer(net, solver["optimizer"], solver["lr"], solver["momentum"],
                         solver["weight_decay"], solver["iter_size"])
    iterations = itertools.count()
    with distributed.world_for(config) as world:
        def block():
            for _ in range(steps):
                _train_step(net, opt, lambda at: _step_batch(net, dataset, config, at), config,
                            solver, next(iterations))
        times = common.time_calls(block, repeat=repeat, warmup=1)
        if world.rank == 0:
            common.child_reply({"times_s": times, "threads": runtime.default_threads()})


# ------------------------------------------------------------------------ the parent
def mpiexec():
    found = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    if found is None:
        raise SystemExit('benchmarks.distributed needs mpiexec: pip install -e ".[mpi]"')
    return found


def measure(ranks, steps, size, batch, repeat):
    """Seconds of each timed block, from rank 0 of `ranks` fresh processes."""
    argv = [sys.executable, "-m", "benchmarks.distributed", "--child",
            str(ranks), str(steps), str(size), str(batch), str(repeat)]
    command = [mpiexec(), "-n", str(ranks), *argv] if ranks > 1 else argv
    done = subprocess.run(command, cwd=common.REPO_ROOT, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (exit {done.returncode}):\n"
                           f"{done.stdout[-2000:]}{done.stderr[-3000:]}")
    reply = json.loads([line for line in done.stdout.splitlines() if line.strip()][-1])
    per_step = [seconds / steps for seconds in reply["times_s"]]
    stats = common.summary(per_step)
    return {"ranks": ranks, "batch_per_rank": batch, "step_times_s": per_step, **stats,
            "steps_per_s": 1.0 / stats["median_s"],
            "images_per_s": ranks * batch / stats["median_s"]}


CASES = ((1, 1), (1, 2), (2, 1))  # (ranks, images per rank in units of B)


def case_name(ranks, batch):
    return f"{ranks} rank{'s' if ranks > 1 else ''}, batch {batch}{' each' if ranks > 1 else ''}"


def markdown_report(report):
    rows = [[case_name(case["ranks"], case["batch_per_rank"]), f"{case['median_s'] * 1e3:.0f} ms",
             f"{case['steps_per_s']:.2f}", f"{case['images_per_s']:.2f}"]
            for case in report["results"]]
    one, two = report["results"][1], report["results"][2]
    return "\n".join([
        f"# One process against two MPI ranks on the CPU ({report['date']})", "",
        (f"{common.machine_sentence(report['machine'])}. Training steps of the default "
         f"run's net (small FCN-8s, Adam, {report['size']}-pixel scenes), median of "
         f"{report['repeat']} blocks of {report['steps']} steps after a warm-up step, each "
         f"case in fresh processes. 1-minute load average {report['load_before']:.1f} "
         f"before, {report['load_after']:.1f} after."), "",
        common.markdown_table(["case", "s per step", "steps/s", "images/s"], rows), "",
        (f"2 ranks against 1 on the same global batch: "
         f"{common.format_ratio(one['median_s'], two['median_s'])} the speed."), "",
        "`python -m benchmarks.distributed` wrote this.", ""])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.distributed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_default_run_options(parser, steps=10)
    parser.add_argument("--batch", type=positive_int, default=1,
                        help="images per rank per step, B (default 1)")
    parser.add_argument("--out", default=str(common.RESULTS_DIR))
    parser.add_argument("--child", nargs=5, metavar=("RANKS", "STEPS", "SIZE", "BATCH", "REPEAT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(*(int(value) for value in args.child))

    report = {"date": datetime.date.today().isoformat(), "machine": common.describe_machine(),
              "steps": args.steps, "repeat": args.repeat, "size": args.size, "batch": args.batch,
              "load_before": common.load_average(), "results": []}
    for ranks, batches in CASES:
        began = time.perf_counter()
        report["results"].append(measure(ranks, args.steps, args.size, batches * args.batch,
                                         args.repeat))
        print(f"{case_name(ranks, batches * args.batch):24s} {report['results'][-1]['median_s'] * 1e3:8.1f} ms a step "
              f"(case took {time.perf_counter() - began:.0f} s)", flush=True)
    report["load_after"] = common.load_average()
    common.publish("distributed", common.machine_slug(report["machine"]), report,
                   markdown_report(report), directory=args.out)


if __name__ == "__main__":
    sys.exit(main())
