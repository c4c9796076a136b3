"""Helpers every benchmark shares: timing, statistics, a description of the machine,
subprocess runs with their peak memory, markdown tables and the results files.

Nothing here knows about a particular op or device: a GPU benchmark passes a `sync`
function (e.g. cupy's synchronize) to `time_calls`, a CPU one passes none.

    times = time_calls(fn, repeat=5, warmup=1)      # seconds of each timed call
    summary(times)                                   # {"median_s", "min_s", "max_s", "runs"}
    run_child([...])                                 # a child's JSON answer + its peak RSS
    markdown_table(["op", "ms"], rows)               # a GitHub markdown table
    publish("cpu", machine_slug(), report, markdown)  # results/cpu-<machine>-<date>.*, printed
"""
import datetime
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------ timing
def time_calls(function, repeat=5, warmup=1, sync=None):
    """Wall-clock seconds of `repeat` calls of `function()`, after `warmup` untimed ones.
    `sync()`, if given, runs before each clock reading (asynchronous devices)."""
    for _ in range(warmup):
        function()
    if sync:
        sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        if sync:
            sync()
        times.append(time.perf_counter() - start)
    return times


def summary(times):
    """Median, min and max of a list of seconds (the median is what tables show)."""
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "runs": len(times)}


def peak_rss_bytes():
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def load_average():
    """The 1-minute load average (other work on the machine skews timings)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def wait_for_quiet(max_load=0.5, timeout_s=0.0, poll_s=5.0):
    """Wait up to timeout_s for the 1-minute load average to fall to max_load; returns
    the load average when it stopped waiting."""
    deadline = time.monotonic() + timeout_s
    while True:
        load = load_average()
        if load is None or load <= max_load or time.monotonic() >= deadline:
            return load
        time.sleep(poll_s)


# --------------------------------------------------------------------- child processes
def add_default_run_options(parser, steps):
    """--steps (default `steps`), --repeat and --size: the timed blocks of default-run
    steps that benchmarks.contention and benchmarks.distributed take."""
    from minifcn.cli import positive_int
    parser.add_argument("--steps", type=positive_int, default=steps,
                        help=f"training steps per timed block (default {steps})")
    parser.add_argument("--repeat", type=positive_int, default=3,
                        help="timed blocks per case, median reported (default 3)")
    parser.add_argument("--size", type=positive_int, default=160,
                        help="side of the built-in scenes (default 160, the default run's)")


def run_child(argv, timeout_s=None, env=None):
    """Run `python argv...` from the repository root; the child prints one JSON object
    as its last stdout line. Returns that object; raises with the child's stderr if it
    fails. Each configuration gets a fresh process, so its peak RSS is its own."""
    completed = subprocess.run([sys.executable, *argv], cwd=REPO_ROOT, capture_output=True,
                               text=True, timeout=timeout_s, env=env)
    if completed.returncode != 0:
        raise RuntimeError(f"benchmark child {' '.join(argv)} failed "
                           f"(exit {completed.returncode}):\n{completed.stderr[-3000:]}")
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1])


def child_reply(payload):
    """The child side of run_child: print the answer as the last stdout line."""
    print(json.dumps(payload), flush=True)


# --------------------------------------------------------------------- the machine
def cpu_model():
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def total_memory_bytes():
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def numpy_blas():
    """NumPy's BLAS library, its build configuration and, for OpenBLAS, the kernel it
    picked at run time for this CPU (the build string names only the baseline)."""
    import numpy
    try:
        blas = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        text = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # older NumPy: no dict mode
        return "unknown"
    core = openblas_core()
    return text + (f", {core} kernels" if core else "")


def openblas_core():
    """The CPU kernel set the loaded OpenBLAS chose (e.g. "SkylakeX"), or None."""
    import ctypes
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return None
    for path in paths:
        library = ctypes.CDLL(path)
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                function = getattr(library, f"{prefix}_get_corename{suffix}", None)
                if function is not None:
                    function.restype = ctypes.c_char_p
                    return function().decode()
    return None


def package_versions(names):
    """{name: version or None} without importing packages that are not installed."""
    from importlib import metadata
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def describe_machine(extra=None):
    """What the numbers were measured on: CPU, cores, memory, Python and the packages."""
    machine = {"cpu": cpu_model(), "cores": usable_cores(),
               "memory_gb": round((total_memory_bytes() or 0) / 2**30, 1),
               "python": platform.python_version(), "platform": platform.platform(),
               "numpy_blas": numpy_blas(),
               "packages": package_versions(["numpy", "numba", "scipy", "torch", "cupy"])}
    machine.update(extra or {})
    return machine


def machine_sentence(machine):
    """"Machine: <cpu>, <n> cores, <m> GiB; NumPy BLAS: <blas>", the first line of every
    CPU report."""
    return (f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GiB; "
            f"NumPy BLAS: {machine['numpy_blas']}")


def machine_slug(machine=None):
    """A file-safe name for the machine: e.g. "amd-epyc-2c"."""
    machine = machine or describe_machine()
    slug = re.sub(r"[^a-z0-9]+", "-", machine["cpu"].lower()).strip("-") or "cpu"
    return f"{slug}-{machine['cores']}c"


# -------------------------------------------------------------------- tables and files
def markdown_table(headers, rows, align=None):
    """A markdown table; `align` a string of "l"/"r" per column (default: first column
    left, the rest right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def format_seconds(seconds):
    """A duration with a unit that keeps three significant digits."""
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} us"


def format_ratio(numerator, denominator):
    if numerator is None or not denominator:
        return "-"
    return f"{numerator / denominator:.2f}x"


def result_paths(prefix, machine, date=None, directory=RESULTS_DIR):
    """<directory>/<prefix>-<machine>-<date>.json and .md."""
    date = date or datetime.date.today().isoformat()
    stem = f"{prefix}-{machine}-{date}"  # may hold dots ("nvcc-13.0"): no with_suffix
    return Path(directory) / f"{stem}.json", Path(directory) / f"{stem}.md"


def write_results(prefix, machine, report, markdown, date=None, directory=RESULTS_DIR):
    """Write the report as JSON and its markdown rendering; returns the two paths."""
    json_path, md_path = result_paths(prefix, machine, date, directory)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    md_path.write_text(markdown if markdown.endswith("\n") else markdown + "\n")
    return json_path, md_path


def publish(prefix, machine, report, markdown, date=None, directory=RESULTS_DIR):
    """write_results, then print the markdown and where both files went."""
    paths = write_results(prefix, machine, report, markdown, date, directory)
    print(markdown)
    print("wrote", *paths)
    return paths
