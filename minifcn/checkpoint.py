"""The checkpoint file: what it holds, how it is written so no failure damages it, and
which settings a resumed run may change.

A checkpoint is one .npz (numpy.load(path, allow_pickle=False) reads it):

    param.<name>        the weights after `meta.iteration` solver steps
    solver.<name>       the solver's state after those steps (momentum; Adam's m, v, steps)
    meta.iteration      how many steps the weights hold
    meta.rng_state      the random generator's state at the start of step `meta.iteration`
    meta.loss           the loss of the last step taken (for its metrics row)
    meta.config         the run's TrainConfig as JSON
    meta.channel_order, meta.mean, ...   the input convention of the weights (if known)
    meta.blas_threads   BLAS's thread count the run computes with (runtime.py)

Writing: the arrays go to a temporary file beside the checkpoint, which is flushed to
disk and then renamed over it, so at every moment `checkpoint.npz` is either the old
file or the new one, whole. Any failure (a full disk, a quota, an I/O error) removes the
temporary file and becomes one RunWriteError naming the checkpoint; a kill leaves a
temporary file that the next run in that directory removes (remove_stale_temporaries).
Only finite weights and solver state are written: a checkpoint is never poisoned by a
diverged step, and reading one with NaN or inf in it is refused.
"""
import glob
import json
import os

import numpy

from .errors import UserError

# Options a resumed run may change; every other one would make it another run.
MAY_CHANGE_ON_RESUME = ("iterations", "val_interval", "device", "progress", "data_check")
# The meta.* entries a checkpoint has of its own (the others record the input convention).
OWN_META = ("meta.iteration", "meta.rng_state", "meta.config", "meta.loss")
# The ones that describe the run, not its weights' input: --resume carries them, a run
# started from the weights (--checkpoint, --init-from) does not (runtime.py: BLAS's count).
RUN_META = ("meta.blas_threads",)
# Files a run writes in its directory.
RUN_FILES = ("checkpoint.npz", "log.jsonl", "metrics.csv", "predictions.png")


class RunWriteError(UserError, RuntimeError):
    """A file of the run could not be written (the message names it); nothing half-written
    was left in its place."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be used as asked: unreadable, not minifcn's, non-finite,
    or not of the run it is to resume."""


class NoCheckpoint(UserError, FileNotFoundError):
    """No checkpoint where one was named."""


class NonFiniteState(ValueError):
    """Weights or solver state hold NaN or inf (not written: see checkpoint_arrays)."""


# ---------------------------------------------------------------------------- writing
def temporary_path(path):
    """Where `path` is written before it is renamed into place: a hidden file beside it."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.{os.getpid()}.tmp")


def remove_stale_temporaries(directory):
    """Remove the temporary files that killed runs left in a run directory; their names."""
    patterns = [f".{name}.*.tmp*" for name in RUN_FILES] + [".tmp-*.png"]  # visualize.save_png's
    stale = [path for pattern in patterns
             for path in glob.glob(os.path.join(glob.escape(directory), pattern))]
    for path in stale:
        os.remove(path)
    return stale


def atomic_write(path, write, before_replace=None, what="file"):
    """Call write(handle) on a temporary file, flush it to disk and rename it to `path`.

    `before_replace()` runs once the new file is whole, just before the rename. On any
    failure the temporary file is removed, `path` is as it was, and an OSError becomes a
    RunWriteError naming `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    temporary = temporary_path(path)
    try:
        os.makedirs(directory, exist_ok=True)
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(temporary, path)
        _sync_directory(directory)
    except OSError as error:
        raise RunWriteError(f"{path}: could not write the {what}: {_reason(error)}; "
                            f"the previous {what}, if any, is unchanged") from None
    finally:
        if os.path.exists(temporary):
            try:
                os.remove(temporary)
            except OSError:  # the next run in the directory removes it
                pass


def atomic_savez(path, arrays, before_replace=None, what="file"):
    """numpy.savez to `path` through a temporary file, so `path` is always whole."""
    atomic_write(path, lambda handle: numpy.savez(handle, **arrays), before_replace, what)


def _sync_directory(directory):
    """Make a rename in `directory` durable (where the system allows opening a directory)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _reason(error):
    return error.strerror or str(error)


# ------------------------------------------------------------------------ the format
def checkpoint_arrays(params, solver, iteration, rng_state, config, loss=None, meta=None):
    """The entries of a checkpoint (see the module docstring); NonFiniteState if a
    weight or solver array holds NaN or inf."""
    arrays = {f"param.{name}": value for name, value in params.items()}
    arrays.update({f"solver.{name}": value for name, value in solver.items()})
    bad = non_finite(arrays)
    if bad:
        raise NonFiniteState(f"NaN or inf in {bad}")
    arrays["meta.iteration"] = numpy.array(iteration)
    arrays["meta.rng_state"] = numpy.array(json.dumps(rng_state))
    arrays["meta.config"] = numpy.array(json.dumps(config))
    if loss is not None:
        arrays["meta.loss"] = numpy.array(float(loss))
    for key, value in (meta or {}).items():
        arrays[key] = numpy.asarray(value)
    return arrays


def non_finite(arrays):
    """The names of the float arrays of `arrays` holding NaN or inf, as one phrase ("" if none)."""
    bad = [name for name, value in arrays.items()
           if numpy.asarray(value).dtype.kind == "f" and not numpy.isfinite(value).all()]
    return ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")


def load_checkpoint(path):
    """A checkpoint as {"params", "solver", "iteration", "rng_state", "config", "loss",
    "meta"}; one-line errors naming the file for a missing, unreadable, foreign or
    non-finite one."""
    try:
        with numpy.load(path, allow_pickle=False) as archive:
            entries = {key: archive[key] for key in archive.files}
    except FileNotFoundError:
        raise NoCheckpoint(f"{path}: no such checkpoint") from None
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable minifcn checkpoint ({error})") from None
    if "meta.config" not in entries:
        raise CheckpointError(f"{path}: not a minifcn checkpoint (no meta.config entry)")
    def section(prefix):
        return {k[len(prefix):]: v for k, v in entries.items() if k.startswith(prefix)}
    bad = non_finite({k: v for k, v in entries.items() if k.startswith(("param.", "solver."))})
    if bad:
        raise CheckpointError(f"{path}: NaN or inf in {bad}: the checkpoint of a diverged "
                              f"run, refused")
    meta = {k: v for k, v in entries.items() if k.startswith("meta.") and k not in OWN_META}
    loss = float(entries["meta.loss"]) if "meta.loss" in entries else None
    return dict(params=section("param."), solver=section("solver."),
                iteration=int(entries["meta.iteration"]), meta=meta, loss=loss,
                rng_state=json.loads(str(entries["meta.rng_state"])),
                config=json.loads(str(entries["meta.config"])))


def read_config(path):
    """The run configuration (a dict) a checkpoint records, reading nothing else."""
    try:
        with numpy.load(path, allow_pickle=False) as archive:
            if "meta.config" not in archive.files:
                raise CheckpointError(f"{path}: not a minifcn checkpoint (no meta.config entry)")
            return json.loads(str(archive["meta.config"]))
    except FileNotFoundError:
        raise NoCheckpoint(f"{path}: no such checkpoint") from None
    except CheckpointError:
        raise
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable minifcn checkpoint ({error})") from None


# -------------------------------------------------------------------- resuming a run
OPTION_NAMES = {"small": "--small/--full", "progress": "--no-progress",
                "data_check": "--no-data-check"}


def option_name(field):
    """The `minifcn train` option that sets TrainConfig field `field`."""
    return OPTION_NAMES.get(field, "--" + field.replace("_", "-"))


def settings_changed(saved, wanted):
    """The fields of the config dict `wanted` that differ from the run's `saved` one and
    may not change on resume, as [(field, saved value, wanted value)]."""
    def plain(value):  # tuples as lists, as saved
        return json.loads(json.dumps(value))
    return [(field, saved.get(field), value) for field, value in wanted.items()
            if field not in (*MAY_CHANGE_ON_RESUME, "out")  # the run may have been moved
            and plain(value) != plain(saved.get(field))]


def refuse_changes(changed, path):
    """CheckpointError naming each setting that would make a resumed run another run."""
    if changed:
        said = "; ".join(f"{option_name(field)} {_shown(new)} (the run has {_shown(old)})"
                         for field, old, new in changed)
        raise CheckpointError(
            f"--resume keeps the settings of the run in {os.path.dirname(path) or '.'}, but "
            f"{said}. Drop {'that option' if len(changed) == 1 else 'those options'}, or "
            f"start another run (another --out, or --overwrite). Only "
            f"{', '.join(option_name(f) for f in MAY_CHANGE_ON_RESUME)} may change")


def _shown(value):
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)
