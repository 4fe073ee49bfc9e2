"""One cdarts process per output directory: an advisory ``flock`` on ``<out>/.cdarts.lock``."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TypeVar

from cdarts.atomic_files import disk_error
from cdarts.errors import CdartsError

LOCK_NAME = ".cdarts.lock"

P = ParamSpec("P")
R = TypeVar("R")


class OutDirInUseError(CdartsError):
    """Another cdarts process holds the output directory's lock."""


@contextmanager
def out_dir_lock(out: Path, *, beside: bool = False) -> Iterator[None]:
    """Hold ``<out>/.cdarts.lock`` (non-blocking) for the block; a second holder is refused.

    With ``beside`` the lock is ``.<out name>.cdarts.lock`` next to ``out``, for a stage that
    replaces ``out`` as a whole (data prep). Under torchrun only rank 0 takes it: the other
    ranks write nothing of their own there.
    """
    # Global rank 0 only: on several nodes sharing an output volume, each node's local rank 0
    # would otherwise refuse the others.
    if os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) != "0":
        yield
        return
    out = Path(out)
    path = out.parent / f".{out.name}{LOCK_NAME}" if beside else out / LOCK_NAME
    created = not path.parent.exists()
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise disk_error(path, error) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise OutDirInUseError(f"{out} is in use by another cdarts process (pid {holder})") from None
        if _same_file(fd, path):
            break
        os.close(fd)  # the holder before us removed the file (and its directory): lock the new one
    try:
        # The pid only serves a refusal message: on a full disk the lock holds without it, and
        # the stage fails where it writes its own files, naming them.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        # A command refused before it wrote anything leaves no directory behind it created.
        with contextlib.suppress(OSError):
            if created and [p.name for p in path.parent.iterdir()] == [path.name]:
                path.unlink()
                path.parent.rmdir()
        os.close(fd)  # closing releases the lock


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def locks_out_dir(command: Callable[P, R]) -> Callable[P, R]:
    """Decorator for a CLI command with an ``out`` parameter: hold its lock while it runs."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        out = kwargs.get("out")
        if not isinstance(out, Path):
            return command(*args, **kwargs)
        with out_dir_lock(out):
            return command(*args, **kwargs)

    return wrapper
