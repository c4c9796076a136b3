"""Writers for test files: a protobuf encoder for .caffemodel files and a torch.save
look-alike for .pth files (zip and legacy). Both are written from the formats as documented
(caffe.proto, torch/serialization.py), independently of the readers they test.
"""
import collections
import contextlib
import io
import pickle
import struct
import sys
import types
import zipfile

import numpy

# --- protobuf --------------------------------------------------------------------------

VARINT, FIXED64, BYTES, FIXED32 = 0, 1, 2, 5


def varint(value):
    value &= (1 << 64) - 1  # negative numbers: 64-bit two's complement, as protobuf does
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def key(number, wire):
    return varint(number << 3 | wire)


def int_field(number, value):
    return key(number, VARINT) + varint(value)


def bytes_field(number, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return key(number, BYTES) + varint(len(payload)) + payload


def real_fields(number, values, packed, double=False):
    """A repeated float (or double) field, packed into one field or one field per value."""
    fmt, wire = ("<d", FIXED64) if double else ("<f", FIXED32)
    if packed:
        return bytes_field(number, numpy.asarray(values, fmt).tobytes())
    return b"".join(key(number, wire) + struct.pack(fmt, v) for v in values)


def blob(array, dims="shape", data="packed"):
    """A BlobProto. dims: "shape" (packed BlobShape), "shape_unpacked", or "legacy" (num,
    channels, height, width, padded in front with 1s as old Caffe did). data: "packed",
    "unpacked", "split" (an unpacked run then a packed rest), or "double"."""
    values = numpy.asarray(array).ravel()
    if dims == "legacy":
        shape4 = (1,) * (4 - array.ndim) + array.shape
        out = b"".join(int_field(number, n) for number, n in zip((1, 2, 3, 4), shape4))
    elif dims == "shape":
        out = bytes_field(7, bytes_field(1, b"".join(varint(n) for n in array.shape)))
    else:
        out = bytes_field(7, b"".join(int_field(1, n) for n in array.shape))
    if data == "double":
        out += real_fields(8, values, packed=True, double=True)
    elif data == "split":
        half = len(values) // 2
        out += real_fields(5, values[:half], packed=False) + real_fields(5, values[half:], True)
    else:
        out += real_fields(5, values, packed=data == "packed")
    # a gradient that must be ignored, and a field Caffe never had, which must be skipped
    return out + real_fields(6, [9.0] * len(values[:3]), packed=True) + int_field(99, 7)


def v2_layer(name, type_name, blobs):
    """A LayerParameter: name = 1, type = 2, bottom = 3 (noise), blobs = 7."""
    return (bytes_field(1, name) + bytes_field(2, type_name) + bytes_field(3, "data")
            + b"".join(bytes_field(7, b) for b in blobs))


def v1_layer(name, type_enum, blobs):
    """A V1LayerParameter: name = 4, type = 5 (enum), blobs = 6, then blobs_lr = 7 floats."""
    return (bytes_field(2, "bottom") + bytes_field(4, name) + int_field(5, type_enum)
            + b"".join(bytes_field(6, b) for b in blobs) + real_fields(7, [1.0, 2.0], False))


def v0_wrapped_layer(name, type_name, blobs):
    """A V1LayerParameter whose only field is a V0LayerParameter (name 1, type 2, blobs 50,
    blobs_lr 51 as unpacked floats with two-byte keys)."""
    v0 = (bytes_field(1, name) + bytes_field(2, type_name) + real_fields(12, [0.5], False)
          + b"".join(bytes_field(50, b) for b in blobs) + real_fields(51, [1.0, 2.0], False))
    return bytes_field(1, v0)


def net(layer_messages, v1=False):
    """A NetParameter with the layers (field 100, or 2 for V1) among fields to be skipped."""
    noise = (bytes_field(1, "VGG_ILSVRC_16_layers") + bytes_field(3, "data")
             + int_field(4, 10) + key(41, FIXED64) + struct.pack("<d", 1.5)
             + key(42, FIXED32) + struct.pack("<f", 2.5))
    number = 2 if v1 else 100
    relu = v1_layer("relu1_1", 18, []) if v1 else v2_layer("relu1_1", "ReLU", [])
    return noise + b"".join(bytes_field(number, m) for m in [relu, *layer_messages])


# --- a small VGG16 ---------------------------------------------------------------------

CONV = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
        "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3"]
FC = ["fc6", "fc7", "fc8"]
SMALL_CONV_WIDTHS = [2, 2, 3, 3, 4, 4, 4, 3, 3, 3, 2, 2, 2]
SMALL_FC_WIDTHS = [5, 4, 3]
TORCHVISION = dict(zip(CONV + FC, [f"features.{i}" for i in
                                   (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)]
                       + ["classifier.0", "classifier.3", "classifier.6"]))


def small_vgg16(rng):
    """{layer: (weight, bias)} for a VGG16 with tiny widths (fc6 still sees a 7x7 grid)."""
    layers, inputs = {}, 3
    for name, width in zip(CONV, SMALL_CONV_WIDTHS):
        layers[name] = (rng.standard_normal((width, inputs, 3, 3)).astype(numpy.float32),
                        rng.standard_normal(width).astype(numpy.float32))
        inputs = width
    inputs *= 49
    for name, width in zip(FC, SMALL_FC_WIDTHS):
        layers[name] = (rng.standard_normal((width, inputs)).astype(numpy.float32),
                        rng.standard_normal(width).astype(numpy.float32))
        inputs = width
    return layers


def vgg_caffemodel(layers, generation="v2", dims="shape", data="packed", skip=()):
    """The bytes of a .caffemodel holding `layers` ({name: (weight, bias)})."""
    messages = []
    for name, (weight, bias) in layers.items():
        if name in skip:
            continue
        blobs = [blob(weight, dims, data), blob(bias, dims, data)]
        conv = name.startswith("conv")
        if generation == "v2":
            messages.append(v2_layer(name, "Convolution" if conv else "InnerProduct", blobs))
        elif generation == "v1":
            messages.append(v1_layer(name, 4 if conv else 14, blobs))
        else:
            messages.append(v0_wrapped_layer(name, "conv" if conv else "innerproduct", blobs))
    return net(messages, v1=generation != "v2")


# --- torch.save look-alike -----------------------------------------------------------------

Storage = collections.namedtuple("Storage", "key values type_name")  # values: 1-d array
Tensor = collections.namedtuple("Tensor", "storage offset size stride")
STORAGE_TYPES = {"FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2",
                 "LongStorage": "i8", "IntStorage": "i4", "ByteStorage": "u1"}


def contiguous(key, array):
    """A Tensor over a storage of its own holding `array` in C order."""
    array = numpy.array(array, order="C")  # ascontiguousarray would make a 0-d array 1-d
    type_name = {v: k for k, v in STORAGE_TYPES.items()}[array.dtype.str[1:]]
    strides = tuple(s // array.itemsize for s in array.strides)
    return Tensor(Storage(key, array.ravel(), type_name), 0, array.shape, strides)


@contextlib.contextmanager
def fake_torch():
    """Modules named torch and torch._utils in sys.modules for the pickler to name: it
    writes a class or function as a GLOBAL only after checking it can be imported back."""
    torch_module, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
    torch_module._utils = utils
    for name in STORAGE_TYPES:
        setattr(torch_module, name, type(name, (), {"__module__": "torch"}))

    def _rebuild_tensor_v2(*args):
        raise AssertionError("the stand-in is only pickled, never called")
    _rebuild_tensor_v2.__module__ = "torch._utils"  # the name the GLOBAL opcode will carry
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    saved = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch_module, "torch._utils": utils})
    try:
        yield torch_module
    finally:
        for name, module in saved.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module


class TorchLikePickler(pickle.Pickler):
    """Pickles Tensors as torch does: a _rebuild_tensor_v2 call over a persistent storage id."""

    def __init__(self, file, torch_module, legacy):
        super().__init__(file, protocol=2)
        self.torch_module, self.legacy = torch_module, legacy

    def persistent_id(self, obj):
        if not isinstance(obj, Storage):
            return None
        storage_id = ("storage", getattr(self.torch_module, obj.type_name), obj.key, "cpu",
                      obj.values.size)
        return storage_id + (None,) if self.legacy else storage_id  # legacy: no view

    def reducer_override(self, obj):
        if isinstance(obj, Tensor):
            arguments = (obj.storage, obj.offset, tuple(obj.size), tuple(obj.stride), False,
                         collections.OrderedDict())
            return self.torch_module._utils._rebuild_tensor_v2, arguments
        return NotImplemented


def torch_pickle(state, legacy=False):
    with fake_torch() as torch_module:
        out = io.BytesIO()
        TorchLikePickler(out, torch_module, legacy).dump(collections.OrderedDict(state))
        return out.getvalue()


def storages_of(state):
    return {t.storage.key: t.storage for t in state.values() if isinstance(t, Tensor)}


def storage_bytes(storage, byteorder="little"):
    prefix = "<" if byteorder == "little" else ">"
    return storage.values.astype(prefix + STORAGE_TYPES[storage.type_name]).tobytes()


def zip_pth(state, folder="archive", byteorder="little", data_pkl=None):
    """The bytes of a zip-layout .pth holding `state` ({name: Tensor}), as torch >= 1.6
    writes it; `data_pkl` replaces the pickle (for hostile files)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{folder}/data.pkl", data_pkl or torch_pickle(state))
        archive.writestr(f"{folder}/byteorder", byteorder)
        for key, storage in storages_of(state).items():
            archive.writestr(f"{folder}/data/{key}", storage_bytes(storage, byteorder))
        archive.writestr(f"{folder}/version", "3\n")
    return out.getvalue()


def legacy_pth(state, main_pickle=None):
    """The bytes of a legacy-layout .pth (torch < 1.6): header pickles, the state dict, the
    storage keys, then each storage as an int64 element count and its bytes."""
    out = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001,
                   {"protocol_version": 1001, "little_endian": True,
                    "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(header, out, protocol=2)
    out.write(main_pickle or torch_pickle(state, legacy=True))
    storages = storages_of(state)
    keys = sorted(storages)
    pickle.dump(keys, out, protocol=2)
    for key in keys:
        out.write(struct.pack("<q", storages[key].values.size) + storage_bytes(storages[key]))
    return out.getvalue()


def vgg_state_dict(layers):
    """A torchvision-vgg16-like state dict ({name: Tensor}) holding `layers`."""
    state = {}
    for index, (name, (weight, bias)) in enumerate(layers.items()):
        prefix = TORCHVISION[name]
        state[f"{prefix}.weight"] = contiguous(str(2 * index), weight)
        state[f"{prefix}.bias"] = contiguous(str(2 * index + 1), bias)
    return state
