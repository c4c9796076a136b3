"""PASCAL-Context in the reference layout: label lists with the reference's renamings,
LabelMap .mat files mapped to the 59 classes plus background, VOC2010 pictures and
splits, errors naming the file; and training on it from the command line."""
import numpy
import pytest

from minifcn import cli
from minifcn.data import DataError, PASCALContext, open_dataset

from .writers import random_rgb, write_mat, write_picture, write_split

# a full list in the real file's form (459 names in the real one; spaces inside names)
FULL = ["accordion", "aeroplane", "air conditioner", "bedclothes", "bottle", "cloth",
        "table", "tv monitor", "person", "sky", "wood"]
# the task list: 59 names, three spelled as the task spells them, the rest made up
TASK = ["aeroplane", "bedcloth", "bottle", "clothes", "diningtable", "person", "sky",
        "tvmonitor"] + [f"extra{k}" for k in range(51)]
FULL += [f"extra{k}" for k in range(51)]


def write_lists(root, full=FULL, task=TASK):
    root.mkdir(parents=True, exist_ok=True)
    (root / "labels.txt").write_text("".join(f"{i}: {name}\n" for i, name in enumerate(full, 1)))
    (root / "59_labels.txt").write_text("".join(f"{i}: {name}\n" for i, name in enumerate(task, 1)))


def expected_label(label_map):
    """The reference's mapping, pixel by pixel: a full-list name (spaces removed) that
    is a task class (after the three renamings) -> its 1-based task index, else 0."""
    renamed = {"diningtable": "table", "bedcloth": "bedclothes", "clothes": "cloth"}
    task = [renamed.get(name, name) for name in TASK]
    out = numpy.zeros(label_map.shape, numpy.int64)
    for (i, j), value in numpy.ndenumerate(label_map):
        name = FULL[value - 1].replace(" ", "") if value >= 1 else None
        out[i, j] = task.index(name) + 1 if name in task else 0
    return out


@pytest.fixture
def context(tmp_path, rng):
    root = tmp_path / "pascal-context"
    write_lists(root)
    maps = {}
    for name in ("2008_000002", "2008_000003", "2010_001234"):
        write_picture(str(root / "VOC2010" / "JPEGImages" / f"{name}.jpg"), random_rgb(rng, 10, 13))
        maps[name] = rng.integers(0, len(FULL) + 1, (10, 13)).astype(numpy.uint16)
        write_mat(str(root / "trainval" / f"{name}.mat"), LabelMap=maps[name])
    main = root / "VOC2010" / "ImageSets" / "Main"
    write_split(str(main / "train.txt"), ["2008_000002", "2010_001234"])
    write_split(str(main / "val.txt"), ["2008_000003"])
    return str(root), maps


def test_labels_map_to_the_59_classes_and_background(context):
    root, maps = context
    dataset = open_dataset(f"context:{root}")
    assert isinstance(dataset, PASCALContext) and dataset.n_class == 60
    assert dataset.class_names[:3] == ("background", "aeroplane", "bedcloth")
    assert dataset.names == ["2008_000002", "2010_001234"]
    for index, name in enumerate(dataset.names):
        image, label = dataset[index]
        assert image.shape == (3, 10, 13) and label.dtype == numpy.int64
        numpy.testing.assert_array_equal(label, expected_label(maps[name]))
    # the renamed classes and a name with a space do arrive
    all_labels = numpy.concatenate([dataset[i][1].ravel() for i in range(2)])
    assert {2, 4, 5, 8} & set(all_labels.tolist())
    assert open_dataset(f"context:{root}", split="val").names == ["2008_000003"]


def test_voc_elsewhere(context, tmp_path):
    root, _ = context
    (tmp_path / "devkit").mkdir()
    (tmp_path / "pascal-context" / "VOC2010").rename(tmp_path / "devkit" / "VOC2010")
    with pytest.raises(DataError, match="PASCAL VOC2010 directory .* does not have the expected"):
        PASCALContext(root)
    assert len(PASCALContext(root, voc_dir=str(tmp_path / "devkit"))) == 2


def test_errors_name_the_file(context, tmp_path):
    root, _ = context
    write_lists(tmp_path / "pascal-context", task=TASK[:-1] + ["unicorn"])
    with pytest.raises(DataError, match=r"59_labels.txt: class 'unicorn' is not in labels.txt"):
        PASCALContext(root)
    (tmp_path / "pascal-context" / "labels.txt").write_text("1 accordion\n")
    with pytest.raises(DataError, match=r"labels.txt: line 1 is '1 accordion'"):
        PASCALContext(root)
    write_lists(tmp_path / "pascal-context")
    write_mat(str(tmp_path / "pascal-context" / "trainval" / "2008_000002.mat"),
              LabelMap=numpy.full((10, 13), 999, numpy.uint16))
    with pytest.raises(DataError, match=r"2008_000002.mat: LabelMap holds 999..999"):
        PASCALContext(root)[0]


def test_trains_from_the_command_line(context, tmp_path, capsys):
    root, _ = context
    argv = ["train", "--model", "fcn32s", "--data", f"context:{root}", "--widths", "2,2,2,2,2",
            "--fc-width", "3", "--iterations", "2", "--val-interval", "2", "--val-images", "1",
            "--lr", "1e-3", "--out", str(tmp_path / "run"), "--no-progress"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert "final mean IU" in capsys.readouterr().out
