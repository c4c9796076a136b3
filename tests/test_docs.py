"""The docs that describe the code name what the code has, so they cannot fall behind
it unnoticed: every CUDA kernel in docs/kernels.md, every file in docs/tour.md's path."""
import re
from pathlib import Path

import pytest

from minifcn import cuda


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("filename", cuda.kernel_files())
def test_every_kernel_is_on_the_kernels_page(filename):
    page = (ROOT / "docs" / "kernels.md").read_text()
    assert f"`{filename}`" in page
    for kernel in cuda.kernel_parameters(filename):
        assert f"`{kernel}`" in page, f"docs/kernels.md does not name {kernel} ({filename})"


@pytest.mark.parametrize("filename", cuda.kernel_files())
def test_every_kernel_file_says_how_threads_map_and_what_bounds_it(filename):
    header = (cuda.KERNEL_DIR / filename).read_text().split("#include")[0]
    assert "THREAD MAPPING" in header and re.search(r"BOUNDS? (ITS|THE)? ?SPEED|BOUNDS IT", header)


def test_the_tour_names_files_that_exist():
    tour = (ROOT / "docs" / "tour.md").read_text()
    paths = set(re.findall(r"`((?:minifcn|kernels|tests)/[\w/]+\.(?:py|cu|h))`", tour))
    assert len(paths) >= 5
    for path in paths:
        assert (ROOT / path).exists(), path
