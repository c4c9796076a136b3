"""The whole-net part of `python -m benchmarks.gpu_kernels`: FCN-32s at 500x500, a
train step and inference (nets.py builds both engines' nets), minifcn against PyTorch
(cuDNN), TF32 off then on (gpu_kernels.py's docstring says what is measured and how)."""
from . import nets
from .gpu_kernels import cupy_events, ms_text, time_or_record_failure, torch_events


def benchmark_net(torch, repeat, failures, size=500):
    """Train step and inference of FCN-32s, TF32 off then on, minifcn vs PyTorch."""
    from minifcn import cuda

    ours = dict(zip(("train step", "inference"), nets.minifcn_passes("fcn32s", size, "cuda")))
    theirs = (dict(zip(ours, nets.torch_passes("fcn32s", size, "cuda"))) if torch
              else dict.fromkeys(ours))
    rows = []
    for precision, tf32 in (("fp32 (TF32 off)", False), ("TF32 on", True)):
        cuda.allow_tf32(tf32)
        if torch:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        for pass_name in ours:
            what = f"FCN-32s {pass_name}, {precision}"
            rows.append({"model": f"FCN-32s {size}x{size}", "pass": pass_name, "precision": precision,
                         "minifcn_s": time_or_record_failure(f"{what} (minifcn)", ours[pass_name],
                                                             cupy_events, repeat, failures, warmup=2),
                         "torch_s": theirs[pass_name] and time_or_record_failure(
                             f"{what} (PyTorch)", theirs[pass_name], torch_events, repeat, failures,
                             warmup=2)})
            print(f"  {what:40s} {ms_text(rows[-1]['minifcn_s']):>9s} ms", flush=True)
    cuda.allow_tf32(False)
    return rows, ["PyTorch runs with torch.backends.cudnn.benchmark = True (its fastest algorithms)."
                  if torch else "PyTorch with CUDA is not installed: no PyTorch column."]
