"""GPU benchmarks: each CUDA kernel at FCN-sized shapes, the step's GEMMs, whole FCNs,
and the default training run.

    python -m benchmarks.gpu_kernels [--repeat 30] [--size 500] [--batches 1,8]
                                     [--no-kernels] [--no-net] [--default-run] [--no-torch]
                                     [--out DIR]

(`python -m benchmarks.gpu_all --out DIR` runs the GPU tests and all of this, each part
in its own process, within five minutes; benchmarks/results/README.md says more.)

Kernels (gpu_cases.py, one declarative entry each). The shapes are VGG16-FCN's on a
`size` x `size` image (`fcn_shapes`; at 500, with conv1_1's pad 100, conv1 maps are
698 x 698, pool1 349, ..., score_fr 16 x 16 upsampled to 544 and cropped to 500), at
batch 1 and batch 8. Each is timed with CUDA events, median of `repeat` runs after
warm-up, next to PyTorch's equivalent (cuDNN and ATen's CUDA kernels) and, at batch 1,
the op's `*_numpy` reference run on CuPy arrays. Bytes count every input read once and
every output written once; bytes / time is the kernel's bandwidth, also shown as a
fraction of the copy bandwidth (a 1 GiB device-to-device copy measured in the same run).
The targets (docs/design.md): >= 70% of it at batch 8, and <= 1.0x PyTorch's time.

GEMMs (gpu_net.py): the products of one FCN-32s training step at batch 1 (forward, input
and weight gradients of every convolution), their achieved TFLOP/s against one large
square sgemm measured in the same run, with TF32 off and on.

Whole nets (gpu_net.py): FCN-32s and FCN-8s at size x size, batch 1, 21 classes, the
reference solver: a train step and inference, minifcn against the same net in PyTorch,
at fp32 (TF32 off on both sides), TF32 on, and bf16 (PyTorch's autocast); and the peak
device memory of a train step on both sides.

Default run (`--default-run`, gpu_net.py): `minifcn train --device cuda` as it stands
(the built-in data, 4500 steps): images/s and the final mean IU.

Writes gpu-<device>-<date>.json and .md (the same numbers as tables) into --out
(default benchmarks/results/). tests/cuda/test_gpu_benchmark_report.py tests the
formatting and arithmetic, and runs the whole benchmark on the emulated CuPy at
--size 8, without a GPU.
"""
import argparse
import datetime
import re
import statistics
from pathlib import Path

from . import common, gpu_cases

RESULTS_DIR = common.RESULTS_DIR
COPY_BYTES = 1 << 30
BATCHES = (1, 8)


# ------------------------------------------------------------------- pure arithmetic
def fcn_shapes(size):
    """Side lengths of VGG16-FCN's maps for a size x size image: conv1 (3x3, pad 100),
    pool1..pool5 (2x2, stride 2, Caffe's ceil rounding), fc6's 7x7 output, upscore's
    64/32 upsampling of it (cropped at offset 19 back to size), and FCN-AlexNet's norm1
    (conv1: 11x11, stride 4, pad 100)."""
    from minifcn.reference.im2col import conv_output_size
    from minifcn.functions.pooling import pool_output_size
    shapes = {"size": size, "conv1": conv_output_size(size, 3, 1, 100)}
    side = shapes["conv1"]
    for index in range(1, 6):
        side = shapes[f"pool{index}"] = pool_output_size(side, 2, 2, 0, ceil_mode=True)
    shapes["fc6"] = conv_output_size(side, 7, 1, 0)
    shapes["upscore"] = (shapes["fc6"] - 1) * 32 + 64
    shapes["norm1"] = conv_output_size(size, 11, 4, 100)
    return shapes


def copy_bandwidth(nbytes, seconds):
    """Bytes/s of a device-to-device copy of `nbytes`: each byte is read and written."""
    return 2 * nbytes / seconds


def bandwidth_fraction(bytes_moved, seconds, copy_bytes_per_second):
    """(GB/s achieved, that as a fraction of the copy bandwidth)."""
    achieved = bytes_moved / seconds
    return achieved / 1e9, achieved / copy_bytes_per_second


def device_slug(device_name):
    """The device name made file-safe: "NVIDIA H100 80GB HBM3" -> "NVIDIA-H100-80GB-HBM3"."""
    return re.sub(r"[^A-Za-z0-9]+", "-", device_name).strip("-") or "unknown-gpu"


def result_paths(device_name, date, directory=RESULTS_DIR):
    """gpu-<device>-<date>.json and .md."""
    return common.result_paths("gpu", device_slug(device_name), date, directory)


def ms_text(seconds):
    return "-" if seconds is None else f"{seconds * 1e3:.3f}"


def _ratio(numerator, denominator):
    return "-" if numerator is None or denominator is None else f"{numerator / denominator:.2f}x"


def _gib(nbytes):
    return "-" if nbytes is None else f"{nbytes / 2**30:.2f}"


def kernel_lines(report):
    copy = report.get("copy_bandwidth_bytes_per_s")
    lines = ["| kernel | batch | shape | MB moved | minifcn ms | GB/s | % of copy | CuPy-only ms "
             "| PyTorch ms | minifcn / PyTorch |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in report["kernels"]:
        gbs, fraction = ("-", "-")
        if row["minifcn_s"] is not None and copy:
            gbs, fraction = bandwidth_fraction(row["bytes"], row["minifcn_s"], copy)
            gbs, fraction = f"{gbs:.0f}", f"{fraction:.0%}"
        lines.append(f"| {row['kernel']} | {row.get('batch', 1)} | {row['shape']} | "
                     f"{row['bytes'] / 1e6:.1f} | {ms_text(row['minifcn_s'])} | {gbs} | {fraction} | "
                     f"{ms_text(row.get('cupy_only_s'))} | {ms_text(row['torch_s'])} | "
                     f"{_ratio(row['minifcn_s'], row['torch_s'])} |")
    return lines


def gemm_lines(report):
    lines = ["| GEMMs | precision | GFLOP | ms | TFLOP/s | large GEMM TFLOP/s (same precision) "
             "| fraction |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for row in report["gemm"]:
        achieved = row["seconds"] and row["flops"] / row["seconds"] / 1e12
        peak = row["sgemm_tflops"]
        lines.append(f"| {row['what']} | {row['precision']} | {row['flops'] / 1e9:.1f} | "
                     f"{ms_text(row['seconds'])} | {'-' if not achieved else f'{achieved:.1f}'} | "
                     f"{'-' if not peak else f'{peak:.1f}'} | "
                     f"{'-' if not (achieved and peak) else f'{achieved / peak:.0%}'} |")
    return lines


def net_lines(report):
    lines = ["| net | pass | precision | minifcn ms | PyTorch ms | minifcn / PyTorch |",
             "|---|---|---|---:|---:|---:|"]
    for row in report["net"]:
        lines.append(f"| {row['model']} | {row['pass']} | {row['precision']} | "
                     f"{ms_text(row['minifcn_s'])} | {ms_text(row['torch_s'])} | "
                     f"{_ratio(row['minifcn_s'], row['torch_s'])} |")
    return lines


def memory_lines(report):
    lines = ["| net | peak device memory of a train step | minifcn GiB | PyTorch GiB | minifcn / PyTorch |",
             "|---|---|---:|---:|---:|"]
    for row in report["memory"]:
        lines.append(f"| {row['model']} | {row['precision']} | {_gib(row['minifcn_bytes'])} | "
                     f"{_gib(row['torch_bytes'])} | {_ratio(row['minifcn_bytes'], row['torch_bytes'])} |")
    return lines


def default_run_line(run):
    images = "-" if run.get("images_per_s") is None else f"{run['images_per_s']:.1f}"
    mean_iu = "-" if run.get("mean_iu") is None else f"{run['mean_iu']:.4f}"
    return (f"Default run (`minifcn train --device cuda`): {images} images/s over "
            f"{run.get('steps_timed')} of {run.get('iterations')} steps "
            f"({run.get('seconds', 0):.1f} s), final mean IU {mean_iu}.")


def markdown_report(report):
    """The results as a readable markdown page (`report` as main() writes it to JSON)."""
    copy = report.get("copy_bandwidth_bytes_per_s")
    lines = [f"# GPU benchmarks: {report['device']} ({report['date']})", "",
             (f"Copy bandwidth (1 GiB device-to-device): {copy / 1e9:.1f} GB/s. " if copy else "")
             + f"Times are medians of {report['repeat']} runs, in milliseconds."]
    for key, table in (("kernels", kernel_lines), ("gemm", gemm_lines), ("net", net_lines),
                       ("memory", memory_lines)):
        if report.get(key):
            lines += [""] + table(report)
    if report.get("default_run"):
        lines += ["", default_run_line(report["default_run"])]
    for note in report.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


def merge_reports(parts):
    """One report from the parts that separate processes wrote (gpu_all.py): the first
    part's header, every part's rows and notes."""
    merged = dict(parts[0])
    for key in ("kernels", "gemm", "net", "memory", "notes"):
        merged[key] = [row for part in parts for row in part.get(key, [])]
    for key in ("copy_bandwidth_bytes_per_s", "default_run"):
        merged[key] = next((part[key] for part in parts if part.get(key) is not None), None)
    return merged


# ------------------------------------------------------------------------------ timing
def time_gpu(function, events, repeat, warmup=3):
    """Median seconds of `function()` between two GPU events. `events()` returns a
    (start, end, elapsed_ms) triple for the framework that queues the work."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeat):
        start, end, elapsed_ms = events()
        start.record()
        function()
        end.record()
        end.synchronize()
        times.append(elapsed_ms(start, end) / 1e3)
    return statistics.median(times)


def time_or_record_failure(what, function, events, repeat, failures, warmup=3):
    """time_gpu's median, or None with "what: the error" added to `failures`: one
    broken case must not cost the rest of a run on a borrowed GPU."""
    try:
        return time_gpu(function, events, repeat, warmup)
    except Exception as error:  # noqa: BLE001 (anything: the report says what)
        failures.append(f"{what}: {type(error).__name__}: {error}")
        print(f"  FAILED {failures[-1]}", flush=True)
        return None


def cupy_events():
    from minifcn import backend
    cuda = backend.require_cupy().cuda
    return cuda.Event(), cuda.Event(), cuda.get_elapsed_time


def torch_events():
    import torch
    return (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True),
            lambda start, end: start.elapsed_time(end))


def measure_copy_bandwidth(cupy, repeat):
    source, target = cupy.empty(COPY_BYTES, cupy.uint8), cupy.empty(COPY_BYTES, cupy.uint8)
    seconds = time_gpu(lambda: target.data.copy_from_device_async(source.data, COPY_BYTES),
                       cupy_events, repeat)
    return copy_bandwidth(COPY_BYTES, seconds)


# ----------------------------------------------------------------------- kernel cases
def benchmark_kernels(cupy, torch, repeat, failures, size=500, batches=BATCHES):
    """Every gpu_cases.CASES entry at each batch: one report row each."""
    shapes, make = fcn_shapes(size), gpu_cases.Make(cupy, torch)
    rows = []
    for kernel, where, build, batched in gpu_cases.CASES:
        for batch in batches if batched else (1,):
            row = {"kernel": kernel, "batch": batch, "shape": where.format(batch=batch, **shapes),
                   "bytes": None, "minifcn_s": None, "cupy_only_s": None, "torch_s": None}
            try:
                run = build(batch, shapes, make, torch)
                row["bytes"] = gpu_cases.bytes_moved(run)
            except Exception as error:  # noqa: BLE001 (one broken case must not end the run)
                failures.append(f"{kernel} batch {batch}: {type(error).__name__}: {error}")
                print(f"  FAILED {failures[-1]}", flush=True)
                continue
            columns = [("minifcn_s", run.minifcn, cupy_events), ("torch_s", run.torch, torch_events)]
            if batch == 1:
                columns.append(("cupy_only_s", run.cupy_only, cupy_events))
            for column, function, events in columns:
                row[column] = function and time_or_record_failure(
                    f"{kernel} batch {batch} ({column[:-2]})", function, events, repeat, failures)
            rows.append(row)
            del run
            cupy.get_default_memory_pool().free_all_blocks()
            print(f"  {kernel:32s} batch {batch}  {ms_text(row['minifcn_s']):>9s} ms", flush=True)
    return rows


def _torch_with_cuda():
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cudnn.benchmark = True
    return torch


def _batches(text):
    try:
        batches = tuple(int(b) for b in text.split(","))
    except ValueError:
        batches = ()
    if not batches or min(batches) < 1:
        raise argparse.ArgumentTypeError(f"expected batch sizes like 1,8, got {text!r}")
    return batches


def _part(what, failures, function, *args):
    """function(*args), or None with the error in `failures`: one part that fails
    (a wrong argument, out of memory) leaves the others' numbers to write."""
    try:
        return function(*args)
    except Exception as error:  # noqa: BLE001
        failures.append(f"{what}: {type(error).__name__}: {error}")
        print(f"  FAILED {failures[-1]}", flush=True)
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_kernels", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=30, help="timed runs per kernel (median)")
    parser.add_argument("--net-repeat", type=int, default=10, help="timed runs per whole-net pass")
    parser.add_argument("--size", type=int, default=500,
                        help="image side the FCN shapes derive from (the reference: 500)")
    parser.add_argument("--batches", type=_batches, default=BATCHES, help="kernel batches (default 1,8)")
    parser.add_argument("--no-kernels", action="store_true", help="no kernel rows, no GEMM line")
    parser.add_argument("--no-net", action="store_true", help="no whole-net rows")
    parser.add_argument("--default-run", action="store_true",
                        help="also time `minifcn train --device cuda` (minutes)")
    parser.add_argument("--default-run-iterations", type=int,
                        help="steps of the default run (default: its own 4500)")
    parser.add_argument("--no-torch", action="store_true", help="no PyTorch comparison")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for .json and .md")
    args = parser.parse_args(argv)

    from minifcn import backend
    from minifcn.runtime import configure_process
    configure_process()
    try:
        cupy = backend.require_cupy()
    except RuntimeError as error:
        parser.exit(1, f"{parser.prog}: {error}\n")
    from . import gpu_net
    torch = None if args.no_torch else _torch_with_cuda()
    device = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
    device = device.decode() if isinstance(device, bytes) else device
    date = datetime.date.today().isoformat()
    report = {"device": device, "date": date, "repeat": args.repeat, "size": args.size,
              "versions": {"cupy": cupy.__version__, "torch": torch and torch.__version__,
                           "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion()},
              "copy_bandwidth_bytes_per_s": None, "kernels": [], "gemm": [], "net": [],
              "memory": [], "default_run": None, "notes": []}
    failures = []
    if not args.no_kernels:
        print(f"{device}: copy bandwidth ...", flush=True)
        report["copy_bandwidth_bytes_per_s"] = _part("copy bandwidth", failures,
                                                     measure_copy_bandwidth, cupy, args.repeat)
        report["kernels"] = benchmark_kernels(cupy, torch, args.repeat, failures, args.size,
                                              args.batches)
        report["gemm"] = _part("GEMMs", failures, gpu_net.benchmark_gemms, cupy, args.repeat,
                               args.size) or []
    if not args.no_net:
        net = _part("nets", failures, gpu_net.benchmark_net, torch, args.net_repeat, failures,
                    args.size)
        if net:
            report["net"], report["memory"], notes = net
            report["notes"] += notes
    if args.default_run:
        report["default_run"] = _part("default run", failures, gpu_net.default_run,
                                      args.default_run_iterations,
                                      gpu_net.default_run_dir(args.out))
    report["notes"] += [f"Failed: {failure}" for failure in failures]
    common.publish("gpu", device_slug(device), report, markdown_report(report), date, args.out)


if __name__ == "__main__":
    main()
