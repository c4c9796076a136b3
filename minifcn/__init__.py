"""minifcn: a from-scratch engine for Fully Convolutional Networks.

    import minifcn as mf
    mf.configure_process()          # the CPU settings `minifcn train` makes (runtime.py)
    net = mf.load_checkpoint("runs/fcn8s-synthetic/checkpoint.npz")
    labels = net.predict(picture)   # uint8 (H, W, 3) RGB -> int64 (H, W) class numbers
    scores = net(mf.Tensor(batch))  # float32 (N, 3, H, W), preprocessed -> (N, n_class, H, W)
    with mf.precision.autocast():   # on the GPU: bf16 activations, float32 weights and scores
        scores = net(mf.Tensor(batch))

Start reading at autograd.py (Tensor and backward), then functions/conv.py (how a
convolution becomes im2col + GEMM), then models/fcn.py and train.py.
"""
from . import functions
from .autograd import Tensor, is_grad_enabled, no_grad
from .backend import gpu_available, seed
from . import nn, models, optim, precision  # noqa: E402  (they build on the names above)
from .runtime import configure_process
from .inference import load_checkpoint

__version__ = "0.1.0"
__all__ = ["Tensor", "configure_process", "functions", "gpu_available", "is_grad_enabled",
           "load_checkpoint", "models", "nn", "no_grad", "optim", "precision", "seed"]
