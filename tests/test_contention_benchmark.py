"""benchmarks/contention.py runs end to end at a tiny size (no timing is asserted)."""
import json

import pytest

from benchmarks import contention


def test_contention_benchmark_runs_every_case_and_writes_its_tables(tmp_path, capsys):
    contention.main(["--steps", "1", "--repeat", "2", "--size", "40", "--policies", "chosen",
                     "--busy", "spin", "run", "--out", str(tmp_path)])
    [json_path] = tmp_path.glob("contention-*.json")
    report = json.loads(json_path.read_text())
    runs = report["results"]["chosen"]
    assert sorted(runs) == ["alone", "run", "spin"]
    for case in runs.values():
        assert len(case["times_s"]) == 2 and all(t > 0 for t in case["times_s"])
        assert case["median_s"] == pytest.approx(sum(case["times_s"]) / 2)
    markdown = json_path.with_suffix(".md").read_text()
    alone = runs["alone"]["median_s"]
    row = next(line for line in markdown.splitlines() if line.startswith("| chosen"))
    assert f"({runs['spin']['median_s'] / alone:.2f}x)" in row
    assert f"({runs['run']['median_s'] / alone:.2f}x)" in row
    assert report["machine"]["cores"] >= 1


def test_contention_benchmark_refuses_a_bad_count(capsys):
    with pytest.raises(SystemExit):
        contention.main(["--steps", "0"])
    assert "expected a positive integer, got '0'" in capsys.readouterr().err
