"""Layers: Module and Parameter (module.py), the layers with weights (layers.py), and the
fillers that initialize them, bilinear upsampling included (init.py)."""
from .init import FILLERS, bilinear_filter, bilinear_kernel, fill
from .layers import Conv2d, ConvTranspose2d, Dropout, Linear
from .module import Module, Parameter

__all__ = ["Conv2d", "ConvTranspose2d", "Dropout", "FILLERS", "Linear", "Module", "Parameter",
           "bilinear_filter", "bilinear_kernel", "fill"]
