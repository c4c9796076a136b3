"""Data-parallel training: `mpiexec -n N minifcn train --distributed ...` (mpi4py, NCCL).

N processes (ranks) share each step. With --batch-size B the global batch of step i is
the N*B images a single process with --batch-size N*B takes at step i (train._batch);
rank r takes images r*B .. r*B + B - 1 of it. Every rank holds the whole net and the
whole solver state, and they stay equal because every rank applies the same update:

    g = sum over ranks r of g_r          g_r: rank r's gradient of its share of the loss
    L = sum_r L_r,   L_r = sum_heads  L_sum(r, head) / D_head

L_sum(r, head) is the softmax loss summed over rank r's pixels and D_head the divisor
one process would use for the global batch: the counted pixels of all ranks
(normalize=True, one small all-reduce of the counts per micro-batch) or N*B (Caffe's
normalize: false). So sum_r g_r is the single-process gradient on the global batch,
summed as --iter-size accumulates it, and the solvers (optim.py) run unchanged. The
gradients (and the step's loss, in the same buffer) are summed in a few large buckets,
BUCKET_BYTES each, rather than one call per parameter: MPI's Allreduce on host arrays,
NCCL's (cupy.cuda.nccl, its unique id broadcast over MPI) on CuPy arrays, with rank r
on GPU r % devices. On the CPU the ranks on one machine share its cores: each runs
numba's loops on cores / (ranks on that machine) threads (runtime.py).

Dropout draws per image from (seed, image index in the global batch) (functions/
activation.py; this module sets each rank's first index), loss sampling draws the
global batch's cells and keeps the rank's share, and the random generator draws the
same numbers on every rank: so a distributed run equals the single-process run with
--batch-size N*B up to the order of float32 sums (the tests state the tolerance).

Rank 0 alone writes the run directory (checkpoints, logs, pictures); the other ranks
run the same loop with writing left out (`_follower`). Validation is shared: each rank
scores every N-th held-out image and the confusion matrices are summed for rank 0 (a
multi-headed net's, heads.py, rank 0 scores alone). Stop requests
(Ctrl-C, SIGTERM) are agreed at the start of every step, so all ranks stop at the
same step and rank 0 saves it. A rank that fails ends the whole job: the exception is
printed naming the rank, then MPI_Abort; a rank that dies is seen by mpiexec, which
ends the others; a rank that waits longer than TIMEOUT seconds (environment variable
MINIFCN_COLLECTIVE_TIMEOUT) for the others aborts the job, so nothing hangs for good.
Set-up errors (a bad option, a run that exists) are gathered and reported once by
rank 0, and every rank exits with status 1.
"""
import contextlib
import hashlib
import importlib
import os
import socket
import sys
import time
import traceback

import numpy

from . import backend, heads, runtime
from .errors import UserError
from .functions import softmax_cross_entropy
from .functions.activation import images_from
from .interrupts import abandonable
from .loss_sampling import sample_step_labels

# Gradients are packed in order into buckets of at least this size (a parameter is never
# split): FCN-8s's 537 MB go in 3 calls of 470, 67 and 0.4 MB, fc6 alone being 411 MB.
BUCKET_BYTES = 64 * 2**20
TIMEOUT = float(os.environ.get("MINIFCN_COLLECTIVE_TIMEOUT", "3600"))  # seconds
# Seconds between a failed rank's message and its MPI_Abort: without a pause, mpiexec
# can tear the job down before it has passed the message on (seen with MPICH's Hydra).
ABORT_DELAY = 0.5
IGNORE = 255  # the ignore label of the loss (heads.loss's default)


class DistributedError(UserError, RuntimeError):
    """The ranks could not work together (no MPI, a wrong number of ranks, a timeout)."""


class SetupFailed(DistributedError):
    """Some rank could not set the run up; the message names each (rank 0 prints it)."""


def mpi():
    """mpi4py's MPI module, or DistributedError saying how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise DistributedError(f"--distributed needs mpi4py and an MPI ({error}); install "
                               f"them with pip install -e \".[mpi]\"") from None
    return MPI


def launched_size():
    """The number of ranks mpiexec started (1 without mpiexec)."""
    return mpi().COMM_WORLD.Get_size()


def launched_rank():
    return mpi().COMM_WORLD.Get_rank()


class Solo:
    """One process: every hook is what train.py did before ranks existed."""
    rank, size = 0, 1

    def __enter__(self):
        return self

    def __exit__(self, *failure):
        return False

    def set_up(self, function, log):
        return function()

    def make_run(self, run_class, *args, **options):
        return run_class(*args, **options)

    def stopping(self, stop):
        return stop.signal is not None

    def abandonable(self):
        return abandonable()

    def sample_labels(self, net, labels, p, seed, position):
        return sample_step_labels(net, labels, p, seed, position)

    def loss(self, score, labels, device, normalize):
        return heads.loss(score, backend.to_device(labels, device), normalize=normalize)

    def sum_gradients(self, opt, total):
        return total

    def sum_counts(self, counts):
        return counts

    def resume_command(self, out):
        return f"minifcn train --out {out} --resume"


SOLO = Solo()
_current = SOLO  # the World in force (inside `with world:`), for train._train_step


def current():
    """The World of the distributed run this process takes part in, else SOLO."""
    return _current


class World(Solo):
    """The ranks of an `mpiexec -n N` job, N = config.ranks."""

    def __init__(self, config):
        self.MPI = mpi()
        self.comm = self.MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        if self.size != config.ranks:
            raise DistributedError(
                f"this run takes {config.ranks} rank(s) (its checkpoint says so) but mpiexec "
                f"started {self.size}; run it with mpiexec -n {config.ranks} ... --distributed")
        self.batch_size, self.device, self.small = config.batch_size, config.device, config.is_small()
        self.timeout, self.step = TIMEOUT, None
        self._layout, self._nccl = None, None
        self._images = images_from(self.rank * config.batch_size)

    # ------------------------------------------------------------- failure handling
    def __enter__(self):
        if self.device == "cuda":
            cupy = backend.require_cupy()
            cupy.cuda.Device(self.rank % cupy.cuda.runtime.getDeviceCount()).use()
        else:  # the ranks on one machine share its cores rather than each taking all
            local = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED).Get_size()
            threads = max(1, runtime.default_threads() // local)
            blas = runtime.blas_threads_for(self.small)
            runtime.configure_process(threads=threads, blas_threads=blas and min(blas, threads))
        self._images.__enter__()
        global _current
        _current = self
        return self

    def __exit__(self, kind, error, trace):
        global _current
        _current = SOLO
        self._images.__exit__(kind, error, trace)
        from .train import Interrupted, TrainingDiverged
        if error is None or isinstance(error, (Interrupted, SetupFailed, KeyboardInterrupt)):
            return False  # agreed by all ranks: each exits with the same status
        if isinstance(error, TrainingDiverged) and self.rank > 0:
            return False  # the loss is summed over the ranks: rank 0 says it diverged too
        said = (f"{type(error).__name__}: {error}" if not isinstance(error, UserError)
                else str(error))
        if not isinstance(error, UserError):
            traceback.print_exception(kind, error, trace, file=sys.__stderr__)
        print(f"minifcn train: rank {self.rank} of {self.size} failed: {said}; ending the "
              f"job (MPI_Abort)", file=sys.__stderr__, flush=True)
        time.sleep(ABORT_DELAY)  # mpiexec forwards the message before the abort ends it all
        self.comm.Abort(1)

    def set_up(self, function, log):
        """function() on every rank; SetupFailed on all if it raised on any. Rank 0 logs
        where each rank runs (mpiexec names a rank that dies by its process id)."""
        try:
            result, failure = function(), None
        except Exception as error:  # noqa: BLE001 - reported below, by rank 0, for every rank
            result, failure = None, f"{type(error).__name__}: {error}"
            if not isinstance(error, UserError):
                failure += "\n" + traceback.format_exc()
        failures = self._gather(failure, "setting the run up")
        places = self._gather(f"process {os.getpid()} on {socket.gethostname()}", "")
        log(f"{self.size} ranks: " + ", ".join(f"rank {rank} {place}" for rank, place in enumerate(places)))
        if any(failures):
            said = {}
            for rank, message in enumerate(failures):
                if message:
                    said.setdefault(message, []).append(str(rank))
            raise SetupFailed("; ".join(f"rank {', '.join(ranks)}: {message}"
                                        for message, ranks in said.items()))
        run = result[0]  # rank 0, which reads the log, says whether a row is pending
        pending = numpy.array([run.row_pending if self.rank == 0 else 0], numpy.int64)
        run.row_pending = bool(self._sum(pending, "agreeing on the validation due")[0])
        return result

    def make_run(self, run_class, config, net, opt, val_set, log, replaces):
        if self.rank == 0:
            return run_class(config, net, opt, val_set, log, replaces=replaces)
        return _follower(run_class)(config, net, opt, val_set, lambda *said: None, replaces=False)

    # ------------------------------------------------------------- the loop's hooks
    def stopping(self, stop):
        """Whether any rank was asked to stop; each then holds the same signal."""
        agreed = self._sum(numpy.array([stop.signal or 0], numpy.int64), "agreeing to stop",
                           op=self.MPI.MAX)
        if agreed[0]:
            stop.signal = stop.signal or int(agreed[0])
        return bool(agreed[0])

    def abandonable(self):
        # a rank that left its passes would leave the others waiting in the all-reduce
        return contextlib.nullcontext()

    def sample_labels(self, net, labels, p, seed, position):
        """The rank's share of the cells the global batch draws (loss_sampling.py)."""
        if p == 1.0:
            return labels
        first = self.rank * len(labels)
        batch = numpy.full((self.size * len(labels),) + labels.shape[1:], IGNORE, labels.dtype)
        batch[first:first + len(labels)] = labels
        return sample_step_labels(net, batch, p, seed, position)[first:first + len(labels)]

    def loss(self, score, labels, device, normalize):
        """This rank's term L_r of the global batch's loss (the module's docstring)."""
        scores = score if isinstance(score, tuple) else (score,)
        maps = [labels[:, k] for k in range(len(scores))] if isinstance(score, tuple) else [labels]
        if normalize:
            counted = numpy.array([int((numpy.asarray(m) != IGNORE).sum()) for m in maps], numpy.int64)
            divisors = numpy.maximum(self._sum(counted, "counting the labelled pixels"), 1)
        else:
            divisors = [self.size * len(labels)] * len(maps)
        total = None
        for s, m, divisor in zip(scores, maps, divisors):
            m = backend.to_device(numpy.ascontiguousarray(m), device)
            term = softmax_cross_entropy(s, m, IGNORE, normalize=False) * (len(labels) / float(divisor))
            total = term if total is None else total + term
        return total

    def sum_gradients(self, opt, total):
        """Every gradient summed over the ranks, in buckets; the step's loss with them."""
        grads = [param for _, param in opt.params if param.grad is not None]
        self._check_layout([(name, p.shape) for name, p in opt.params if p.grad is not None])
        if not grads:
            return self._sum(numpy.array([float(total)]), "summing the loss")[0]
        xp = backend.get_array_module(grads[0].grad)
        dtype = grads[0].grad.dtype
        loss = xp.asarray(total, dtype=dtype).reshape(1)
        buckets, bucket, size = [], [], 0
        for param in grads:
            bucket.append(param)
            size += param.grad.nbytes
            if size >= BUCKET_BYTES:
                buckets.append(bucket)
                bucket, size = [], 0
        buckets.append(bucket)
        for number, bucket in enumerate(buckets):
            extra = [loss] if number == len(buckets) - 1 else []
            flat = xp.concatenate([p.grad.astype(dtype, copy=False).reshape(-1) for p in bucket] + extra)
            flat = self._sum(flat, f"summing gradient bucket {number + 1} of {len(buckets)}")
            offset = 0
            for param in bucket:
                param.grad[...] = flat[offset:offset + param.grad.size].reshape(param.grad.shape)
                offset += param.grad.size
        return flat[-1]

    def resume_command(self, out):
        return f"mpiexec -n {self.size} minifcn train --distributed --out {out} --resume"

    def sum_counts(self, counts):
        """A confusion matrix (int64) summed over the ranks' shares of the validation."""
        return self._sum(numpy.array(counts, numpy.int64), "summing the confusion matrices")

    # ------------------------------------------------------------------ collectives
    def _sum(self, array, what, op=None):
        """array summed (or `op`) over the ranks, within TIMEOUT seconds."""
        if backend.get_array_module(array) is not numpy:
            return self._nccl_sum(array, what)
        array = numpy.ascontiguousarray(array)
        self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, array, op=op or self.MPI.SUM), what)
        return array

    def _gather(self, value, what):
        """Every rank's `value` (a short string or None), within TIMEOUT seconds."""
        data = numpy.zeros((self.size, 4096), numpy.uint8)
        text = (value or "").encode()[:4096]
        data[self.rank, :len(text)] = numpy.frombuffer(text, numpy.uint8)
        data = self._sum(data, what)
        return [bytes(row).rstrip(b"\0").decode(errors="replace") or None for row in data]

    def _check_layout(self, layout):
        """The same parameters hold gradients on every rank, or a clear error (a
        mismatch would make the buckets' sizes differ, which MPI cannot detect)."""
        if layout == self._layout:
            return
        digest = int.from_bytes(hashlib.sha256(repr(layout).encode()).digest()[:7], "little")
        both = self._sum(numpy.array([digest, -digest], numpy.int64), "comparing the gradients",
                         op=self.MPI.MIN)
        if both[0] != -both[1]:
            raise DistributedError(f"rank {self.rank}: the ranks' nets have different "
                                   f"gradients (parameters or shapes); they must be one net")
        self._layout = layout

    def _wait(self, request, what):
        began = time.monotonic()
        while not request.Test():
            waited = time.monotonic() - began
            if waited > self.timeout:
                raise DistributedError(
                    f"no answer from the other ranks after {waited:.0f} s while {what}: a "
                    f"rank is stuck or gone (MINIFCN_COLLECTIVE_TIMEOUT={self.timeout:g})")
            time.sleep(0 if waited < 1.0 else 0.002)  # spin briefly, then stop burning a core

    def _nccl_sum(self, array, what):
        """NCCL's in-place all-reduce of a CuPy array, waited for within TIMEOUT."""
        cupy = backend.require_cupy()
        nccl = getattr(cupy.cuda, "nccl", None) or importlib.import_module("cupy.cuda.nccl")
        if self._nccl is None:
            unique = nccl.get_unique_id() if self.rank == 0 else None
            self._nccl = nccl.NcclCommunicator(self.size, self.comm.bcast(unique, root=0), self.rank)
        array = cupy.ascontiguousarray(array)
        kinds = {numpy.dtype(numpy.float32): nccl.NCCL_FLOAT32,
                 numpy.dtype(numpy.float64): nccl.NCCL_FLOAT64}
        stream = cupy.cuda.get_current_stream()
        self._nccl.allReduce(array.data.ptr, array.data.ptr, array.size, kinds[array.dtype],
                             nccl.NCCL_SUM, stream.ptr)
        done = cupy.cuda.Event()
        done.record(stream)
        self._wait(_EventRequest(done), what)
        return array


class _EventRequest:
    """A CUDA event polled as an MPI request is."""

    def __init__(self, event):
        self.event = event

    def Test(self):
        return self.event.done


def world_for(config):
    """Solo for a run of one process, else the job's World."""
    return Solo() if config.ranks == 1 else World(config)


def _follower(run_class):
    """The run of rank > 0: the same loop and bookkeeping, nothing written, no validation."""

    class Follower(run_class):
        def __init__(self, *args, **options):
            super().__init__(*args, **options)
            self.runlog = _Unwritten()

        def prepare_directory(self):
            pass

        def save_checkpoint(self):
            self.saved, self.replaces = self.position, False
            self.row_pending = self.is_validation_point(self.position)

        def save_on_failure(self):
            pass

        def validate(self):
            """This rank's share of rank 0's validation (train.evaluate)."""
            from .train import evaluate
            if not isinstance(self.val_set.n_class, tuple):  # else rank 0 scores alone
                with current().abandonable():
                    evaluate(self.net, self.val_set, self.config.device, self.config.val_images)
            self.row_pending = False

        def finish(self):
            return None

    return Follower


class _Unwritten:
    """A RunLog that is not there (rank > 0 never reads or writes the logs)."""

    def trim(self, iteration):
        return 0

    def row(self, iteration):
        return None

    def append(self, row):
        pass

    def remove(self):
        pass
