"""The docs' shift-and-stitch picture is computed, not drawn by hand: the stitched and the
rarefied maps differ on exactly the cells the rule in docs/shift-and-stitch.md gives."""
import importlib.util
from pathlib import Path

import numpy
from PIL import Image

SCRIPT = Path(__file__).resolve().parent.parent / "docs" / "make_shift_and_stitch.py"


def test_the_picture_and_its_claim(tmp_path):
    spec = importlib.util.spec_from_file_location("make_shift_and_stitch", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    differ = script.draw(str(tmp_path / "s.png"))
    # A = 64 rows, f = 4: cell 4y + d agrees iff 4y + d + 3 <= 63, i.e. rows/cols 0..60
    expected = numpy.ones((64, 64), bool)
    expected[:61, :61] = False
    numpy.testing.assert_array_equal(differ, expected)
    assert Image.open(tmp_path / "s.png").size == (3 * 256 + 4 * 12, 2 * 256 + 5 * 12)
