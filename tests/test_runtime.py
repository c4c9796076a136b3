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
    assert first.stderr.count("compiling kernels (first run only)") == 1
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                           check=False)
    assert again.stdout.strip() == "9.0" and "compiling" not in again.stderr
