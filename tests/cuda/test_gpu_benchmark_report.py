"""benchmarks/gpu_kernels.py, gpu_net.py and gpu_all.py: their pure-Python parts, whole
runs on the emulated CuPy at a small size (a GPU is needed for their timings, not to find
their mistakes), and the PyTorch net the whole-net benchmarks build (benchmarks/nets.py)."""
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import emulated_cupy as emulated_cupy_module
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # `benchmarks` is a top-level package of the repository

from benchmarks import gpu_all, gpu_cases, gpu_kernels, gpu_net, nets  # noqa: E402

REPORT = {
    "device": "NVIDIA H100 80GB HBM3", "date": "2026-05-10", "repeat": 30,
    "copy_bandwidth_bytes_per_s": 3.0e12,
    "kernels": [{"kernel": "im2col conv1_2", "batch": 1, "shape": "(1, 64, 698, 698) k3 s1 p1",
                 "bytes": 1.5e9, "minifcn_s": 0.75e-3, "cupy_only_s": 4.0e-3, "torch_s": 1.5e-3},
                {"kernel": "lrn_forward", "batch": 8, "shape": "norm1", "bytes": 3.0e8,
                 "minifcn_s": 0.2e-3, "cupy_only_s": None, "torch_s": None}],
    "gemm": [{"what": "FCN-32s 500x500 train step (49 GEMMs)", "precision": "TF32 on",
              "flops": 1.0e12, "seconds": 0.01, "sgemm_tflops": 400.0}],
    "net": [{"model": "FCN-32s 500x500", "pass": "train step", "precision": "fp32 (TF32 off)",
             "minifcn_s": 0.130, "torch_s": 0.100},
            {"model": "FCN-8s 500x500", "pass": "inference", "precision": "bf16",
             "minifcn_s": None, "torch_s": 0.004}],
    "memory": [{"model": "FCN-32s 500x500", "precision": "fp32 (TF32 off)",
                "minifcn_bytes": 3 * 2**30, "torch_bytes": 4 * 2**30}],
    "default_run": {"images_per_s": 22.9, "mean_iu": 0.808, "iterations": 4500,
                    "steps_timed": 4500, "seconds": 196.5, "complete": True},
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
    # 1.5 GB in 0.75 ms: 2000 GB/s, 67% of 3000; half PyTorch's 1.5 ms
    assert ("| im2col conv1_2 | 1 | (1, 64, 698, 698) k3 s1 p1 | 1500.0 | 0.750 | 2000 | 67% | "
            "4.000 | 1.500 | 0.50x |") in lines
    assert "| lrn_forward | 8 | norm1 | 300.0 | 0.200 | 1500 | 50% | - | - | - |" in lines
    # 1 TFLOP in 10 ms: 100 TFLOP/s, a quarter of the large sgemm's 400
    assert ("| FCN-32s 500x500 train step (49 GEMMs) | TF32 on | 1000.0 | 10.000 | 100.0 | 400.0 "
            "| 25% |") in lines
    assert "| FCN-32s 500x500 | train step | fp32 (TF32 off) | 130.000 | 100.000 | 1.30x |" in lines
    assert "| FCN-8s 500x500 | inference | bf16 | - | 4.000 | - |" in lines
    assert "| FCN-32s 500x500 | fp32 (TF32 off) | 3.00 | 4.00 | 0.75x |" in lines
    assert ("Default run (`minifcn train --device cuda`): 22.9 images/s over 4500 of 4500 steps "
            "(196.5 s), final mean IU 0.8080.") in lines
    assert lines[-1] == "a note"


def test_merged_report_keeps_every_parts_rows_and_the_one_default_run():
    kernels = dict(REPORT, net=[], memory=[], default_run=None, notes=["k"])
    net = dict(REPORT, kernels=[], gemm=[], copy_bandwidth_bytes_per_s=None, default_run=None,
               notes=["n"])
    run = dict(REPORT, kernels=[], gemm=[], net=[], memory=[], copy_bandwidth_bytes_per_s=None,
               notes=[])
    merged = gpu_kernels.merge_reports([kernels, net, run])
    for key in ("kernels", "gemm", "net", "memory", "default_run", "copy_bandwidth_bytes_per_s"):
        assert merged[key] == REPORT[key], key
    assert merged["notes"] == ["k", "n"]


def test_a_case_counts_its_bytes_from_the_shapes():
    import numpy
    x, y = numpy.zeros((2, 3, 5), numpy.float32), numpy.zeros(7, numpy.float64)
    run = gpu_cases.Run(reads=[x, 100], minifcn=lambda: (y, [y]))
    assert gpu_cases.bytes_moved(run) == 2 * 3 * 5 * 4 + 100 + 2 * 7 * 8
    in_place = gpu_cases.Run(reads=[[x, x]], writes=[x], minifcn=lambda: None)
    assert gpu_cases.bytes_moved(in_place) == 3 * x.nbytes


def test_the_step_gemms_are_the_fcn32s_convolutions():
    products = gpu_net.step_gemms(500)
    forward = [p for p in products if p[1] == "forward"]
    # DESIGN.md: FCN-32s's forward pass at 500 x 500 is 363 GFLOP as a direct convolution
    assert gpu_net.gemm_flops(forward) == pytest.approx(363e9, rel=2e-3)
    # conv1_1: 64 filters of 3 x 3 x 3 over 698 x 698 pixels; no input gradient (the image)
    assert [p[1:] for p in products if p[0] == "conv1_1"] == [
        ("forward", 64, 27, 698 * 698), ("weight gradient", 64, 698 * 698, 27)]
    assert ("fc6", "input gradient", 512 * 49, 4096, 256) in products
    # backward: each forward product twice over (input and weight gradient), less
    # conv1_1's input gradient and the fixed upscore's weight gradient (21 x 21 x 64 x 64
    # weights over score_fr's 16 x 16)
    conv1_1, upscore = 2 * 64 * 27 * 698 * 698, 2 * 21 * 21 * 64 * 64 * 16 * 16
    assert gpu_net.gemm_flops(products) == 3 * gpu_net.gemm_flops(forward) - conv1_1 - upscore


def test_imports_without_cupy_or_torch():
    code = ("import sys; sys.modules['cupy'] = sys.modules['torch'] = None\n"
            "import benchmarks.gpu_kernels, benchmarks.gpu_net, benchmarks.gpu_all")
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
        {"kernel": "col2im fc6", "batch": 1, "shape": "s", "bytes": 1e6, "minifcn_s": None,
         "cupy_only_s": 1e-3, "torch_s": None}])
    assert "| col2im fc6 | 1 | s | 1.0 | - | - | - | 1.000 | - | - |" in gpu_kernels.markdown_report(report)


def test_without_cupy_it_says_so_in_one_line():
    code = ("import sys; sys.modules['cupy'] = None\n"
            "from benchmarks.gpu_kernels import main; main([])")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "python -m benchmarks.gpu_kernels: the GPU backend needs CuPy: pip install -e "
        '".[cuda]" in the minifcn checkout, on a machine with an NVIDIA GPU and its driver']


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


class _Pool:
    """CuPy's memory pool as the benchmarks read it; the emulation keeps no pool, so this
    one reports a fixed high-water mark, which must reach the report unchanged."""
    HELD = 123456789

    def free_all_blocks(self):
        pass

    def total_bytes(self):
        return self.HELD


NARROW = dict(widths=(8, 16, 32, 64, 64), fc_width=128)
TINY_DEFAULT_RUN = dict(iterations=3, val_images=2)


def _emulated_benchmarks(monkeypatch, emulated_cupy):
    """The benchmarks made small enough for the CPU: a narrow FCN, a 1 MiB copy, a 64^3
    sgemm, a three-step default run, each case timed once with no warm-up. Returns the
    (what, TF32 allowed) of every timed call."""
    from minifcn import cuda
    monkeypatch.setattr(nets, "MINIFCN_OPTIONS", NARROW)
    monkeypatch.setattr(gpu_net, "DEFAULT_RUN_OPTIONS", TINY_DEFAULT_RUN)
    monkeypatch.setattr(gpu_kernels, "COPY_BYTES", 1 << 20)
    monkeypatch.setattr(gpu_net, "SGEMM_SIZE", 64)
    monkeypatch.setattr(emulated_cupy, "get_default_memory_pool", _Pool)
    gemm = _GemmSettings()
    monkeypatch.setattr(cuda, "_cupy_linalg", lambda: gemm)
    timed, calls = gpu_kernels.time_or_record_failure, []

    def once(what, *args, warmup=None):  # no warm-up: one call of each case, at CPU speed
        calls.append((what, cuda.tf32_allowed()))
        return timed(what, *args, warmup=0)
    for module in (gpu_kernels, gpu_net):
        monkeypatch.setattr(module, "time_or_record_failure", once)
    return calls


def _bf16_gemms(monkeypatch):
    """(what, whether it ran a bf16 GEMM) of every minifcn net pass timed."""
    seen, timed = [], gpu_net.time_or_record_failure

    def recording(what, function, *args, **options):
        def call():
            before = len(emulated_cupy_module.gemm_types)
            function()
            seen.append((what, any(types[0] == emulated_cupy_module.CUDA_R_16BF for types in
                                   emulated_cupy_module.gemm_types[before:])))
        return timed(what, call if what.endswith("(minifcn)") else function, *args, **options)
    monkeypatch.setattr(gpu_net, "time_or_record_failure", recording)
    return seen


KERNELS = ["im2col conv1_2", "col2im conv1_2", "im2col fc6", "col2im fc6", "col2im upscore",
           "max_pool_forward", "max_pool_backward", "avg_pool_forward", "avg_pool_backward",
           "softmax_cross_entropy_forward", "softmax_cross_entropy_backward", "crop_forward",
           "crop_backward", "lrn_forward", "lrn_backward", "dropout", "dropout_seed_on_device", "relu_backward",
           "bias_grad"]
PER_PARAMETER = ["sgd_update", "adam_update", "grad_accumulate"]


@pytest.mark.slow
def test_the_whole_benchmark_runs_on_the_emulated_cupy(emulated_cupy, monkeypatch, tmp_path):
    """Every case builds and runs at batch 1 and 2, at an 8 x 8 image and with narrow
    FCNs, so that a borrowed GPU's minutes are not spent finding a wrong argument (the
    timings here mean nothing)."""
    from minifcn import cuda
    calls = _emulated_benchmarks(monkeypatch, emulated_cupy)
    bf16_gemms = _bf16_gemms(monkeypatch)
    gpu_kernels.main(["--size", "8", "--repeat", "1", "--net-repeat", "1", "--batches", "1,2",
                      "--default-run", "--no-torch", "--out", str(tmp_path)])
    [path] = tmp_path.glob("gpu-emulated-GPU-*.json")
    report = json.loads(path.read_text())
    assert [note for note in report["notes"] if note.startswith("Failed")] == []
    assert [(row["kernel"], row["batch"]) for row in report["kernels"]] == (
        [(kernel, batch) for kernel in KERNELS for batch in (1, 2)]
        + [(kernel, 1) for kernel in PER_PARAMETER])
    rows = {(row["kernel"], row["batch"]): row for row in report["kernels"]}
    assert rows["im2col conv1_2", 2]["shape"] == "(2, 64, 206, 206) k3 s1 p1"
    # bytes from the shapes: conv1_2's input (2 x 64 x 206^2) and its 9 x 206^2 columns
    assert rows["im2col conv1_2", 2]["bytes"] == 4 * 2 * 64 * 206 * 206 * (1 + 9)
    # x read, y written (4 bytes) and argmax written (1 byte: the offset in its window)
    assert rows["max_pool_forward", 1]["bytes"] == 4 * 64 * 206 * 206 + (4 + 1) * 64 * 103 * 103
    narrow_parameters = sum(p.size for p in cuda_free_fcn32s_parameters())
    assert rows["sgd_update", 1]["bytes"] == 5 * 4 * narrow_parameters  # w, g, v read; w, v written
    assert rows["adam_update", 1]["bytes"] == 7 * 4 * narrow_parameters
    assert all(row["minifcn_s"] is not None for row in report["kernels"])
    assert all((row["cupy_only_s"] is not None) == (row["batch"] == 1)
               for row in report["kernels"] if row["kernel"] in KERNELS[:16])
    assert report["copy_bandwidth_bytes_per_s"] > 0
    assert [(row["precision"], row["flops"]) for row in report["gemm"]] == [
        (precision, gpu_net.gemm_flops(gpu_net.step_gemms(8))) for precision in
        ("fp32 (TF32 off)", "TF32 on", "bf16")]
    assert all(row["seconds"] > 0 and row["sgemm_tflops"] > 0 for row in report["gemm"])
    # every precision's row has minifcn's time, bf16's included, with the fields and the
    # precision names the report has always had
    assert [(row["model"], row["pass"], row["precision"], row["minifcn_s"] is not None)
            for row in report["net"]] == [
        (f"{model} 8x8", pass_name, precision, True)
        for model in ("FCN-32s", "FCN-8s") for precision in ("fp32 (TF32 off)", "TF32 on", "bf16")
        for pass_name in ("train step", "inference")]
    assert all(set(row) == {"model", "pass", "precision", "minifcn_s", "torch_s"}
               for row in report["net"])
    assert [(row["model"], row["precision"], row["minifcn_bytes"]) for row in report["memory"]] == [
        (f"{model} 8x8", precision, _Pool.HELD)
        for model in ("FCN-32s", "FCN-8s") for precision in gpu_net.PRECISIONS]
    assert not [note for note in report["notes"] if note.startswith("Not run")]
    # the bf16 passes ran bf16 GEMMs (cuBLAS's CUDA_R_16BF operands), the others none
    assert [what for what, bf16 in bf16_gemms if bf16] == [
        f"{model} bf16 {pass_name} (minifcn)" for model in ("FCN-32s", "FCN-8s")
        for pass_name in ("train step", "inference")]
    # TF32 was on for exactly the minifcn passes labelled so, and is off again
    net_calls = [(what, tf32) for what, tf32 in calls if what.startswith("FCN")]
    assert net_calls and all(tf32 == ("TF32 on" in what) for what, tf32 in net_calls)
    assert not cuda.tf32_allowed()
    run = report["default_run"]
    assert run["complete"] and run["iterations"] == run["steps_timed"] == 3
    assert run["images_per_s"] == pytest.approx(3 / run["seconds"])
    log = [json.loads(line) for line in (tmp_path / "default-run" / "run" / "log.jsonl").open()]
    assert run["mean_iu"] == pytest.approx(log[-1]["mean_iu"]) and 0 <= run["mean_iu"] <= 1
    markdown = (tmp_path / path.name.replace(".json", ".md")).read_text()
    assert "| relu_backward | 2 |" in markdown and "Default run" in markdown


def cuda_free_fcn32s_parameters():
    """The narrow FCN-32s's learned parameters (host arrays)."""
    from minifcn import models
    net = models.FCN32s(n_class=nets.N_CLASS, **NARROW)
    return [p for _, p in net.named_parameters() if p.requires_grad]


# --------------------------------------------------------------------------- gpu_all
EMULATED_PYTHON = '''"""`python -m MODULE ARGS` with the emulated CuPy and the small settings installed."""
import ctypes, json, os, runpy, sys
sys.path[:0] = [{repo!r}, {tests!r}]
import cuda_emulator, emulated_cupy, test_gpu_benchmark_report as t
from minifcn import backend, cuda
from benchmarks import gpu_kernels, gpu_net, nets
libraries = {{(lambda name, dtype, bits: (name, dtype, int(bits)))(*key.split("|")): ctypes.CDLL(path)
             for key, path in json.loads(os.environ["EMULATED_KERNELS"]).items()}}
cupy = emulated_cupy.EmulatedCupy()
cupy.get_default_memory_pool = t._Pool
backend._cupy = cupy
cuda._enqueue = emulated_cupy.kernel_launcher(cuda_emulator.EmulatedGpu(libraries, {{}}).enqueuer())
gemm = t._GemmSettings()
cuda._cupy_linalg = lambda: gemm
nets.MINIFCN_OPTIONS, gpu_net.DEFAULT_RUN_OPTIONS = t.NARROW, t.TINY_DEFAULT_RUN
gpu_kernels.COPY_BYTES, gpu_net.SGEMM_SIZE = 1 << 20, 64
timed = gpu_kernels.time_or_record_failure
gpu_kernels.time_or_record_failure = gpu_net.time_or_record_failure = (
    lambda *args, warmup=None: timed(*args, warmup=0))
assert sys.argv[1] == "-m"
sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
'''


@pytest.mark.slow
def test_gpu_all_runs_every_stage_and_survives_failing_ones(emulated_gpu, monkeypatch, tmp_path):
    """gpu_all as on a GPU machine, its benchmark stages in child processes on the
    emulated CuPy (at an 8 x 8 image, batches 1 and 2); the GPU tests stage is the real
    command, which without a GPU skips them. Two extra stages fail, by exit code and by
    time-out, and the stages after them still run."""
    boot = tmp_path / "emulated_python.py"
    boot.write_text(EMULATED_PYTHON.format(repo=str(REPO), tests=str(Path(__file__).parent)))
    monkeypatch.setenv("EMULATED_KERNELS", json.dumps(
        {"|".join(map(str, key)): library._name for key, library in emulated_gpu.libraries.items()}))
    real_stages = gpu_all.stages

    def emulated_stages(out, repeat, net_repeat):
        stages = real_stages(out, python=(sys.executable, str(boot)), repeat=repeat,
                             net_repeat=net_repeat)
        stages[1].argv += ["tests/cuda/test_gpu.py"]  # the GPU tests, fewer to collect
        stages[2].argv += ["--size", "8", "--batches", "1,2", "--no-torch"]
        stages[3].argv += ["--size", "8", "--no-torch"]
        stages[4].argv += ["--size", "8", "--no-torch"]
        for stage in stages:  # the caps are a GPU's; the emulation runs at CPU speed
            stage.cap_s = stage.cap_s and 900
        broken = gpu_all.Stage("broken", [sys.executable, "-c", "raise SystemExit(3)"], 10,
                               lambda log, out: "")
        stuck = gpu_all.Stage("stuck", [sys.executable, "-c", "import time; time.sleep(60)"], 2,
                              lambda log, out: "")
        return stages[:2] + [broken, stuck] + stages[2:]
    monkeypatch.setattr(gpu_all, "stages", emulated_stages)
    monkeypatch.setattr(gpu_all, "_gpu_ready", lambda: True)  # the emulated one is
    out = tmp_path / "run"
    code = gpu_all.main(["--out", str(out), "--repeat", "1", "--net-repeat", "1", "--budget", "3000"])
    summary = (out / "summary.md").read_text()
    status = {line.split("|")[1].strip(): line.split("|")[2].strip()
              for line in summary.splitlines()[4:]}
    assert status == {"env": "ok", "gpu tests": "ok", "broken": "exit 3", "stuck": "timed out",
                      "kernels": "ok", "nets": "ok", "default run": "ok"}, summary
    assert code == 1  # not every stage passed
    assert "[gpu_all: stopped after 2 s]" in (out / "stuck.log").read_text()
    [path] = out.glob("gpu-emulated-GPU-*.json")
    report = json.loads(path.read_text())
    assert [note for note in report["notes"] if note.startswith("Failed")] == []
    assert {row["batch"] for row in report["kernels"]} == {1, 2}
    assert len(report["gemm"]) == 3 and len(report["net"]) == 12 and len(report["memory"]) == 6
    assert report["copy_bandwidth_bytes_per_s"] > 0
    assert report["default_run"]["complete"] and report["default_run"]["mean_iu"] is not None
    assert gpu_all._progress(out) == report["default_run"]  # found where a cut run leaves it
    assert "batch 2: " in summary and "of copy" in summary
    assert "final mean IU" in summary and "images/s over 3 steps" in summary
    with tarfile.open(tmp_path / "run.tar.gz") as archive:
        names = set(archive.getnames())
    assert {"run/summary.md", f"run/{path.name}", "run/kernels.log"} <= names


def test_gpu_all_keeps_a_default_run_stopped_by_the_budget(tmp_path):
    """The default run killed after its first validation: the merged report has its
    images/s over the steps done, no mean IU, and a note that says so."""
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "gpu-x-2026-12-01.json").write_text(json.dumps(
        dict(REPORT, default_run=None, notes=[])))
    progress = {"images_per_s": 25.0, "mean_iu": None, "last_mean_iu": 0.35, "iterations": 4500,
                "steps_timed": 1500, "seconds": 60.0, "complete": False}
    # where the stage's `gpu_kernels --default-run --out DIR/default-run` leaves it
    run_dir = gpu_net.default_run_dir(tmp_path / "default-run")
    run_dir.mkdir(parents=True)
    (run_dir / "default_run.json").write_text(json.dumps(progress))
    merged = gpu_all.merged_report(tmp_path)
    assert merged["default_run"] == progress and merged["kernels"] == REPORT["kernels"]
    assert merged["notes"] == ["The default run was stopped at step 1500 of 4500 by gpu_all's "
                               "time budget: its images/s are over those steps, and it has no "
                               "final mean IU."]
    assert gpu_all.summarize_default_run("", tmp_path) == (
        "25.0 images/s over 1500 steps of 4500, no final mean IU (run not finished)")


def test_gpu_all_refuses_a_folder_with_results_in_it(tmp_path):
    (tmp_path / "old.json").write_text("{}")
    result = subprocess.run([sys.executable, "-m", "benchmarks.gpu_all", "--out", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and "is not empty" in result.stderr


def test_gpu_all_summaries(tmp_path):
    for stage in ("kernels", "nets"):
        (tmp_path / stage).mkdir()
        (tmp_path / stage / "gpu-x-2026-12-01.json").write_text(json.dumps(
            dict(REPORT, notes=["Failed: lrn_forward batch 8 (torch): RuntimeError: x"])))
    # at batch 8 (the largest), lrn_forward moves 0.3 GB in 0.2 ms: 1500 GB/s, 50% of 3000;
    # im2col conv1_2 is the one row with both sides timed, at half PyTorch's time
    assert gpu_all.summarize_kernels("", tmp_path) == (
        "2 rows; batch 8: 50%-50% of copy, 0/1 at >= 70%; <= 1.0x PyTorch: 1/1; 1 failed")
    assert gpu_all.summarize_nets("", tmp_path) == (
        "train step vs PyTorch: FCN-32s fp32 1.30x; 1 failed")
    assert gpu_all.summarize_kernels("", tmp_path / "missing") == "no report"
    env = ("name, driver_version, memory.total [MiB], clocks.max.sm [MHz]\n"
           "NVIDIA H200, 580.159.04, 143771 MiB, 1980 MHz\npython 3.12.3 numpy 2.5.2\n")
    assert gpu_all.summarize_env(env, tmp_path) == (
        "NVIDIA H200, 580.159.04, 143771 MiB, 1980 MHz; python 3.12.3 numpy 2.5.2")
    assert gpu_all.summarize_env("bash: nvidia-smi: command not found\npython 3.11\n", tmp_path) == (
        "no nvidia-smi; python 3.11")


def test_gpu_all_refuses_at_once_without_a_gpu(tmp_path, capsys):
    """Without CuPy and a GPU (this machine, or CI) it says so, and runs no stage."""
    if gpu_all._gpu_ready():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as refused:
        gpu_all.main(["--out", str(tmp_path / "run")])
    assert refused.value.code == 2
    assert "needs CuPy and an NVIDIA GPU" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
