"""A training step on the GPU reads nothing back: the loss is read every
`log_interval` steps (and at validations and the last step), and that read is the
divergence check (train.py: _loss_due, _read_loss). Run on the emulated CuPy, which
counts every host read of a device value."""
import math

import emulated_cupy as emulated_cupy_module
import pytest

from minifcn import train as training
from minifcn.train import TrainConfig

TINY = dict(widths=(3, 4, 4, 6, 6), fc_width=6, image_size=40, val_images=1, progress=False,
            device="cuda")


def test_the_loss_is_read_every_log_interval_steps_only(emulated_cupy, tmp_path, monkeypatch):
    reads, step_host_reads = [], []
    real_read, real_step = training._read_loss, training._train_step

    def read(step_loss, iteration, path):
        reads.append(iteration)
        return real_read(step_loss, iteration, path)

    def step(*args):
        before = emulated_cupy_module.host_reads[0]
        loss = real_step(*args)
        step_host_reads.append(emulated_cupy_module.host_reads[0] - before)
        return loss
    monkeypatch.setattr(training, "_read_loss", read)
    monkeypatch.setattr(training, "_train_step", step)
    config = TrainConfig(out=str(tmp_path), iterations=9, val_interval=6, log_interval=4, **TINY)
    training.train(config, log=lambda *a: None)
    assert reads == [3, 5, 7, 8]  # every 4 steps, the validation after 6, the last step
    assert step_host_reads == [0] * 9


def test_a_nan_between_reads_is_caught_at_the_next_read(tmp_path, monkeypatch):
    real_step = training._train_step
    # a diverged run stays diverged: every loss from iteration 2 on is NaN
    monkeypatch.setattr(training, "_train_step",
                        lambda *args: math.nan if args[-1] >= 2 else real_step(*args))
    config = TrainConfig(out=str(tmp_path), iterations=9, val_interval=9, log_interval=4,
                         **{**TINY, "device": "cpu"})
    with pytest.raises(training.TrainingDiverged, match="iteration 3"):
        training.train(config, log=lambda *a: None)
    assert not (tmp_path / "checkpoint.npz").exists()  # no checkpoint of diverged weights


def test_log_interval_must_be_positive():
    with pytest.raises(ValueError, match="log_interval"):
        TrainConfig(log_interval=0)
