"""Batches made ahead of the step that needs them: data that is always ready.

    batches = Prefetcher(make_batch, first=0, end=4500, device="cuda")
    images, labels = batches.get(0)      # batch 0; 1, 2, ... are being made meanwhile
    batches.close()

`make_batch(position)` is a pure function of the batch number (train.py's `_batch`: the
seeded per-epoch order, then the dataset's own per-index drawing or decoding), so the
batches are those of a run without prefetching, in the same order, and a resumed run
(first = the checkpoint's position) gets the same ones as an uninterrupted run.

Workers. `workers` threads each make whole batches, `depth` positions ahead of the
one asked for. Threads, not processes: nothing to pickle, and Ctrl-C and errors stay in
one process. A worker's error is raised in the main thread when its batch is asked for,
with the worker's traceback (concurrent.futures keeps it); Ctrl-C reaches the main
thread, and `close()` (train.py calls it in a `finally`) cancels what is queued without
waiting for it, so a run ends at once.

The GPU. Each batch is copied to the device on a stream of its own, from page-locked
(pinned) host memory, so the copy is a DMA that runs while the previous step computes;
the step's stream waits for the copy's event before it reads the batch. The copies go
into two device buffers used in turn: before one is overwritten, the copy stream waits
for the event recorded when the step that read it was queued, so no copy lands under a
step still reading. Labels are sent as int32, what the loss kernels read.
"""
import concurrent.futures

import numpy

from .. import backend


class Prefetcher:
    """Batches number first, first+1, ... (up to `end`) of `make_batch`, made ahead by
    background threads; on "cuda", copied to the device ahead too."""

    def __init__(self, make_batch, first, end, device="cpu", workers=2, depth=4):
        if workers < 1 or depth < 1:
            raise ValueError(f"Prefetcher: workers and depth must be >= 1, got {workers} and {depth}")
        self.make_batch, self.end, self.depth = make_batch, end, depth
        self.pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="minifcn-data")
        self.pending = {}  # position -> Future of its host batch
        self.copies = _DeviceCopies() if backend.check_device(device) == "cuda" else None
        self.next = first
        self._queue(first)

    def get(self, position):
        """(images, labels) of batch `position`: host arrays, or device arrays on "cuda"."""
        self._queue(position)
        images, labels = self.pending.pop(position).result()  # a worker's error is raised here
        self._queue(position + 1)
        if self.copies is None:
            return images, labels
        return self.copies.to_device(images, labels)

    def _queue(self, position):
        """Make sure batches position .. position + depth - 1 (below end) are under way."""
        for ahead in range(position, min(position + self.depth, self.end)):
            if ahead not in self.pending:
                self.pending[ahead] = self.pool.submit(self.make_batch, ahead)
        for stale in [p for p in self.pending if p < position]:  # a jump back (not in a run)
            self.pending.pop(stale).cancel()

    def close(self):
        """Cancel the batches not started; do not wait for the ones being made."""
        for future in self.pending.values():
            future.cancel()
        self.pending.clear()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *error):
        self.close()


class _DeviceCopies:
    """Host batches to the device: pinned staging, a copy stream, two device buffers."""

    SLOTS = 2

    def __init__(self):
        self.cupy = backend.require_cupy()
        self.stream = self.cupy.cuda.Stream(non_blocking=True)
        self.slots = [None] * self.SLOTS  # per slot: dict of buffers and events, by shape
        self.turn = 0

    def to_device(self, images, labels):
        cupy = self.cupy
        current = cupy.cuda.get_current_stream()
        previous = self.slots[(self.turn - 1) % self.SLOTS]
        if previous is not None:  # the step that read the previous batch is queued by now
            previous["read"] = current.record()
        slot = self._slot(self.turn % self.SLOTS, images, labels, current)
        self.turn += 1
        slot["copied"].synchronize()  # the pinned buffers' last copy out has finished
        slot["host_images"][...] = images
        slot["host_labels"][...] = labels
        with self.stream:
            if slot["read"] is not None:
                self.stream.wait_event(slot["read"])
            slot["images"].set(slot["host_images"], stream=self.stream)
            slot["labels"].set(slot["host_labels"], stream=self.stream)
            slot["copied"] = self.stream.record()
        current.wait_event(slot["copied"])
        return slot["images"], slot["labels"]

    def _slot(self, index, images, labels, current):
        slot = self.slots[index]
        if slot is not None and (slot["images"].shape, slot["labels"].shape) == (images.shape, labels.shape) \
                and slot["images"].dtype == images.dtype:
            return slot
        if slot is not None:  # a new shape: let every use of the old buffers end first
            current.synchronize()
        self.slots[index] = slot = dict(
            images=self.cupy.empty(images.shape, images.dtype),
            labels=self.cupy.empty(labels.shape, numpy.int32),
            host_images=_pinned(self.cupy, images.shape, images.dtype),
            host_labels=_pinned(self.cupy, labels.shape, numpy.int32),
            read=None, copied=self.stream.record())
        return slot


def _pinned(cupy, shape, dtype):
    """A NumPy array in page-locked host memory (the GPU copies it by DMA, asynchronously)."""
    count = int(numpy.prod(shape))
    memory = cupy.cuda.alloc_pinned_memory(max(1, count * numpy.dtype(dtype).itemsize))
    return numpy.frombuffer(memory, dtype, count).reshape(shape)
