"""Reading a file that must be a regular file, without a window between the check and the read."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cdarts.errors import DataError

MAX_IMAGE_FILE_BYTES = 1 << 30  # one encoded image; larger is no image a network can use


def read_regular_file(path: Path, limit: int = MAX_IMAGE_FILE_BYTES) -> bytes:
    """The bytes of ``path``, refused in one line unless the opened file is a regular file.

    The scan of an image folder checks each entry with ``stat``, but the entry can be swapped
    (for a FIFO, a device, a link to one) before it is read. Here the type is checked on the
    open descriptor itself: ``O_NONBLOCK`` keeps a FIFO's open from waiting for a writer, and
    nothing is read from anything but a regular file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise DataError(f"cannot read image file {path}: {error.strerror or error}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DataError(f"image file {path} is no longer a regular file; only regular image files are read")
        if info.st_size > limit:
            raise DataError(f"image file {path} is {info.st_size} bytes, more than {limit} for one image")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    except OSError as error:
        raise DataError(f"cannot read image file {path}: {error.strerror or error}") from None
    finally:
        os.close(fd)
    if len(data) > limit:  # it grew after fstat
        raise DataError(f"image file {path} is more than {limit} bytes for one image")
    return data
