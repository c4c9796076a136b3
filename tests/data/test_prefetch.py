"""The prefetching loader (data/prefetch.py): the batches of a run without it, in order,
from any first position; a worker's error reaches the main thread with its traceback;
Ctrl-C ends a run at once and keeps its checkpoint."""
import _thread
import functools
import threading
import time
import traceback

import numpy
import pytest

from minifcn import train as training
from minifcn.data import open_dataset
from minifcn.data.prefetch import Prefetcher
from minifcn.train import TrainConfig

CONFIG = TrainConfig(image_size=40, batch_size=3, seed=7)


def _make_batch():
    return functools.partial(training._batch, open_dataset("synthetic", "train", size=40), CONFIG)


@pytest.mark.parametrize("first", [0, 5])
def test_the_batches_are_those_of_a_run_without_prefetching(first):
    make_batch = _make_batch()
    with Prefetcher(make_batch, first, 12, workers=3, depth=3) as batches:
        for position in range(first, 12):
            images, labels = batches.get(position)
            expected_images, expected_labels = make_batch(position)
            numpy.testing.assert_array_equal(images, expected_images)
            numpy.testing.assert_array_equal(labels, expected_labels)


def test_batches_are_made_ahead_of_the_one_asked_for():
    made, release = [], threading.Event()

    def make_batch(position):
        made.append(position)
        release.wait(5)
        return numpy.full(2, position), numpy.zeros(2, numpy.int64)
    with Prefetcher(make_batch, 0, 100, workers=2, depth=4) as batches:
        deadline = time.monotonic() + 5
        while len(made) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        release.set()
        assert batches.get(0)[0].tolist() == [0, 0]
        assert sorted(batches.pending) == [1, 2, 3, 4]  # depth 4 under way
        assert batches.get(1)[0].tolist() == [1, 1]


def _broken_drawing(position):
    if position == 3:
        raise ValueError("scene_000003.png: label 9 outside [0, 6)")
    return numpy.zeros(1), numpy.zeros(1, numpy.int64)


def test_a_worker_error_is_raised_in_the_main_thread_with_its_traceback():
    with Prefetcher(_broken_drawing, 0, 10) as batches:
        for position in range(3):
            batches.get(position)
        with pytest.raises(ValueError, match="scene_000003.png") as caught:
            batches.get(3)
    frames = [frame.name for frame in traceback.extract_tb(caught.value.__traceback__)]
    assert "_broken_drawing" in frames  # where the worker failed


def test_ctrl_c_while_waiting_for_a_batch_ends_at_once():
    started = threading.Event()

    def slow(position):
        if position >= 1:
            started.set()
            time.sleep(0.5)
        return numpy.zeros(1), numpy.zeros(1, numpy.int64)
    batches = Prefetcher(slow, 0, 1000, workers=2, depth=8)
    batches.get(0)
    threading.Timer(0.1, _thread.interrupt_main).start()  # Ctrl-C in 0.1 s
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        batches.get(1)
        time.sleep(2)  # if get() returned first, the interrupt lands here
    batches.close()
    assert time.monotonic() - began < 1.5  # no wait for the 8 queued batches (4 s of work)
    assert all(future.cancelled() or future.done() for future in batches.pending.values())


def test_a_training_run_stopped_by_a_worker_error_keeps_its_checkpoint(tmp_path, monkeypatch):
    real_batch = training._batch

    def batch(dataset, config, position):
        if position == 4:
            raise OSError("disk read error in a worker")
        return real_batch(dataset, config, position)
    monkeypatch.setattr(training, "_batch", batch)
    config = TrainConfig(out=str(tmp_path), widths=(3, 4, 4, 6, 6), fc_width=6, image_size=40,
                         val_images=1, progress=False, iterations=6, val_interval=2)
    with pytest.raises(OSError, match="disk read error"):
        training.train(config, log=lambda *a: None)
    assert training.load_checkpoint(tmp_path / "checkpoint.npz")["iteration"] == 4
