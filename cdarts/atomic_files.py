"""Atomic file writes for every complete-marker (manifest, genotype, alphas, model, summaries).

Each write goes to a hidden temp file in the target's directory, is flushed and fsynced, then
``os.replace``d over the target. On any failure the temp file is removed, so no partial or empty
marker is ever left, and an ``OSError`` becomes a one-line :class:`DiskError`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from cdarts.errors import DiskError


def disk_error(path: Path, error: OSError) -> DiskError:
    """The one-line error for ``error`` while writing ``path``."""
    reason = error.strerror or str(error) or type(error).__name__
    return DiskError(f"cannot write {path}: {reason}".splitlines()[0])


@contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """Yield a binary file; on a clean exit it is fsynced and becomes ``path`` atomically."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as error:
        raise disk_error(path, error) from None
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise disk_error(path, error) from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (no partial file on failure)."""
    with atomic_writer(path) as handle:
        handle.write(data)


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (no partial file on failure)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_with_atomic(path: Path, writer: Callable[[BinaryIO], object]) -> None:
    """Call ``writer(handle)`` (e.g. ``lambda f: torch.save(state, f)``) into an atomic file."""
    with atomic_writer(path) as handle:
        writer(handle)
