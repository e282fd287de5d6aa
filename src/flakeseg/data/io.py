"""Decoding of microscope images and index masks.

Images and masks are both read with Pillow, so EXIF orientation is handled the same way for the pair
(OpenCV would rotate one and not the other). Masks are palette PNGs whose *indices* are the labels:
they are read without any mode conversion, which would turn indices into colours or brightness.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from flakeseg.errors import DataError

# Exceptions Pillow raises for files it cannot decode (truncated data surfaces as OSError).
_DECODE_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _open(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except _DECODE_ERRORS as exc:
        raise DataError(f"{path}: cannot decode ({type(exc).__name__}: {exc})") from None
    if image.width == 0 or image.height == 0:
        raise DataError(f"{path}: image has zero size")
    return image


def image_problem(path: Path | str) -> str | None:
    """``<path>: problem`` when ``path`` is not an image Pillow can open (read from its header only, so
    a whole folder is checked in moments), else ``None``; a truncated image passes and fails in
    :func:`read_image`."""
    try:
        with Image.open(path):
            return None
    except FileNotFoundError:
        return f"{path}: file not found"
    except _DECODE_ERRORS as exc:
        return f"{path}: not an image Pillow can read ({type(exc).__name__})"


def to_rgb_uint8(image: Image.Image, path: Path | str = "<image>") -> np.ndarray:
    """Convert a Pillow image of any common mode to an ``H x W x 3`` uint8 array.

    16-bit data are scaled to 8 bit (not clipped at 255), grayscale is replicated to three channels and
    an alpha channel is dropped.
    """
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "I;16N"):
        array = np.asarray(image).astype(np.float64)
        peak = 65535.0 if mode.startswith("I;16") or array.max() > 255 else 255.0
        gray = np.clip(np.round(array / peak * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        array = np.asarray(image, dtype=np.float64)
        peak = 1.0 if array.max() <= 1.0 else array.max()
        gray = np.clip(np.round(array / peak * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("RGB", "RGBA", "L", "LA", "P", "PA", "CMYK", "YCbCr", "1", "LAB", "HSV"):
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    if mode.startswith(("RGB", "BGR")):  # e.g. 48-bit TIFF arrives as RGB;16 on some builds
        array = np.asarray(image).astype(np.float64)
        return np.clip(np.round(array / 257.0), 0, 255).astype(np.uint8)[..., :3]
    raise DataError(f"{path}: unsupported image mode {mode!r}")


def read_image(path: Path | str) -> np.ndarray:
    """Read an optical image as ``H x W x 3`` uint8 RGB, applying its EXIF orientation."""
    path = Path(path)
    image = _open(path)
    image = ImageOps.exif_transpose(image)
    return to_rgb_uint8(image, path)


def read_mask(path: Path | str) -> np.ndarray:
    """Read an index mask as an ``H x W`` uint8 array of raw label values.

    The mask must be a single-channel image (palette ``P``, ``L`` or ``I``); an RGB mask is refused
    because its colours are not label values.
    """
    path = Path(path)
    image = _open(path)
    image = ImageOps.exif_transpose(image)
    if image.mode not in ("P", "L", "I", "I;16", "I;16B", "I;16L", "1"):
        raise DataError(
            f"{path}: mask has mode {image.mode!r}; expected a single-channel index mask (palette or 8-bit)"
        )
    array = np.asarray(image)
    if array.ndim != 2:
        raise DataError(f"{path}: mask has {array.ndim} dimensions; expected 2")
    if array.max(initial=0) > 255 or array.min(initial=0) < 0:
        raise DataError(f"{path}: mask values outside 0..255")
    return array.astype(np.uint8)


#: decoded data-set files kept per process, least recently read first: a study or a test session reads
#: its data set many times (each fold, step and stage loads it; scoring reads the stored masks again).
#: The key is a hash of the file's bytes (reading and hashing a file costs a tenth of decoding it), so a
#: changed file is decoded again. Images screened by ``predict`` and ``watch`` are not kept.
_KEPT: OrderedDict[tuple[str, bytes], np.ndarray] = OrderedDict()
#: at most this many bytes kept (every PNG of the upstream data decoded takes about 135 MB)
KEPT_BYTES = 192 * 2**20
_kept_lock = threading.Lock()


def _read_kept(kind: str, path: Path | str, read: Callable[[Path], np.ndarray]) -> np.ndarray:
    path = Path(path)
    try:
        key = (kind, hashlib.blake2b(path.read_bytes(), digest_size=16).digest())
    except OSError:
        return read(path)  # the reader names the problem
    with _kept_lock:
        kept = _KEPT.get(key)
        if kept is not None:
            _KEPT.move_to_end(key)
            return kept.copy()  # a copy: the caller may change it in place
    array = read(path)
    if array.nbytes <= KEPT_BYTES:
        with _kept_lock:
            _KEPT[key] = array.copy()
            total = sum(a.nbytes for a in _KEPT.values())
            while total > KEPT_BYTES:
                total -= _KEPT.popitem(last=False)[1].nbytes
    return array


def read_dataset_image(path: Path | str) -> np.ndarray:
    """:func:`read_image` of a labelled data set's image, decoded once per process while unchanged."""
    return _read_kept("image", path, read_image)


def read_dataset_mask(path: Path | str) -> np.ndarray:
    """:func:`read_mask` of a labelled data set's mask, decoded once per process while unchanged."""
    return _read_kept("mask", path, read_mask)
