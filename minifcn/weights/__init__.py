"""Pretrained VGG16 weights: readers for Caffe's and PyTorch's files, and the converter.

`convert(src, out)` turns a Caffe `.caffemodel` or a torchvision `.pth` into one `.npz` of
`conv1_1.weight` ... `fc8.bias` plus the input convention (`meta.*`); `load_converted(path)`
gives the model code the weights and that convention back. Neither needs Caffe, protobuf or
torch: caffemodel.py reads the protobuf wire format by hand, torch_pth.py the zip + pickle
layout with an unpickler that refuses everything but tensors.
"""
from .caffemodel import read_caffemodel
from .convert import CONV_LAYERS, FC_LAYERS, LAYERS, convert, expected_shapes, load_converted
from .errors import WeightsFileError
from .torch_pth import read_torch_state_dict

__all__ = ["CONV_LAYERS", "FC_LAYERS", "LAYERS", "WeightsFileError", "convert",
           "expected_shapes", "load_converted", "read_caffemodel", "read_torch_state_dict"]
