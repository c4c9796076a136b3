"""GPU benchmarks: each CUDA kernel at FCN-sized shapes, then a whole FCN-32s step.

    python -m benchmarks.gpu_kernels [--repeat 30] [--size 500] [--no-net] [--no-torch]
                                     [--out DIR]

Kernels. The shapes are VGG16-FCN's on a `size` x `size` image (`fcn_shapes`; at 500,
with conv1_1's pad 100, conv1 maps are 698 x 698, pool1 349, ..., score_fr 16 x 16
upsampled to 544 and cropped to 500). Each kernel is timed with CUDA events, median of
`repeat` runs after warm-up, next to:
  - CuPy only: the op's `*_numpy` reference (written against the array API) run on
    CuPy arrays, what the GPU backend would do without kernels/*.cu;
  - PyTorch (cuDNN and ATen's CUDA kernels) where torch with CUDA is installed.
Each kernel's bytes moved count every input read once and every output written once;
bytes / time is its bandwidth, reported as a fraction of the device's copy bandwidth
(a 1 GiB device-to-device copy measured in the same run). DESIGN.md asks >= 70% for
the memory-bound kernels.

Whole net (gpu_net.py, in the same run and report): FCN-32s at size x size, batch 1,
21 classes, the reference solver (SGD lr 1e-10, momentum 0.99, weight decay 5e-4): a
train step (forward, loss, backward, update) and inference, minifcn against the same
net in PyTorch, first with TF32 off on both sides (plain float32 GEMMs), then on.
DESIGN.md asks the fp32 train step to be <= 1.3x PyTorch's.

Writes benchmarks/results/gpu-<device>-<date>.json and .md (the same numbers as a
table). tests/cuda/test_gpu_benchmark_report.py tests the formatting and arithmetic,
and runs the whole benchmark on the emulated CuPy at --size 8, without a GPU.
"""
import argparse
import datetime
import math
import re
import statistics
from pathlib import Path

from . import common

RESULTS_DIR = common.RESULTS_DIR
COPY_BYTES = 1 << 30


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


def markdown_report(report):
    """The results as a readable markdown page (`report` as main() writes it to JSON)."""
    copy = report["copy_bandwidth_bytes_per_s"]
    lines = [f"# GPU benchmarks: {report['device']} ({report['date']})", "",
             f"Copy bandwidth (1 GiB device-to-device): {copy / 1e9:.1f} GB/s. "
             f"Times are medians of {report['repeat']} runs, in milliseconds.", "",
             "| kernel | shape | minifcn ms | GB/s | % of copy | CuPy-only ms | PyTorch ms "
             "| minifcn / PyTorch |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in report["kernels"]:
        gbs, fraction = ("-", "-")
        if row["minifcn_s"] is not None:
            gbs, fraction = bandwidth_fraction(row["bytes"], row["minifcn_s"], copy)
            gbs, fraction = f"{gbs:.0f}", f"{fraction:.0%}"
        lines.append(f"| {row['kernel']} | {row['shape']} | {ms_text(row['minifcn_s'])} | {gbs} | "
                     f"{fraction} | {ms_text(row['cupy_only_s'])} | {ms_text(row['torch_s'])} | "
                     f"{_ratio(row['minifcn_s'], row['torch_s'])} |")
    if report.get("net"):
        lines += ["", "| net | pass | GEMM precision | minifcn ms | PyTorch ms | minifcn / PyTorch |",
                  "|---|---|---|---:|---:|---:|"]
        for row in report["net"]:
            lines.append(f"| {row['model']} | {row['pass']} | {row['precision']} | "
                         f"{ms_text(row['minifcn_s'])} | {ms_text(row['torch_s'])} | "
                         f"{_ratio(row['minifcn_s'], row['torch_s'])} |")
    for note in report.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


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
class Case:
    """One kernel at one shape: the bytes it must move and three ways to run it."""

    def __init__(self, kernel, shape, bytes_moved, minifcn, cupy_only, torch=None):
        self.kernel, self.shape, self.bytes_moved = kernel, shape, bytes_moved
        self.minifcn, self.cupy_only, self.torch = minifcn, cupy_only, torch


def im2col_cases(shapes, normal, torch):
    """conv1_2 (3x3 pad 1 on 64 x 698 x 698) and fc6 (7x7 on 512 x 22 x 22) both ways,
    and upscore's col2im (the 64/32 deconvolution of score_fr, 16 x 16 -> 544 x 544)."""
    conv1, pool5, up = shapes["conv1"], shapes["pool5"], shapes["upscore"]
    return (convolution_cases("conv1_2", (64, conv1, conv1), 3, 1, 1, normal, torch)
            + convolution_cases("fc6", (512, pool5, pool5), 7, 1, 0, normal, torch)
            + convolution_cases("upscore", (21, up, up), 64, 32, 0, normal, torch)[1:])


def convolution_cases(name, image_shape, k, s, p, normal, torch):
    """[im2col, col2im] for a k x k window, stride s, pad p over a (C, H, W) image."""
    from minifcn import cuda
    from minifcn.reference.im2col import col2im_numpy, conv_output_size, im2col_numpy
    c, h, w = image_shape
    oh, ow = conv_output_size(h, k, s, p), conv_output_size(w, k, s, p)
    x, col = normal(c, h, w), normal(c, k, k, oh, ow)
    window, steps = (k, k, s, s, p, p, 1, 1), (s, s, p, p, 1, 1)
    unfold = fold = None
    if torch:
        t_x, t_col = torch.as_tensor(x), torch.as_tensor(col.reshape(1, c * k * k, oh * ow))
        unfold = lambda: torch.nn.functional.unfold(t_x[None], k, 1, p, s)  # noqa: E731
        fold = lambda: torch.nn.functional.fold(t_col, (h, w), k, 1, p, s)  # noqa: E731
    return [Case(f"im2col {name}", f"{image_shape} k{k} s{s} p{p}", x.nbytes + col.nbytes,
                 lambda: cuda.im2col(x, *window, oh, ow),
                 lambda: im2col_numpy(x, *window, oh, ow), unfold),
            Case(f"col2im {name}", f"{col.shape} -> {(h, w)}", col.nbytes + x.nbytes,
                 lambda: cuda.col2im(col, h, w, *steps),
                 lambda: col2im_numpy(col, h, w, *steps), fold)]


def pooling_cases(shapes, normal, torch):
    """pool1: 2x2 stride 2 with Caffe's ceil rounding on conv1_2's 64 x 698 x 698."""
    from minifcn import cuda
    from minifcn.reference import pooling
    side = shapes["conv1"]
    x = normal(1, 64, side, side)
    window, out = (2, 2, 2, 2, 0, 0), (shapes["pool1"],) * 2
    y, argmax = cuda.max_pool_forward(x, *window, *out)  # argmax: int32, as many bytes as y
    gy = normal(*y.shape)
    torch_calls = [None] * 4
    if torch:
        aten, tf = torch.ops.aten, torch.nn.functional
        t_x, t_gy = torch.as_tensor(x), torch.as_tensor(gy)
        t_argmax = tf.max_pool2d(t_x, 2, 2, ceil_mode=True, return_indices=True)[1]
        torch_calls = [
            lambda: tf.max_pool2d(t_x, 2, 2, ceil_mode=True, return_indices=True),
            lambda: aten.max_pool2d_with_indices_backward(t_gy, t_x, [2, 2], [2, 2], [0, 0],
                                                          [1, 1], True, t_argmax),
            lambda: tf.avg_pool2d(t_x, 2, 2, ceil_mode=True),
            lambda: aten.avg_pool2d_backward(t_gy, t_x, [2, 2], [2, 2], [0, 0], True, True, None)]
    shape = f"pool1 {x.shape}"
    return [
        Case("max_pool_forward", shape, x.nbytes + y.nbytes + argmax.nbytes,
             lambda: cuda.max_pool_forward(x, *window, *out),
             lambda: pooling.max_pool_forward_numpy(x, *window, *out), torch_calls[0]),
        Case("max_pool_backward", shape, gy.nbytes + argmax.nbytes + x.nbytes,
             lambda: cuda.max_pool_backward(gy, argmax, side, side, *window),
             lambda: pooling.max_pool_backward_numpy(gy, argmax, side, side, *window), torch_calls[1]),
        Case("avg_pool_forward", shape, x.nbytes + y.nbytes,
             lambda: cuda.avg_pool_forward(x, *window, *out),
             lambda: pooling.avg_pool_forward_numpy(x, *window, *out), torch_calls[2]),
        Case("avg_pool_backward", shape, gy.nbytes + x.nbytes,
             lambda: cuda.avg_pool_backward(gy, side, side, *window),
             lambda: pooling.avg_pool_backward_numpy(gy, side, side, *window), torch_calls[3]),
    ]


def loss_and_crop_cases(shapes, normal, torch, cupy):
    """The loss on FCN's 21 x 500 x 500 output (10% of pixels ignored), and the crop of
    upscore's 544 x 544 to it."""
    from minifcn import cuda
    from minifcn.reference import crop, loss
    size, up, offset = shapes["size"], shapes["upscore"], 19
    score, gy, upscore = normal(1, 21, size, size), normal(1, 21, size, size), normal(1, 21, up, up)
    rng = cupy.random.default_rng(1)
    target = rng.integers(0, 21, size=(1, size, size), dtype=cupy.int32)
    target[rng.random((1, size, size)) < 0.1] = 255
    coefficient = cupy.asarray(1.0, dtype=cupy.float32)
    torch_calls = [None] * 4
    if torch:
        tf = torch.nn.functional
        t_score, t_target = torch.as_tensor(score), torch.as_tensor(target).long()
        t_leaf = t_score.clone().requires_grad_()
        t_loss = tf.cross_entropy(t_leaf, t_target, ignore_index=255, reduction="sum")
        t_upscore, t_gy = torch.as_tensor(upscore), torch.as_tensor(gy)
        torch_calls = [
            lambda: tf.cross_entropy(t_score, t_target, ignore_index=255, reduction="sum"),
            lambda: torch.autograd.grad(t_loss, t_leaf, retain_graph=True),
            lambda: t_upscore[:, :, offset:offset + size, offset:offset + size].contiguous(),
            lambda: tf.pad(t_gy, (offset, up - size - offset) * 2)]
    return [
        Case("softmax_cross_entropy_forward", f"{score.shape}", score.nbytes + target.nbytes,
             lambda: cuda.softmax_cross_entropy_forward(score, target, 255),
             lambda: loss.softmax_cross_entropy_forward_numpy(score, target, 255), torch_calls[0]),
        Case("softmax_cross_entropy_backward", f"{score.shape}", 2 * score.nbytes + target.nbytes,
             lambda: cuda.softmax_cross_entropy_backward(score, target, 255, coefficient),
             lambda: loss.softmax_cross_entropy_backward_numpy(score, target, 255, coefficient),
             torch_calls[1]),
        Case("crop_forward", f"{upscore.shape} -> {size}", 2 * gy.nbytes,
             lambda: cuda.crop_forward(upscore, offset, offset, size, size),
             lambda: crop.crop_forward_numpy(upscore, offset, offset, size, size), torch_calls[2]),
        Case("crop_backward", f"{gy.shape} -> {up}", gy.nbytes + upscore.nbytes,
             lambda: cuda.crop_backward(gy, up, up, offset, offset),
             lambda: crop.crop_backward_numpy(gy, up, up, offset, offset), torch_calls[3]),
    ]


def lrn_cases(shapes, normal, torch):
    """FCN-AlexNet's norm1 at 500x500: 96 x 173 x 173, size 5."""
    from minifcn import cuda
    from minifcn.reference import norm
    side = shapes["norm1"]
    x, gy = normal(1, 96, side, side), normal(1, 96, side, side)
    y, scale = cuda.lrn_forward(x, 5, 1e-4, 0.75, 1.0)
    torch_calls = [None] * 2
    if torch:
        tf = torch.nn.functional
        t_x, t_gy = torch.as_tensor(x), torch.as_tensor(gy)
        t_leaf = t_x.clone().requires_grad_()
        t_y = tf.local_response_norm(t_leaf, 5, 1e-4, 0.75, 1.0)
        torch_calls = [lambda: tf.local_response_norm(t_x, 5, 1e-4, 0.75, 1.0),
                       lambda: torch.autograd.grad(t_y, t_leaf, t_gy, retain_graph=True)]
    shape = f"norm1 {x.shape}"
    return [
        Case("lrn_forward", shape, 3 * x.nbytes,  # reads x, writes y and scale
             lambda: cuda.lrn_forward(x, 5, 1e-4, 0.75, 1.0),
             lambda: norm.lrn_forward_numpy(x, 5, 1e-4, 0.75, 1.0), torch_calls[0]),
        Case("lrn_backward", shape, 5 * x.nbytes,  # reads x, y, scale, gy, writes gx
             lambda: cuda.lrn_backward(x, y, scale, gy, 5, 1e-4, 0.75),
             lambda: norm.lrn_backward_numpy(x, y, scale, gy, 5, 1e-4, 0.75), torch_calls[1]),
    ]


def dropout_cases(shapes, normal, torch):
    """Dropout of fc6's output (4096 x 16 x 16; fc7's is the same), p = 0.5: the mask
    hashed and applied in one pass against drawing, comparing and multiplying."""
    from minifcn import cuda
    from minifcn.reference.dropout import dropout_numpy
    x = normal(1, 4096, shapes["fc6"], shapes["fc6"])
    threshold = math.ceil(0.5 * 2**53)
    torch_call = None
    if torch:
        t_x = torch.as_tensor(x)
        torch_call = lambda: torch.nn.functional.dropout(t_x, 0.5, training=True)  # noqa: E731
    return [Case("dropout", f"fc6 {x.shape}", 2 * x.nbytes,  # reads x, writes y
                 lambda: cuda.dropout(x, 12345, threshold, 2.0),
                 lambda: dropout_numpy(x, 12345, threshold, 2.0), torch_call)]


def benchmark_kernels(cupy, torch, repeat, failures, size=500):
    shapes = fcn_shapes(size)
    rng = cupy.random.default_rng(0)

    def normal(*shape):
        return rng.standard_normal(shape, dtype=cupy.float32)

    rows = []
    for family, build in (("im2col", lambda: im2col_cases(shapes, normal, torch)),
                          ("pooling", lambda: pooling_cases(shapes, normal, torch)),
                          ("loss and crop", lambda: loss_and_crop_cases(shapes, normal, torch, cupy)),
                          ("lrn", lambda: lrn_cases(shapes, normal, torch)),
                          ("dropout", lambda: dropout_cases(shapes, normal, torch))):
        try:
            cases = build()
        except Exception as error:  # noqa: BLE001
            failures.append(f"{family} cases: {type(error).__name__}: {error}")
            print(f"  FAILED {failures[-1]}", flush=True)
            cases = []
        for case in cases:
            row = {"kernel": case.kernel, "shape": case.shape, "bytes": case.bytes_moved}
            for column, function, events in (("minifcn_s", case.minifcn, cupy_events),
                                             ("cupy_only_s", case.cupy_only, cupy_events),
                                             ("torch_s", case.torch, torch_events)):
                row[column] = function and time_or_record_failure(
                    f"{case.kernel} ({column[:-2]})", function, events, repeat, failures)
            rows.append(row)
            print(f"  {case.kernel:32s} {ms_text(row['minifcn_s']):>9s} ms", flush=True)
        cupy.get_default_memory_pool().free_all_blocks()
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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_kernels", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=30, help="timed runs per kernel (median)")
    parser.add_argument("--net-repeat", type=int, default=10, help="timed runs per whole-net pass")
    parser.add_argument("--size", type=int, default=500,
                        help="image side the FCN shapes derive from (the reference: 500)")
    parser.add_argument("--no-net", action="store_true", help="kernels only, no FCN-32s")
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
    torch = None if args.no_torch else _torch_with_cuda()
    device = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
    device = device.decode() if isinstance(device, bytes) else device
    date = datetime.date.today().isoformat()
    print(f"{device}: copy bandwidth ...", flush=True)
    report = {"device": device, "date": date, "repeat": args.repeat, "size": args.size,
              "versions": {"cupy": cupy.__version__, "torch": torch and torch.__version__,
                           "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion()},
              "copy_bandwidth_bytes_per_s": measure_copy_bandwidth(cupy, args.repeat)}
    failures = []
    report["kernels"] = benchmark_kernels(cupy, torch, args.repeat, failures, args.size)
    report["net"], report["notes"] = [], []
    if not args.no_net:
        from .gpu_net import benchmark_net
        try:
            report["net"], report["notes"] = benchmark_net(torch, args.net_repeat, failures, args.size)
        except Exception as error:  # noqa: BLE001 (the kernels' numbers are still worth writing)
            failures.append(f"FCN-32s: {type(error).__name__}: {error}")
    report["notes"] += [f"Failed: {failure}" for failure in failures]
    common.publish("gpu", device_slug(device), report, markdown_report(report), date, args.out)


if __name__ == "__main__":
    main()
