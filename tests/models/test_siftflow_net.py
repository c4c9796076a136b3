"""SIFT Flow's two-headed FCN-16s: the reference's layer names, each head an FCN-16s on
the shared trunk, the summed loss, scoring only the classes present, gradients, and
training and evaluation from the command line on SIFT Flow files in the real format."""
import numpy
import pytest

import minifcn as mf
from minifcn import cli, heads, models
from minifcn.data.siftflow import SCENES
from minifcn.functions import softmax_cross_entropy
from minifcn.train import load_checkpoint
from tests.data.writers import random_rgb, write_mat, write_picture, write_split

from .gradients import check_net_gradient, lively_weights

NARROW = dict(widths=(2, 2, 2, 2, 2), fc_width=3)


def test_reference_names_in_prototxt_order():
    net = models.build("fcn16s-siftflow", (33, 3), init="zero")
    names = [n for n, _ in net.named_parameters()]
    assert "score_fr.weight" not in names
    head = [n for n in names if n.split(".")[0].endswith(("_sem", "_geo"))]
    assert head == [f"{layer}_{h}.{part}" for h in ("sem", "geo")
                    for layer, parts in (("score_fr", "wb"), ("upscore2", "w"),
                                         ("score_pool4", "wb"), ("upscore16", "w"))
                    for part in (("weight", "bias") if parts == "wb" else ("weight",))]
    assert net.score_fr_sem.weight.shape == (33, 4096, 1, 1)
    assert net.score_pool4_geo.weight.shape == (3, 512, 1, 1)
    assert net.upscore16_geo.weight.shape == (3, 3, 32, 32)
    assert models.n_class_of(net.state_dict()) == (33, 3)


@pytest.mark.parametrize("size", [(1, 1), (7, 5), (33, 19)])
def test_two_score_maps_of_the_input_size(size):
    sem, geo = models.FCN16sSiftFlow((5, 3), **NARROW)(
        mf.Tensor(numpy.zeros((2, 3) + size, numpy.float32)))
    assert sem.shape == (2, 5) + size and geo.shape == (2, 3) + size


def test_each_head_is_an_fcn16s_on_the_shared_trunk(rng):
    net = models.FCN16sSiftFlow((4, 3), **NARROW, dtype=numpy.float64).eval()
    for _, param in net.named_parameters():
        if param.requires_grad:
            param.data[...] = rng.standard_normal(param.shape) * 0.3
    x = mf.Tensor(rng.standard_normal((1, 3, 23, 17)))
    outputs = net(x)
    for head, out in zip(("sem", "geo"), outputs):
        n = out.shape[1]
        plain = models.FCN16s(n, **NARROW, dtype=numpy.float64).eval()
        state = {name: value for name, value in net.state_dict().items()
                 if not name.split(".")[0].endswith(("_sem", "_geo"))}
        state.update({name.replace(f"_{head}.", "."): value for name, value in
                      net.state_dict().items() if f"_{head}." in name})
        plain.load_state_dict(state)
        numpy.testing.assert_allclose(out.numpy(), plain(x).numpy(), rtol=0, atol=1e-12)


def test_gradient_of_a_narrow_net(rng):
    mf.seed(5)
    net = models.FCN16sSiftFlow((3, 2), **NARROW, learn_upsampling=True,
                                dtype=numpy.float64).eval()
    lively_weights(net, rng)
    assert check_net_gradient(net, rng.standard_normal((1, 3, 6, 5)), rng, heads=2) == 21


def test_the_loss_is_the_sum_of_the_heads_losses(rng):
    sem, geo = rng.standard_normal((2, 5, 4, 6)), rng.standard_normal((2, 3, 4, 6))
    labels = numpy.stack([rng.integers(0, 5, (2, 4, 6)), rng.integers(0, 3, (2, 4, 6))], axis=1)
    labels[0, 1, 0, 0] = 255
    for normalize in (True, False):
        total = heads.loss((mf.Tensor(sem), mf.Tensor(geo)), labels, normalize=normalize).item()
        parts = [softmax_cross_entropy(mf.Tensor(s), numpy.ascontiguousarray(labels[:, k]),
                                       normalize=normalize).item() for k, s in enumerate((sem, geo))]
        assert total == pytest.approx(sum(parts), rel=1e-12)


def test_scores_over_present_classes_only():
    # 4 classes; class 3 never occurs in the labels but is predicted twice
    hist = numpy.array([[5, 1, 0, 2], [0, 4, 0, 0], [1, 0, 3, 0], [0, 0, 0, 0]])
    result = heads.present_class_scores(hist)
    ious, accs = [], []
    for c in range(3):  # the plain definition, class by class, present classes only
        tp = hist[c, c]
        ious.append(tp / (hist[c, :].sum() + hist[:, c].sum() - tp))
        accs.append(tp / hist[c, :].sum())
    assert result["mean_iu"] == pytest.approx(numpy.mean(ious))
    assert result["mean_acc"] == pytest.approx(numpy.mean(accs))
    assert result["classes_scored"] == 3
    assert result["per_class_iu"][3] == 0  # reported, not averaged
    assert mf.metrics.scores(hist)["mean_iu"] == pytest.approx(numpy.mean(ious + [0.0]))


def make_siftflow(root, rng, names=("coast_a", "street_b"), size=(10, 12)):
    for name in names:
        write_picture(f"{root}/Images/{SCENES}/{name}.jpg", random_rgb(rng, *size))
        write_mat(f"{root}/SemanticLabels/{SCENES}/{name}.mat",
                  S=rng.integers(0, 34, size).astype(numpy.int16))
        write_mat(f"{root}/GeoLabels/{SCENES}/{name}.mat",
                  S=rng.integers(-1, 4, size).astype(numpy.int16))
    write_split(f"{root}/trainval.txt", list(names))
    write_split(f"{root}/test.txt", list(names[:1]))
    return str(root)


def test_trains_and_reports_both_heads(tmp_path, rng, capsys):
    data = make_siftflow(tmp_path / "siftflow", rng)
    out = tmp_path / "run"
    argv = ["train", "--model", "fcn16s-siftflow", "--data", f"siftflow:{data}", "--widths",
            "2,2,2,2,2", "--fc-width", "3", "--iterations", "2", "--val-interval", "2",
            "--val-images", "1", "--lr", "1e-3", "--loss-sampling", "0.5", "--out", str(out),
            "--no-progress"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert load_checkpoint(str(out / "checkpoint.npz"))["params"]["score_fr_geo.weight"].shape[0] == 3
    capsys.readouterr()
    assert cli.main(["eval", "--weights", str(out / "checkpoint.npz")]) == 0
    printed = capsys.readouterr().out
    assert "semantic:" in printed and "geometric:" in printed
    assert "classes present in the labels scored" in printed
    assert "sky" in printed and "horizontal" in printed
