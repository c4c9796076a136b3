"""The data scan before training (data/scan.py): every file of every image read as
training reads it, all problems reported at once, on each dataset's own layout."""
import numpy
import pytest

from minifcn.data import NYUD, SBD, DataError, SIFTFlow, SyntheticShapes
from minifcn.data.scan import check_files, file_problems
from minifcn.data.siftflow import SCENES

from .writers import make_voc, random_rgb, write_mat, write_picture, write_sbd_mat, write_split


def test_sbd_mat_labels(tmp_path, rng):
    root = tmp_path / "dataset"
    for name in ("a", "b", "c", "d"):
        write_picture(str(root / "img" / f"{name}.jpg"), random_rgb(rng, 4, 6))
        write_sbd_mat(str(root / "cls" / f"{name}.mat"), rng.integers(0, 21, (4, 6)))
    write_split(str(root / "train.txt"), ["a", "b", "c", "d"])
    dataset = SBD(str(tmp_path))
    assert file_problems(dataset) == []
    write_sbd_mat(str(root / "cls" / "b.mat"), numpy.full((4, 6), 22))  # classes are 0-20
    write_mat(str(root / "cls" / "c.mat"), other=numpy.zeros(2))          # no GTcls
    (root / "img" / "d.jpg").unlink()
    problems = file_problems(dataset)
    assert [p.split(":")[0] for p in problems] == [str(root / "cls" / "b.mat"),
                                                   str(root / "cls" / "c.mat"),
                                                   str(root / "img" / "d.jpg")]
    assert "label value 22" in problems[0] and "GTcls" in problems[1] and "no such file" in problems[2]


def test_siftflow_checks_both_label_maps(tmp_path, rng):
    for name in ("x", "y"):
        write_picture(str(tmp_path / "Images" / SCENES / f"{name}.jpg"), random_rgb(rng, 3, 5))
        for kind in ("SemanticLabels", "GeoLabels"):
            write_mat(str(tmp_path / kind / SCENES / f"{name}.mat"), S=numpy.ones((3, 5), numpy.int16))
    write_split(str(tmp_path / "trainval.txt"), ["x", "y"])
    geometric = tmp_path / "GeoLabels" / SCENES / "y.mat"
    write_mat(str(geometric), S=numpy.ones((3, 4), numpy.int16))  # wrong size
    assert file_problems(SIFTFlow(str(tmp_path))) == []  # semantic labels only: fine
    problems = file_problems(SIFTFlow(str(tmp_path), labels="both"))
    assert len(problems) == 1 and str(geometric) in problems[0] and "3x4" in problems[0]


def test_nyud_checks_every_top(tmp_path, rng):
    for name in ("1", "2"):
        write_picture(str(tmp_path / "data" / "images" / f"img_{name}.png"), random_rgb(rng, 3, 4))
        write_picture(str(tmp_path / "data" / "hha" / f"img_{name}.png"), random_rgb(rng, 3, 4))
        write_mat(str(tmp_path / "segmentation" / f"img_{name}.mat"),
                  segmentation=numpy.ones((3, 4), numpy.uint8))
    write_split(str(tmp_path / "trainval.txt"), ["1", "2"])
    hha = tmp_path / "data" / "hha" / "img_2.png"
    hha.write_bytes(hha.read_bytes()[:30])  # truncated
    assert file_problems(NYUD(str(tmp_path))) == []
    problems = file_problems(NYUD(str(tmp_path), tops=("color", "hha")))
    assert len(problems) == 1 and problems[0].startswith(f"{hha}: not a readable image")


def test_check_files_lists_every_problem_and_counts_the_rest(tmp_path, rng, monkeypatch):
    names = [f"n{i}" for i in range(7)]
    make_voc(tmp_path, names, rng)
    from minifcn.data import VOC
    dataset = VOC(str(tmp_path))
    for name in names:
        (tmp_path / "SegmentationClass" / f"{name}.png").unlink()
    monkeypatch.setattr("minifcn.data.scan.SHOWN", 5)
    with pytest.raises(DataError) as error:
        check_files([("training data", dataset, None), ("validation data", dataset, 2)])
    lines = str(error.value).splitlines()
    assert lines[0].startswith("9 problems in the files of 9 images")
    assert len(lines) == 1 + 5 + 1 and lines[-1].strip() == "... and 4 more"
    assert file_problems(SyntheticShapes(size=16)) == []  # nothing on disk to check
