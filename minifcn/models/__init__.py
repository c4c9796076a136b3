"""The nets: VGG16 and its fully convolutional form (vgg.py), the reference FCNs built
on it (fcn.py) and FCN-AlexNet (alexnet.py); `build` makes one by name and `init_from`
starts a finer net from a trained coarser one.
"""
from ..errors import OptionError
from ..nn import Module
from .alexnet import FCNAlexNet
from .fcn import FCN8s, FCN8sAtOnce, FCN16s, FCN32s
from .googlenet import FCNGoogLeNet
from .nyud import FCN32sEarlyHHA, FCN32sLateHHA, FCN32sRGBD
from .siftflow import FCN16sSiftFlow
from .stitch import rarefied_scores, shift_and_stitch
from .vgg import VGG16, VGG16_FC_WIDTH, VGG16_WIDTHS, FullyConvVGG16

MODELS = {"fcn32s": FCN32s, "fcn16s": FCN16s, "fcn8s": FCN8s, "fcn8s-atonce": FCN8sAtOnce,
          "fcn-alexnet": FCNAlexNet, "fcn-googlenet": FCNGoogLeNet, "fcn32s-rgbd": FCN32sRGBD,
          "fcn32s-early-hha": FCN32sEarlyHHA, "fcn32s-late-hha": FCN32sLateHHA,
          "fcn16s-siftflow": FCN16sSiftFlow}


def build(name, n_class, **options):
    """The net called `name` (a key of MODELS) for n_class classes; options go to its
    constructor (widths, fc_width, init, learn_upsampling, dtype)."""
    if name not in MODELS:
        raise OptionError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
    return MODELS[name](n_class=n_class, **options)


def data_options(name, data):
    """The dataset options net `name` needs from data source `data` (e.g. the NYUD nets'
    stacked inputs: {"tops": ("color", "hha")}); {} for the nets that take any RGB data.
    A net with needs, given other data, is a ValueError naming what it trains on."""
    needs = getattr(MODELS.get(name), "DATA_OPTIONS", None)
    if needs is None:
        return {}
    kind = str(data).partition(":")[0]
    if kind not in needs:
        wanted = " or ".join(f"{key}:DIR" for key in needs)
        raise OptionError(f"--model {name} trains on --data {wanted}, not {data!r}")
    return dict(needs[kind])


def n_class_of(params):
    """The n_class a net's parameters were built with: score_fr's outputs, or each head's
    (FCN16sSiftFlow's score_fr_sem, score_fr_geo) as a tuple."""
    if "score_fr.weight" in params:
        return params["score_fr.weight"].shape[0]
    return tuple(params[f"score_fr_{head}.weight"].shape[0] for head in ("sem", "geo"))


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


__all__ = ["FCN8s", "FCN8sAtOnce", "FCN16s", "FCN32s", "FCN32sEarlyHHA", "FCN32sLateHHA",
           "FCN32sRGBD", "FCN16sSiftFlow", "FCNAlexNet", "FCNGoogLeNet", "data_options", "n_class_of", "FullyConvVGG16", "MODELS",
           "VGG16", "VGG16_FC_WIDTH", "VGG16_WIDTHS", "build", "init_from", "rarefied_scores",
           "shift_and_stitch"]
