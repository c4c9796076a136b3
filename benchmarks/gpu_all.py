"""Everything a GPU machine should run, in one command, within five minutes:

    PYTHONPATH=. python3 -m benchmarks.gpu_all --out DIR [--budget 295] [--tar PATH]

Stages, each in its own process with its own time limit, its output in DIR/<stage>.log:
    env          nvidia-smi and the package versions
    gpu tests    python -m pytest -q -m gpu
    kernels      python -m benchmarks.gpu_kernels --no-net      DIR/kernels/  (batch 1 and 8, GEMMs)
    nets         python -m benchmarks.gpu_kernels --no-kernels  DIR/nets/     (FCN-32s, FCN-8s, memory)
    default run  ... --default-run                              DIR/default-run/ (minifcn train --device cuda)
A stage that fails or runs out of time is recorded, and the next one runs. The parts'
reports are merged into DIR/gpu-<device>-<date>.{json,md}; a short table of the stages
is printed last and written to DIR/summary.md; DIR.tar.gz (or --tar) holds all of DIR.

The time limits share `--budget` seconds (default 295: under five minutes with Python's
start-up): each stage gets its cap or what is left, the default run everything left.
It runs its 4500 steps whole when they fit, and records images/s and the final mean IU;
cut short by the budget, it keeps images/s over the steps done (measured at its last
validation) and no mean IU, and the summary says so (`--budget 420` then lets it end).
No install step: python3 with CuPy, PyTorch, numba, SciPy, Pillow and pytest, the
project from its checkout (this module puts the checkout on PYTHONPATH for its stages).
tests/cuda/test_gpu_benchmark_report.py runs it whole on the emulated CuPy.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from . import common, gpu_kernels, gpu_net

ENV_SCRIPT = ("import platform, importlib.metadata as m\n"
              "names = ('numpy', 'cupy-cuda13x', 'cupy-cuda12x', 'cupy', 'numba', 'scipy', 'torch')\n"
              "def version(name):\n"
              "    try: return m.version(name)\n"
              "    except m.PackageNotFoundError: return None\n"
              "print('python', platform.python_version(), *(f'{n} {version(n)}' for n in names\n"
              "      if version(n)))\n")


class Stage:
    def __init__(self, name, argv, cap_s, summarize):
        self.name, self.argv, self.cap_s, self.summarize = name, argv, cap_s, summarize


def stages(out, python=(sys.executable,), repeat=10, net_repeat=5):
    """The stages in order: name, command, time cap (None: what the budget leaves).
    `python` is the interpreter's command line (the tests put the emulated CuPy in it)."""
    python = list(python)
    bench = python + ["-m", "benchmarks.gpu_kernels"]
    return [
        Stage("env", ["bash", "-c", "nvidia-smi --query-gpu=name,driver_version,memory.total,"
                      "clocks.max.sm --format=csv; " + f"{sys.executable} -c \"{ENV_SCRIPT}\""],
              30, summarize_env),
        Stage("gpu tests", [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"],
              90, lambda log, out: _last_line(log)),
        Stage("kernels", bench + ["--no-net", "--repeat", str(repeat), "--out", str(out / "kernels")],
              90, summarize_kernels),
        Stage("nets", bench + ["--no-kernels", "--net-repeat", str(net_repeat),
                               "--out", str(out / "nets")], 120, summarize_nets),
        Stage("default run", bench + ["--no-kernels", "--no-net", "--default-run", "--no-torch",
                                      "--out", str(out / "default-run")], None, summarize_default_run),
    ]


# ------------------------------------------------------------------- running a stage
def run_stage(argv, log_path, timeout_s, env=None):
    """Run argv with stdout and stderr into log_path; ("ok" | "exit N" | "timed out",
    seconds). On time-out the whole process group goes (pytest's and torch's children too)."""
    began = time.monotonic()
    with open(log_path, "w") as log:
        try:
            process = subprocess.Popen(argv, cwd=common.REPO_ROOT, stdout=log,
                                       stderr=subprocess.STDOUT, env=env, start_new_session=True)
        except OSError as error:
            log.write(f"could not start {argv[0]}: {error}\n")
            return f"not started ({type(error).__name__})", 0.0
        try:
            code = process.wait(timeout=max(timeout_s, 1))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            log.write(f"\n[gpu_all: stopped after {timeout_s:.0f} s]\n")
            return "timed out", time.monotonic() - began
    return ("ok" if code == 0 else f"exit {code}"), time.monotonic() - began


def _last_line(log):
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return lines[-1][:100] if lines else ""


def _report(directory):
    paths = sorted(Path(directory).glob("gpu-*.json"))
    return json.loads(paths[-1].read_text()) if paths else None


# ------------------------------------------------------------------------- summaries
def summarize_env(log, out):
    """The GPU (nvidia-smi's line under its header) and the versions (the last line)."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    gpu = lines[1] if len(lines) > 2 and lines[0].startswith("name,") else "no nvidia-smi"
    return f"{gpu}; {lines[-1] if lines else ''}"[:160]


def summarize_kernels(log, out):
    report = _report(out / "kernels")
    if not report:
        return "no report"
    copy, rows = report.get("copy_bandwidth_bytes_per_s"), report["kernels"]
    largest = max((row.get("batch", 1) for row in rows), default=1)
    timed = [row for row in rows if row["minifcn_s"] and row.get("batch", 1) == largest and copy]
    fractions = sorted(row["bytes"] / row["minifcn_s"] / copy for row in timed)
    compared = [row for row in rows if row["minifcn_s"] and row["torch_s"]]
    faster = sum(row["minifcn_s"] <= row["torch_s"] for row in compared)
    text = f"{len(rows)} rows"
    if fractions:
        text += (f"; batch {largest}: {fractions[0]:.0%}-{fractions[-1]:.0%} of copy, "
                 f"{sum(f >= 0.7 for f in fractions)}/{len(fractions)} at >= 70%")
    if compared:
        text += f"; <= 1.0x PyTorch: {faster}/{len(compared)}"
    return text + _failed(report)


def summarize_nets(log, out):
    """minifcn / PyTorch of each net's train step at each precision both sides ran."""
    report = _report(out / "nets")
    if not report:
        return "no report"
    ratios = [f"{row['model'].split()[0]} {row['precision'].split()[0]} "
              f"{row['minifcn_s'] / row['torch_s']:.2f}x"
              for row in report["net"]
              if row["pass"] == "train step" and row["minifcn_s"] and row["torch_s"]]
    return ("train step vs PyTorch: " + ", ".join(ratios) if ratios
            else "no minifcn/PyTorch pair") + _failed(report)


def summarize_default_run(log, out):
    report = _report(out / "default-run")
    run = (report or {}).get("default_run") or _progress(out)
    if not run or run.get("images_per_s") is None:
        return "no steps recorded"
    text = f"{run['images_per_s']:.1f} images/s over {run['steps_timed']} steps"
    if run.get("mean_iu") is not None:
        return text + f", final mean IU {run['mean_iu']:.3f}"
    return text + f" of {run['iterations']}, no final mean IU (run not finished)"


def _progress(out):
    path = gpu_net.default_run_dir(out / "default-run") / "default_run.json"
    return json.loads(path.read_text()) if path.exists() else None


def _failed(report):
    failed = sum(note.startswith("Failed") for note in report.get("notes", []))
    return f"; {failed} failed" if failed else ""


def merged_report(out):
    """The parts' reports as one; a default run cut short contributes its progress."""
    parts = [report for report in map(_report, (out / "kernels", out / "nets", out / "default-run"))
             if report]
    progress = _progress(out)
    if not parts:
        return None
    merged = gpu_kernels.merge_reports(parts)
    if merged.get("default_run") is None and progress:
        merged["default_run"] = progress
        merged["notes"].append(f"The default run was stopped at step {progress['steps_timed']} of "
                               f"{progress['iterations']} by gpu_all's time budget: its images/s "
                               "are over those steps, and it has no final mean IU.")
    return merged


# ---------------------------------------------------------------------------- main
def _gpu_ready():
    """Whether a GPU can run the stages (checked in a child process, so this one never
    initializes CUDA itself: each stage gets a fresh one)."""
    probe = "import cupy, sys; sys.exit(cupy.cuda.runtime.getDeviceCount() == 0)"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_all",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="a new (or empty) folder")
    parser.add_argument("--budget", type=float, default=295.0, help="seconds for all stages")
    parser.add_argument("--tar", type=Path, help="archive of the folder (default: DIR.tar.gz)")
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per kernel")
    parser.add_argument("--net-repeat", type=int, default=5, help="timed runs per whole-net pass")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if out.exists() and any(out.iterdir()):
        parser.exit(2, f"{parser.prog}: --out {out} is not empty; give a new folder\n")
    if not _gpu_ready():
        parser.exit(2, f"{parser.prog}: needs CuPy and an NVIDIA GPU, and this machine has "
                       "no usable one (python -c 'import cupy; cupy.cuda.runtime."
                       "getDeviceCount()' says why)\n")
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(common.REPO_ROOT), os.environ.get("PYTHONPATH")])))
    began, results = time.monotonic(), []
    for stage in stages(out, repeat=args.repeat, net_repeat=args.net_repeat):
        left = args.budget - (time.monotonic() - began)
        timeout = left if stage.cap_s is None else min(stage.cap_s, left)
        log_path = out / f"{stage.name.replace(' ', '-')}.log"
        print(f"[{time.monotonic() - began:5.0f} s] {stage.name} (limit {timeout:.0f} s)", flush=True)
        status, seconds = (run_stage(stage.argv, log_path, timeout, env) if timeout >= 1
                           else ("skipped: no time left", 0.0))
        try:
            result = stage.summarize(log_path.read_text() if log_path.exists() else "", out)
        except Exception as error:  # noqa: BLE001 (a summary must not cost the others)
            result = f"summary failed: {type(error).__name__}: {error}"
        results.append((stage.name, status, seconds, result))
    report = merged_report(out)
    if report:
        common.write_results("gpu", gpu_kernels.device_slug(report["device"]), report,
                             gpu_kernels.markdown_report(report), report["date"], out)
    summary = summary_markdown(results, time.monotonic() - began)
    (out / "summary.md").write_text(summary)
    tar_path = args.tar or out.with_name(out.name + ".tar.gz")
    with tarfile.open(tar_path, "w:gz") as archive:
        archive.add(out, arcname=out.name)
    print(f"\nwrote {out} and {tar_path}\n")
    print(summary)
    return 0 if all(status == "ok" for _, status, _, _ in results) else 1


def summary_markdown(results, total_s):
    table = common.markdown_table(["stage", "status", "seconds", "result"],
                                  [(name, status, f"{seconds:.0f}", result)
                                   for name, status, seconds, result in results], align="llrl")
    return f"# gpu_all: {total_s:.0f} s in all\n\n{table}\n"


if __name__ == "__main__":
    sys.exit(main())
