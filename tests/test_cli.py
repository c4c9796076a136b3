"""The `minifcn` command line, end to end on tiny settings; what a user sees of bad
input is checked in a separate process, as they run it."""
import importlib
import importlib.util
import json
import os
import subprocess
import sys

import numpy
import pytest
from PIL import Image

from minifcn.cli import main, output_stems

TINY = ["--widths", "3,4,4,6,6", "--fc-width", "6", "--image-size", "40", "--val-images", "2",
        "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--iterations", "2", "--val-interval", "2", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_checkpoint_logs_and_pictures(trained):
    for name in ("checkpoint.npz", "log.jsonl", "metrics.csv", "predictions.png"):
        assert (trained / name).exists(), name
    header = (trained / "metrics.csv").read_text().splitlines()[0]
    assert header == "iteration,loss,pixel_acc,mean_acc,mean_iu,fw_iu"


def test_eval_prints_the_four_metrics_and_per_class_iu(trained, capsys):
    assert main(["eval", "--checkpoint", str(trained / "checkpoint.npz"), "--limit", "2"]) == 0
    printed = capsys.readouterr().out
    for key in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu", "per-class IU", "triangle"):
        assert key in printed
    # the same held-out scenes as training's last validation (same size), so the same scores
    last = json.loads((trained / "log.jsonl").read_text().splitlines()[-1])
    scores = dict(line.split() for line in printed.splitlines()[:4])
    for key in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"):
        assert float(scores[key]) == pytest.approx(last[key], abs=1e-4), key


def test_predict_writes_segmentation_overlay_and_panel(trained, tmp_path, capsys):
    import minifcn as mf
    from minifcn.visualize import colorize
    picture = numpy.random.default_rng(3).integers(0, 256, (20, 24, 3), dtype=numpy.uint8)
    image = tmp_path / "scene.png"
    Image.fromarray(picture).save(image)
    out = tmp_path / "pred"
    assert main(["predict", str(image), "--checkpoint", str(trained / "checkpoint.npz"),
                 "--out", str(out)]) == 0
    for name in ("scene_seg.png", "scene_overlay.png"):
        assert Image.open(out / name).size == (24, 20)
    labels = mf.load_checkpoint(str(trained / "checkpoint.npz")).predict(picture)
    numpy.testing.assert_array_equal(numpy.asarray(Image.open(out / "scene_seg.png")),
                                     colorize(labels))
    assert Image.open(out / "scene_panel.png").size[0] == 3 * 24 * 7 + 2 * 2  # zoomed 7x
    printed = capsys.readouterr().out
    assert "class colours: 0 background (0, 0, 0), 1 disc (128, 0, 0)," in printed
    # the old name of the option still works
    assert main(["predict", str(image), "--weights", str(trained / "checkpoint.npz"),
                 "--out", str(out)]) == 0


def test_convert_bad_file_fails_in_one_line_and_leaves_nothing(tmp_path, capsys):
    source = tmp_path / "broken.caffemodel"
    source.write_bytes(b"\x0a\xff\xff")
    out = tmp_path / "out.npz"
    assert main(["convert", str(source), str(out)]) == 1
    error = capsys.readouterr().err.strip()
    assert "broken.caffemodel" in error and len(error.splitlines()) == 1
    assert not out.exists()


def test_train_options_reach_the_config_and_defaults_stay_the_configs(monkeypatch, tmp_path):
    import minifcn.train as training
    seen = {}
    monkeypatch.setattr(training, "train", lambda config, **run: seen.update(config=config) or
                        {"mean_iu": 0.0})
    assert main(["train", "--lr", "0.01", "--lr-policy", "fixed", "--iterations", "9"]) == 0
    config = seen["config"]
    assert (config.lr, config.lr_policy, config.iterations) == (0.01, "fixed", 9)
    assert config.val_interval == training.BUILT_IN_RUN["val_interval"]
    assert config.image_size == training.TrainConfig.image_size
    assert config.out == "runs/fcn8s-synthetic"
    assert main(["train", "--data", f"voc:{tmp_path}", "--model", "fcn32s"]) == 0
    assert seen["config"].iterations == training.REAL_DATA_RUN["iterations"]
    assert seen["config"].out == "runs/fcn32s-voc"


# ------------------------------------------------------------ as a user runs it: processes
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, cwd=None, **env):
    environment = {**os.environ, "PYTHONPATH": ROOT, **env}
    return subprocess.run([sys.executable, "-m", "minifcn.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env=environment, timeout=600,
                          check=False)


def one_line_error(result, status=1):
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("option, value, says", [
    ("--iterations", "0", "expected a positive integer, got '0'"),
    ("--iterations", "-5", "expected a positive integer, got '-5'"),
    ("--batch-size", "-1", "expected a positive integer, got '-1'"),
    ("--val-interval", "0", "expected a positive integer, got '0'"),
    ("--val-images", "0", "expected a positive integer, got '0'"),
    ("--iter-size", "0", "expected a positive integer, got '0'"),
    ("--image-size", "big", "expected a positive integer, got 'big'"),
    ("--fc-width", "2.5", "expected a positive integer, got '2.5'"),
    ("--lr", "-0.1", "expected a positive number, got '-0.1'"),
    ("--lr", "nan", "expected a positive number, got 'nan'"),
    ("--momentum", "1.5", "expected a number in [0, 1), got '1.5'"),
    ("--weight-decay", "-1", "expected a number >= 0, got '-1'"),
    ("--seed", "-1", "expected an integer >= 0, got '-1'"),
    ("--data", "voc:/no/such/dir", "voc:/no/such/dir: no such directory /no/such/dir"),
    ("--data", "kitti:x", "unknown data source 'kitti:x'; expected one of: synthetic, voc:DIR, sbd:DIR, siftflow:DIR, nyud:DIR, context:DIR, folder:DIR"),
    ("--data", "folder", "folder needs a directory, as in folder:DIR"),
    ("--weights", "none.npz", "no such file: none.npz")])
def test_bad_train_options_are_refused_before_anything_is_written(tmp_path, option, value, says):
    result = run_cli("train", option, value, "--out", "run", cwd=tmp_path)
    assert one_line_error(result, 2) == f"minifcn train: error: argument {option}: {says}"
    assert os.listdir(tmp_path) == []


def test_a_precision_not_in_the_list_is_refused_by_the_parser(tmp_path):
    result = run_cli("train", "--precision", "fp16", "--out", "run", cwd=tmp_path)
    assert one_line_error(result, 2).startswith(
        "minifcn train: error: argument --precision: invalid choice: 'fp16'")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_the_cpu_refuses_tf32_and_bf16_in_one_line_before_anything_is_written(tmp_path, precision):
    result = run_cli("train", "--precision", precision, "--out", "run", cwd=tmp_path)
    assert one_line_error(result) == (
        f"minifcn train: error: precision {precision} needs the GPU (device cuda): the CPU "
        f"computes in float32 only, so use precision fp32 (the default) there")
    assert os.listdir(tmp_path) == []


def test_eval_and_predict_refuse_bf16_on_the_cpu(tmp_path, trained):
    checkpoint = trained / "checkpoint.npz"
    line = one_line_error(run_cli("eval", "--checkpoint", checkpoint, "--precision", "bf16"))
    assert line.startswith("minifcn eval: error: precision bf16 needs the GPU")
    picture = tmp_path / "scene.png"
    Image.fromarray(numpy.zeros((8, 8, 3), numpy.uint8)).save(picture)
    line = one_line_error(run_cli("predict", picture, "--checkpoint", checkpoint, "--out",
                                  tmp_path / "out", "--precision", "bf16"))
    assert line.startswith("minifcn predict: error: precision bf16 needs the GPU")
    assert not (tmp_path / "out").exists()


def test_resume_keeps_the_runs_precision(trained):
    checkpoint = trained / "checkpoint.npz"
    written = checkpoint.stat().st_mtime_ns
    line = one_line_error(run_cli("train", "--resume", "--out", trained, "--precision", "tf32"))
    assert "--precision tf32 (the run has fp32)" in line
    assert checkpoint.stat().st_mtime_ns == written


def test_weights_that_are_not_converted_vgg16_are_named_before_training(tmp_path, trained):
    caffemodel = tmp_path / "VGG_ILSVRC_16_layers.caffemodel"
    caffemodel.write_bytes(b"\x0a\x14VGG_ILSVRC_16_layers" + bytes(50))
    line = one_line_error(run_cli("train", "--weights", caffemodel, "--out", tmp_path / "run"))
    assert line == (f"minifcn train: error: {caffemodel}: a Caffe model (protobuf), not converted "
                    f"VGG16 weights. Convert it first: minifcn convert {caffemodel} vgg16.npz, "
                    f"then use vgg16.npz")
    checkpoint = trained / "checkpoint.npz"
    line = one_line_error(run_cli("train", "--weights", checkpoint, "--out", tmp_path / "run"))
    assert "a minifcn checkpoint (written by `minifcn train`), not converted VGG16 weights. " \
           "To start from a trained net use `minifcn train --init-from`" in line
    assert "pickle" not in line
    assert not (tmp_path / "run").exists()


def test_eval_and_predict_name_a_file_that_is_not_a_checkpoint(tmp_path):
    converted = tmp_path / "vgg16.npz"
    numpy.savez(converted, **{"meta.source": numpy.array("caffemodel")})
    picture = tmp_path / "cat.png"
    Image.fromarray(numpy.zeros((4, 4, 3), numpy.uint8)).save(picture)
    line = one_line_error(run_cli("eval", "--checkpoint", converted))
    assert line.startswith(f"minifcn eval: error: {converted}: converted VGG16 weights")
    assert "train with `minifcn train --weights" in line
    line = one_line_error(run_cli("predict", picture, "--checkpoint", picture, "--out",
                                  tmp_path / "out"))
    assert line == (f"minifcn predict: error: {picture}: an image, not a minifcn checkpoint; a "
                    f"checkpoint is the checkpoint.npz that `minifcn train` writes in its "
                    f"--out folder")
    line = one_line_error(run_cli("eval", "--checkpoint", tmp_path / "none.npz"), 2)
    assert line.endswith(f"argument --checkpoint: no such file: {tmp_path / 'none.npz'}")
    line = one_line_error(run_cli("eval"), 1)
    assert line == ("minifcn eval: error: the following argument is required: --checkpoint "
                    "(a checkpoint.npz written by `minifcn train`)")
    assert not (tmp_path / "out").exists()


def test_predict_checks_its_inputs_before_creating_out(tmp_path, trained):
    checkpoint = trained / "checkpoint.npz"
    line = one_line_error(run_cli("predict", tmp_path / "missing.jpg", "--checkpoint",
                                  checkpoint, "--out", tmp_path / "out"), 2)
    assert line.endswith(f"no such file: {tmp_path / 'missing.jpg'}")
    broken = tmp_path / "broken.png"
    broken.write_text("not a picture")
    line = one_line_error(run_cli("predict", broken, "--checkpoint", checkpoint, "--out",
                                  tmp_path / "out"))
    assert line.startswith(f"minifcn predict: error: {broken}: not a readable image")
    assert not (tmp_path / "out").exists()


def test_predict_keeps_inputs_of_the_same_name_apart(tmp_path, trained):
    for folder, value in (("a", 0), ("b", 255)):
        (tmp_path / folder).mkdir()
        Image.fromarray(numpy.full((8, 9, 3), value, numpy.uint8)).save(tmp_path / folder / "x.png")
    result = run_cli("predict", tmp_path / "a" / "x.png", tmp_path / "b" / "x.png",
                     "--checkpoint", trained / "checkpoint.npz", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert sorted(os.listdir(out)) == sorted(f"{stem}_{kind}.png" for stem in ("x", "x-2")
                                             for kind in ("seg", "overlay", "panel"))
    overlays = [numpy.asarray(Image.open(out / f"{stem}_overlay.png")) for stem in ("x", "x-2")]
    assert (overlays[0] <= 128).all() and (overlays[1] >= 127).all()  # each from its own input
    for name in os.listdir(out):
        assert os.stat(out / name).st_mode & 0o777 == 0o666 & ~current_umask()
    assert output_stems(["a/x.png", "b/x.jpg", "x-2.png", "c/x.png"]) == ["x", "x-2", "x-2-2", "x-3"]


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_convert_says_what_a_file_is_instead_of_protobuf_details(tmp_path):
    junk = tmp_path / "vgg16.pth"
    junk.write_bytes(bytes(range(7, 256)) * 3)
    jpeg = tmp_path / "photo.caffemodel"
    Image.fromarray(numpy.zeros((4, 4, 3), numpy.uint8)).save(jpeg, format="JPEG")
    for source, kind in ((junk, "not a format minifcn knows"), (jpeg, "an image")):
        line = one_line_error(run_cli("convert", source, tmp_path / "out.npz"))
        assert line == (f"minifcn convert: error: {source}: {kind}, not a Caffe model "
                        f"(.caffemodel) or a PyTorch file (.pth): `minifcn convert` reads VGG16 "
                        f"weights in one of those two formats")
    assert not (tmp_path / "out.npz").exists()


def test_a_bug_shows_as_a_bug_not_as_a_user_error(monkeypatch, tmp_path):
    converting = importlib.import_module("minifcn.weights.convert")  # the module, not the function

    def broken(source, output):
        raise TypeError("a bug")
    monkeypatch.setattr(converting, "convert", broken)
    source = tmp_path / "x.caffemodel"
    source.write_bytes(b"\x0a")
    with pytest.raises(TypeError, match="a bug"):
        main(["convert", str(source), str(tmp_path / "out.npz")])


def test_help_describes_every_command_and_lists_the_benchmarks():
    for command, says in (("eval", "Score a trained checkpoint"), ("predict", "Label each pixel"),
                          ("convert", "Convert ImageNet VGG16 weights")):
        result = run_cli(command, "--help")
        assert result.returncode == 0 and says in result.stdout, command
    result = run_cli("bench", "nosuch")
    line = one_line_error(result, 2)
    assert "invalid choice: 'nosuch'" in line
    for name in ("cpu_ops", "cpu_nets", "conv_tiles", "contention", "gpu_kernels",
                 "kernel_resources"):
        assert name in line
    result = run_cli("bench", "cpu_ops", "--help")
    assert result.returncode == 0
    assert "NumPy kernels and the numba kernels, next to PyTorch CPU" in result.stdout  # 2nd line
    has_torch = importlib.util.find_spec("torch") is not None
    assert ("PyTorch is not installed" in result.stderr) == (not has_torch)


def test_the_paper_solver_is_not_used_where_it_cannot_learn(tmp_path):
    tiny = ["--widths", "3,4,4,6,6", "--fc-width", "6", "--image-size", "40", "--val-images",
            "1", "--iterations", "1", "--no-progress"]
    result = run_cli("train", "--full", *tiny, "--out", tmp_path / "a")
    assert result.returncode == 0, result.stderr
    assert ("note: fcn8s starts from random weights (no --weights), where the paper's solver "
            "(SGD, lr 1e-14, unnormalized loss) cannot learn; using Adam, lr 0.001, poly decay, "
            "normalized loss instead.") in result.stdout
    assert "'optimizer': 'adam'" in result.stdout and "'normalize': True" in result.stdout
    result = run_cli("train", "--full", *tiny, "--lr", "1e-10", "--out", tmp_path / "b")
    assert result.returncode == 0, result.stderr
    assert "warning: fcn8s starts from random weights (no --weights) with SGD at lr 1e-10" \
        in result.stdout
    assert "'optimizer': 'sgd'" in result.stdout
    result = run_cli("train", *tiny, "--out", tmp_path / "c")  # the small net: its own solver
    assert "random weights" not in result.stdout


def test_training_on_your_own_folder_end_to_end(tmp_path):
    from tests.data.test_folder import make_folder
    make_folder(tmp_path / "data", numpy.random.default_rng(0), n=4, size=(40, 44))
    (tmp_path / "data" / "classes.txt").write_text("ground\nleaf\nstone\n")
    result = run_cli("train", "--data", f"folder:{tmp_path / 'data'}", "--small", "--widths",
                     "3,4,4,6,6", "--fc-width", "6", "--iterations", "2", "--val-images", "1",
                     "--no-progress", "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    result = run_cli("eval", "--checkpoint", tmp_path / "run" / "checkpoint.npz")
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()[5:8]] == ["ground", "leaf",
                                                                            "stone"]
    result = run_cli("predict", tmp_path / "data" / "images" / "img0.png", "--checkpoint",
                     tmp_path / "run" / "checkpoint.npz", "--out", tmp_path / "pred")
    assert result.returncode == 0, result.stderr
    assert "class colours: 0 ground (0, 0, 0), 1 leaf (128, 0, 0), 2 stone (0, 128, 0)" \
        in result.stdout


@pytest.mark.slow
def test_compiling_the_numba_kernels_is_announced(tmp_path):
    result = run_cli("train", "--widths", "3,4,4,6,6", "--fc-width", "6", "--image-size", "40",
                     "--val-images", "1", "--iterations", "1", "--no-progress", "--out",
                     tmp_path / "run", MINIFCN_CPU_KERNELS="numba",
                     NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("compiling kernels (kept in a cache for later runs)") == 1
