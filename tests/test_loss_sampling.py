"""Loss sampling (`--loss-sampling P`): whole cells of the final score grid kept or
dropped, about a fraction P kept, the loss the mean over kept pixels only, draws fixed by
(seed, position) so that resume stays exact, and clear errors for a bad P."""
import numpy
import pytest

import minifcn as mf
from minifcn import cli, functions as F, models
from minifcn.loss_sampling import grid_of, probability, sample_labels, sample_step_labels
from minifcn.train import TrainConfig, load_checkpoint, train

VOID = 255


def nearest_centre_cells(size, stride, centre):
    """Cell of each pixel by brute force: the nearest centre c + s y (ties: the later)."""
    centres = centre + stride * numpy.arange(-4, size // stride + 5)
    cells = []
    for i in range(size):
        distances = numpy.abs(i - centres)
        cells.append(numpy.flatnonzero(distances == distances.min())[-1])
    return numpy.array(cells)


@pytest.mark.parametrize("grid", [(32, 12.5), (16, -11.5), (8, -23.5), (32, 13.0), (32, 7.0)])
def test_whole_cells_are_kept_or_dropped(grid):
    labels = numpy.random.default_rng(0).integers(0, 5, (3, 97, 70))
    sampled = sample_labels(labels, 0.5, grid, seed=1, position=4)
    rows = nearest_centre_cells(97, *grid)
    cols = nearest_centre_cells(70, *grid)
    kept = sampled != VOID
    assert (sampled[kept] == labels[kept]).all()
    for n in range(3):
        for cell_row in numpy.unique(rows):
            for cell_col in numpy.unique(cols):
                block = kept[n][numpy.ix_(rows == cell_row, cols == cell_col)]
                assert block.all() or not block.any()
    assert 0 < kept.mean() < 1


def test_about_a_fraction_p_of_the_cells_is_kept():
    labels = numpy.zeros((50, 64, 64), numpy.int64)  # 50 images of 2 x 2 cells ... 3 x 3
    for p in (0.25, 0.5, 0.9):
        kept_cells = []
        for position in range(40):
            sampled = sample_labels(labels, p, (32, 12.5), seed=7, position=position)
            kept_cells.append((sampled[:, 13::32, 13::32] != VOID).ravel())
        fraction = numpy.concatenate(kept_cells).mean()
        n = numpy.concatenate(kept_cells).size
        assert abs(fraction - p) < 5 * numpy.sqrt(p * (1 - p) / n)


def test_draws_depend_on_seed_and_position_only():
    labels = numpy.ones((2, 50, 60), numpy.int64)
    a = sample_labels(labels, 0.5, (16, -11.5), seed=3, position=9)
    numpy.testing.assert_array_equal(a, sample_labels(labels, 0.5, (16, -11.5), 3, 9))
    assert (a != sample_labels(labels, 0.5, (16, -11.5), 3, 10)).any()
    assert (a != sample_labels(labels, 0.5, (16, -11.5), 4, 9)).any()
    assert sample_labels(labels, 1.0, (16, -11.5), 3, 9) is labels


def test_two_heads_share_the_mask():
    labels = numpy.random.default_rng(1).integers(0, 3, (2, 2, 40, 40))
    sampled = sample_labels(labels, 0.5, (16, -11.5), seed=0, position=0)
    numpy.testing.assert_array_equal(sampled[:, 0] == VOID, sampled[:, 1] == VOID)


@pytest.mark.parametrize("normalize", [True, False])
def test_the_loss_counts_only_kept_pixels(rng, normalize):
    score = rng.standard_normal((2, 4, 40, 36))
    labels = rng.integers(0, 4, (2, 40, 36))
    sampled = sample_labels(labels, 0.5, (8, -23.5), seed=2, position=1)
    loss = F.softmax_cross_entropy(mf.Tensor(score), sampled, normalize=normalize).item()
    # reference: -log softmax at the true class, summed over the kept pixels only
    log_p = score - numpy.log(numpy.exp(score).sum(axis=1, keepdims=True))
    total, count = 0.0, 0
    for n in range(2):
        for i in range(40):
            for j in range(36):
                if sampled[n, i, j] != VOID:
                    total -= log_p[n, sampled[n, i, j], i, j]
                    count += 1
    assert 0 < count < labels.size
    assert loss == pytest.approx(total / count if normalize else total / 2, rel=1e-10)


def test_grids_of_the_nets():
    assert grid_of(models.FCN32s(init="zero")) == (32, 12.5)
    assert grid_of(models.FCN16s(init="zero")) == (16, -11.5)
    assert grid_of(models.FCN8sAtOnce(init="zero")) == (8, -23.5)
    assert grid_of(models.FCNAlexNet(init="zero")) == (32, 13.0)
    assert grid_of(models.FCNGoogLeNet(init="zero", widths=1)) == (32, 7.0)
    with pytest.raises(ValueError, match="no score grid is known for Linear"):
        sample_step_labels(mf.nn.Linear(2, 2), numpy.zeros((1, 4, 4), int), 0.5, 0, 0)


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, float("nan"), "half"])
def test_bad_p_is_a_clear_error(bad, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"--loss-sampling: P must"):
        probability(bad)
    with pytest.raises(ValueError, match=r"--loss-sampling: P must"):
        TrainConfig(loss_sampling=bad)
    if isinstance(bad, (int, float)):  # argparse refuses it before anything is written
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["train", "--loss-sampling", str(bad), "--out", str(tmp_path / "run")])
        assert exit_info.value.code == 2 and not (tmp_path / "run").exists()
        assert "--loss-sampling: P must lie in (0, 1]" in capsys.readouterr().err


TINY = dict(widths=(3, 4, 4, 6, 6), fc_width=6, image_size=40, val_images=2, progress=False,
            lr_policy="fixed")  # a "poly" rate depends on the run's length


def test_resume_with_loss_sampling_is_exact(tmp_path):
    whole = TrainConfig(out=str(tmp_path / "a"), iterations=4, val_interval=2,
                        loss_sampling=0.5, **TINY)
    train(whole, log=lambda *_: None)
    first = TrainConfig(out=str(tmp_path / "b"), iterations=2, val_interval=2,
                        loss_sampling=0.5, **TINY)
    train(first, log=lambda *_: None)
    rest = TrainConfig(out=str(tmp_path / "b"), iterations=4, val_interval=2,
                       loss_sampling=0.5, **TINY)
    train(rest, resume=True, log=lambda *_: None)
    a = load_checkpoint(str(tmp_path / "a" / "checkpoint.npz"))["params"]
    b = load_checkpoint(str(tmp_path / "b" / "checkpoint.npz"))["params"]
    for name in a:
        numpy.testing.assert_array_equal(a[name], b[name], err_msg=name)
    full = TrainConfig(out=str(tmp_path / "c"), iterations=4, val_interval=2, **TINY)
    train(full, log=lambda *_: None)
    c = load_checkpoint(str(tmp_path / "c" / "checkpoint.npz"))["params"]
    assert any((a[name] != c[name]).any() for name in a)  # sampling changed the steps
