"""benchmarks/gpu_kernels.py: its pure-Python parts, a whole run on the emulated CuPy at
a small size (a GPU is needed for its timings, not to find its mistakes), and the
PyTorch net the whole-net benchmarks build (benchmarks/nets.py)."""
import functools
import json
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


def test_a_failing_case_is_recorded_and_the_run_goes_on(emulated_cupy):
    failures, calls = [], []
    events = gpu_kernels.cupy_events  # the emulation's events read the host's clock
    seconds = gpu_kernels.time_or_record_failure("ok", lambda: calls.append(1), events, 5, failures)
    assert seconds is not None and seconds >= 0 and len(calls) == 3 + 5 and failures == []

    def broken():
        raise RuntimeError("illegal memory access")
    assert gpu_kernels.time_or_record_failure("im2col conv1_2 (minifcn)", broken, events,
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


def test_fcn_shapes_are_the_reference_nets():
    # At 500 x 500: the sizes of Caffe's FCN-32s (pool5 22, fc6 16, upscore 544 cropped
    # at 19) and FCN-AlexNet's norm1 (173). At 8 x 8, pad 100 still leaves fc6 one pixel.
    assert gpu_kernels.fcn_shapes(500) == {
        "size": 500, "conv1": 698, "pool1": 349, "pool2": 175, "pool3": 88, "pool4": 44,
        "pool5": 22, "fc6": 16, "upscore": 544, "norm1": 173}
    assert gpu_kernels.fcn_shapes(8) == {
        "size": 8, "conv1": 206, "pool1": 103, "pool2": 52, "pool3": 26, "pool4": 13,
        "pool5": 7, "fc6": 1, "upscore": 64, "norm1": 50}


class _GemmSettings:
    """cupy._core._routines_linalg's compute-type switch (cuda.allow_tf32), which the
    emulation has no module for."""
    COMPUTE_TYPE_DEFAULT, COMPUTE_TYPE_TF32 = "default", "tf32"

    def __init__(self):
        self.switched = [self.COMPUTE_TYPE_DEFAULT]

    def set_compute_type(self, dtype, compute_type):
        self.switched.append(compute_type)

    def get_compute_type(self, dtype):
        return self.switched[-1]


@pytest.mark.slow
def test_the_whole_benchmark_runs_on_the_emulated_cupy(emulated_cupy, monkeypatch, tmp_path):
    """Every case builds and runs, at an 8 x 8 image and with a narrow FCN-32s, so that
    a borrowed GPU's minutes are not spent finding a wrong argument (the timings here
    mean nothing)."""
    from benchmarks import gpu_net
    from minifcn import cuda
    narrow = functools.partial(nets.minifcn_passes, widths=(8, 16, 32, 64, 64), fc_width=128)
    monkeypatch.setattr(nets, "minifcn_passes", narrow)
    gemm = _GemmSettings()
    monkeypatch.setattr(cuda, "_cupy_linalg", lambda: gemm)
    monkeypatch.setattr(gpu_kernels, "COPY_BYTES", 1 << 20)
    timed = gpu_kernels.time_or_record_failure

    def once(*args, warmup=None):  # no warm-up: one call of each case, at CPU speed
        return timed(*args, warmup=0)
    for module in (gpu_kernels, gpu_net):
        monkeypatch.setattr(module, "time_or_record_failure", once)
    gpu_kernels.main(["--size", "8", "--repeat", "1", "--net-repeat", "1", "--no-torch",
                      "--out", str(tmp_path)])
    [path] = tmp_path.glob("gpu-emulated-GPU-*.json")
    report = json.loads(path.read_text())
    assert [note for note in report["notes"] if note.startswith("Failed")] == []
    assert [row["kernel"] for row in report["kernels"]] == [
        "im2col conv1_2", "col2im conv1_2", "im2col fc6", "col2im fc6", "col2im upscore",
        "max_pool_forward", "max_pool_backward", "avg_pool_forward", "avg_pool_backward",
        "softmax_cross_entropy_forward", "softmax_cross_entropy_backward", "crop_forward",
        "crop_backward", "lrn_forward", "lrn_backward", "dropout"]
    assert report["kernels"][0]["shape"] == "(64, 206, 206) k3 s1 p1"
    assert all(row["minifcn_s"] is not None and row["cupy_only_s"] is not None
               for row in report["kernels"])
    assert [(row["pass"], row["precision"], row["minifcn_s"] is not None) for row in report["net"]] == [
        ("train step", "fp32 (TF32 off)", True), ("inference", "fp32 (TF32 off)", True),
        ("train step", "TF32 on", True), ("inference", "TF32 on", True)]
    assert gemm.switched[1:] == ["default", "tf32", "default"]  # and TF32 is off again
