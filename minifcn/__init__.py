"""minifcn: a from-scratch engine for Fully Convolutional Networks.

Start reading at autograd.py (Tensor and backward), then functions/conv.py (how a
convolution becomes im2col + GEMM), then models/fcn.py and train.py.
"""
from . import functions
from .autograd import Tensor, is_grad_enabled, no_grad
from .backend import gpu_available, seed
from . import nn, models, optim  # noqa: E402  (they build on the names above)
from .runtime import configure_process

__version__ = "0.1.0"
__all__ = ["Tensor", "configure_process", "functions", "gpu_available", "is_grad_enabled", "models", "nn",
           "no_grad", "optim", "seed"]
