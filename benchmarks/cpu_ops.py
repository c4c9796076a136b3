"""Per-op CPU benchmark at FCN-32s shapes (500x500 input, conv1_1 pad 100), with the
NumPy kernels and the numba kernels, next to PyTorch CPU when torch is installed.

    python -m benchmarks.cpu_ops [--repeat 3] [--ops im2col conv ... dropout] [--no-torch] [--out DIR]

Rows:
  - im2col / col2im of conv1_2's input (64 x 698 x 698, 3x3, pad 1): a whole image's
    columns (1.1 GB), the data movement a blocked convolution does tile by tile;
  - each distinct VGG16-FCN convolution, forward (y = W im2col(x) + b) and backward
    (gW and gx: twice the forward's GEMM work), through functions/conv.py as the nets
    run it: blocked im2col, or Winograd (forward and gx of the 3x3 layers but conv1_1);
  - upscore (the 64/32 deconvolution) forward and backward;
  - max pooling of conv1_2's output, forward and backward;
  - the softmax loss over 21 x 500 x 500 scores, forward and backward;
  - the weight gradient's GEMM per tile, both ways round (functions/conv.py,
    _weight_grad, picks col @ gy^T): conv1_2 of the default small net and of FCN-32s;
  - the SGD update of fc6's weight (411 MB; reference/solver.py, cpu/solver.py);
  - dropout of fc6's output (4096 x 16 x 16, p 0.5; functions/activation.py, cpu/dropout.py).

GEMM-bound rows report GFLOP/s and that as a fraction of the machine's sgemm rate
(a 4096^3 float32 np.matmul measured in the same run), the FLOPs always a direct
convolution's: where Winograd does 2.25x fewer, the rate can pass sgemm's (an
effective rate, not the GEMMs'); memory-bound rows report GB/s
(every input read once, every output written once). Times are medians after a warm-up.
Writes benchmarks/results/cpu-ops-<machine>-<date>.json and .md.
"""
import argparse
import datetime
import sys

import numpy

from minifcn import backend
from minifcn.functions import conv
from minifcn.reference import im2col, pooling

from . import common

KERNEL_SETS = ["numpy", "numba"]

# (name, C_in, C_out, kernel, padding, input height = width) of VGG16-FCN at 500x500.
CONVOLUTIONS = [("conv1_1", 3, 64, 3, 100, 500), ("conv1_2", 64, 64, 3, 1, 698),
                ("conv2_1", 64, 128, 3, 1, 349), ("conv2_2", 128, 128, 3, 1, 349),
                ("conv3_1", 128, 256, 3, 1, 175), ("conv3_2", 256, 256, 3, 1, 175),
                ("conv4_1", 256, 512, 3, 1, 88), ("conv4_2", 512, 512, 3, 1, 88),
                ("conv5_2", 512, 512, 3, 1, 44), ("fc6", 512, 4096, 7, 0, 22),
                ("fc7", 4096, 4096, 1, 0, 16), ("score_fr", 4096, 21, 1, 0, 16)]


class Case:
    """One row: `run()` does the work once, with whichever CPU kernel set is active;
    `flops` or `bytes_moved` measure it."""

    def __init__(self, op, shape, run, flops=None, bytes_moved=None, torch_run=None):
        self.op, self.shape, self.run, self.torch_run = op, shape, run, torch_run
        self.flops, self.bytes = flops, bytes_moved


def _normal(*shape):
    return numpy.random.default_rng(0).standard_normal(shape, dtype=numpy.float32)


# -------------------------------------------------------------------------- the cases
def im2col_cases():  # each case runs the kernel set active when it runs
    x = _normal(64, 698, 698)
    window = (3, 3, 1, 1, 1, 1, 1, 1, 698, 698)
    col = im2col.im2col_numpy(x, *window)
    nbytes = x.nbytes + col.nbytes
    return [Case("im2col", "64x698x698 k3 p1", lambda: backend.kernels_for(x).im2col(x, *window),
                 bytes_moved=nbytes),
            Case("col2im", "64x698x698 k3 p1",
                 lambda: backend.kernels_for(x).col2im(col, 698, 698, 1, 1, 1, 1, 1, 1),
                 bytes_moved=nbytes)]


def convolution_cases(torch):
    cases = []
    for name, c_in, c_out, k, pad, size in CONVOLUTIONS:
        x, w, b = _normal(1, c_in, size, size), _normal(c_out, c_in, k, k), _normal(c_out)
        geo = conv.Geometry(k, k, 1, 1, pad, pad, 1, 1, 1)
        out = size + 2 * pad - k + 1
        gy = _normal(1, c_out, out, out)
        flops = 2 * c_out * c_in * k * k * out * out
        shape = f"{c_in}x{size}x{size} -> {c_out}x{out}x{out}, k{k}"
        forward = lambda x=x, w=w, b=b, geo=geo: conv._correlate(x, w, geo, b)  # noqa: E731

        def backward(x=x, w=w, gy=gy, geo=geo, size=size, needs_gx=name != "conv1_1"):
            conv._weight_grad(x, gy, geo)
            if needs_gx:  # conv1_1's input, the image, needs no gradient
                conv._correlate_adjoint(gy, w, geo, size, size)
        torch_forward = torch_backward = None
        if torch:
            tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
            torch_forward = lambda tx=tx, tw=tw, tb=tb, pad=pad: torch.nn.functional.conv2d(  # noqa
                tx, tw, tb, padding=pad)

            # the graph is built once; each timed call runs its backward only
            xg = tx.detach().requires_grad_(name != "conv1_1")
            wg = tw.detach().requires_grad_(True)
            ty = torch.nn.functional.conv2d(xg, wg, tb, padding=pad)
            torch_backward = lambda ty=ty, tgy=torch.from_numpy(gy): ty.backward(  # noqa: E731, B008
                tgy, retain_graph=True)
        backward_flops = flops * (1 if name == "conv1_1" else 2)
        cases += [Case(f"{name} forward", shape, forward, flops=flops,
                       torch_run=torch_forward),
                  Case(f"{name} backward", shape, backward, flops=backward_flops,
                       torch_run=torch_backward)]
    return cases


def upscore_cases(torch):
    x, w = _normal(1, 21, 16, 16), _normal(21, 21, 64, 64)
    gy = _normal(1, 21, 544, 544)
    geo = conv.Geometry(64, 64, 32, 32, 0, 0, 1, 1, 1)
    flops = 2 * 21 * 21 * 64 * 64 * 16 * 16
    forward = lambda: conv._correlate_adjoint(x, w, geo, 544, 544)  # noqa: E731
    backward = lambda: conv._correlate(gy, w, geo)  # noqa: E731  (the weight is fixed)
    torch_forward = torch_backward = None
    if torch:
        tx, tw, tgy = (torch.from_numpy(a) for a in (x, w, gy))
        torch_forward = lambda: torch.nn.functional.conv_transpose2d(tx, tw, stride=32)  # noqa
        torch_backward = lambda: torch.nn.functional.conv2d(tgy, tw, stride=32)  # noqa
    shape = "21x16x16 -> 21x544x544, k64 s32"
    return [Case("upscore forward", shape, forward, flops=flops,
                 torch_run=torch_forward),
            Case("upscore backward", shape, backward, flops=flops,
                 torch_run=torch_backward)]


def pool_and_loss_cases(torch):
    x = _normal(1, 64, 698, 698)
    window = (2, 2, 2, 2, 0, 0, 349, 349)
    y, argmax = pooling.max_pool_forward_numpy(x, *window)
    pool_bytes = x.nbytes + y.nbytes + argmax.nbytes
    cases = [Case("max_pool forward", "64x698x698 2x2/2",
                  lambda: backend.kernels_for(x).max_pool_forward(x, *window),
                  bytes_moved=pool_bytes),
             Case("max_pool backward", "64x698x698 2x2/2",
                  lambda: backend.kernels_for(x).max_pool_backward(
                      y, argmax, 698, 698, *window[:6]), bytes_moved=pool_bytes)]
    score = _normal(1, 21, 500, 500)
    target = numpy.random.default_rng(0).integers(0, 21, (1, 500, 500))
    coefficient = numpy.asarray(1.0, numpy.float32)
    cases += [Case("softmax loss forward", "21x500x500",
                   lambda: backend.kernels_for(score).softmax_cross_entropy_forward(score, target, 255),
                   bytes_moved=score.nbytes + target.nbytes),
              Case("softmax loss backward", "21x500x500",
                   lambda: backend.kernels_for(score).softmax_cross_entropy_backward(
                       score, target, 255, coefficient),
                   bytes_moved=2 * score.nbytes + target.nbytes)]
    if torch:
        tx = torch.from_numpy(x)
        cases[0].torch_run = lambda: torch.nn.functional.max_pool2d(tx, 2, 2, ceil_mode=True)
        tscore, ttarget = torch.from_numpy(score), torch.from_numpy(target)
        cases[2].torch_run = lambda: torch.nn.functional.cross_entropy(tscore, ttarget, reduction="sum")
    return cases


def weight_grad_gemm_cases():
    """One tile's weight-gradient product, gy (m, P) @ col^T (P, k) against the
    transposed col (k, P) @ gy^T (P, m): same FLOPs, the inner dimension P differs."""
    cases = []
    for name, m, k, pixels in (("small-net conv1_2", 8, 72, 58000),
                               ("conv1_2", 64, 576, 7000), ("conv3_2", 256, 2304, 1750)):
        col, gy = _normal(k, pixels), _normal(m, pixels)
        grad, grad_t = numpy.empty((m, k), numpy.float32), numpy.empty((k, m), numpy.float32)
        shape, flops = f"m {m}, k {k}, {pixels} px", 2 * m * k * pixels
        cases += [Case(f"{name} gW: gy @ col^T", shape,
                       lambda gy=gy, col=col, out=grad: numpy.matmul(gy, col.T, out=out), flops=flops),
                  Case(f"{name} gW: col @ gy^T", shape,
                       lambda gy=gy, col=col, out=grad_t: numpy.matmul(col, gy.T, out=out), flops=flops)]
    return cases


def sgd_cases(torch):
    """Caffe's SGD step on fc6's weight: reads w, g and the history v, writes v and w."""
    from minifcn.reference.solver import Segments
    param, grad = _normal(4096, 25088), _normal(4096, 25088)
    history = numpy.zeros_like(param)
    segments, scalars = Segments([param.size], [1.0], [5e-4]), numpy.array([1e-10, 0.99, 1.0], numpy.float32)
    case = Case("SGD update", "fc6 weight 4096x25088",
                lambda: backend.kernels_for(param).sgd_step(
                    param.reshape(-1), grad.reshape(-1), history.reshape(-1), segments, scalars),
                bytes_moved=5 * param.nbytes)
    if torch:
        weight = torch.nn.Parameter(torch.from_numpy(param.copy()))
        weight.grad = torch.from_numpy(grad)
        case.torch_run = torch.optim.SGD([weight], lr=1e-10, momentum=0.99, weight_decay=5e-4).step
    return [case]


def dropout_cases(torch):
    """Dropout of fc6's output, p = 0.5: reads x, writes y (the mask is hashed, not read)."""
    import math
    x = _normal(1, 4096, 16, 16)
    threshold = math.ceil(0.5 * 2**53)
    case = Case("dropout", "fc6 output 4096x16x16",
                lambda: backend.kernels_for(x).dropout(x, 12345, threshold, 2.0),
                bytes_moved=2 * x.nbytes)
    if torch:
        t_x = torch.from_numpy(x)
        case.torch_run = lambda: torch.nn.functional.dropout(t_x, 0.5, training=True)
    return [case]


def measure_sgemm(repeat):
    """GFLOP/s of a 4096^3 float32 np.matmul (the BLAS the convolutions use)."""
    a, b = _normal(4096, 4096), _normal(4096, 4096)
    c = numpy.empty_like(a)
    seconds = common.summary(common.time_calls(lambda: numpy.matmul(a, b, out=c), repeat))
    return 2 * 4096**3 / seconds["median_s"] / 1e9


# ---------------------------------------------------------------------------- report
def rate(case, seconds):
    """("GFLOP/s" or "GB/s", value) of one timing."""
    if case.flops is not None:
        return "GFLOP/s", case.flops / seconds / 1e9
    return "GB/s", case.bytes / seconds / 1e9


def markdown_report(report):
    sets = report["kernel_sets"]
    headers = ["op", "shape"] + [f"{s} time" for s in sets] + [f"{s} rate" for s in sets] + [
        "numba % of sgemm"] + (["PyTorch time", "numba / PyTorch"] if report["torch"] else [])
    rows = []
    for row in report["rows"]:
        times = [row["times"].get(s) for s in sets]
        rates = [f"{row['rates'][s]:.1f} {row['unit']}" if s in row["rates"] else "-" for s in sets]
        fraction = (f"{row['rates']['numba'] / report['sgemm_gflops']:.0%}"
                    if row["unit"] == "GFLOP/s" and "numba" in row["rates"] else "-")
        cells = [row["op"], row["shape"]] + [common.format_seconds(t) for t in times] + rates + [fraction]
        if report["torch"]:
            cells += [common.format_seconds(row.get("torch")),
                      common.format_ratio(row["times"].get("numba"), row.get("torch"))]
        rows.append(cells)
    return "\n".join([
        f"# CPU op benchmark ({report['date']})", "",
        f"{common.machine_sentence(report['machine'])}; "
        f"measured sgemm (4096^3): {report['sgemm_gflops']:.0f} GFLOP/s. Median of "
        f"{report['repeat']} runs after a warm-up; 1-minute load average "
        f"{report['load_before']:.1f} before, {report['load_after']:.1f} after.", "",
        f"Convolution tiles: column_buffer_bytes {report['tiling']['column_buffer_bytes']}, "
        f"min_tile_pixels {report['tiling']['min_tile_pixels']}. GFLOP/s count a direct "
        "convolution's FLOPs. " + ("The 3x3 layers but conv1_1 run Winograd's F(2x2, 3x3) "
                                    "(2.25x fewer), so theirs are effective rates and can pass sgemm's."
                                    if report.get("winograd", True) else
                                    "Winograd is off (--im2col-only): every convolution is im2col."),
        "",
        common.markdown_table(headers, rows, "ll" + "r" * (len(headers) - 2)), ""])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    groups = ["im2col", "conv", "upscore", "pool", "gemm", "sgd", "dropout"]
    parser.add_argument("--ops", nargs="+", default=groups, choices=groups)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--im2col-only", action="store_true",
                        help="every convolution through im2col, Winograd off (to compare)")
    parser.add_argument("--out", default=str(common.RESULTS_DIR))
    args = parser.parse_args(argv)
    from minifcn.runtime import configure_process
    configure_process()
    if args.im2col_only:
        from minifcn.functions import winograd
        winograd.min_channels = float("inf")  # no layer qualifies
    torch = None
    if not args.no_torch and common.package_versions(["torch"])["torch"]:
        import torch
    report = {"date": datetime.date.today().isoformat(), "machine": common.describe_machine(),
              "repeat": args.repeat, "kernel_sets": KERNEL_SETS, "torch": bool(torch),
              "winograd": not args.im2col_only,
              "load_before": common.load_average(), "sgemm_gflops": measure_sgemm(args.repeat),
              "tiling": {"column_buffer_bytes": conv.column_buffer_bytes,
                         "min_tile_pixels": conv.min_tile_pixels}, "rows": []}
    builders = {"im2col": lambda: im2col_cases(), "conv": lambda: convolution_cases(torch),
                "upscore": lambda: upscore_cases(torch), "pool": lambda: pool_and_loss_cases(torch),
                "gemm": weight_grad_gemm_cases, "sgd": lambda: sgd_cases(torch),
                "dropout": lambda: dropout_cases(torch)}
    for group in args.ops:
        for case in builders[group]():
            row = {"op": case.op, "shape": case.shape, "times": {}, "rates": {}}
            for kernel_set in KERNEL_SETS:
                with backend.use_cpu_kernels(kernel_set):
                    seconds = common.summary(common.time_calls(case.run, args.repeat))
                row["times"][kernel_set] = seconds["median_s"]
                row["unit"], row["rates"][kernel_set] = rate(case, seconds["median_s"])
            if case.torch_run:
                row["torch"] = common.summary(common.time_calls(case.torch_run, args.repeat))["median_s"]
            report["rows"].append(row)
            print(f"{case.op:22s} " + "  ".join(f"{s} {common.format_seconds(t):>9s}"
                                                for s, t in row["times"].items())
                  + (f"  torch {common.format_seconds(row['torch']):>9s}" if "torch" in row else ""),
                  flush=True)
    report["load_after"] = common.load_average()
    markdown = markdown_report(report)
    common.publish("cpu-ops", common.machine_slug(report["machine"]), report, markdown,
                   directory=args.out)


if __name__ == "__main__":
    sys.exit(main())
