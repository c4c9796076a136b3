"""Tests of minifcn.models: VGG16, the reference FCNs and FCN-AlexNet."""
