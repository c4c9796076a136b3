"""The whole-net parts of `python -m benchmarks.gpu_kernels` (its docstring says what is
measured and how): the step's GEMMs against a large GEMM of their precision, FCN-32s and
FCN-8s against PyTorch at three precisions with their peak device memory, and the default run.

Precisions, each set on both sides before a pass is timed:
    fp32 (TF32 off)   minifcn: cuda.allow_tf32(False); PyTorch: matmul and cuDNN TF32 off
    TF32 on           minifcn: cuda.allow_tf32(True);  PyTorch: both on
    bf16              minifcn: precision.autocast() (`--precision bf16`), TF32 off;
                      PyTorch: torch.autocast(bfloat16), TF32 off; float32 weights on both

Marked place for work in progress: `CUDA GRAPHS` (benchmark_net: a train step captured
once and replayed, when the engine offers it as an option).
"""
import re
import time
from pathlib import Path

from . import nets
from .gpu_kernels import cupy_events, fcn_shapes, ms_text, time_gpu, time_or_record_failure, torch_events

PRECISIONS = ("fp32 (TF32 off)", "TF32 on", "bf16")
MODELS = {"fcn32s": "FCN-32s", "fcn8s": "FCN-8s"}
PASSES = ("train step", "inference")
SGEMM_SIZE = 8192  # the large square sgemm the step's GEMMs are held against
DEFAULT_RUN_OPTIONS = {}  # TrainConfig fields the default run overrides (tests shrink it)


# ------------------------------------------------------------------------------ GEMMs
def step_gemms(size):
    """(layer, product, m, k, n) of every matrix product of one FCN-32s train step at
    batch 1 on a size x size image, the convolutions as im2col + GEMM: forward
    W (c_out x c_in k^2) @ col (c_in k^2 x pixels), input gradient W^T @ gy, weight
    gradient gy @ col^T. conv1_1 needs no input gradient (its input is the image);
    upscore is the fixed 64/32 deconvolution of score_fr (forward and input gradient)."""
    s = fcn_shapes(size)
    layers, c_in = [], 3
    block_sides = (s["conv1"], s["pool1"], s["pool2"], s["pool3"], s["pool4"])
    for block, (width, convs) in enumerate(zip((64, 128, 256, 512, 512), (2, 2, 3, 3, 3))):
        for index in range(convs):
            layers.append((f"conv{block + 1}_{index + 1}", c_in, width, 3, block_sides[block]))
            c_in = width
    layers += [("fc6", 512, 4096, 7, s["fc6"]), ("fc7", 4096, 4096, 1, s["fc6"]),
               ("score_fr", 4096, nets.N_CLASS, 1, s["fc6"])]
    products = []
    for name, c_in, c_out, k, side in layers:
        pixels, window = side * side, c_in * k * k
        products.append((name, "forward", c_out, window, pixels))
        if name != "conv1_1":
            products.append((name, "input gradient", window, c_out, pixels))
        products.append((name, "weight gradient", c_out, pixels, window))
    window, pixels = nets.N_CLASS * 64 * 64, s["fc6"] ** 2
    products += [("upscore", "forward", window, nets.N_CLASS, pixels),
                 ("upscore", "input gradient", nets.N_CLASS, window, pixels)]
    return products


def gemm_flops(products):
    return sum(2 * m * k * n for _, _, m, k, n in products)


def benchmark_gemms(cupy, repeat, size=500):
    """The step's GEMMs (row-major operands of those shapes, random values) and one
    SGEMM_SIZE^3 GEMM of the same precision: fp32 and TF32 through cupy.matmul, bf16
    through the convolutions' own cuBLAS call (functions/conv.py's _gemm: bf16
    operands, float32 accumulation, bf16 result). One row each."""
    from minifcn import bfloat16, cuda
    from minifcn.functions.conv import _gemm
    rng = cupy.random.default_rng(2)

    def product_time(m, k, n, bf16):
        a = rng.standard_normal((m, k), dtype=cupy.float32)
        b = rng.standard_normal((k, n), dtype=cupy.float32)
        if not bf16:
            return time_gpu(lambda: cupy.matmul(a, b), cupy_events, repeat, warmup=1)
        a, b = (bfloat16.from_float32(x)[None] for x in (a, b))
        out = cupy.empty((1, m, n), dtype=bfloat16.DTYPE)
        return time_gpu(lambda: _gemm(a, b, out), cupy_events, repeat, warmup=1)

    products, rows = step_gemms(size), []
    try:
        for precision, tf32 in (("fp32 (TF32 off)", False), ("TF32 on", True), ("bf16", False)):
            cuda.allow_tf32(tf32)
            bf16 = precision == "bf16"
            seconds = sum(product_time(m, k, n, bf16) for _, _, m, k, n in products)
            sgemm = product_time(SGEMM_SIZE, SGEMM_SIZE, SGEMM_SIZE, bf16)
            rows.append({"what": f"FCN-32s {size}x{size} train step ({len(products)} GEMMs)",
                         "precision": precision, "flops": gemm_flops(products), "seconds": seconds,
                         "sgemm_tflops": 2 * SGEMM_SIZE**3 / sgemm / 1e12})
            print(f"  GEMMs, {precision:20s} {ms_text(seconds):>9s} ms", flush=True)
            cupy.get_default_memory_pool().free_all_blocks()
    finally:
        cuda.allow_tf32(False)
    return rows


# ------------------------------------------------------------------------- whole nets
def minifcn_precision(precision):
    """Set minifcn up for `precision`; whether its passes run under autocast (bf16)."""
    from minifcn import cuda
    cuda.allow_tf32(precision == "TF32 on")
    return precision == "bf16"


def torch_precision(torch, precision):
    """Set PyTorch up for `precision`; returns the autocast dtype (None: no autocast)."""
    tf32 = precision == "TF32 on"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    return torch.bfloat16 if precision == "bf16" else None


def minifcn_peak_bytes(cupy, train_step):
    """Device memory CuPy's pool holds after one train step, starting from the live
    arrays only (the pool keeps every block it takes until freed, so this is the step's
    high-water mark, blocks rounded up to the pool's sizes)."""
    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()
    train_step()
    return pool.total_bytes()


def torch_peak_bytes(torch, train_step):
    """torch.cuda.max_memory_allocated over one train step."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    train_step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def benchmark_net(torch, repeat, failures, size=500):
    """Train step and inference of FCN-32s and FCN-8s at each precision, minifcn vs
    PyTorch, and each side's peak memory in a train step: (net rows, memory rows, notes)."""
    from minifcn import backend
    cupy = backend.require_cupy()
    rows, memory, notes = [], [], []
    for model, title in MODELS.items():
        ours, ours_bf16, theirs = None, None, {}
        for precision in PRECISIONS:
            what = f"{title} {precision}"
            bf16 = minifcn_precision(precision)
            if ours is None or ours_bf16 != bf16:  # a net per autocast setting, one at a time
                ours = None
                # CUDA GRAPHS (issue 13 item 2): build the passes with the engine's capture
                # option here once it has one (on by default where it applies, it needs nothing).
                ours = dict(zip(PASSES, nets.minifcn_passes(model, size, "cuda", autocast=bf16)))
                ours_bf16 = bf16
            autocast = torch and torch_precision(torch, precision)
            if torch and autocast not in theirs:
                theirs[autocast] = dict(zip(PASSES, nets.torch_passes(model, size, "cuda",
                                                                      autocast=autocast)))
            theirs_now = theirs[autocast] if torch else dict.fromkeys(PASSES)
            for pass_name in PASSES:
                rows.append({"model": f"{title} {size}x{size}", "pass": pass_name,
                             "precision": precision,
                             "minifcn_s": time_or_record_failure(
                                 f"{what} {pass_name} (minifcn)", ours[pass_name], cupy_events,
                                 repeat, failures, warmup=2),
                             "torch_s": theirs_now[pass_name] and time_or_record_failure(
                                 f"{what} {pass_name} (PyTorch)", theirs_now[pass_name],
                                 torch_events, repeat, failures, warmup=2)})
                print(f"  {what + ' ' + pass_name:40s} {ms_text(rows[-1]['minifcn_s']):>9s} ms",
                      flush=True)
            memory.append({"model": f"{title} {size}x{size}", "precision": precision,
                           "minifcn_bytes": _peak(f"{what} peak memory (minifcn)", failures,
                                                  minifcn_peak_bytes, cupy, ours["train step"]),
                           "torch_bytes": _peak(f"{what} peak memory (PyTorch)", failures,
                                                torch_peak_bytes, torch, theirs_now["train step"])})
        del ours, theirs
        cupy.get_default_memory_pool().free_all_blocks()
        if torch:
            torch.cuda.empty_cache()
    from minifcn import cuda
    cuda.allow_tf32(False)
    notes.append("minifcn's bf16 rows run under minifcn.precision.autocast() (`--precision bf16`): "
                 "bf16 activations and GEMMs, float32 weights, loss and accumulation.")
    notes.append("PyTorch runs with torch.backends.cudnn.benchmark = True (its fastest algorithms); "
                 "its bf16 rows use torch.autocast(bfloat16) with float32 weights. Peak memory: "
                 "minifcn's is what CuPy's pool holds after one train step (freed blocks included), "
                 "PyTorch's torch.cuda.max_memory_allocated."
                 if torch else "PyTorch with CUDA is not installed: no PyTorch column.")
    return rows, memory, notes


def _peak(what, failures, measure, module, train_step):
    if module is None or train_step is None:
        return None
    try:
        return measure(module, train_step)
    except Exception as error:  # noqa: BLE001
        failures.append(f"{what}: {type(error).__name__}: {error}")
        return None


# ------------------------------------------------------------------------ default run
def default_run_dir(out):
    """Where `gpu_kernels --default-run --out OUT` trains (run/) and writes its progress
    (default_run.json)."""
    return Path(out) / "default-run"


def default_run(iterations=None, out=Path("default-run")):
    """`minifcn train --device cuda` as it stands (no other option): images/s over the
    whole run (start to end of `train`, validation included, as the 2026-11-30 record
    counts them) and the final mean IU. After each validation the entry so far is also
    written to out/default_run.json, so a run stopped by a time limit still leaves its
    images/s (then with mean_iu None). With `iterations` below the default the run is
    not the default run: mean_iu stays None and `last_mean_iu` is that shorter run's."""
    import json
    from minifcn.train import TrainConfig, train
    out = Path(out)
    config = TrainConfig(device="cuda", progress=False, out=str(out / "run"), **DEFAULT_RUN_OPTIONS)
    whole = iterations is None or iterations == config.iterations
    config.iterations = iterations or config.iterations
    images_per_step = config.batch_size * config.solver()["iter_size"]
    entry = {"images_per_s": None, "mean_iu": None, "last_mean_iu": None,
             "iterations": config.iterations, "steps_timed": 0, "seconds": 0.0, "complete": False}
    out.mkdir(parents=True, exist_ok=True)

    def record(done, mean_iu, complete=False):
        seconds = time.perf_counter() - began
        entry.update(images_per_s=done * images_per_step / seconds, steps_timed=done,
                     seconds=seconds, last_mean_iu=mean_iu, complete=complete)
        if complete and whole:
            entry["mean_iu"] = mean_iu
        (out / "default_run.json").write_text(json.dumps(entry, indent=2) + "\n")

    def log(message):
        print(message, flush=True)
        match = re.search(r"iteration (\d+):.*mean IU ([0-9.]+)", message)
        if match:
            record(int(match[1]), float(match[2]))

    print(f"default run: {config.iterations} steps into {config.out}", flush=True)
    began = time.perf_counter()
    scores = train(config, log=log)
    record(config.iterations, float(scores["mean_iu"]), complete=True)
    return entry
