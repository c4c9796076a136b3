"""benchmarks/loss_sampling.py end to end at a tiny size: every run's validation points,
the results files and the plot (the real experiment is run by hand, not here)."""
import json

import numpy
import pytest
from PIL import Image

from benchmarks import loss_sampling


def test_the_experiment_runs_end_to_end(tmp_path, capsys):
    plot = tmp_path / "docs" / "loss-sampling.png"
    report = loss_sampling.main([
        "--probabilities", "1,0.5", "--iterations", "2", "--val-interval", "1",
        "--val-images", "1", "--image-size", "40", "--widths", "3,4,4,6,6", "--fc-width", "6",
        "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results"),
        "--plot", str(plot)])
    assert list(report["runs"]) == ["1.0", "0.5"]
    for points in report["runs"].values():
        assert [p["iteration"] for p in points] == [1, 2]
        assert [p["images"] for p in points] == [1, 2]
        assert 0 < points[0]["seconds"] < points[1]["seconds"]
        assert all(0 <= p["mean_iu"] <= 1 for p in points)
    # the two runs saw the same images but not the same loss terms
    assert report["runs"]["1.0"][0]["loss"] != report["runs"]["0.5"][0]["loss"]
    written = sorted(path.suffix for path in (tmp_path / "results").iterdir())
    assert written == [".json", ".md"]
    saved = json.loads(next((tmp_path / "results").glob("*.json")).read_text())
    assert saved["runs"] == report["runs"]
    assert "| 0.5 | 2 | 2 |" in next((tmp_path / "results").glob("*.md")).read_text()
    picture = numpy.asarray(Image.open(plot))
    assert picture.shape == (380, 1120, 3)
    colours = {tuple(c) for c in picture.reshape(-1, 3)}
    assert set(loss_sampling.COLOURS[:2]) <= colours  # both runs drawn


def test_replace_reruns_one_probability_into_an_earlier_report(tmp_path):
    common = ["--iterations", "1", "--val-interval", "1", "--val-images", "1",
              "--image-size", "40", "--widths", "3,4,4,6,6", "--fc-width", "6",
              "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results"),
              "--plot", str(tmp_path / "plot.png")]
    first = loss_sampling.main(["--probabilities", "1,0.5", *common])
    [saved] = (tmp_path / "results").glob("*.json")
    kept = first["runs"]["1.0"]
    again = loss_sampling.main(["--probabilities", "0.5", "--replace", str(saved), *common])
    assert list(again["runs"]) == ["1.0", "0.5"]  # largest P first, as before
    assert again["runs"]["1.0"] == kept           # untouched
    assert again["runs"]["0.5"] != first["runs"]["0.5"]  # retimed (its seconds differ)
    assert sorted(again["load_average"]) == ["0.5", "1.0"]
    assert json.loads(saved.read_text())["runs"] == again["runs"]
    row = next(line for line in saved.with_suffix(".md").read_text().splitlines()
               if line.startswith("| 0.5 |"))
    assert row.count("/") == 1  # its load averages, before / after
    with pytest.raises(SystemExit) as refused:  # a report of other settings
        loss_sampling.main(["--probabilities", "0.5", "--replace", str(saved), *common,
                            "--image-size", "48"])
    assert refused.value.code == 2
