"""Download many objects at once with bounded concurrency (an ImageNet-sized image folder is a
million objects: one at a time, the round trips alone take hours).

``CDARTS_S3_DOWNLOAD_CONCURRENCY`` (default 16, at most 256) sets how many downloads are in
flight. The first failure stops new downloads and is raised once the running ones finish.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cdarts.errors import StorageError

CONCURRENCY_ENV = "CDARTS_S3_DOWNLOAD_CONCURRENCY"
DEFAULT_CONCURRENCY = 16
MAX_CONCURRENCY = 256


def download_concurrency() -> int:
    """``$CDARTS_S3_DOWNLOAD_CONCURRENCY`` as a number of downloads in flight (default 16)."""
    raw = os.environ.get(CONCURRENCY_ENV, "").strip()
    if not raw:
        return DEFAULT_CONCURRENCY
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_CONCURRENCY:
        raise StorageError(f"{CONCURRENCY_ENV}={raw!r} is not a whole number in [1, {MAX_CONCURRENCY}]")
    return int(raw)


def download_all(
    download: Callable[[str, Path], None], pairs: Iterable[tuple[str, Path]], concurrency: int | None = None
) -> int:
    """Call ``download(key, local)`` for every pair, at most ``concurrency`` at a time; returns
    how many ran. Targets must be distinct paths."""
    limit = download_concurrency() if concurrency is None else concurrency
    if limit < 1:
        raise ValueError("concurrency must be at least 1")
    slots = threading.BoundedSemaphore(limit)
    errors: list[BaseException] = []

    def one(key: str, local: Path) -> None:
        try:
            if not errors:
                download(key, local)
        except BaseException as error:
            errors.append(error)
        finally:
            slots.release()

    started = 0
    with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="s3-download") as pool:
        for key, local in pairs:
            slots.acquire()  # a bounded queue: a million keys never become a million pending tasks
            if errors:
                slots.release()
                break
            pool.submit(one, key, local)
            started += 1
    if errors:
        raise errors[0]
    return started
