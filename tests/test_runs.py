"""Whole runs of `minifcn train` that must never lose work: a run directory is never
clobbered, resume restores the run's own settings, a diverged run keeps a good
checkpoint, a full disk leaves nothing half-written, bad data is found before the first
step. (Real processes and signals: tests/test_runs_signals.py.)"""
import errno
import os
import shutil
import subprocess
import sys

import numpy
import pytest
from PIL import Image

from minifcn import runlog
from minifcn.cli import main
from minifcn.train import load_checkpoint

from data.writers import make_voc, write_palette_png, write_picture

TINY = ["--widths", "3,4,4,6,6", "--fc-width", "6", "--image-size", "40", "--val-images", "2",
        "--no-progress"]


def train(out, *options):
    return main(["train", "--out", str(out), *TINY, *options])


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory):
    """Uninterrupted runs made once for the module: {options: run directory}. Tests copy
    them, or compare against them."""
    made = {}

    def run(*options):
        if options not in made:
            out = tmp_path_factory.mktemp("run")
            assert train(out, *options) == 0
            made[options] = out
        return made[options]
    return run


def copy_of(run, directory):
    shutil.copytree(run, directory)
    return directory


def snapshot(directory):
    """Every file of a directory and its bytes."""
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def assert_same_run(first, second):
    """Two run directories hold the same run, bit for bit: weights, solver state, random
    state, step and config (but for the directory), and metrics rows."""
    a, b = (load_checkpoint(directory / "checkpoint.npz") for directory in (first, second))
    for part in ("params", "solver"):
        assert a[part].keys() == b[part].keys()
        for name in a[part]:
            numpy.testing.assert_array_equal(a[part][name], b[part][name], err_msg=name)
    assert (a["iteration"], a["rng_state"], a["loss"]) == (b["iteration"], b["rng_state"], b["loss"])
    assert {**a["config"], "out": None} == {**b["config"], "out": None}
    for log in ("metrics.csv", "log.jsonl"):
        assert (first / log).read_text() == (second / log).read_text(), log


def only_line(text):
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


# ------------------------------------------------------------ finding 1: no clobbering
def test_a_fresh_run_into_a_run_directory_is_refused_and_touches_nothing(tmp_path, capsys):
    assert train(tmp_path, "--iterations", "2", "--val-interval", "2") == 0
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert train(tmp_path, "--iterations", "1") == 1
    error = only_line(capsys.readouterr().err)
    assert str(tmp_path) in error and "--resume" in error and "--overwrite" in error
    assert snapshot(tmp_path) == before


def test_overwrite_removes_the_old_run_only_once_the_new_one_has_a_checkpoint(tmp_path):
    assert train(tmp_path, "--iterations", "4", "--val-interval", "2") == 0
    before = snapshot(tmp_path)
    # the new run diverges before its first checkpoint: the old run is still whole
    assert train(tmp_path, "--overwrite", "--iterations", "4", "--val-interval", "4",
                 "--optimizer", "sgd", "--lr", "1e40") == 1
    assert snapshot(tmp_path) == before
    assert train(tmp_path, "--overwrite", "--iterations", "3", "--val-interval", "3") == 0
    assert load_checkpoint(tmp_path / "checkpoint.npz")["iteration"] == 3
    assert [row["iteration"] for row in runlog.RunLog(tmp_path).rows()] == [3]
    assert (tmp_path / "metrics.csv").read_text().splitlines()[1].startswith("3,")
    with pytest.raises(SystemExit):  # a usage error
        main(["train", "--out", str(tmp_path), "--resume", "--overwrite"])


# ------------------------------------------------------ finding 6: the run's settings
SETTINGS = ["--optimizer", "sgd", "--lr", "0.01", "--seed", "3", "--lr-policy", "fixed",
            "--val-interval", "2"]


def test_resume_restores_the_runs_own_settings(tmp_path, finished_runs):
    # A 4-step SGD run resumed with no options goes on as SGD with its lr and seed (it
    # used to fall back to Adam, lr 0.001, seed 1337 and 4,500 iterations), so it ends
    # as the 6-step run does (a fixed lr makes the first 4 steps the same).
    whole = finished_runs(*SETTINGS, "--iterations", "6")
    split = copy_of(finished_runs(*SETTINGS, "--iterations", "4"), tmp_path / "split")
    assert main(["train", "--out", str(split), "--resume", "--iterations", "6",
                 "--no-progress"]) == 0
    assert_same_run(whole, split)


@pytest.mark.parametrize("option", [["--model", "fcn32s"], ["--optimizer", "adam"],
                                    ["--lr", "0.5"], ["--seed", "4"], ["--batch-size", "2"],
                                    ["--image-size", "48"], ["--widths", "3,4,4,6,8"],
                                    ["--full"]])
def test_resume_refuses_an_option_that_would_change_the_run(tmp_path, capsys, option,
                                                            finished_runs):
    run = copy_of(finished_runs(*SETTINGS, "--iterations", "2"), tmp_path / "run")
    before = snapshot(run)
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", *option]) == 1
    error = only_line(capsys.readouterr().err)
    assert f"{option[0]}" in error and "--iterations" in error, error  # names it, says what may change
    assert snapshot(run) == before


def test_help_lists_what_a_resume_may_change_and_the_exit_statuses(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    printed = " ".join(capsys.readouterr().out.split())
    assert ("Only --iterations, --val-interval, --device, --no-progress, --no-data-check may "
            "be given with other values") in printed
    assert "130 stopped by Ctrl-C (SIGINT), 143 stopped by SIGTERM" in printed


def test_resuming_a_finished_run_says_so_and_exits_0(tmp_path, capsys, finished_runs):
    run = copy_of(finished_runs(*SETTINGS, "--iterations", "2"), tmp_path / "run")
    before = snapshot(run)
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume"]) == 0
    printed = capsys.readouterr()
    assert "has finished" in printed.out and printed.err == ""
    assert snapshot(run) == before
    assert main(["train", "--out", str(tmp_path / "none"), "--resume"]) == 1
    assert "no checkpoint.npz to resume" in capsys.readouterr().err


# --------------------------------------------------------- finding 3: divergence
@pytest.mark.parametrize("lr", ["1e20", "1e40"])
def test_a_diverged_run_keeps_only_finite_checkpoints(tmp_path, capsys, lr):
    assert train(tmp_path, "--optimizer", "sgd", "--lr", lr, "--iterations", "8",
                 "--val-interval", "1") == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after NumPy's overflow warnings
    assert "iteration" in error and ("kept" in error or "none was written" in error), error
    if (tmp_path / "checkpoint.npz").exists():  # whatever was saved is finite
        saved = load_checkpoint(tmp_path / "checkpoint.npz")
        assert all(numpy.isfinite(v).all() for part in ("params", "solver")
                   for v in saved[part].values())
        assert f"of iteration {saved['iteration']}," in error


def test_eval_and_predict_refuse_a_checkpoint_with_nan(tmp_path, capsys, finished_runs):
    run = finished_runs(*SETTINGS, "--iterations", "2")
    with numpy.load(run / "checkpoint.npz") as archive:
        entries = dict(archive)
    entries["param.conv2_1.weight"][0, 0, 0, 0] = numpy.nan
    poisoned = tmp_path / "poisoned.npz"
    numpy.savez(poisoned, **entries)
    Image.fromarray(numpy.zeros((8, 8, 3), numpy.uint8)).save(tmp_path / "x.png")
    capsys.readouterr()
    for command in (["eval", "--weights", str(poisoned)],
                    ["predict", str(tmp_path / "x.png"), "--weights", str(poisoned),
                     "--out", str(tmp_path / "pred")]):
        assert main(command) == 1
        error = only_line(capsys.readouterr().err)
        assert "poisoned.npz" in error and "conv2_1.weight" in error and "NaN" in error
    assert not (tmp_path / "pred").exists()


# ------------------------------------------- findings 5, 7: kills and full disks
def test_resume_trims_log_rows_past_the_checkpoint_and_removes_stale_temporaries(
        tmp_path, finished_runs):
    whole = finished_runs(*SETTINGS, "--iterations", "6")
    cut = copy_of(finished_runs(*SETTINGS, "--iterations", "4"), tmp_path / "cut")
    # rows of work the checkpoint does not hold (a kill after the row, before the next
    # checkpoint, in the old order), a line cut off by a full disk, and the temporary
    # files of a checkpoint and a log rewrite killed half-way
    for log in ("log.jsonl", "metrics.csv"):
        whole_lines = (whole / log).read_text().splitlines(keepends=True)
        with open(cut / log, "a") as handle:
            handle.write(whole_lines[-1] + whole_lines[-1][:9])
    stale = [cut / ".checkpoint.npz.4242.tmp", cut / ".log.jsonl.4242.tmp",
             cut / ".checkpoint.npz.4243.tmp.npz"]
    for path in stale:
        path.write_bytes(b"PK\x03\x04 half")
    assert main(["train", "--out", str(cut), "--resume", "--iterations", "6", "--no-progress"]) == 0
    assert_same_run(whole, cut)
    assert not any(path.exists() for path in stale)


def enospc():
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


SHORT = ("--iterations", "4", "--val-interval", "2")


def test_a_full_disk_at_a_checkpoint_is_one_line_and_leaves_nothing_half_written(
        tmp_path, capsys, monkeypatch, finished_runs):
    whole = finished_runs(*SHORT)
    real_savez, calls = numpy.savez, []

    def savez_on_a_full_disk(file, **arrays):  # the second checkpoint hits a full disk
        calls.append(file)
        if len(calls) == 2:
            file.write(b"PK\x03\x04 the first bytes")
            raise enospc()
        return real_savez(file, **arrays)
    monkeypatch.setattr(numpy, "savez", savez_on_a_full_disk)
    cut = tmp_path / "cut"
    capsys.readouterr()
    assert train(cut, *SHORT) == 1
    error = only_line(capsys.readouterr().err)
    assert str(cut / "checkpoint.npz") in error and "No space left on device" in error
    monkeypatch.undo()
    assert sorted(snapshot(cut)) == ["checkpoint.npz", "log.jsonl", "metrics.csv"]  # no temporary
    assert load_checkpoint(cut / "checkpoint.npz")["iteration"] == 2
    assert [row["iteration"] for row in runlog.RunLog(cut).rows()] == [2]  # checkpoint first
    assert main(["train", "--out", str(cut), "--resume", "--no-progress"]) == 0
    assert_same_run(whole, cut)


def test_a_real_write_error_in_a_real_process(tmp_path):
    # The system refuses to grow any file past 50 kB (RLIMIT_FSIZE, EFBIG), and the tiny
    # net's checkpoint is about 100 kB: the first checkpoint write fails for real.
    resource = pytest.importorskip("resource")

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
    out = tmp_path / "run"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, "-m", "minifcn.cli", "train", "--out", str(out), *TINY,
         "--iterations", "2", "--val-interval", "1"], preexec_fn=small_files, cwd=root,
        env={**os.environ, "PYTHONPATH": root}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert only_line(done.stderr) == (f"minifcn train: error: {out / 'checkpoint.npz'}: could "
                                      f"not write the checkpoint: File too large; the previous "
                                      f"checkpoint, if any, is unchanged")
    assert list(out.iterdir()) == []  # no temporary file, no log row
    assert train(out, "--iterations", "1") == 0  # and the directory holds no run


class FullDiskOS:
    """The os module, but the n-th write writes half its bytes, then fails with ENOSPC."""

    def __init__(self, n):
        self.n, self.writes = n, 0

    def __getattr__(self, name):
        return getattr(os, name)

    def write(self, descriptor, data):
        self.writes += 1
        if self.writes == self.n:
            os.write(descriptor, data[:len(data) // 2])
            raise enospc()
        return os.write(descriptor, data)


@pytest.mark.parametrize("failing_write, named", [(3, "log.jsonl"), (4, "metrics.csv")])
def test_a_full_disk_during_a_log_write_leaves_no_cut_off_line(
        tmp_path, capsys, monkeypatch, finished_runs, failing_write, named):
    # writes 1, 2 are the first row's (log.jsonl, metrics.csv); 3, 4 the second row's
    whole = finished_runs(*SHORT)
    monkeypatch.setattr(runlog, "os", FullDiskOS(failing_write))
    cut = tmp_path / "cut"
    capsys.readouterr()
    assert train(cut, *SHORT) == 1
    error = only_line(capsys.readouterr().err)
    assert str(cut / named) in error and "No space left on device" in error
    monkeypatch.undo()
    for log in ("log.jsonl", "metrics.csv"):  # just the first row, whole
        lines = (whole / log).read_text().splitlines(keepends=True)
        assert (cut / log).read_text() == "".join(lines[:2 if log == "metrics.csv" else 1])
    assert load_checkpoint(cut / "checkpoint.npz")["iteration"] == 4  # the row is still due
    assert main(["train", "--out", str(cut), "--resume", "--no-progress"]) == 0
    assert_same_run(whole, cut)


# ----------------------------------------------------- finding 8: the data scan
def test_bad_data_is_reported_all_at_once_before_the_first_step(tmp_path, capsys, rng):
    root = tmp_path / "VOC2011"
    names = ["a", "b", "c", "d", "e", "f", "g"]
    make_voc(root, names, rng, height=12, width=16)
    jpeg, png = root / "JPEGImages", root / "SegmentationClass"
    (jpeg / "a.jpg").write_bytes(b"not a picture")                             # corrupt
    whole = (jpeg / "b.jpg").read_bytes()
    (jpeg / "b.jpg").write_bytes(whole[:len(whole) // 2])                      # truncated
    write_palette_png(str(png / "c.png"), numpy.zeros((12, 15), numpy.uint8))  # wrong size
    (png / "d.png").unlink()                                                   # missing
    write_palette_png(str(png / "e.png"), numpy.full((12, 16), 30, numpy.uint8))  # class 30
    write_picture(str(jpeg / "f.jpg"), numpy.zeros((12, 16, 3), numpy.uint8))    # fine
    out = tmp_path / "run"
    options = ["--data", f"voc:{root}", "--iterations", "40", "--val-interval", "40"]
    assert train(out, *options) == 1
    error = capsys.readouterr().err
    for bad in ("a.jpg", "b.jpg", "c.png", "d.png", "e.png"):
        assert f"{os.sep}{bad}" in error, bad
    assert "f.jpg" not in error and "g.jpg" not in error and "--no-data-check" in error
    assert not out.exists() or not any(out.iterdir())  # stopped before anything was written
    # --no-data-check skips the scan: the run meets a bad file only when it reads it,
    # and then saves the steps it has done (the passes that read it changed no weight)
    assert train(out, *options, "--no-data-check") == 1
    error = only_line(capsys.readouterr().err)
    assert sum(f"{os.sep}{bad}" in error for bad in ("a.jpg", "b.jpg", "c.png", "d.png", "e.png")) == 1
    if (out / "checkpoint.npz").exists():
        assert load_checkpoint(out / "checkpoint.npz")["iteration"] > 0


def test_clean_files_pass_the_scan(tmp_path, rng):
    from minifcn.data import VOC
    from minifcn.data.scan import check_files, file_problems
    make_voc(tmp_path / "VOC2011", ["a", "b", "c"], rng, height=5, width=7)
    dataset = VOC(str(tmp_path / "VOC2011"))
    assert file_problems(dataset) == []
    check_files([("train", dataset, None)])  # no error
    write_palette_png(str(tmp_path / "VOC2011" / "SegmentationClass" / "b.png"),
                      numpy.zeros((5, 8), numpy.uint8))
    problems = file_problems(dataset)
    assert len(problems) == 1 and "b.jpg is 5x7" in problems[0] and "b.png is 5x8" in problems[0]


def test_every_run_error_is_a_user_error():
    # `minifcn` prints a UserError as its one-line message (errors.py); each refusal and
    # failure above must be one, not a bug's traceback
    from minifcn.checkpoint import CheckpointError, NoCheckpoint, RunWriteError
    from minifcn.data import DataError
    from minifcn.errors import UserError
    from minifcn.train import RunError, RunExists
    for error in (CheckpointError, NoCheckpoint, RunWriteError, DataError, RunError, RunExists):
        assert issubclass(error, UserError), error
    assert issubclass(NoCheckpoint, FileNotFoundError) and issubclass(RunExists, ValueError)
