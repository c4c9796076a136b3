"""What kind of file is this? A look at a file's first bytes, before any parser sees it.

A user hands `minifcn convert`, `train --weights`, `eval/predict --checkpoint` whatever
file they have: a Caffe model, a PyTorch file, a converted .npz, a checkpoint, or by
mistake a picture or a download that went wrong. Each reader expects one kind, and its
errors about another kind ("wire type 7 at field 13") would mislead. `file_kind(path)`
tells the kinds apart by their magic bytes (and, for zip archives, by the names inside),
so a message can say what the file is and what to do with it:

    kind          first bytes / contents
    checkpoint    zip of .npy files with meta.config (what `minifcn train` writes)
    converted     zip of .npy files with meta.source (what `minifcn convert` writes)
    npz           another zip of .npy files
    pytorch       torch.save's zip (a data.pkl inside), legacy pickle or tar
    zip           any other zip archive
    pickle        \\x80 and a pickle protocol number (pickled Python objects)
    caffemodel    a protobuf whose first field is one of NetParameter's
    image         PNG, JPEG, GIF, BMP, TIFF or WebP magic
    hdf5          \\x89HDF (Keras and MATLAB v7.3 files)
    npy           \\x93NUMPY (one NumPy array)
    empty, text, unknown
"""
import os
import zipfile

from .torch_pth import LEGACY_HEADER, ZIP_MAGIC, is_tar

DESCRIPTIONS = {
    "checkpoint": "a minifcn checkpoint (written by `minifcn train`)",
    "converted": "converted VGG16 weights (written by `minifcn convert`)",
    "npz": "a NumPy .npz archive not written by minifcn",
    "pytorch": "a PyTorch file (torch.save)",
    "zip": "a zip archive that is neither a PyTorch file nor a NumPy .npz",
    "pickle": "a Python pickle",
    "caffemodel": "a Caffe model (protobuf)",
    "image": "an image",
    "hdf5": "an HDF5 file (e.g. Keras weights)",
    "npy": "a single NumPy array (.npy)",
    "empty": "an empty file",
    "text": "a text file",
    "unknown": "not a format minifcn knows",
}
IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")
# NetParameter's fields (caffe.proto) and the wire type each is written with: name 1,
# layers 2, input 3, input_dim 4, force_backward 5, state 6, debug_info 7, input_shape 8,
# layer 100. A Caffe model opens with one of them.
NET_PARAMETER_FIELDS = {1: 2, 2: 2, 3: 2, 4: 0, 5: 0, 6: 2, 7: 0, 8: 2, 100: 2}
HEAD = 512


def file_kind(path):
    """One of the kinds in the module docstring. OSError if the file cannot be read."""
    with open(path, "rb") as file:
        head = file.read(HEAD)
    if not head:
        return "empty"
    if head.startswith(ZIP_MAGIC):
        return _zip_kind(path)
    if head.startswith(LEGACY_HEADER) or is_tar(head):
        return "pytorch"
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if head.startswith(IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    if head.startswith(b"\x89HDF"):
        return "hdf5"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if _opens_like_net_parameter(head):
        return "caffemodel"
    if all(byte in b"\t\n\r" or 32 <= byte < 127 for byte in head):
        return "text"
    return "unknown"


def describe(kind):
    return DESCRIPTIONS[kind]


def _zip_kind(path):
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return "zip"  # damaged: the readers say how
    if any(name.endswith("data.pkl") for name in names):
        return "pytorch"
    if names and all(name.endswith(".npy") for name in names):
        stems = {os.path.splitext(name)[0] for name in names}
        if "meta.config" in stems:
            return "checkpoint"
        return "converted" if "meta.source" in stems else "npz"
    return "zip"


def _opens_like_net_parameter(head):
    """Whether the first protobuf key is a NetParameter field with its wire type."""
    key, shift = 0, 0
    for byte in head[:5]:
        key |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return NET_PARAMETER_FIELDS.get(key >> 3) == key & 7
    return False
