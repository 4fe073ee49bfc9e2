"""The IDX file format (MNIST and its family): one unsigned-byte array per file, read strictly.

A file is a 4-byte big-endian magic ``0x000008DD`` (``08``: unsigned bytes, ``DD``: the number of
dimensions), one big-endian uint32 per dimension, then the values in C order. Images are
``0x00000803`` (N, rows, cols), labels ``0x00000801`` (N,). Either may be gzip-compressed (told by
its content, not its name). Every problem raises a one-line :class:`DataError` naming the file.
"""

from __future__ import annotations

import gzip
import zlib
from typing import IO, Protocol

import numpy as np
import numpy.typing as npt

from cdarts.config import MAX_ARRAY_BYTES, MAX_IMAGE_SIZE, MAX_SAMPLES
from cdarts.errors import DataError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
_GZIP_MAGIC = b"\x1f\x8b"


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def read_idx_images(handle: IO[bytes], size: int | None, where: str) -> npt.NDArray[np.uint8]:
    """An IDX images file -> uint8 (N, S, S); the images must be square."""
    array = _read_idx(handle, size, where, IMAGES_MAGIC, "images")
    if array.shape[1] != array.shape[2] or array.shape[1] < 1:
        raise DataError(f"{where}: images are {array.shape[1]}x{array.shape[2]} pixels; square images are needed")
    return array


def read_idx_labels(handle: IO[bytes], size: int | None, where: str) -> npt.NDArray[np.uint8]:
    """An IDX labels file -> uint8 (N,)."""
    return _read_idx(handle, size, where, LABELS_MAGIC, "labels")


def _read_idx(handle: IO[bytes], size: int | None, where: str, magic: int, kind: str) -> npt.NDArray[np.uint8]:
    """Read one IDX array; ``size`` is the stored byte length (None when unknown, e.g. gzip)."""
    try:
        head = handle.read(2)
        if head == _GZIP_MAGIC:
            handle.seek(0)
            with gzip.GzipFile(fileobj=handle, mode="rb") as unzipped:
                return _parse(unzipped, None, where, magic, kind)
        handle.seek(0)
        return _parse(handle, size, where, magic, kind)
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DataError(f"{where} is a corrupt or truncated gzip file ({type(error).__name__})") from None
    except OSError as error:
        raise DataError(f"cannot read {where}: {error.strerror or type(error).__name__}") from None


def _parse(stream: _Readable, size: int | None, where: str, magic: int, kind: str) -> npt.NDArray[np.uint8]:
    ndim = magic & 0xFF
    header = stream.read(4 + 4 * ndim)
    if len(header) < 4:
        raise DataError(f"{where} is too short to be an IDX file ({len(header)} bytes)")
    found = int.from_bytes(header[:4], "big")
    if found != magic:
        raise DataError(f"{where}: magic number 0x{found:08x}, expected 0x{magic:08x} (IDX {kind})")
    if len(header) < 4 + 4 * ndim:
        raise DataError(f"{where}: the header is truncated ({len(header)} of {4 + 4 * ndim} bytes)")
    shape = tuple(int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    _check_shape(shape, where)
    expected = int(np.prod(shape))
    if size is not None and size != len(header) + expected:
        raise DataError(
            f"{where} is {size} bytes but its header declares {'x'.join(map(str, shape))}"
            f" ({len(header) + expected} bytes)"
        )
    body = stream.read(expected)
    if len(body) < expected:
        raise DataError(f"{where} is truncated: {len(body)} of the {expected} data bytes its header declares")
    if stream.read(1):
        raise DataError(f"{where} is longer than the {'x'.join(map(str, shape))} its header declares")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape).copy()


def _check_shape(shape: tuple[int, ...], where: str) -> None:
    """Refuse absurd headers before anything is allocated."""
    if shape[0] < 1 or shape[0] > MAX_SAMPLES:
        raise DataError(f"{where}: the header declares {shape[0]} items (1..{MAX_SAMPLES} are read)")
    if any(side < 1 or side > MAX_IMAGE_SIZE for side in shape[1:]):
        raise DataError(f"{where}: the header declares images of {'x'.join(map(str, shape[1:]))} pixels")
    if int(np.prod(shape)) > MAX_ARRAY_BYTES:
        raise DataError(f"{where}: the header declares {int(np.prod(shape))} bytes (at most {MAX_ARRAY_BYTES})")
