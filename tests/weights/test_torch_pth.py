"""read_torch_state_dict against .pth files written by hand (writers.py) and, where torch
is installed, by torch.save itself."""
import collections
import os
import pickle

import numpy
import pytest

from minifcn.weights import WeightsFileError, read_torch_state_dict

from . import writers
from .writers import Storage, Tensor


def layouts():
    return pytest.mark.parametrize("layout", ["zip", "legacy"])


def write_pth(tmp_path, state, layout, **options):
    path = tmp_path / f"{layout}.pth"
    path.write_bytes(writers.zip_pth(state, **options) if layout == "zip"
                     else writers.legacy_pth(state, **options))
    return path


@layouts()
def test_contiguous_tensors_of_several_types_round_trip(tmp_path, rng, layout):
    arrays = {"w": rng.standard_normal((3, 2, 2)).astype(numpy.float32),
              "d": rng.standard_normal(4),
              "h": numpy.array([0.5, -2.0, 65504.0], numpy.float16),
              "n": numpy.array(7, numpy.int64),
              "u": numpy.arange(5, dtype=numpy.uint8)}
    state = {name: writers.contiguous(str(i), a) for i, (name, a) in enumerate(arrays.items())}
    read = read_torch_state_dict(write_pth(tmp_path, state, layout))
    assert list(read) == list(arrays)
    for name, want in arrays.items():
        assert read[name].dtype == want.dtype and read[name].shape == want.shape
        numpy.testing.assert_array_equal(read[name], want)


@layouts()
def test_views_share_a_storage_with_offsets_and_transposed_strides(tmp_path, layout):
    shared = Storage("0", numpy.arange(20, dtype=numpy.float32), "FloatStorage")
    state = {
        "transposed": Tensor(shared, 0, (4, 3), (1, 4)),  # a (3, 4) matrix's .t()
        "offset": Tensor(shared, 5, (3, 4), (4, 1)),
        "every_other": Tensor(shared, 1, (5,), (2,)),
        "broadcast": Tensor(shared, 2, (2, 3), (0, 1)),
        "empty": Tensor(shared, 0, (0, 3), (3, 1)),
    }
    read = read_torch_state_dict(write_pth(tmp_path, state, layout))
    storage = numpy.arange(20, dtype=numpy.float32)
    numpy.testing.assert_array_equal(read["transposed"], storage[:12].reshape(3, 4).T)
    numpy.testing.assert_array_equal(read["offset"], storage[5:17].reshape(3, 4))
    numpy.testing.assert_array_equal(read["every_other"], storage[1:11:2])
    numpy.testing.assert_array_equal(read["broadcast"], [[2, 3, 4], [2, 3, 4]])
    assert read["empty"].shape == (0, 3)
    for array in read.values():
        assert array.flags.c_contiguous and array.flags.owndata


def test_big_endian_archive(tmp_path):
    values = numpy.array([1.5, -2.25, 3.0], numpy.float32)
    path = write_pth(tmp_path, {"x": writers.contiguous("0", values)}, "zip", byteorder="big")
    read = read_torch_state_dict(path)
    assert read["x"].dtype.isnative
    numpy.testing.assert_array_equal(read["x"], values)


def test_any_top_folder_name(tmp_path):
    path = write_pth(tmp_path, {"x": writers.contiguous("0", numpy.ones(2, numpy.float32))},
                     "zip", folder="vgg16-397923af")
    numpy.testing.assert_array_equal(read_torch_state_dict(path)["x"], [1, 1])


# --- files it must refuse ----------------------------------------------------------------

def refuses(path, *words):
    with pytest.raises(WeightsFileError) as caught:
        read_torch_state_dict(path)
    message = str(caught.value)
    assert str(path) in message and all(word in message for word in words), message


class RunsACommand:
    """Unpickled, this would run a shell command: the reader must refuse it unrun."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@layouts()
def test_a_pickle_that_calls_os_system_is_refused_and_not_run(tmp_path, layout):
    marker = tmp_path / "it-ran"
    hostile = pickle.dumps(collections.OrderedDict(x=RunsACommand(marker)), protocol=2)
    if layout == "zip":
        path = write_pth(tmp_path, {}, "zip", data_pkl=hostile)
    else:
        path = write_pth(tmp_path, {}, "legacy", main_pickle=hostile)
    refuses(path, "refused", "system")
    assert not marker.exists()


def test_a_pickle_that_is_not_a_state_dict(tmp_path):
    refuses(write_pth(tmp_path, {}, "zip", data_pkl=pickle.dumps([1, 2], protocol=2)),
            "not a state dict")
    refuses(write_pth(tmp_path, {}, "zip", data_pkl=pickle.dumps({"epoch": 3}, protocol=2)),
            "'epoch'", "not a tensor")


@layouts()
def test_a_tensor_reaching_past_its_storage(tmp_path, layout):
    short = Storage("0", numpy.arange(6, dtype=numpy.float32), "FloatStorage")
    refuses(write_pth(tmp_path, {"x": Tensor(short, 2, (2, 3), (3, 1))}, layout),
            "'x'", "reaches element 7")


@layouts()
def test_truncated_file(tmp_path, rng, layout):
    state = {"x": writers.contiguous("0", rng.standard_normal(1000).astype(numpy.float32))}
    path = write_pth(tmp_path, state, layout)
    path.write_bytes(path.read_bytes()[:-1500])
    refuses(path)


def test_a_zip_that_is_not_a_torch_file(tmp_path):
    import zipfile
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    refuses(path, "not a torch.save file")


def test_neither_layout(tmp_path):
    path = tmp_path / "x.pth"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    refuses(path, "not a PyTorch file")


def test_the_tar_layout_of_torch_before_0_1_10_is_named_and_refused(tmp_path):
    import tarfile
    path = tmp_path / "old.pth"
    with tarfile.open(path, "w") as archive:
        archive.add(write_pth(tmp_path, {}, "zip"), arcname="pickle")
    refuses(path, "tar archive", "not supported")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    refuses(path, "not a PyTorch file")


# --- the real thing ----------------------------------------------------------------------

@pytest.mark.parametrize("zip_layout", [True, False])
def test_files_written_by_torch_save(tmp_path, zip_layout):
    torch = pytest.importorskip("torch")
    base = torch.arange(24, dtype=torch.float32)
    state = collections.OrderedDict(
        transposed=base[:12].view(3, 4).t(), offset=base[5:17].view(3, 4),
        half=torch.tensor([0.5, -1.0], dtype=torch.float16),
        bfloat=torch.tensor([1.5, -3.0], dtype=torch.bfloat16),
        double=torch.linspace(0, 1, 5, dtype=torch.float64),
        module=torch.nn.Linear(3, 2).state_dict()["weight"])
    path = tmp_path / "saved.pth"
    torch.save(state, path, _use_new_zipfile_serialization=zip_layout)
    read = read_torch_state_dict(path)
    assert list(read) == list(state)
    for name, tensor in state.items():
        want = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
        assert read[name].dtype == want.dtype
        numpy.testing.assert_array_equal(read[name], want)
