"""runtime.configure_process: `import minifcn` changes no process setting; the explicit
call keeps freed memory in malloc's heap, picks numba's workqueue pool and sizes the
numba and BLAS pools. Each check runs in a fresh interpreter, since these settings
belong to the whole process."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def has_mallinfo2():
    import ctypes
    try:
        return hasattr(ctypes.CDLL(None), "mallinfo2")
    except OSError:
        return False


glibc_only = pytest.mark.skipif(not sys.platform.startswith("linux") or not has_mallinfo2(),
                                reason="glibc's malloc (2.33 or later) only")

# What the process looks like: malloc's behaviour around a 64 MB array (MB mapped on its
# own while it lives, MB of heap after it is freed: glibc >= 2.33's mallinfo2), numba's
# configured pool and thread count, and BLAS's thread counts.
STATE = """
import ctypes, json, numpy, numba
from threadpoolctl import threadpool_info

class MallInfo2(ctypes.Structure):  # malloc.h
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

def state():
    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = MallInfo2
    array = numpy.ones(2**24, numpy.float32)
    mapped = mallinfo2().hblkhd >> 20
    del array
    return {"mapped_mb": mapped, "heap_after_mb": mallinfo2().arena >> 20,
            "layer": numba.config.THREADING_LAYER, "numba_threads": numba.get_num_threads(),
            "blas": [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]}
"""


def run(code, **env):
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                "NUMBA_THREADING_LAYER", "MINIFCN_THREADS",
                                "MINIFCN_KEEP_FREED_MEMORY")}
    environment.update(env, PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-c", STATE + textwrap.dedent(code)],
                            capture_output=True, text=True, env=environment, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@glibc_only
def test_import_changes_no_process_setting():
    untouched = run("print(json.dumps(state()))")
    after_import = run("""
        import minifcn, minifcn.cpu, minifcn.train, minifcn.cli
        from minifcn import backend
        assert backend.cpu_kernels() == "numba"
        print(json.dumps(state()))""", MINIFCN_CPU_KERNELS="auto")
    for got in (untouched, after_import):  # glibc's default: mapped alone, unmapped when freed
        assert got["mapped_mb"] >= 64 and got["heap_after_mb"] < 64
    for key in ("layer", "numba_threads", "blas"):
        assert after_import[key] == untouched[key], key
    assert untouched["layer"] == "default"


@glibc_only
def test_configure_process_keeps_freed_memory_and_sizes_both_pools():
    code = """
        import minifcn
        settings = minifcn.configure_process(threads=1, blas_threads=1)
        print(json.dumps(dict(state(), settings=settings, running=numba.threading_layer())))"""
    got = run(code)
    assert got["mapped_mb"] < 64 and got["heap_after_mb"] >= 64  # from the heap, and kept
    assert got["layer"] == got["running"] == "workqueue"
    assert got["numba_threads"] == 1 and got["blas"] == [1]
    assert got["settings"] == {"keep_freed_memory": True, "threading_layer": "workqueue",
                               "threads": 1, "blas_threads": 1}
    off = run(code, MINIFCN_KEEP_FREED_MEMORY="0")  # malloc left as it is
    assert off["mapped_mb"] >= 64 and off["heap_after_mb"] < 64
    assert off["settings"]["keep_freed_memory"] is False


def test_blas_threads_default_to_threads_and_the_environment_wins():
    cores = len(os.sched_getaffinity(0))
    code = """
        import minifcn
        print(json.dumps(minifcn.configure_process()))"""
    got = run(code)
    assert got["threads"] == got["blas_threads"] == cores
    assert run(code, MINIFCN_THREADS="1")["threads"] == 1
    # a BLAS count the user set stays, whatever is asked for
    code = """
        import minifcn
        print(json.dumps(minifcn.configure_process(threads=2, blas_threads=2)))"""
    assert run(code, OPENBLAS_NUM_THREADS="1")["blas_threads"] == 1


def test_training_asks_for_one_blas_thread_for_the_small_net_only():
    from minifcn.runtime import blas_threads_for
    from minifcn.train import TrainConfig
    assert blas_threads_for(TrainConfig().is_small()) == 1           # the default run
    assert blas_threads_for(TrainConfig(data="voc:x").is_small()) is None  # the paper's nets


def test_bad_thread_counts_are_refused():
    from minifcn.runtime import configure_process, default_threads
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="threads must be a positive int"):
            configure_process(threads=bad)
    os.environ["MINIFCN_THREADS"] = "two"
    try:
        with pytest.raises(ValueError, match="MINIFCN_THREADS must be a positive integer, not 'two'"):
            default_threads()
    finally:
        del os.environ["MINIFCN_THREADS"]


COMPILE = """
import sys
sys.path.insert(0, {directory!r})
from minifcn.runtime import announce_compiling
announce_compiling(); announce_compiling()
import kernel
print(kernel.uncached(kernel.twice(3.0) + kernel.thrice(1.0)))
"""


def test_compiling_is_announced_once_and_not_when_cached(tmp_path):
    (tmp_path / "kernel.py").write_text(
        "import numba\n\n@numba.njit(cache=True)\ndef twice(x):\n    return 2 * x\n\n"
        "@numba.njit(cache=True)\ndef thrice(x):\n    return 3 * x\n\n"
        "@numba.njit\ndef uncached(x):\n    return x\n")
    env = {**os.environ, "PYTHONPATH": ROOT, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    code = COMPILE.format(directory=str(tmp_path))
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                           check=False)
    assert first.stdout.strip() == "9.0"
    assert first.stderr.count("compiling kernels (kept in a cache for later runs)") == 1
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                           check=False)
    assert again.stdout.strip() == "9.0" and "compiling" not in again.stderr


# ------------------------------------------------------------- BLAS threads beside others
def test_blas_gets_the_cores_other_processes_leave_free():
    from minifcn.runtime import blas_threads_beside
    assert [blas_threads_beside(2, busy) for busy in (0.0, 0.3, 0.5, 0.6, 1.0, 1.9, 5.0)] == \
        [2, 2, 2, 1, 1, 1, 1]
    assert [blas_threads_beside(8, busy) for busy in (0.0, 2.4, 2.6, 7.0, 8.0)] == [8, 6, 5, 1, 1]


def write_stat(path, per_cpu_busy, idle=1000):
    """A /proc/stat in the kernel's format: the all-CPUs line, then one line per CPU;
    each CPU's busy ticks split over user, nice, system, irq, softirq and steal."""
    lines = [f"cpu  {sum(per_cpu_busy)} 0 0 {idle * len(per_cpu_busy)} 0 0 0 0 0 0"]
    for cpu, busy in enumerate(per_cpu_busy):
        user, rest = busy // 2, busy - busy // 2
        lines.append(f"cpu{cpu} {user} {rest // 5} {rest // 5} {idle} 7 {rest // 5} {rest // 5} "
                     f"{rest - 4 * (rest // 5)} 0 0")
    lines += ["intr 12345 0 0", "ctxt 999", "btime 1700000000", "processes 4242"]
    path.write_text("\n".join(lines) + "\n")


def test_other_processes_load_is_the_busy_time_of_our_cpus_less_our_own(tmp_path):
    from minifcn.runtime import OtherProcessesLoad
    stat, clock, own = tmp_path / "stat", [100.0], [5.0]
    write_stat(stat, [1000, 2000, 3000])
    load = OtherProcessesLoad(stat_path=str(stat), cpus={0, 2}, clock=lambda: clock[0],
                              own_seconds=lambda: own[0])
    hz = 1 / load.tick_seconds
    assert load.read() is None  # nothing to compare with yet
    # 2 s later: CPUs 0 and 2 were busy 1.5 s and 2 s (CPU 1, not ours, 2 s), and this
    # process ran 1.2 s of it: others kept 2.3 s busy over 2 s, 1.15 cores.
    clock[0], own[0] = 102.0, 6.2
    write_stat(stat, [1000 + int(1.5 * hz), 2000 + int(2 * hz), 3000 + int(2 * hz)])
    assert load.read() == pytest.approx(1.15)
    clock[0], own[0] = 103.0, 7.2  # then only this process ran: nobody else, and never < 0
    assert load.read() == pytest.approx(0.0)
    assert OtherProcessesLoad(stat_path=str(tmp_path / "missing")).read() is None


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux's /proc/stat only")
def test_a_spinning_process_is_seen_as_busy():
    from minifcn.runtime import OtherProcessesLoad
    import time
    spinner = subprocess.Popen([sys.executable, "-c", "while True:\n    pass\n"])
    try:
        time.sleep(0.3)  # started
        load = OtherProcessesLoad()
        load.read()
        time.sleep(1.0)  # this process sleeps; the spinner has a core to itself
        assert load.read() >= 0.7
    finally:
        spinner.kill()
        spinner.wait()


class FakeLoad:
    def __init__(self, readings):
        self.readings = list(readings)

    def read(self):
        return self.readings.pop(0)


def test_a_load_reading_waits_for_its_least_interval():
    from minifcn.runtime import LoadReading
    clock, slept = [10.0], []
    reading = LoadReading(FakeLoad([None, 0.8]), least=0.25, clock=lambda: clock[0],
                          sleep=slept.append)
    clock[0] = 10.1  # asked after 0.1 s: sleeps the other 0.15 s
    assert reading.others_busy() == 0.8 and slept == [pytest.approx(0.15)]


def blas_counts_set(monkeypatch):
    from minifcn import runtime
    counts = []
    monkeypatch.setattr(runtime, "_configure_blas", counts.append)
    for name in runtime.BLAS_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    return counts


def test_a_run_takes_the_free_cores_or_its_recorded_count(monkeypatch):
    from minifcn import runtime
    counts = blas_counts_set(monkeypatch)
    monkeypatch.setattr(runtime, "usable_cores", lambda: 4)

    class Reading:
        def __init__(self, busy):
            self.busy = busy

        def others_busy(self):
            return self.busy

    assert runtime.blas_threads_for_run(Reading(0.2)) == 4      # idle: every core
    assert runtime.blas_threads_for_run(Reading(1.0)) == 3      # one core busy
    assert runtime.blas_threads_for_run(Reading(None), fallback=1) == 1  # no /proc/stat
    assert runtime.blas_threads_for_run(Reading(None)) == 4
    assert runtime.blas_threads_for_run(Reading(3.0), recorded=2) == 2  # resumed: its own
    assert runtime.blas_threads_for_run(Reading(0.0), recorded=8) == 4  # on fewer cores
    assert counts == [4, 3, 1, 4, 2, 4]
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")  # the user's count stays
    assert runtime.blas_threads_for_run(Reading(0.0)) is None and len(counts) == 6


def test_a_run_keeps_its_blas_count_in_its_checkpoints_and_resume_restores_it(
        tmp_path, monkeypatch):
    from minifcn import checkpoint, runtime, train
    from tests.test_train import tiny_config
    counts = blas_counts_set(monkeypatch)
    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    monkeypatch.setattr(runtime.LoadReading, "others_busy", lambda self: 0.0)  # idle
    config = tiny_config(tmp_path / "run", iterations=2, val_interval=1)
    train.train(config, log=lambda *a: None)
    saved = checkpoint.load_checkpoint(str(tmp_path / "run" / "checkpoint.npz"))
    assert int(saved["meta"]["meta.blas_threads"]) == 2 and counts[-1] == 2
    # resumed on a busy machine, it computes on with the count it began with
    monkeypatch.setattr(runtime.LoadReading, "others_busy", lambda self: 1.0)
    train.train(tiny_config(tmp_path / "run", iterations=3, val_interval=1), resume=True,
                log=lambda *a: None)
    assert counts[-1] == 2
    # a new run from its weights chooses afresh (the count is the run's, not the weights')
    train.train(tiny_config(tmp_path / "next", iterations=1, val_interval=1,
                            init_from=str(tmp_path / "run" / "checkpoint.npz")),
                log=lambda *a: None)
    assert counts[-1] == 1
    assert int(checkpoint.load_checkpoint(str(tmp_path / "next" / "checkpoint.npz"))[
        "meta"]["meta.blas_threads"]) == 1
