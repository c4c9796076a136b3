"""Reading images, label maps, MATLAB files and split lists, with errors that name the file.

The datasets store their pictures and labels in three formats:

    JPEG / PNG pictures      read with Pillow as uint8 (H, W, 3) RGB; grey, palette and
                             RGBA pictures are converted to RGB
    palette ('P') PNG labels PASCAL VOC: each pixel stores an index into a colour table;
                             the index *is* the class (255 = void), the colours are only
                             for looking at, so we read the indices and never the colours
    MATLAB .mat labels       SBD, SIFT Flow, NYUDv2: a 2-d integer array under a key
                             (or a struct field, e.g. GTcls.Segmentation), via scipy.io

These readers are the only places files are opened, so every missing or broken file gives
the same kind of message: a DataError naming the file and what is wrong with it.
"""
import os

import numpy
import scipy.io
from PIL import Image, UnidentifiedImageError

from ..errors import UserError


class DataError(UserError, ValueError):
    """A dataset file or directory is missing, unreadable or inconsistent."""


# Modes whose pixel values are class indices; any other mode holds colours, not classes.
INDEX_MODES = ("P", "L")


def _open_picture(path):
    """The decoded Pillow image at `path`, or a DataError saying why there is none."""
    try:
        picture = Image.open(path)
        picture.load()  # decode now: a truncated file fails here, not somewhere later
        return picture
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: not a readable image ({error})") from None


def picture_size(path):
    """(height, width) of the picture at `path`, checked by decoding it, so that a
    truncated or corrupt file is found. A JPEG is decoded at an eighth of its size
    (libjpeg's scaled decoding): that still reads every byte of the file but skips most
    of the inverse DCT, which is what a check needs and not what training needs."""
    try:
        picture = Image.open(path)
        width, height = picture.size
        if picture.format == "JPEG":
            picture.draft("RGB", (max(1, width // 8), max(1, height // 8)))
        picture.load()
        return height, width
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: not a readable image ({error})") from None


def load_image(path):
    """The picture at `path` as uint8 (H, W, 3) RGB."""
    picture = _open_picture(path)
    if picture.mode != "RGB":
        picture = picture.convert("RGB")
    return numpy.asarray(picture, dtype=numpy.uint8)


def load_label_png(path):
    """The class indices of a palette (or greyscale) PNG label map as uint8 (H, W)."""
    picture = _open_picture(path)
    if picture.mode not in INDEX_MODES:
        raise DataError(
            f"{path}: label PNG has mode {picture.mode!r}; expected a palette ('P') or "
            f"greyscale ('L') PNG whose pixel values are class indices, not colours")
    return numpy.asarray(picture, dtype=numpy.uint8)


def load_mat_label(path, field):
    """The 2-d label array at `field` of a MATLAB file: a key ("S") or a dotted struct
    path ("GTcls.Segmentation"). Returned as int64, values unchanged."""
    try:
        # squeeze_me drops MATLAB's 1x1 wrapping around structs and scalars;
        # struct_as_record=False turns structs into objects with attributes.
        contents = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except Exception as error:  # scipy raises several unrelated types for a bad file
        raise DataError(f"{path}: not a readable MATLAB file ({error})") from None
    value = contents
    for name in field.split("."):
        value = _struct_field(value, name)
        if value is None:
            keys = sorted(key for key in contents if not key.startswith("__"))
            raise DataError(f"{path}: no {field!r} entry (the file has {keys})")
    value = numpy.asarray(value)
    if value.ndim != 2 or value.dtype.kind not in "iuf":
        raise DataError(f"{path}: {field!r} is a {value.dtype} array of shape {value.shape}, "
                        f"expected a 2-d array of class numbers")
    return value.astype(numpy.int64)


def _struct_field(value, name):
    """value[name] for whichever form a MATLAB struct takes after loadmat; None if absent."""
    if isinstance(value, dict):
        return value.get(name)
    if isinstance(value, numpy.ndarray) and value.dtype.names:  # a record array
        return value[name].item() if name in value.dtype.names else None
    if isinstance(value, numpy.ndarray) and value.dtype == object and value.size == 1:
        return _struct_field(value.item(), name)  # a struct left inside a 1x1 cell
    return getattr(value, name, None)


def check_same_size(first_path, first_shape, second_path, second_shape):
    """DataError unless two arrays that must line up pixel for pixel do so."""
    if tuple(first_shape[:2]) != tuple(second_shape[:2]):
        raise DataError(
            f"size mismatch: {first_path} is {_size(first_shape)} but {second_path} is "
            f"{_size(second_shape)} (height x width); they must match pixel for pixel")


def _size(shape):
    return f"{shape[0]}x{shape[1]}"


def require_directory(path, what):
    """`path` if it is a directory, else a DataError naming it."""
    if not os.path.isdir(path):
        raise DataError(f"{what} directory not found: {path}")
    return path


def read_split(path):
    """The image ids listed one per line in a split file (blank lines skipped)."""
    try:
        with open(path) as handle:
            names = [line.strip() for line in handle]
    except FileNotFoundError:
        raise DataError(f"{path}: no such split file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a readable split file ({error})") from None
    names = [name for name in names if name]
    if not names:
        raise DataError(f"{path}: the split file lists no images")
    return names
