"""Ctrl-C and SIGTERM sent to real `python -m minifcn.cli train` processes at random
moments: however often a run is stopped and resumed, it ends bit for bit where an
uninterrupted run ends (weights, solver state, random state, metrics rows), and a stop
never leaves a damaged or temporary file behind."""
import os
import random
import signal
import subprocess
import sys
import time

import numpy
import pytest

from minifcn.train import load_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--widths", "3,4,4,6,6", "--fc-width", "6", "--image-size", "40", "--val-images", "2",
        "--no-progress"]
RUN = ["--iterations", "40", "--val-interval", "15"]  # validations at 15, 30 and 40
# what a stop may end with: 130/143 once train() has begun; before that (imports, the
# command's options), Python's own KeyboardInterrupt (130 through the command, -2 during
# imports) or death by SIGTERM (-15), with nothing written
STOPPED = {130, 143, -signal.SIGINT, -signal.SIGTERM}


def start(out, *options):
    environment = {**os.environ, "PYTHONPATH": ROOT, "PYTHONUNBUFFERED": "1",
                   "MINIFCN_CPU_KERNELS": "numpy"}  # the reference and every piece alike
    return subprocess.Popen([sys.executable, "-m", "minifcn.cli", "train", "--out", str(out),
                             *TINY, *RUN, *options], cwd=ROOT, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process):
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def run_with_stops(out, stops, rng, loop_seconds=1.5):
    """Start the run, stop it `stops` times at random moments with SIGINT, SIGTERM or two
    quick Ctrl-Cs, resuming after each; then let it finish. A moment in the loop is drawn
    from the first `loop_seconds` after the banner (the uninterrupted run's loop time, so
    the stops land in the loop however fast this machine is). Returns the exit statuses,
    and how many stops saved a checkpoint on the way out."""
    statuses, saved = [], 0
    while True:
        resume = ["--resume"] if (out / "checkpoint.npz").exists() else []
        process = start(out, *resume)
        if len(statuses) < stops:
            if rng.random() < 0.2:      # any moment, even during start-up
                time.sleep(rng.uniform(0.0, 1.0))
            else:                       # a moment in the training loop, mostly
                process.stdout.readline()  # the banner, printed as training begins
                time.sleep(rng.uniform(0.0, loop_seconds))
            kind = rng.choice(["int", "term", "int-int", "term-int"])
            first = signal.SIGTERM if kind.startswith("term") else signal.SIGINT
            process.send_signal(first)
            if kind.endswith("-int"):
                time.sleep(rng.uniform(0.0, 0.3))
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
        status, printed, error = finish(process)
        statuses.append(status)
        left = [name for name in os.listdir(out) if ".tmp" in name] if out.exists() else []
        assert not left or status < 0, left  # only a death by SIGTERM during start-up may
        if status == 0:
            return statuses, saved
        assert status in STOPPED, (status, printed, error)
        if status in (130, 143) and "holds" in printed:
            assert f"--out {out} --resume" in printed
            load_checkpoint(out / "checkpoint.npz")  # whole, and finite
            saved += 1
        assert len(statuses) <= stops + 1, statuses


def assert_same_run(first, second):
    a, b = (load_checkpoint(directory / "checkpoint.npz") for directory in (first, second))
    for part in ("params", "solver"):
        assert a[part].keys() == b[part].keys()
        for name in a[part]:
            numpy.testing.assert_array_equal(a[part][name], b[part][name], err_msg=name)
    assert (a["iteration"], a["rng_state"], a["loss"]) == (b["iteration"], b["rng_state"], b["loss"])
    for log in ("metrics.csv", "log.jsonl"):
        assert (first / log).read_text() == (second / log).read_text(), log


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    status, printed, error = finish(start(out))
    assert status == 0, error
    return out


@pytest.fixture(scope="module")
def loop_seconds(tmp_path_factory):
    """How long the run's steps take on this machine, now: its time from the banner to
    its end, less a share for the last validation and the pictures (a stop that lands
    after the last step rightly ends with status 0 and nothing to resume)."""
    process = start(tmp_path_factory.mktemp("timed"))
    process.stdout.readline()
    began = time.monotonic()
    status, _, error = finish(process)
    assert status == 0, error
    return 0.6 * (time.monotonic() - began)


def test_sigterm_saves_the_steps_done_and_exits_143(tmp_path):
    # SIGTERM, which schedulers send before they kill, used to end the run with nothing
    # saved. Sent once the first checkpoint exists, so the loop is certainly running.
    out = tmp_path / "run"
    process = start(out, "--iterations", "100000")
    deadline = time.monotonic() + 300
    while not (out / "log.jsonl").exists():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    status, printed, error = finish(process)
    assert status == 143, error
    saved = load_checkpoint(out / "checkpoint.npz")
    assert saved["iteration"] >= 5
    assert f"stopped by SIGTERM at iteration {saved['iteration']}" in printed
    assert f"holds {saved['iteration']} steps" in printed and "--resume" in printed


def test_random_stops_and_resumes_end_as_an_uninterrupted_run(tmp_path, uninterrupted):
    run_with_stops(tmp_path / "run", 3, random.Random(14))
    assert_same_run(uninterrupted, tmp_path / "run")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_many_random_stops_and_resumes_end_as_an_uninterrupted_run(tmp_path, uninterrupted, seed,
                                                                  loop_seconds):
    statuses, saved = run_with_stops(tmp_path / "run", 10, random.Random(seed), loop_seconds)
    assert saved >= 1, statuses  # (how many stops land in the loop depends on the timing)
    assert_same_run(uninterrupted, tmp_path / "run")
