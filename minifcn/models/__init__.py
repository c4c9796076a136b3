"""The nets: VGG16 and its fully convolutional form (vgg.py), the reference FCNs built
on it (fcn.py) and FCN-AlexNet (alexnet.py); `build` makes one by name and `init_from`
starts a finer net from a trained coarser one.
"""
from ..nn import Module
from .alexnet import FCNAlexNet
from .fcn import FCN8s, FCN8sAtOnce, FCN16s, FCN32s
from .googlenet import FCNGoogLeNet
from .stitch import rarefied_scores, shift_and_stitch
from .vgg import VGG16, VGG16_FC_WIDTH, VGG16_WIDTHS, FullyConvVGG16

MODELS = {"fcn32s": FCN32s, "fcn16s": FCN16s, "fcn8s": FCN8s, "fcn8s-atonce": FCN8sAtOnce,
          "fcn-alexnet": FCNAlexNet, "fcn-googlenet": FCNGoogLeNet}


def build(name, n_class, **options):
    """The net called `name` (a key of MODELS) for n_class classes; options go to its
    constructor (widths, fc_width, init, learn_upsampling, dtype)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
    return MODELS[name](n_class=n_class, **options)


def init_from(net, trained):
    """Start `net` from a trained coarser net, as the paper does (FCN-16s from a trained
    FCN-32s, FCN-8s from FCN-16s): every parameter both have, by name, is copied; the
    others (the new skip layers, zero, and the upsamplings, bilinear) keep their values.
    `trained` is a Module or a state dict. Returns the names copied. A shared name with
    another shape (other widths or n_class) is a ValueError naming it and both shapes."""
    state = trained.state_dict() if isinstance(trained, Module) else trained
    own = dict(net.named_parameters())
    shared = {name: value for name, value in state.items() if name in own}
    net.load_state_dict(shared, strict=False)
    return sorted(shared)


__all__ = ["FCN8s", "FCN8sAtOnce", "FCN16s", "FCN32s", "FCNAlexNet", "FCNGoogLeNet", "FullyConvVGG16", "MODELS",
           "VGG16", "VGG16_FC_WIDTH", "VGG16_WIDTHS", "build", "init_from", "rarefied_scores",
           "shift_and_stitch"]
