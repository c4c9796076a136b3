"""The training loop: the loss falls, resume is exact, divergence and Ctrl-C keep the
last good checkpoint, checkpoints are written atomically."""
import dataclasses

import numpy
import pytest

import minifcn as mf
from minifcn import functions as F, train as training
from minifcn.data.synthetic import SyntheticShapes
from minifcn.optim import SGD
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


def interrupt_at(monkeypatch, iteration, error):
    real_step = training._train_step

    def step(net, opt, dataset, config, solver, at):
        if at == iteration:
            raise error
        return real_step(net, opt, dataset, config, solver, at)
    monkeypatch.setattr(training, "_train_step", step)


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(tmp_path, monkeypatch):
    training.train(tiny_config(tmp_path / "whole", iterations=5, val_interval=5), log=lambda *a: None)
    interrupt_at(monkeypatch, 2, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        training.train(tiny_config(tmp_path / "cut", iterations=5, val_interval=5), log=lambda *a: None)
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.npz")["iteration"] == 2
    monkeypatch.undo()
    training.train(tiny_config(tmp_path / "cut", iterations=5, val_interval=5), resume=True,
                   log=lambda *a: None)
    assert_same_params(params_of(tmp_path / "whole"), params_of(tmp_path / "cut"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_step = training._train_step
    monkeypatch.setattr(training, "_train_step",
                        lambda *args: float("nan") if args[-1] == 3 else real_step(*args))
    with pytest.raises(TrainingDiverged, match="iteration 3"):
        training.train(tiny_config(tmp_path, iterations=6, val_interval=2), log=lambda *a: None)
    assert load_checkpoint(tmp_path / "checkpoint.npz")["iteration"] == 2


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.npz"
    training.atomic_savez(path, {"a": numpy.arange(3)})

    def broken_savez(file, **arrays):
        with open(file, "wb") as handle:
            handle.write(b"half a file")
        raise OSError("disk full")
    monkeypatch.setattr(numpy, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        training.atomic_savez(path, {"a": numpy.arange(5)})
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
