"""benchmarks/gpu_kernels.py's pure-Python parts (it needs a GPU to run, not to test
these), and the PyTorch net the whole-net benchmarks build (benchmarks/nets.py)."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # `benchmarks` is a top-level package of the repository

from benchmarks import gpu_kernels, nets  # noqa: E402

REPORT = {
    "device": "NVIDIA H100 80GB HBM3", "date": "2026-05-10", "repeat": 30,
    "copy_bandwidth_bytes_per_s": 3.0e12,
    "kernels": [{"kernel": "im2col conv1_2", "shape": "(64, 698, 698) k3 s1 p1", "bytes": 1.5e9,
                 "minifcn_s": 0.75e-3, "cupy_only_s": 4.0e-3, "torch_s": 1.5e-3},
                {"kernel": "lrn_forward", "shape": "norm1", "bytes": 3.0e8,
                 "minifcn_s": 0.2e-3, "cupy_only_s": 1.0e-3, "torch_s": None}],
    "net": [{"model": "FCN-32s 500x500", "pass": "train step", "precision": "fp32 (TF32 off)",
             "minifcn_s": 0.130, "torch_s": 0.100}],
    "notes": ["a note"],
}


def test_copy_bandwidth_counts_the_read_and_the_write():
    assert gpu_kernels.copy_bandwidth(1e9, 0.5) == 4e9


def test_bandwidth_fraction():
    gbs, fraction = gpu_kernels.bandwidth_fraction(1.5e9, 0.75e-3, 3.0e12)
    assert gbs == pytest.approx(2000.0) and fraction == pytest.approx(2 / 3)


def test_result_paths_name_the_device_and_date(tmp_path):
    json_path, markdown_path = gpu_kernels.result_paths("NVIDIA H100 80GB HBM3", "2026-05-10", tmp_path)
    assert json_path == tmp_path / "gpu-NVIDIA-H100-80GB-HBM3-2026-05-10.json"
    assert markdown_path == tmp_path / "gpu-NVIDIA-H100-80GB-HBM3-2026-05-10.md"


def test_markdown_report_table():
    lines = gpu_kernels.markdown_report(REPORT).splitlines()
    assert lines[0] == "# GPU benchmarks: NVIDIA H100 80GB HBM3 (2026-05-10)"
    assert "3000.0 GB/s" in lines[2]
    assert "| im2col conv1_2 | (64, 698, 698) k3 s1 p1 | 0.750 | 2000 | 67% | 4.000 | 1.500 | 0.50x |" in lines
    assert "| lrn_forward | norm1 | 0.200 | 1500 | 50% | 1.000 | - | - |" in lines
    assert "| FCN-32s 500x500 | train step | fp32 (TF32 off) | 130.000 | 100.000 | 1.30x |" in lines
    assert lines[-1] == "a note"


def test_imports_without_cupy_or_torch():
    code = ("import sys; sys.modules['cupy'] = sys.modules['torch'] = None\n"
            "import benchmarks.gpu_kernels, benchmarks.gpu_net")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_pytorch_fcn32s_matches_the_reference_shapes():
    torch = pytest.importorskip("torch")
    with torch.device("meta"):  # shapes only: nothing is allocated or initialized
        net = nets.torch_fcn(torch, "fcn32s")
        score = net(torch.empty(1, 3, 500, 500))
    assert tuple(score.shape) == (1, 21, 500, 500)
    weights = [tuple(p.shape) for name, p in net.named_parameters() if name.endswith("weight")]
    assert len(weights) == 17  # 13 convolutions, fc6, fc7, score_fr, upscore
    assert weights[13:] == [(4096, 512, 7, 7), (4096, 4096, 1, 1), (21, 4096, 1, 1), (21, 21, 64, 64)]


class _HostEvents:
    """Stand-ins for CUDA events, timing on the host: time_gpu's logic without a GPU."""

    class Event:
        def record(self):
            import time
            self.at = time.perf_counter()

        def synchronize(self):
            pass

    def __call__(self):
        return self.Event(), self.Event(), lambda start, end: (end.at - start.at) * 1e3


def test_a_failing_case_is_recorded_and_the_run_goes_on():
    failures, calls = [], []
    seconds = gpu_kernels.time_or_record_failure("ok", lambda: calls.append(1), _HostEvents(), 5, failures)
    assert seconds is not None and seconds >= 0 and len(calls) == 3 + 5 and failures == []

    def broken():
        raise RuntimeError("illegal memory access")
    assert gpu_kernels.time_or_record_failure("im2col conv1_2 (minifcn)", broken, _HostEvents(),
                                              5, failures) is None
    assert failures == ["im2col conv1_2 (minifcn): RuntimeError: illegal memory access"]
    report = dict(REPORT, kernels=REPORT["kernels"] + [
        {"kernel": "col2im fc6", "shape": "s", "bytes": 1.0, "minifcn_s": None,
         "cupy_only_s": 1e-3, "torch_s": None}])
    assert "| col2im fc6 | s | - | - | - | 1.000 | - | - |" in gpu_kernels.markdown_report(report)


def test_without_cupy_it_says_so_in_one_line():
    code = ("import sys; sys.modules['cupy'] = None\n"
            "from benchmarks.gpu_kernels import main; main([])")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "python -m benchmarks.gpu_kernels: the GPU backend needs CuPy: pip install "
        "'minifcn[cuda]' on a machine with an NVIDIA GPU and its driver"]
