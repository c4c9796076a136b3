"""The `minifcn` command line, end to end on tiny settings."""
import json

import numpy
import pytest
from PIL import Image

from minifcn.cli import main

TINY = ["--widths", "3,4,4,6,6", "--fc-width", "6", "--image-size", "40", "--val-images", "2",
        "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--iterations", "2", "--val-interval", "2", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_checkpoint_logs_and_pictures(trained):
    for name in ("checkpoint.npz", "log.jsonl", "metrics.csv", "predictions.png"):
        assert (trained / name).exists(), name
    header = (trained / "metrics.csv").read_text().splitlines()[0]
    assert header == "iteration,loss,pixel_acc,mean_acc,mean_iu,fw_iu"


def test_eval_prints_the_four_metrics_and_per_class_iu(trained, capsys):
    assert main(["eval", "--weights", str(trained / "checkpoint.npz"), "--limit", "2"]) == 0
    printed = capsys.readouterr().out
    for key in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu", "per-class IU", "triangle"):
        assert key in printed
    # the same held-out scenes as training's last validation (same size), so the same scores
    last = json.loads((trained / "log.jsonl").read_text().splitlines()[-1])
    scores = dict(line.split() for line in printed.splitlines()[:4])
    for key in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"):
        assert float(scores[key]) == pytest.approx(last[key], abs=1e-4), key


def test_predict_writes_segmentation_and_overlay(trained, tmp_path):
    image = tmp_path / "scene.png"
    Image.fromarray(numpy.full((20, 24, 3), 120, numpy.uint8)).save(image)
    out = tmp_path / "pred"
    assert main(["predict", str(image), "--weights", str(trained / "checkpoint.npz"),
                 "--out", str(out)]) == 0
    for name in ("scene_seg.png", "scene_overlay.png"):
        assert Image.open(out / name).size == (24, 20)


def test_convert_bad_file_fails_in_one_line_and_leaves_nothing(tmp_path, capsys):
    source = tmp_path / "broken.caffemodel"
    source.write_bytes(b"\x0a\xff\xff")
    out = tmp_path / "out.npz"
    assert main(["convert", str(source), str(out)]) == 1
    error = capsys.readouterr().err.strip()
    assert "broken.caffemodel" in error and len(error.splitlines()) == 1
    assert not out.exists()


def test_missing_checkpoint_and_bad_options_are_clear(tmp_path, capsys):
    assert main(["eval", "--weights", str(tmp_path / "none.npz")]) == 1
    assert "none.npz" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--widths", "1,2"])
    assert "five positive widths" in capsys.readouterr().err


def test_train_options_reach_the_config_and_defaults_stay_the_configs(monkeypatch):
    import minifcn.train as training
    seen = {}
    monkeypatch.setattr(training, "train", lambda config, **run: seen.update(config=config) or
                        {"mean_iu": 0.0})
    assert main(["train", "--lr", "0.01", "--lr-policy", "fixed", "--iterations", "9"]) == 0
    config = seen["config"]
    assert (config.lr, config.lr_policy, config.iterations) == (0.01, "fixed", 9)
    assert config.val_interval == training.BUILT_IN_RUN["val_interval"]
    assert config.image_size == training.TrainConfig.image_size
    assert config.out == "runs/fcn8s-synthetic"
    assert main(["train", "--data", "voc:/x", "--model", "fcn32s"]) == 0
    assert seen["config"].iterations == training.REAL_DATA_RUN["iterations"]
    assert seen["config"].out == "runs/fcn32s-voc"
