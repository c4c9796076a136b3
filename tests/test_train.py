"""The training loop: the loss falls, resume is exact, Ctrl-C and SIGTERM stop it between
steps with a checkpoint that resumes exactly, divergence keeps the last good checkpoint,
checkpoints are written atomically and only from finite weights. (tests/test_runs*.py:
whole runs of the command, in real processes.)"""
import dataclasses
import errno
import os
import signal

import numpy
import pytest

import minifcn as mf
from minifcn import checkpoint, functions as F, train as training
from minifcn.data.synthetic import SyntheticShapes
from minifcn.optim import SGD
from minifcn.runlog import RunLog
from minifcn.data.prefetch import Prefetcher
from minifcn.train import TrainConfig, TrainingDiverged, load_checkpoint

TINY = dict(widths=(3, 4, 4, 6, 6), fc_width=6, image_size=40, val_images=2, progress=False)


def tiny_config(out, **changes):
    return TrainConfig(out=str(out), **{**TINY, **changes})


def test_loss_falls_on_a_tiny_net():
    net = mf.models.build("fcn8s", 6, widths=(4, 8, 8, 8, 8), fc_width=16)
    opt = SGD(net, lr=0.05, momentum=0.9)
    image, label = SyntheticShapes(size=40)[0]
    losses = []
    for _ in range(25):
        loss = F.softmax_cross_entropy(net(mf.Tensor(image[None])), label[None])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(numpy.log(6), rel=0.05)  # zero-initialised scores
    assert numpy.mean(losses[-5:]) < 0.7 * losses[0]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """uninterrupted(**changes): the directory of a whole tiny run, made once a module
    (when a test first asks, so under that test's kernel set)."""
    made = {}

    def run(**changes):
        key = tuple(sorted(changes.items()))
        if key not in made:
            made[key] = tmp_path_factory.mktemp("whole")
            training.train(tiny_config(made[key], **changes), log=lambda *a: None)
        return made[key]
    return run


def params_of(out):
    return load_checkpoint(f"{out}/checkpoint.npz")["params"]


def assert_same_params(a, b):
    assert a.keys() == b.keys()
    for name in a:
        numpy.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    # A run of 3 steps extended to 6: with a fixed learning rate the first 3 steps are
    # those of the 6-step run (a "poly" rate depends on the length; Ctrl-C test below).
    fixed = dict(val_interval=3, lr_policy="fixed")
    training.train(tiny_config(tmp_path / "whole", iterations=6, **fixed), log=lambda *a: None)
    training.train(tiny_config(tmp_path / "split", iterations=3, **fixed), log=lambda *a: None)
    assert load_checkpoint(tmp_path / "split" / "checkpoint.npz")["iteration"] == 3
    training.train(tiny_config(tmp_path / "split", iterations=6, **fixed), resume=True,
                   log=lambda *a: None)
    assert_same_params(params_of(tmp_path / "whole"), params_of(tmp_path / "split"))
    # and the runs really did change the weights (dropout and data order were replayed)
    first = params_of(tmp_path / "whole")["conv1_1.weight"]
    fresh = mf.models.build("fcn8s", 6, widths=TINY["widths"], fc_width=6).state_dict()
    assert not numpy.array_equal(first, fresh["conv1_1.weight"])


def signal_at(monkeypatch, iteration, signals, during="forward"):
    """Send this process `signals` from inside step `iteration`: as it reads its batch,
    before the forward pass ("forward"), or as its solver update starts ("update"). The
    step takes its batch from the prefetcher (whose workers made it ahead of time)."""
    real_get, real_update = Prefetcher.get, mf.optim.Adam.step

    def get(batches, position):
        if position == iteration and during == "forward":
            for number in signals:
                os.kill(os.getpid(), number)
        return real_get(batches, position)

    def update(opt):
        if opt.steps == iteration and during == "update":
            for number in signals:
                os.kill(os.getpid(), number)
        return real_update(opt)
    monkeypatch.setattr(Prefetcher, "get", get)
    monkeypatch.setattr(mf.optim.Adam, "step", update)


@pytest.mark.parametrize("signals, during, saved", [
    ([signal.SIGINT], "forward", 3),               # the step under way is finished
    ([signal.SIGTERM], "update", 3),
    ([signal.SIGINT, signal.SIGINT], "forward", 2),  # a second one abandons it
    ([signal.SIGTERM, signal.SIGINT], "update", 3),  # but never the solver update
], ids=["ctrl-c", "sigterm-in-update", "twice", "twice-in-update"])
def test_a_signal_stops_between_steps_and_resume_is_exact(tmp_path, monkeypatch, signals,
                                                          during, saved, uninterrupted):
    # The checkpoint written on the way out is labelled with the steps its weights hold
    # (it used to hold step 2's update but say 2, so resume applied it twice).
    whole = uninterrupted(iterations=5, val_interval=5)
    signal_at(monkeypatch, 2, signals, during)
    with pytest.raises(training.Interrupted, match=f"holds {saved} steps") as stopped:
        training.train(tiny_config(tmp_path / "cut", iterations=5, val_interval=5),
                       log=lambda *a: None)
    assert stopped.value.status == 128 + signals[0]
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.npz")["iteration"] == saved
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    monkeypatch.undo()
    training.train(tiny_config(tmp_path / "cut", iterations=5, val_interval=5), resume=True,
                   log=lambda *a: None)
    assert_same_params(params_of(whole), params_of(tmp_path / "cut"))
    assert_same_params(load_checkpoint(whole / "checkpoint.npz")["solver"],
                       load_checkpoint(tmp_path / "cut" / "checkpoint.npz")["solver"])
    for log in ("metrics.csv", "log.jsonl"):
        assert (whole / log).read_bytes() == (tmp_path / "cut" / log).read_bytes()


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_a_run_is_set_up_stops_it_at_once(tmp_path, monkeypatch, number):
    # Nothing to save yet, so even the first signal stops it (during the data scan, say),
    # with the same statuses as in the loop. SIGTERM used to kill it with no word.
    real_check = training.check_files

    def check_files(*args, **options):
        os.kill(os.getpid(), number)
        return real_check(*args, **options)
    monkeypatch.setattr(training, "check_files", check_files)
    with pytest.raises(training.Interrupted, match="before training began: nothing to save") as stopped:
        training.train(tiny_config(tmp_path / "run", iterations=2), log=lambda *a: None)
    assert stopped.value.status == 128 + number
    assert not (tmp_path / "run").exists()


def test_ctrl_c_during_a_checkpoint_write_neither_breaks_it_nor_stops_it(tmp_path, monkeypatch,
                                                                        uninterrupted):
    # Two Ctrl-Cs inside numpy.savez: it used to fail ("Can't close the ZIP file while
    # there is an open writing handle") and save nothing. Now the write completes, and
    # the run stops after it, its validation row logged.
    whole = uninterrupted(iterations=5, val_interval=2)
    real_savez = numpy.savez

    def savez(file, **arrays):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        return real_savez(file, **arrays)
    monkeypatch.setattr(numpy, "savez", savez)
    cut = tmp_path / "cut"
    with pytest.raises(training.Interrupted, match="holds 2 steps"):
        training.train(tiny_config(cut, iterations=5, val_interval=2), log=lambda *a: None)
    monkeypatch.undo()
    assert sorted(p.name for p in cut.iterdir()) == ["checkpoint.npz", "log.jsonl", "metrics.csv"]
    assert [row["iteration"] for row in RunLog(cut).rows()] == [2]
    training.train(tiny_config(cut, iterations=5, val_interval=2), resume=True, log=lambda *a: None)
    assert_same_params(params_of(whole), params_of(cut))
    for log in ("metrics.csv", "log.jsonl"):
        assert (whole / log).read_bytes() == (cut / log).read_bytes()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_step = training._train_step
    monkeypatch.setattr(training, "_train_step",
                        lambda *args: float("nan") if args[-1] == 3 else real_step(*args))
    with pytest.raises(TrainingDiverged, match="iteration 3.*of iteration 2"):
        training.train(tiny_config(tmp_path, iterations=6, val_interval=2), log=lambda *a: None)
    assert load_checkpoint(tmp_path / "checkpoint.npz")["iteration"] == 2


def test_non_finite_weights_are_never_saved(tmp_path, monkeypatch):
    # The loss of a step is computed before its update: a finite loss can come with an
    # update that makes the weights infinite. The checkpoint due then is refused.
    real_step = training._train_step

    def poisoning_step(net, opt, *rest):
        loss = real_step(net, opt, *rest)
        if rest[-1] == 3:
            net.score_fr.weight.data[0, 0] = numpy.inf
        return loss
    monkeypatch.setattr(training, "_train_step", poisoning_step)
    with pytest.raises(TrainingDiverged, match=r"non-finite by iteration 4 .*score_fr.weight"
                                               r".*of iteration 2, is kept"):
        training.train(tiny_config(tmp_path, iterations=6, val_interval=2), log=lambda *a: None)
    assert load_checkpoint(tmp_path / "checkpoint.npz")["iteration"] == 2
    assert [row["iteration"] for row in RunLog(tmp_path).rows()] == [2]


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.npz"
    checkpoint.atomic_savez(path, {"a": numpy.arange(3)})

    def broken_savez(file, **arrays):
        file.write(b"half a file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(numpy, "savez", broken_savez)
    with pytest.raises(checkpoint.RunWriteError, match=f"{path}: could not write the file: "
                                                       f"No space left on device"):
        checkpoint.atomic_savez(path, {"a": numpy.arange(5)})
    monkeypatch.undo()
    with numpy.load(path) as kept:
        numpy.testing.assert_array_equal(kept["a"], numpy.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]


def test_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_checkpoint(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz"):
        load_checkpoint(junk)
    other = tmp_path / "other.npz"
    numpy.savez(other, x=numpy.zeros(2))
    with pytest.raises(ValueError, match="other.npz.*not a minifcn checkpoint"):
        load_checkpoint(other)


def test_solver_presets_and_overrides():
    assert TrainConfig(model="fcn32s", data="voc:/x").solver()["lr"] == 1e-10
    assert TrainConfig(model="fcn8s", data="voc:/x").solver()["lr"] == 1e-14
    assert TrainConfig(model="fcn-alexnet", data="voc:/x").solver()["iter_size"] == 20
    assert TrainConfig(model="fcn32s", data="voc:/x", lr=1e-3).solver()["lr"] == 1e-3
    small = TrainConfig()
    assert small.is_small() and small.solver()["normalize"] is True
    assert small.solver()["lr_policy"] == "poly"
    assert dataclasses.replace(small, small=False).solver()["lr"] == 1e-14
    assert TrainConfig(lr_policy="fixed").solver()["lr_policy"] == "fixed"


def test_run_length_defaults_depend_on_the_data():
    built_in, real = TrainConfig(), TrainConfig(data="voc:/x")
    assert (built_in.iterations, built_in.val_interval) == (4500, 1500)
    assert (real.iterations, real.val_interval) == (100000, 4000)
    assert TrainConfig(iterations=7, val_interval=2).val_interval == 2


def test_poly_rate_reaches_the_solver_each_step(tmp_path, monkeypatch):
    rates = []
    real_step = training._train_step
    monkeypatch.setattr(training, "_train_step",
                        lambda net, opt, *rest: rates.append(opt.lr) or real_step(net, opt, *rest))
    training.train(tiny_config(tmp_path, iterations=4, val_interval=4, lr=0.01),
                   log=lambda *a: None)
    assert rates == pytest.approx([0.01 * (1 - i / 4) ** 0.9 for i in range(4)])


def test_converted_weights_set_the_input_convention(tmp_path):
    path = tmp_path / "vgg.npz"
    numpy.savez(path, **{"conv1_1.weight": numpy.zeros((2, 3, 3, 3), numpy.float32),
                         "meta.channel_order": numpy.array("RGB"),
                         "meta.pixel_scale": numpy.array(1.0),
                         "meta.mean": numpy.array([0.485, 0.456, 0.406]),
                         "meta.std": numpy.array([0.229, 0.224, 0.225])})
    preprocess = training.preprocess_options(training.read_meta(path))["preprocess"]
    pixel = numpy.array([[[255, 0, 51]]], numpy.uint8)  # one RGB pixel
    expected = (numpy.array([1.0, 0.0, 0.2]) - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    numpy.testing.assert_allclose(preprocess(pixel)[:, 0, 0], expected, rtol=1e-5)
    assert training.preprocess_options({}) == {}
