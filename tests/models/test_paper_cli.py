"""The paper's other nets from the command line: a few training steps on small data in
the real formats, then `minifcn eval` of the checkpoint."""
from minifcn import cli
from minifcn.train import load_checkpoint


def train_and_eval(tmp_path, capsys, model, data, *extra):
    out = tmp_path / "run"
    argv = ["train", "--model", model, "--data", data, "--iterations", "2", "--val-interval", "2",
            "--val-images", "1", "--out", str(out), "--no-progress", *extra]
    assert cli.main(argv) == 0, capsys.readouterr().err
    checkpoint = load_checkpoint(str(out / "checkpoint.npz"))
    assert checkpoint["iteration"] == 2
    assert cli.main(["eval", "--weights", str(out / "checkpoint.npz"), "--limit", "1"]) == 0
    return checkpoint, capsys.readouterr().out


def test_fcn_googlenet_trains_and_evaluates(tmp_path, capsys):
    checkpoint, printed = train_and_eval(tmp_path, capsys, "fcn-googlenet", "synthetic",
                                         "--image-size", "40")
    assert checkpoint["params"]["conv1/7x7_s2.weight"].shape == (8, 3, 7, 7)  # the small net
    assert "mean_iu" in printed
