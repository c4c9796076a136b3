"""Checking a dataset's files before training starts, so that a bad file stops the run
at once, with every bad file named, instead of when the shuffled order reaches it hours
later.

Each image's files are read as training reads them, without the preprocessing: every
picture and label exists and decodes, every label holds only classes and void, and
picture and labels are of one size (FileDataset.file_problems). The images are checked
on a few threads (Pillow and zlib decode outside the GIL) with a progress bar. Datasets
without files (the built-in one) have nothing to check.
"""
import os
from concurrent.futures import ThreadPoolExecutor

from .io import DataError

SHOWN = 50  # problems listed in the error; the count says how many more there are


def file_problems(dataset, count=None, progress=False, description="checking data"):
    """The problems of the first `count` images of `dataset` (all by default), in order."""
    check = getattr(dataset, "file_problems", None)
    if check is None:
        return []
    count = len(dataset) if count is None else min(count, len(dataset))
    pool = ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1)))
    try:
        found = pool.map(check, range(count))
        if progress:
            from tqdm import tqdm
            found = tqdm(found, total=count, desc=description, dynamic_ncols=True, leave=False)
        return [problem for problems in found for problem in problems]
    finally:  # Ctrl-C: drop the images not started rather than wait for them
        pool.shutdown(wait=False, cancel_futures=True)


def check_files(parts, progress=False):
    """DataError listing every bad file of `parts`, [(label, dataset, count)], if any."""
    problems, checked = [], 0
    for label, dataset, count in parts:
        found = file_problems(dataset, count, progress, f"checking {label}")
        problems += found
        checked += len(dataset) if count is None else min(count, len(dataset))
    if problems:
        listed = "\n  ".join(problems[:SHOWN])
        more = f"\n  ... and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        raise DataError(
            f"{len(problems)} problem{'s' if len(problems) > 1 else ''} in the files of "
            f"{checked} images (fix or remove them from the split file; --no-data-check "
            f"skips this check):\n  {listed}{more}")
