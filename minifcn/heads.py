"""Nets with several score heads (SIFT Flow's FCN-16s: semantic and geometric): their
loss, their evaluation and its report.

A multi-headed net returns a tuple of score maps; its dataset gives a tuple of label
maps per image (stacked to (N, heads, H, W) in a batch). The loss is the sum of the
heads' softmax losses, as the reference sums its two SoftmaxWithLoss layers.

Scoring only the classes present. The reference README notes that its SIFT Flow
semantic numbers averaged over all 33 classes, though some never occur in the test set:
a class absent from the ground truth has IU 0 as soon as it is predicted once, and
drags the mean down for a reason that says nothing about the classes that are there.
Here each head's mean accuracy and mean IU average over the classes with at least one
labelled pixel in the images evaluated (pixel accuracy and frequency-weighted IU are
unaffected: they weigh classes by their pixels). A prediction of an absent class still
costs: it is a miss for the true class of that pixel.
"""
import numpy

from . import backend
from .autograd import Tensor, no_grad
from .functions import softmax_cross_entropy
from .metrics import ConfusionMeter, scores as confusion_scores

HEAD_NAMES = {2: ("semantic", "geometric")}


def first(value):
    """The first head's maps (scores or labels) of a multi-headed value, else the value."""
    return value[0] if isinstance(value, tuple) else value


def loss(score, labels, normalize=True):
    """The softmax loss of one score map, or the sum over heads of a tuple of them
    (labels then (N, heads, H, W))."""
    if not isinstance(score, tuple):
        return softmax_cross_entropy(score, labels, normalize=normalize)
    xp = backend.get_array_module(labels)
    terms = [softmax_cross_entropy(s, xp.ascontiguousarray(labels[:, k]), normalize=normalize)
             for k, s in enumerate(score)]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def present_class_scores(hist):
    """metrics.scores with mean accuracy and mean IU over the classes that occur in the
    ground truth only; `classes_scored` says how many."""
    result = confusion_scores(hist)
    present = numpy.asarray(hist).sum(1) > 0
    for key, per_class in (("mean_iu", "per_class_iu"), ("mean_acc", "per_class_acc")):
        values = result[per_class][present]
        result[key] = float(values.mean()) if values.size else float("nan")
    result["classes_scored"] = int(present.sum())
    return result


def evaluate(net, dataset, device="cpu", limit=None):
    """Each head's scores on the first `limit` images: the first head's at the top level
    (what the training log records), every head's under "heads"."""
    count = len(dataset) if limit is None else min(limit, len(dataset))
    meters = [ConfusionMeter(n) for n in dataset.n_class]
    was_training = net.training
    net.eval()
    for index in range(count):
        image, labels = dataset[index]
        with no_grad():
            scores = net(Tensor(backend.to_device(image[None], device)))
        for meter, label, score in zip(meters, labels, scores):
            meter.update(label, backend.to_numpy(score.data[0].argmax(axis=0)))
    if was_training:
        net.train()
    names = getattr(dataset, "kinds", HEAD_NAMES.get(len(meters)))
    per_head = {name: present_class_scores(meter.hist) for name, meter in zip(names, meters)}
    return {**per_head[names[0]], "heads": per_head}


def format_scores(scores, class_names):
    """The report `minifcn eval` prints for a multi-headed net."""
    lines = []
    for (head, result), names in zip(scores["heads"].items(), class_names):
        lines.append(f"{head}:")
        lines += [f"  {key:10s} {result[key]:.4f}" for key in
                  ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")]
        lines.append(f"  (mean acc and mean IU over the {result['classes_scored']} of "
                     f"{len(names)} classes present in the labels scored)")
        lines += [f"    {name:16s} {iu:.4f}" for name, iu in zip(names, result["per_class_iu"])]
    return "\n".join(lines)
