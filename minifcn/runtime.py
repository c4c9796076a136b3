"""Process-wide settings minifcn's CPU speed depends on, made by one explicit call.

`import minifcn` changes nothing outside minifcn. A program that trains or benchmarks
calls `configure_process()` once (the `minifcn` command, `train.train` and benchmarks/
do); a library that embeds minifcn may leave it out and keep its own settings. It makes
three settings, each for a reason measured on the 2-core machine of benchmarks/results:

1. Memory. An FCN's activations are arrays of tens or hundreds of MB. glibc's malloc
   maps each such array from the system and unmaps it when freed, so every training step
   pays for the kernel zeroing all of them afresh. `keep_freed_memory()` (backend.py)
   has malloc serve them from its heap and keep freed memory for the next step, as the
   caching allocators of GPU frameworks do (`minifcn bench cpu_nets --glibc-malloc`,
   results/keep-freed-memory/). MINIFCN_KEEP_FREED_MEMORY=0 leaves malloc as it is.

2. numba's thread pool. The parallel loops (prange) of minifcn/cpu run on numba's pool,
   the GEMMs between them on BLAS's. numba's default pool (OpenMP) busy-waits after
   every parallel loop on the very cores the next GEMM's threads need (a small FCN's
   step ran many times slower than on the NumPy kernels). The "workqueue" pool puts its
   threads to sleep between loops, so it is chosen unless NUMBA_THREADING_LAYER says
   otherwise. numba picks its pool once, at its first parallel loop or thread count; if
   that has happened already, the pool it picked stays (`configure_process` says which).

3. How many threads each pool runs. Both pools fork and join: a parallel loop or a GEMM
   is split into one piece per thread and ends when the last piece does. When another
   program keeps a core busy, one of those pieces waits for the scheduler, and
   OpenBLAS's threads spin while they wait, taking the time the late piece needs. For
   GEMMs that take milliseconds (the small nets of the default run, hundreds of them a
   step) this turns a step of a fraction of a second into seconds; one BLAS thread
   avoids it. On an idle machine, though, every core is faster, for the small net too.
   So training does not fix the count: `BlasGovernor` reads, between steps, how many of
   this process's cores other processes kept busy (Linux's /proc/stat, less this
   process's own CPU time), and gives BLAS the cores they leave free, at least one. The
   count changes no bit of a result: OpenBLAS splits a GEMM's output between its
   threads, never a sum (tests/test_runtime.py), so a resumed run still repeats the
   uninterrupted one exactly. numba's pool keeps every core: its threads sleep between
   loops, and the benchmark below shows it costs nothing beside a busy process.
   `train.train` starts with `blas_threads_for(small net)` (one thread for the small
   net, every core for the VGG16-wide ones) until the governor's first reading.
   `minifcn bench contention` measures the default run alone and beside a busy process
   with this policy, with one BLAS thread fixed, and with BLAS on every core. Setting
   OPENBLAS_NUM_THREADS, OMP_NUM_THREADS or MKL_NUM_THREADS keeps BLAS at that count
   instead (no governor); MINIFCN_THREADS sets numba's count (default: the cores this
   process may run on).
"""
import os
import sys
import time

BLAS_ENVIRONMENT = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS")
_announcer = None


def usable_cores():
    """The CPUs this process may run on (its affinity mask), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_threads():
    """MINIFCN_THREADS if set (a positive int), else usable_cores()."""
    text = os.environ.get("MINIFCN_THREADS")
    if text is None:
        return usable_cores()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"MINIFCN_THREADS must be a positive integer, not {text!r}")
    return int(text)


def blas_threads_for(small_net):
    """BLAS threads a training run starts with, until BlasGovernor's first reading: 1
    for the narrow nets (their GEMMs are too short for more threads to pay for waiting
    on each other when a core is busy, see the module docstring), None (all of numba's
    threads) for the VGG16-wide ones."""
    return 1 if small_net else None


def configure_process(threads=None, blas_threads=None):
    """Make the settings the module docstring explains, for the whole process.

    threads: numba's parallel loops (default: default_threads()); blas_threads: BLAS's
    GEMMs (default: `threads`), unless a BLAS environment variable fixes it. Calling it
    again changes the thread counts; the memory setting and numba's pool are made once.
    Returns what holds now: {"keep_freed_memory", "threading_layer", "threads",
    "blas_threads"} (threading_layer None if numba is not installed; blas_threads None
    if no BLAS library is found, or the environment's count when that is set).
    """
    from . import backend
    threads = default_threads() if threads is None else _positive("threads", threads)
    blas_threads = threads if blas_threads is None else _positive("blas_threads", blas_threads)
    kept = os.environ.get("MINIFCN_KEEP_FREED_MEMORY", "1") != "0" and backend.keep_freed_memory()
    return {"keep_freed_memory": kept, "threading_layer": _configure_numba(threads),
            "threads": threads, "blas_threads": _configure_blas(blas_threads)}


def _configure_numba(threads):
    try:
        import numba
    except ImportError:
        return None
    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "workqueue"
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # starts the pool
    return numba.threading_layer()


def _configure_blas(threads):
    from threadpoolctl import threadpool_info, threadpool_limits
    if not any(name in os.environ for name in BLAS_ENVIRONMENT):
        threadpool_limits(limits=threads, user_api="blas")
    counts = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return min(counts) if counts else None


def blas_threads_beside(cores, others_busy):
    """BLAS threads for `cores` usable cores when other processes keep `others_busy` of
    them busy (a float, in cores): the free ones, rounded to nearest, at least 1."""
    return max(1, min(cores, int(cores - others_busy + 0.5)))


class OtherProcessesLoad:
    """How many of this process's cores other processes kept busy since the last
    reading: the busy ticks of those CPUs in /proc/stat, less this process's own CPU
    time, over the wall time between. `read()` is None where /proc/stat is missing
    (macOS, Windows) and at the first call."""

    def __init__(self, stat_path="/proc/stat", cpus=None, clock=time.monotonic,
                 own_seconds=time.process_time):
        self.stat_path, self.clock, self.own_seconds = stat_path, clock, own_seconds
        if cpus is None:
            cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        self.cpus = None if cpus is None else {f"cpu{cpu}" for cpu in cpus}
        self.tick_seconds = 1 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
        self.last = None

    def _busy_seconds(self):
        """Seconds the CPUs have spent busy since boot: user, nice, system, irq, softirq
        and steal (a hypervisor's other guests are other processes too)."""
        busy = 0
        with open(self.stat_path) as stat:
            for line in stat:
                name, *fields = line.split()
                if name.startswith("cpu") and name != "cpu" and (
                        self.cpus is None or name in self.cpus):
                    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
                        int, (fields + ["0"] * 8)[:8])
                    busy += user + nice + system + irq + softirq + steal
        return busy * self.tick_seconds

    def read(self):
        try:
            now = (self.clock(), self._busy_seconds(), self.own_seconds())
        except (OSError, ValueError):
            return None
        last, self.last = self.last, now
        if last is None or now[0] <= last[0]:
            return None
        return max(0.0, ((now[1] - last[1]) - (now[2] - last[2])) / (now[0] - last[0]))


class BlasGovernor:
    """Keeps BLAS's threads on the cores other processes leave free (the module
    docstring says why). `tick()` goes between training steps, never inside one: BLAS's
    count must not change under a running GEMM. It reads the load at most every
    `interval` seconds (a reading costs tens of microseconds) and calls
    `set_threads(count)` only when the count changes."""

    def __init__(self, cores, threads, load=None, set_threads=None, clock=time.monotonic,
                 interval=2.0, first_interval=0.25):
        self.cores, self.threads = cores, threads
        self.load = OtherProcessesLoad(clock=clock) if load is None else load
        self.set_threads = _configure_blas if set_threads is None else set_threads
        self.clock, self.interval, self.first_interval = clock, interval, first_interval
        self.load.read()  # the first reading: the next one measures from here
        self.since, self.decided = clock(), False
        self.changes = []  # (others busy, new count): what it did, for logs and tests

    def tick(self):
        """Re-decide if the interval has passed; returns BLAS's thread count."""
        waited = self.clock() - self.since
        if waited < (self.interval if self.decided else self.first_interval):
            return self.threads
        others = self.load.read()
        self.since, self.decided = self.clock(), True
        if others is not None:
            wanted = blas_threads_beside(self.cores, others)
            if wanted != self.threads:
                self.set_threads(wanted)
                self.threads = wanted
                self.changes.append((round(others, 2), wanted))
        return self.threads


class FixedBlas:
    """No governor: BLAS's count stays as set (the environment fixed it, or ranks
    share the machine and split it between them, distributed.py)."""

    def tick(self):
        return None


def training_blas_governor(threads):
    """The governor `train.train` ticks: a BlasGovernor over this process's cores,
    starting from `threads` (what configure_process set), unless a BLAS environment
    variable fixes the count or no BLAS library is loaded (FixedBlas)."""
    if threads is None or any(name in os.environ for name in BLAS_ENVIRONMENT):
        return FixedBlas()
    return BlasGovernor(usable_cores(), threads)


def announce_compiling(stream=None):
    """Print "compiling kernels (first run only)" to `stream` (default stderr) the first
    time numba compiles a kernel in this process: a fresh machine spends tens of seconds
    on it at the first step, which would otherwise pass in silence. Loading compiled
    kernels from numba's disk cache (every later run) prints nothing, and neither does
    compiling a function numba does not cache (a small helper called from Python, which
    compiles in every run, in milliseconds). Safe to call more than once."""
    global _announcer
    try:
        from numba.core import event
    except ImportError:
        return
    if _announcer is not None:
        return

    class CompileAnnouncer(event.Listener):
        said = False

        def on_start(self, compiling):
            cached = type(compiling.data["dispatcher"]._cache).__name__ != "NullCache"
            if cached and not self.said:
                self.said = True
                from tqdm import tqdm

                # tqdm.write: on a line of its own, above a progress bar if there is one
                tqdm.write("compiling kernels (first run only)...", file=stream or sys.stderr)

        def on_end(self, _event):
            pass

    _announcer = CompileAnnouncer()
    event.register("numba:compile", _announcer)


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"configure_process: {name} must be a positive int, not {value!r}")
    return value
