"""Tests of minifcn.weights: the Caffe and PyTorch readers and the VGG16 converter."""
