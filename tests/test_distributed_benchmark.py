"""benchmarks/distributed.py runs end to end at a tiny size (no timing is asserted or
recorded: the coordinator runs it on a quiet machine)."""
import json

import pytest

from benchmarks import distributed

from test_distributed import mpiexec


def test_distributed_benchmark_times_one_and_two_ranks_and_writes_its_tables(tmp_path):
    mpiexec()  # skips, or fails in CI, without MPI
    distributed.main(["--steps", "1", "--repeat", "2", "--size", "40", "--out", str(tmp_path)])
    [json_path] = tmp_path.glob("distributed-*.json")
    report = json.loads(json_path.read_text())
    cases = report["results"]
    assert [(case["ranks"], case["batch_per_rank"]) for case in cases] == [(1, 1), (1, 2), (2, 1)]
    for case in cases:
        assert len(case["step_times_s"]) == 2 and all(t > 0 for t in case["step_times_s"])
        assert case["median_s"] == pytest.approx(sum(case["step_times_s"]) / 2)
        assert case["images_per_s"] == pytest.approx(
            case["ranks"] * case["batch_per_rank"] / case["median_s"])
    markdown = json_path.with_suffix(".md").read_text()
    assert "| 2 ranks, batch 1 each |" in markdown
    ratio = cases[1]["median_s"] / cases[2]["median_s"]
    assert f"same global batch: {ratio:.2f}x the speed" in markdown
