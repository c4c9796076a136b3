"""Read a PyTorch `.pth` state dict (torchvision's VGG16) without torch.

torch.save writes the state dict (an OrderedDict of name -> tensor) as a pickle in which
each tensor is the call `torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
...)` (`_rebuild_tensor(storage, offset, size, stride)` before torch 0.4) and each storage
is a persistent id `('storage', torch.FloatStorage, key, location, numel)`. The storages'
bytes lie outside the pickle, in one of two layouts:

    zip (torch >= 1.6): an archive with one top folder `<name>/` holding
        <name>/data.pkl       the pickle
        <name>/data/<key>     each storage's raw bytes
        <name>/byteorder      "little" or "big" (older archives lack it: little)
    legacy (torch 0.1.10 to 1.5, as older model-zoo files are): pickles back to back in
        a plain file: a magic number, a protocol version, a system-info dict, the state
        dict (its persistent ids have a 6th item, a view of the storage in old versions),
        the list of storage keys; then for each key in that order an int64 element count
        and the raw bytes.
The tar layout of torch before 0.1.10 is recognised and refused with a clear error.

Unpickling can call any importable function, so ours resolves only the names a state dict
needs (SAFE_GLOBALS) and refuses any other before it runs. The tensors come back as
C-contiguous native-endian numpy arrays, copied out of (offset, size, stride) views.
"""
import collections
import functools
import io
import math
import pickle
import pickletools
import struct
import zipfile
import zlib

import numpy
from numpy.lib.stride_tricks import as_strided

from .errors import WeightsFileError

ZIP_MAGIC = b"PK\x03\x04"
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
# `pickle.dumps(LEGACY_MAGIC_NUMBER, protocol=2)` without its STOP: how a legacy file opens.
LEGACY_HEADER = b"\x80\x02\x8a\x0a" + LEGACY_MAGIC_NUMBER.to_bytes(10, "little")
TAR_HEAD = 512  # the bytes that tell the layouts apart: a tar header is 512

MAX_ELEMENTS = 2 ** 40  # a larger tensor only comes from a damaged file

# Storage type -> element type (byte order is added per file). numpy has no bfloat16: its
# 16 bits are the high half of a float32 (see `bfloat16_to_float32`).
STORAGE_DTYPES = {
    "DoubleStorage": "f8", "FloatStorage": "f4", "HalfStorage": "f2", "BFloat16Storage": "u2",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "b1",
}


class StorageType:
    """Stands for a class such as torch.FloatStorage, which a pickle names but never calls."""

    def __init__(self, name):
        self.name = name
        self.is_bfloat16 = name == "BFloat16Storage"
        self.element_type = STORAGE_DTYPES[name]


StorageRef = collections.namedtuple("StorageRef", "key type element_offset")
TensorRef = collections.namedtuple("TensorRef", "storage offset size stride")


def rebuild_tensor(storage, offset, size, stride, *unused):
    """Stands for torch._utils._rebuild_tensor(_v2): notes where the tensor lies, since the
    storage's bytes may not have been read yet (the legacy layout puts them after the pickle).
    The unused arguments (requires_grad, backward hooks, metadata) mean nothing to numpy."""
    return TensorRef(storage, offset, tuple(size), tuple(stride))


def rebuild_parameter(data, *unused):
    """Stands for torch._utils._rebuild_parameter: an nn.Parameter is its tensor here."""
    return data


SAFE_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): rebuild_parameter,
    **{("torch", name): StorageType(name) for name in STORAGE_DTYPES},
}


class StateDictUnpickler(pickle.Unpickler):
    """An unpickler that builds only dicts, numbers, strings and TensorRefs."""

    def __init__(self, file, path):
        super().__init__(file)
        self.path = path

    def find_class(self, module, name):
        found = SAFE_GLOBALS.get((module, name))
        if found is None:
            raise WeightsFileError(self.path, f"refused to load {module}.{name}: a state dict "
                                   "never needs it (the file may be unsafe, or not a state dict)")
        return found

    def persistent_load(self, persistent_id):
        if (not isinstance(persistent_id, tuple) or len(persistent_id) not in (5, 6)
                or persistent_id[0] != "storage" or not isinstance(persistent_id[1], StorageType)):
            raise WeightsFileError(self.path, f"unknown persistent id {persistent_id!r:.80}")
        _, storage_type, key, _location, _numel, *view = persistent_id
        element_offset = 0
        if view and view[0] is not None:  # torch < 0.4: a view (key, offset, size) into `key`
            _view_key, element_offset, _view_size = view[0]
        if not isinstance(element_offset, int) or element_offset < 0:
            raise WeightsFileError(self.path, f"storage view at bad offset {element_offset!r:.40}")
        return StorageRef(str(key), storage_type, element_offset)


def read_torch_state_dict(path):
    """{name: numpy array} from a torch.save'd state dict, zip or legacy, in file order."""
    try:
        with open(path, "rb") as file:
            head = file.read(TAR_HEAD)
            if head.startswith(ZIP_MAGIC):
                return read_zip_layout(file, path)
            if head.startswith(LEGACY_HEADER):
                file.seek(0)
                return read_legacy_layout(file.read(), path)
    except OSError as error:
        raise WeightsFileError(path, f"cannot read the file: {error.strerror or error}") from None
    if is_tar(head):
        raise WeightsFileError(path, "a tar archive, as torch.save wrote before torch 0.1.10: "
                               "not supported (load and save it again with a newer torch)")
    raise WeightsFileError(path, "not a PyTorch file: neither a zip archive nor a legacy "
                           "torch.save pickle")


def is_torch_file(head):
    """Whether the file's first TAR_HEAD bytes are those of a torch.save file."""
    return head.startswith(ZIP_MAGIC) or head.startswith(LEGACY_HEADER) or is_tar(head)


def is_tar(head):
    return head[257:262] == b"ustar"  # a tar header's magic


def read_zip_layout(file, path):
    try:
        with zipfile.ZipFile(file) as archive:
            folder = archive_folder(archive, path)
            byteorder = "little"
            if folder + "byteorder" in archive.namelist():
                byteorder = archive.read(folder + "byteorder").decode("ascii", "replace").strip()
            tensors = unpickle_state_dict(io.BytesIO(archive.read(folder + "data.pkl")), path)
            # read each storage once, however many tensors view it
            storage_bytes = functools.cache(lambda key: archive.read(f"{folder}data/{key}"))
            return materialize(tensors, storage_bytes, byteorder, path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, KeyError, EOFError, zlib.error,
            NotImplementedError, RuntimeError) as error:  # what zipfile raises for bad archives
        raise WeightsFileError(path, f"damaged zip archive: {error}") from None


def archive_folder(archive, path):
    """The top folder `<name>/` of a torch.save archive: the one holding data.pkl."""
    folders = [name[:-len("data.pkl")] for name in archive.namelist()
               if name.endswith("data.pkl") and name.count("/") == 1]
    if len(folders) != 1:
        raise WeightsFileError(path, "a zip archive but not a torch.save file "
                               f"({len(folders)} <name>/data.pkl entries, expected 1)")
    return folders[0]


def read_legacy_layout(raw, path):
    """The state dict in `raw`, the bytes of a legacy file: pickles, then the storages."""
    file = io.BytesIO(raw)  # shares raw's memory
    magic = unpickle(file, path)
    version = unpickle(file, path)
    system = unpickle(file, path)
    if magic != LEGACY_MAGIC_NUMBER or version != LEGACY_PROTOCOL_VERSION:
        raise WeightsFileError(path, f"legacy torch.save file of an unknown version {version!r}")
    little_endian = not isinstance(system, dict) or system.get("little_endian", True)
    byteorder = "little" if little_endian else "big"
    tensors = unpickle_state_dict(file, path)
    keys = unpickle(file, path)
    if not isinstance(keys, list):
        raise WeightsFileError(path, f"a {type(keys).__name__} where the storage keys belong")
    storages = legacy_storages(memoryview(raw), file.tell(), [str(key) for key in keys],
                               tensors, byteorder, path)
    return materialize(tensors, storages.__getitem__, byteorder, path)


def legacy_storages(raw, position, keys, tensors, byteorder, path):
    """{key: bytes view} for the storages from `position` on: for each key in turn, an
    int64 element count and then the elements."""
    element_sizes = {ref.storage.key: numpy.dtype(ref.storage.type.element_type).itemsize
                     for ref in tensors.values()}
    count_format = "<q" if byteorder == "little" else ">q"
    storages = {}
    for key in keys:
        if key not in element_sizes:  # without a tensor of it, its element size is unknown
            raise WeightsFileError(path, f"storage {key} is used by no tensor: not a state dict")
        if position + 8 > len(raw):
            raise WeightsFileError(path, f"the file ends before storage {key}: truncated")
        (count,) = struct.unpack_from(count_format, raw, position)
        start, end = position + 8, position + 8 + count * element_sizes[key]
        if count < 0 or end > len(raw):
            raise WeightsFileError(path, f"storage {key} of {count} elements does not fit in "
                                   "the file: truncated or damaged")
        storages[key], position = raw[start:end], end
    return storages


def unpickle(file, path):
    """The next object pickled in `file` (an io.BytesIO), by the restricted unpickler.

    pickletools first walks the opcodes without building anything, so that a damaged
    length is caught there and never reaches pickle itself, which would try to allocate it.
    """
    start = file.tell()
    try:
        for _ in pickletools.genops(file):
            pass
        file.seek(start)
        return StateDictUnpickler(file, path).load()
    except WeightsFileError:
        raise
    except Exception as error:  # a damaged pickle fails in many ways inside pickle itself
        raise WeightsFileError(path, f"damaged pickle: {type(error).__name__}: {error}") from None


def unpickle_state_dict(file, path):
    """The pickled state dict as {name: TensorRef}, checked to be nothing else."""
    state = unpickle(file, path)
    if not isinstance(state, dict):
        raise WeightsFileError(path, f"holds a {type(state).__name__}, not a state dict")
    for name, value in state.items():
        if not isinstance(value, TensorRef) or not isinstance(value.storage, StorageRef):
            raise WeightsFileError(path, f"entry {name!r} is a {type(value).__name__}, "
                                   "not a tensor: not a plain state dict")
    return state


def materialize(tensors, storage_bytes, byteorder, path):
    """{name: array} from {name: TensorRef}; `storage_bytes(key)` gives a storage's bytes."""
    if byteorder not in ("little", "big"):
        raise WeightsFileError(path, f"unknown byte order {byteorder!r}")
    order = "<" if byteorder == "little" else ">"
    arrays = {}
    for name, ref in tensors.items():
        storage = ref.storage
        dtype = numpy.dtype(storage.type.element_type).newbyteorder(order)
        raw = storage_bytes(storage.key)
        if len(raw) % dtype.itemsize:
            raise WeightsFileError(path, f"storage {storage.key} holds {len(raw)} bytes, not "
                                   f"a whole number of {dtype.itemsize}-byte elements")
        elements = numpy.frombuffer(raw, dtype)[storage.element_offset:]
        array = strided_copy(elements, ref, path, name)
        arrays[name] = bfloat16_to_float32(array) if storage.type.is_bfloat16 else array
    return arrays


def strided_copy(elements, ref, path, name):
    """The tensor `ref` describes over the storage `elements`, as a new C-contiguous array."""
    offset, size, stride = ref.offset, ref.size, ref.stride
    numbers = size + stride + (offset,)
    if (len(size) != len(stride) or not all(isinstance(n, int) for n in numbers)
            or min(numbers) < 0 or math.prod(size) > MAX_ELEMENTS):
        raise WeightsFileError(path, f"tensor {name!r} has a bad layout: offset {offset!r}, "
                               f"size {size!r}, stride {stride!r}")
    native = elements.dtype.newbyteorder("=")
    if 0 in size:
        return numpy.zeros(size, native)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= elements.size:
        raise WeightsFileError(path, f"tensor {name!r} of size {size} reaches element {last} "
                               f"of a storage of {elements.size}: truncated or damaged")
    view = as_strided(elements[offset:], shape=size,
                      strides=[s * elements.itemsize for s in stride], writeable=False)
    return view.astype(native, order="C")  # always a copy: nothing points into the file


def bfloat16_to_float32(bits):
    """bfloat16 (as uint16) -> float32: the 16 bits are the high half of the float32."""
    return (bits.astype(numpy.uint32) << 16).view(numpy.float32)
