"""Read a Caffe `.caffemodel` without Caffe or protobuf: the wire format by hand.

A .caffemodel is one serialized `NetParameter` protocol buffer. On the wire a message is
a flat run of fields; each is a varint key `field_number << 3 | wire_type`, then a value:

    wire type 0  varint: 7 bits a byte, lowest group first, high bit set on all but the last
    wire type 1  8 bytes, little-endian (in Caffe's messages: a double)
    wire type 2  a varint length, then that many bytes: a string, a nested message, or a
                 packed repeated field (n floats as 4n bytes, or n varints back to back)
    wire type 5  4 bytes, little-endian (in Caffe's messages: a float)

A repeated number is either packed (one wire-type-2 field) or not (one field per number),
and a reader must take both. Fields this reader does not need are skipped by their wire type.
The messages and field numbers it reads (from Caffe's src/caffe/proto/caffe.proto):

    NetParameter      layer = 100 (LayerParameter); layers = 2 (V1LayerParameter, old files)
    LayerParameter    name = 1, type = 2 (a string), blobs = 7
    V1LayerParameter  name = 4, type = 5 (an enum), blobs = 6, and in the oldest files
                      layer = 1 (V0LayerParameter: name = 1, type = 2 (a string), blobs = 50)
    BlobProto         shape = 7 (BlobShape: dim = 1, int64), data = 5 (float),
                      double_data = 8; before `shape` existed: num = 1, channels = 2,
                      height = 3, width = 4 (diff = 6 and double_diff = 9 are gradients: skipped)

The 528 MB VGG16 file is memory-mapped and each float array is decoded by one
numpy.frombuffer over its bytes: Python itself only walks the few hundred field headers.
"""
import collections
import math
import mmap
import os

import numpy

from .errors import WeightsFileError

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5
# Every fixed-width field in Caffe's messages is a float or a double.
FIXED_DTYPES = {FIXED64: numpy.dtype("<f8"), FIXED32: numpy.dtype("<f4")}

NET_LAYER, NET_V1_LAYERS = 100, 2
BLOB_SHAPE, BLOB_DATA, BLOB_DOUBLE_DATA, SHAPE_DIM = 7, 5, 8, 1
BLOB_LEGACY_DIMS = (1, 2, 3, 4)  # num, channels, height, width
MAX_DIM = 2 ** 40  # larger dims only come from a corrupt file (or a negative int32)

# Where name, type and blobs live in each generation of the layer message; `v0_layer` is
# the V0LayerParameter that the oldest V1 layers wrap around their contents.
LayerFields = collections.namedtuple("LayerFields", "message name type blobs v0_layer")
V2_LAYER = LayerFields("LayerParameter", name=1, type=2, blobs=7, v0_layer=None)
V1_LAYER = LayerFields("V1LayerParameter", name=4, type=5, blobs=6, v0_layer=1)
V0_LAYER = LayerFields("V0LayerParameter", name=1, type=2, blobs=50, v0_layer=None)

# Old layer type names (the V1 enum, the V0 strings) for the layers whose blob shapes matter.
OLD_TYPE_NAMES = {4: "Convolution", 14: "InnerProduct", 39: "Deconvolution",
                  "conv": "Convolution", "innerproduct": "InnerProduct"}
# The rank of each blob (weight, bias) by layer type: old files give every blob 4 dims
# (a bias is 1x1x1xN, an InnerProduct weight 1x1xMxN) and these are the real ones.
BLOB_RANKS = {"Convolution": (4, 1), "Deconvolution": (4, 1), "InnerProduct": (2, 1)}

Layer = collections.namedtuple("Layer", "name type blobs")


class ProtobufError(Exception):
    """Malformed wire data; read_caffemodel reports it as a WeightsFileError naming the file."""


def read_caffemodel(path):
    """{layer name: [blob, ...]} for every layer in the file that carries weights.

    Blobs keep the file's order (for Convolution and InnerProduct: weight, then bias) and
    come back as float32 arrays in their real shapes, also from old 4-d blobs.
    """
    try:
        buffer = map_file(path)
    except OSError as error:
        raise WeightsFileError(path, f"cannot read the file: {error.strerror or error}") from None
    if len(buffer) == 0:
        raise WeightsFileError(path, "the file is empty")
    try:
        layers = read_net(buffer)
    except ProtobufError as error:
        raise WeightsFileError(path, f"not a valid Caffe model (NetParameter): {error}") from None
    weights = {}
    for layer in layers:
        if not layer.blobs:
            continue
        if not layer.name:
            raise WeightsFileError(path, f"a {layer.type or 'layer'} with weights has no name")
        if layer.name in weights:
            raise WeightsFileError(path, f"two layers named {layer.name!r} carry weights")
        weights[layer.name] = layer.blobs
    if not weights:
        raise WeightsFileError(path, "no layer with weights: not a trained Caffe model")
    return weights


def map_file(path):
    """The file's bytes as a read-only memoryview over a memory map.

    Nothing is read up front: the OS pages in what is touched. The map closes by itself
    once the last view of it is gone, and every array handed out is a copy.
    """
    with open(path, "rb") as file:
        if os.fstat(file.fileno()).st_size == 0:
            return memoryview(b"")  # mmap refuses empty files
        return memoryview(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ))


def read_net(buffer):
    """The layers of a NetParameter message, in file order, each as a Layer."""
    layers = []
    for number, wire, value in fields(buffer, "NetParameter"):
        if number == NET_LAYER:
            layers.append(read_layer(message(value, wire, "NetParameter.layer"), V2_LAYER))
        elif number == NET_V1_LAYERS:
            layers.append(read_layer(message(value, wire, "NetParameter.layers"), V1_LAYER))
    return layers


def read_layer(buffer, layout):
    """A layer message of any generation (`layout` says which) as a Layer."""
    name, type_name, blobs, wrapped = None, None, [], None
    for number, wire, value in fields(buffer, layout.message):
        if number == layout.name:
            name = string(value, wire, f"{layout.message}.name")
        elif number == layout.type:
            type_name = layer_type(value, wire, layout.message)
        elif number == layout.blobs:
            blobs.append(read_blob(message(value, wire, f"{layout.message}.blobs")))
        elif number == layout.v0_layer:
            wrapped = read_layer(message(value, wire, f"{layout.message}.layer"), V0_LAYER)
    blobs = real_shapes(blobs, type_name)
    if wrapped is not None:  # the oldest files: a V0 layer inside the V1 one holds it all
        return Layer(name or wrapped.name, type_name or wrapped.type, blobs or wrapped.blobs)
    return Layer(name, type_name, blobs)


def layer_type(value, wire, message_name):
    """The layer's type as today's string ("Convolution"), whichever generation stored it."""
    if wire == VARINT:  # the V1 enum
        return OLD_TYPE_NAMES.get(value, f"V1 layer type {value}")
    name = string(value, wire, f"{message_name}.type")
    return OLD_TYPE_NAMES.get(name, name)


def real_shapes(blobs, type_name):
    """The arrays of a layer's (array, has old 4-d dims) pairs, old dims losing leading 1s
    down to the rank that `type_name` gives each blob (InnerProduct: weight 2, bias 1)."""
    ranks = BLOB_RANKS.get(type_name, ())
    shaped = []
    for index, (blob, legacy) in enumerate(blobs):
        shape = blob.shape
        while legacy and index < len(ranks) and len(shape) > ranks[index] and shape[0] == 1:
            shape = shape[1:]
        shaped.append(blob.reshape(shape))
    return shaped


def read_blob(buffer):
    """A BlobProto as (float32 array in the stored shape, whether that shape is num/channels/
    height/width), the way Caffe's Blob::FromProto reads it."""
    dims, legacy_dims, floats, doubles = None, None, [], []
    for number, wire, value in fields(buffer, "BlobProto"):
        if number == BLOB_SHAPE:
            dims = read_blob_shape(message(value, wire, "BlobProto.shape"))
        elif number in BLOB_LEGACY_DIMS:
            legacy_dims = legacy_dims or [0, 0, 0, 0]  # an unset one is 0, as in Caffe
            legacy_dims[number - 1] = integer(value, wire, "BlobProto legacy dim")
        elif number == BLOB_DATA:
            floats.append(repeated_reals(value, wire, FIXED32, "BlobProto.data"))
        elif number == BLOB_DOUBLE_DATA:
            doubles.append(repeated_reals(value, wire, FIXED64, "BlobProto.double_data"))
    # Caffe takes double_data when there is any, else data. concatenate always copies, so
    # the array no longer points into the memory-mapped file.
    values = numpy.concatenate(doubles or floats or [numpy.zeros(0, numpy.float32)])
    legacy = dims is None and legacy_dims is not None
    shape = dims if dims is not None else legacy_dims if legacy else [values.size]
    if max(shape, default=0) > MAX_DIM or math.prod(shape) != values.size:
        raise ProtobufError(f"a blob of shape {tuple(shape)} holds {values.size} numbers")
    return values.astype(numpy.float32, copy=False).reshape(shape), legacy


def read_blob_shape(buffer):
    """The dims of a BlobShape, packed or one field each."""
    dims = []
    for number, wire, value in fields(buffer, "BlobShape"):
        if number != SHAPE_DIM:
            continue
        if wire == LENGTH_DELIMITED:
            dims.extend(packed_varints(value))
        else:
            dims.append(integer(value, wire, "BlobShape.dim"))
    return dims


# --- the wire format ---------------------------------------------------------------------

def fields(buffer, message_name):
    """Yield (field number, wire type, value) for each field of the message in `buffer`.

    The value is an int for a varint and a memoryview of the bytes for a length-delimited
    field. A fixed-width field comes as a numpy array holding it and every field with the
    same key right after it: that is how an unpacked repeated float is stored, and decoding
    the run in one go keeps millions of floats out of this Python loop.
    """
    position, end = 0, len(buffer)
    while position < end:
        key_start = position
        key, position = varint(buffer, position, message_name)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError(f"{message_name}: field number 0 at byte {key_start}")
        if wire == VARINT:
            value, position = varint(buffer, position, message_name)
        elif wire == LENGTH_DELIMITED:
            length, position = varint(buffer, position, message_name)
            if position + length > end:
                raise ProtobufError(f"{message_name}: field {number} of {length} bytes at byte "
                                    f"{position} runs past the end ({end} bytes): truncated?")
            value, position = buffer[position:position + length], position + length
        elif wire in FIXED_DTYPES:
            value, position = fixed_width_run(buffer, key_start, position, FIXED_DTYPES[wire],
                                              message_name)
        else:
            raise ProtobufError(f"{message_name}: wire type {wire} (field {number}) at byte "
                                f"{key_start} does not exist in this format")
        yield number, wire, value


def varint(buffer, position, message_name):
    """The varint at `position` and the position after it."""
    result = shift = 0
    while True:
        if position >= len(buffer):
            raise ProtobufError(f"{message_name}: a number runs past the end "
                                f"({len(buffer)} bytes): truncated?")
        byte = buffer[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
        if shift >= 70:  # 64 bits take at most 10 bytes
            raise ProtobufError(f"{message_name}: a varint longer than 10 bytes at byte {position}")


def packed_varints(buffer):
    values, position = [], 0
    while position < len(buffer):
        value, position = varint(buffer, position, "packed varints")
        values.append(value)
    return values


def fixed_width_run(buffer, key_start, value_start, dtype, message_name):
    """The values of the fixed-width field whose key starts at `key_start` and of the fields
    with the same key that follow it directly, and the position after the last one."""
    key = numpy.frombuffer(buffer, numpy.uint8, value_start - key_start, key_start)
    stride = key.size + dtype.itemsize
    records_left = (len(buffer) - key_start) // stride
    if records_left == 0:
        raise ProtobufError(f"{message_name}: a {dtype.itemsize}-byte number at byte "
                            f"{value_start} runs past the end: truncated?")
    count, window = 1, 64
    while count < records_left:  # windows growing fourfold: work in proportion to the run
        size = min(window, records_left - count)
        keys = records(buffer, key_start + count * stride, size, stride)[:, :key.size]
        same_key = (keys == key).all(axis=1)
        if not same_key.all():
            count += int(same_key.argmin())
            break
        count, window = count + size, window * 4
    values = records(buffer, key_start, count, stride)[:, key.size:]
    return numpy.ascontiguousarray(values).view(dtype).reshape(count), key_start + count * stride


def records(buffer, start, count, stride):
    """`count` records of `stride` bytes from `start`, as a (count, stride) uint8 view."""
    return numpy.frombuffer(buffer, numpy.uint8, count * stride, start).reshape(count, stride)


def repeated_reals(value, wire, fixed_wire, what):
    """The numbers of a repeated float/double field: packed bytes or an unpacked run."""
    dtype = FIXED_DTYPES[fixed_wire]
    if wire == LENGTH_DELIMITED:
        if len(value) % dtype.itemsize:
            raise ProtobufError(f"{what}: {len(value)} packed bytes are not a whole number "
                                f"of {dtype.itemsize}-byte values")
        return numpy.frombuffer(value, dtype)
    if wire == fixed_wire:
        return value
    raise ProtobufError(f"{what} has wire type {wire}")


def message(value, wire, what):
    if wire != LENGTH_DELIMITED:
        raise ProtobufError(f"{what} has wire type {wire}, not a nested message")
    return value


def string(value, wire, what):
    return bytes(message(value, wire, what)).decode("utf-8", errors="replace")


def integer(value, wire, what):
    if wire != VARINT:
        raise ProtobufError(f"{what} has wire type {wire}, not an integer")
    return value
