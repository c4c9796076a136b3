"""The metrics log of a run: one row per validation, in two files of the run directory.

    log.jsonl     {"iteration": 1500, "loss": ..., "pixel_acc": ..., ...}   one JSON per line
    metrics.csv   iteration,loss,pixel_acc,mean_acc,mean_iu,fw_iu             the same rows

A row is appended only after the checkpoint of its iteration is written, so the log never
runs ahead of the checkpoint by more than the row being written. Appending is all or
nothing: a row goes to each file in one write, flushed to disk, and if either write fails
(a full disk) both files are cut back to their old length, so no cut-off line is left
for the next run to append to. `trim(iteration)` is what `--resume` does first: it keeps
the whole rows up to the checkpoint's iteration and drops any past it (rows of work the
checkpoint does not hold) and any cut-off line (from a kill in mid-write).
"""
import csv
import io
import json
import os

from .checkpoint import RunWriteError, atomic_write

FIELDS = ("iteration", "loss", "pixel_acc", "mean_acc", "mean_iu", "fw_iu")


class RunLog:
    def __init__(self, directory):
        self.jsonl = os.path.join(directory, "log.jsonl")
        self.csv = os.path.join(directory, "metrics.csv")

    def paths(self):
        return (self.jsonl, self.csv)

    def append(self, row):
        """Add one row (a dict with FIELDS) to both files, or to neither."""
        texts = {self.jsonl: json.dumps({key: row[key] for key in FIELDS}) + "\n",
                 self.csv: ("" if _size(self.csv) else _csv_line(FIELDS)) + _csv_line(
                     [row[key] for key in FIELDS])}
        sizes = {}
        for path, text in texts.items():
            sizes[path] = _size(path)
            try:
                _append(path, text.encode())
            except OSError as error:
                for written, size in sizes.items():
                    _cut_back(written, size)
                raise RunWriteError(f"{path}: could not write the metrics row of iteration "
                                    f"{row['iteration']}: {error.strerror or error}; the log "
                                    f"files are as they were") from None

    def rows(self):
        """The whole rows of log.jsonl, in order."""
        return [row for _, row in _jsonl_rows(_read(self.jsonl))]

    def row(self, iteration):
        """The row of `iteration`, or None."""
        return next((row for row in self.rows() if row["iteration"] == iteration), None)

    def trim(self, iteration):
        """Drop rows past `iteration` and cut-off lines from both files; how many lines went."""
        dropped = 0
        for path, keep in ((self.jsonl, _jsonl_keeper), (self.csv, _csv_keeper)):
            text = _read(path)
            if text is None:
                continue
            lines = text.splitlines(keepends=True)
            kept = [line for number, line in enumerate(lines) if keep(line, number, iteration)]
            if len(kept) < len(lines):
                dropped += len(lines) - len(kept)
                data = "".join(kept).encode()
                atomic_write(path, lambda handle, data=data: handle.write(data), what="log")
        return dropped

    def remove(self):
        for path in self.paths():
            if os.path.exists(path):
                os.remove(path)


# ------------------------------------------------------------------------ reading
def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None


def _jsonl_rows(text):
    """(line, row) for each whole, well-formed line of a log.jsonl text."""
    for line in (text or "").splitlines(keepends=True):
        row = _jsonl_row(line)
        if row is not None:
            yield line, row


def _jsonl_row(line):
    if not line.endswith("\n"):
        return None
    try:
        row = json.loads(line)
    except ValueError:
        return None
    if not isinstance(row, dict) or not isinstance(row.get("iteration"), int):
        return None
    return row


def _jsonl_keeper(line, number, iteration):
    row = _jsonl_row(line)
    return row is not None and row["iteration"] <= iteration


def _csv_keeper(line, number, iteration):
    if not line.endswith("\n"):
        return False
    if number == 0:
        return line == _csv_line(FIELDS)
    cells = line.strip().split(",")
    try:
        values = [float(cell) for cell in cells]
    except ValueError:
        return False
    return len(cells) == len(FIELDS) and values[0] <= iteration


def _csv_line(cells):
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()


# ------------------------------------------------------------------------ writing
def _size(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return None


def _append(path, data):
    """Append `data` with one write (repeated only if the system takes part of it), then
    flush it to disk."""
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        while data:
            data = data[os.write(descriptor, data):]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _cut_back(path, size):
    """Return `path` to its `size` (None: it did not exist) after a failed append."""
    try:
        if size is None:
            if os.path.exists(path):
                os.remove(path)
        else:
            os.truncate(path, size)
    except OSError:  # then --resume drops the cut-off line
        pass
