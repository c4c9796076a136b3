"""The prefetcher on the GPU path (emulated CuPy): batches land on the device, from
pinned memory, labels as int32, in two buffers used in turn."""
import numpy

from minifcn import backend
from minifcn.data.prefetch import Prefetcher


def _make_batch(position):
    rng = numpy.random.default_rng(position)
    return (rng.standard_normal((2, 3, 5, 4)).astype(numpy.float32),
            rng.integers(0, 5, size=(2, 5, 4)).astype(numpy.int64))


def test_batches_are_copied_to_the_device_in_turn(emulated_cupy, monkeypatch):
    pinned = []
    monkeypatch.setattr(emulated_cupy.cuda, "alloc_pinned_memory",
                        lambda nbytes: pinned.append(nbytes) or bytearray(nbytes))
    with Prefetcher(_make_batch, 2, 9, device="cuda") as batches:
        seen = []
        for position in range(2, 9):
            images, labels = batches.get(position)
            assert backend.is_cupy_array(images) and backend.is_cupy_array(labels)
            assert labels.dtype == numpy.int32
            expected_images, expected_labels = _make_batch(position)
            numpy.testing.assert_array_equal(images.get(), expected_images)
            numpy.testing.assert_array_equal(labels.get(), expected_labels)
            seen.append(images)
        assert seen[0] is seen[2] is seen[4] and seen[1] is seen[3] and seen[0] is not seen[1]
    # staged in page-locked memory: per buffer (2) the images and the int32 labels
    assert sorted(pinned) == [2 * 5 * 4 * 4] * 2 + [2 * 3 * 5 * 4 * 4] * 2
