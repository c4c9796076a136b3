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
   So a training run chooses its count when it starts: the cores other processes
   leave free, at least one (`blas_threads_for_run`: Linux's /proc/stat, less this
   process's own CPU time). It keeps that count for its whole life, and --resume
   restores it from the checkpoint, because the count is part of what a run computes:
   OpenBLAS splits some GEMM shapes differently at another count, and their results
   differ in the last bits (Winograd's 64 x 529 x 64 float32 products in the default
   run's weight gradients, at 1 and 2 threads), so a run that changed
   its count with the load would not repeat bit for bit, resumed or not. The price: a
   run that starts alone keeps every core when another process starts later; start
   the second one with OPENBLAS_NUM_THREADS=1 beside it, or both with it. numba's pool
   keeps every core: its threads sleep between loops, and the benchmark below shows
   it costs nothing beside a busy process. `minifcn bench contention` measures the
   default run alone and beside a busy process with this choice, with one BLAS thread,
   and with BLAS on every core. Setting OPENBLAS_NUM_THREADS, OMP_NUM_THREADS or
   MKL_NUM_THREADS keeps BLAS at that count instead; MINIFCN_THREADS sets numba's
   count (default: the cores this process may run on).
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
    """BLAS threads for computing with a net where the load is not read (eval, predict,
    and a training run on a system without /proc/stat): 1 for the narrow nets (their
    GEMMs are too short for more threads to pay for waiting on each other when a core
    is busy, see the module docstring), None (all of numba's threads) for the
    VGG16-wide ones."""
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


class LoadReading:
    """Other processes' load over the time since it was made (`others_busy()`), from
    two readings of OtherProcessesLoad: one now, one when asked, at least `least`
    seconds later (it sleeps the rest if asked sooner)."""

    def __init__(self, load=None, least=0.25, clock=time.monotonic, sleep=time.sleep):
        self.load = OtherProcessesLoad(clock=clock) if load is None else load
        self.least, self.clock, self.sleep = least, clock, sleep
        self.load.read()
        self.began = clock()

    def others_busy(self):
        self.sleep(max(0.0, self.least - (self.clock() - self.began)))
        return self.load.read()


def blas_threads_for_run(reading, recorded=None, fallback=None):
    """Set BLAS's thread count for a training run, once, and return it: a resumed run's
    `recorded` count (at most the usable cores); for a new run the cores other
    processes left free over `reading` (a LoadReading begun before the run's set-up),
    or `fallback` (blas_threads_for) where the load cannot be read. Returns None, and
    leaves BLAS as it is, where a BLAS environment variable fixes the count. The module
    docstring says why the count is chosen once and kept."""
    if any(name in os.environ for name in BLAS_ENVIRONMENT):
        return None
    cores = usable_cores()
    if recorded is not None:
        count = min(int(recorded), cores)
    else:
        others = reading.others_busy()
        count = (fallback or cores) if others is None else blas_threads_beside(cores, others)
    _configure_blas(count)
    return count


def announce_compiling(stream=None):
    """Print "compiling kernels (kept in a cache for later runs)" to `stream` (default
    stderr) the first time numba compiles a kernel in this process: a fresh machine
    spends tens of seconds on it at the first step, which would otherwise pass in
    silence; a later run compiles again only kernels it is the first to need (another
    net's shapes or dtypes). Loading compiled kernels from numba's disk cache prints
    nothing, and neither does
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
                tqdm.write("compiling kernels (kept in a cache for later runs)...", file=stream or sys.stderr)

        def on_end(self, _event):
            pass

    _announcer = CompileAnnouncer()
    event.register("numba:compile", _announcer)


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"configure_process: {name} must be a positive int, not {value!r}")
    return value
