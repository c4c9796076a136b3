"""The default run's training steps alone, and beside a second CPU-bound process.

    python -m benchmarks.contention [--steps 40] [--repeat 3] [--size 160]
                                    [--policies chosen all-cores] [--busy spin run] [--out DIR]

A user trains while a browser or a second run keeps cores busy. Thread pools that fork
and join (numba's parallel loops, OpenBLAS's GEMMs) can then lose far more than the
share of the CPU the other process takes (runtime.py says why). This times `--steps`
steps of the default run (`minifcn train`'s small FCN-8s, Adam, the built-in scenes,
each in its own process after a warm-up step) `--repeat` times:

    alone        nothing else running
    beside spin  beside one process spinning in pure Python (one busy core: a browser tab)
    beside run   beside a second copy of the same training steps (two runs on the machine)

for each thread policy:

    chosen       what `minifcn train` does: numba on every core, BLAS on the cores other
                 processes leave free when the run starts (runtime.blas_threads_for_run)
    one-blas     numba on every core, BLAS on one thread, fixed (the previous policy)
    all-cores    numba and BLAS each on every core, fixed (the one before)

The table gives each case's median seconds and its ratio to the same policy alone
(the target: at most 2.5x beside another CPU-bound process).

Writes benchmarks/results/contention-<machine>-<date>.json and .md.
"""
import argparse
import datetime
import os
import subprocess
import sys
import time


from . import common

POLICIES = ("chosen", "one-blas", "all-cores")
BUSY = ("spin", "run")
TARGET_RATIO = 2.5
SPIN = "while True:\n    pass\n"


# ------------------------------------------------------------------- the child process
def default_run_steps(policy, size):
    """A closure that runs one training step of the default run, with `policy`'s thread
    settings made for this process."""
    from minifcn import runtime
    from minifcn.autograd import Tensor
    from minifcn.data import open_dataset, shuffled_order
    from minifcn.functions import softmax_cross_entropy
    from minifcn.optim import make_optimizer
    from minifcn.train import TrainConfig, build_net

    config = TrainConfig(image_size=size)
    blas = {"chosen": runtime.blas_threads_for(config.is_small()), "one-blas": 1,
            "all-cores": None}[policy]
    runtime.configure_process(blas_threads=blas)
    load = runtime.LoadReading()  # over the set-up, as train.train does
    dataset = open_dataset(config.data, "train", **config.data_options())
    solver = config.solver()
    net = build_net(config, dataset.n_class)
    opt = make_optimizer(net, solver["optimizer"], solver["lr"], solver["momentum"],
                         solver["weight_decay"], solver["iter_size"])
    order = shuffled_order(len(dataset), config.seed)
    state = {"step": 0, "blas_threads": blas, "policy": policy}
    if policy == "chosen":
        state["blas_threads"] = runtime.blas_threads_for_run(load, None, blas)

    def step():
        image, label = dataset[int(order[state["step"] % len(order)])]
        state["step"] += 1
        opt.zero_grad()
        softmax_cross_entropy(net(Tensor(image[None])), label[None],
                              normalize=solver["normalize"]).backward()
        opt.step()
    step.state = state
    return step


def child(policy, steps, size, repeat):
    step = default_run_steps(policy, size)
    step()  # warm-up: numba's kernels compiled or loaded, buffers allocated
    if repeat == 0:  # the busy copy: say so, then train until stopped
        print("ready", flush=True)
        while True:
            step()
    times = common.time_calls(lambda: [step() for _ in range(steps)], repeat=repeat, warmup=0)
    common.child_reply({"times_s": times, "blas_threads": step.state["blas_threads"]
                        if step.state["policy"] == "chosen" else None})


# ------------------------------------------------------------------------ the parent
def child_argv(policy, steps, size, repeat):
    return ["-m", "benchmarks.contention", "--child", policy, str(steps), str(size), str(repeat)]


def start_busy(kind, policy, steps, size):
    """The second process, running once it has answered: a pure-Python spin, or a copy
    of the timed steps (after its warm-up step)."""
    argv = ["-c", SPIN] if kind == "spin" else child_argv(policy, steps, size, 0)
    process = subprocess.Popen([sys.executable, *argv], cwd=common.REPO_ROOT,
                               stdout=subprocess.PIPE, text=True)
    if kind == "run" and process.stdout.readline().strip() != "ready":
        process.kill()
        raise RuntimeError("the busy training process did not start")
    return process


def measure(policy, busy, steps, size, repeat):
    """Seconds of each timed block of `steps` steps, `busy` (None, "spin" or "run") beside."""
    other = start_busy(busy, policy, steps, size) if busy else None
    try:
        load_before = common.load_average()
        reply = common.run_child(child_argv(policy, steps, size, repeat))
    finally:
        if other is not None:
            other.kill()
            other.wait()
    return dict(reply, load_before=load_before, **common.summary(reply["times_s"]))


def _blas(case):
    """", BLAS n" for a case whose count was chosen at its start."""
    count = case.get("blas_threads")
    return "" if count is None else f", BLAS {count}"


def markdown_report(report):
    headers = ["thread policy", "alone"] + [f"beside {busy}" for busy in report["busy"]]
    rows = []
    for policy in report["policies"]:
        runs = report["results"][policy]
        alone = runs["alone"]["median_s"]
        rows.append([policy, common.format_seconds(alone) + _blas(runs["alone"])] + [
            f"{common.format_seconds(runs[busy]['median_s'])} "
            f"({common.format_ratio(runs[busy]['median_s'], alone)}){_blas(runs[busy])}"
            for busy in report["busy"]])
    return "\n".join([
        f"# The default run beside a busy process ({report['date']})", "",
        (f"{common.machine_sentence(report['machine'])}. {report['steps']} training steps of "
        f"the default run (small FCN-8s, Adam, {report['size']}-pixel scenes, numba kernels "
        f"unless MINIFCN_CPU_KERNELS says otherwise: {report['cpu_kernels']}), median of "
        f"{report['repeat']} blocks, each case in fresh processes; in brackets the ratio to "
        f"the same policy alone (target <= {TARGET_RATIO}x). 1-minute load average "
        f"{report['load_before']:.1f} before, {report['load_after']:.1f} after."), "",
        ("chosen: what `minifcn train` does (numba on every core, BLAS on the cores other "
        "processes leave free when the run starts, kept for the run: "
        "runtime.blas_threads_for_run; the busy copy of `run` starts first, alone); one-blas: "
        "numba on every core, BLAS on one thread; all-cores: numba and BLAS each on every "
        "core. spin: one process spinning in pure Python; run: a second copy of the same "
        "steps, with the same policy."), "",
        common.markdown_table(headers, rows), "",
        "`python -m benchmarks.contention` (minifcn bench contention) wrote this.", ""])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="minifcn bench contention",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_default_run_options(parser, steps=40)
    parser.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES))
    parser.add_argument("--busy", nargs="+", choices=BUSY, default=list(BUSY),
                        help="second processes to run beside (default: spin and run)")
    parser.add_argument("--out", default=str(common.RESULTS_DIR))
    parser.add_argument("--child", nargs=4, metavar=("POLICY", "STEPS", "SIZE", "REPEAT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        policy, steps, size, repeat = args.child
        return child(policy, int(steps), int(size), int(repeat))

    report = {"date": datetime.date.today().isoformat(), "machine": common.describe_machine(),
              "steps": args.steps, "repeat": args.repeat, "size": args.size,
              "policies": args.policies, "busy": args.busy,
              "cpu_kernels": os.environ.get("MINIFCN_CPU_KERNELS", "auto"),
              "load_before": common.load_average(), "results": {}}
    for policy in args.policies:
        runs = report["results"][policy] = {}
        for busy in (None, *args.busy):
            began = time.perf_counter()
            runs[busy or "alone"] = measure(policy, busy, args.steps, args.size, args.repeat)
            print(f"{policy:10s} {busy or 'alone':6s} {runs[busy or 'alone']['median_s']:7.2f} s "
                  f"(case took {time.perf_counter() - began:.0f} s)", flush=True)
    report["load_after"] = common.load_average()
    common.publish("contention", common.machine_slug(report["machine"]), report,
                   markdown_report(report), directory=args.out)


if __name__ == "__main__":
    sys.exit(main())
