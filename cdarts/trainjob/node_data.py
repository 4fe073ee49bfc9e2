"""What the search processes on a TrainJob node do around the search: fetch the prepared dataset
from the object store once per node, and (rank 0) publish the finished output directory."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from cdarts.data.prepared import MANIFEST_NAME
from cdarts.errors import DataError
from cdarts.storage import fetch_to_local, open_store, upload_directory


def fetch_prepared_dataset(uri: str, cache_root: Path | None = None) -> Path:
    """A local copy of the prepared dataset at ``uri`` (an ``s3://`` prefix), downloaded once per
    machine into ``cache_root`` (default: ``$TMPDIR/cdarts-data``) and reused afterwards.

    torchrun starts several processes on a node that all ask for it: they queue on a file lock,
    the first downloads into a staging directory and renames it into place, so a copy is either
    complete or absent, and the others then find it.
    """
    root = cache_root or Path(tempfile.gettempdir()) / "cdarts-data"
    root.mkdir(parents=True, exist_ok=True)
    target = root / hashlib.sha256(uri.encode()).hexdigest()[:16]
    with (root / f"{target.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / MANIFEST_NAME).is_file():
            return target
        staging = root / f"{target.name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        fetched = fetch_to_local(uri, staging)
        if not (fetched / MANIFEST_NAME).is_file():
            shutil.rmtree(staging, ignore_errors=True)
            raise DataError(f"{uri} is not a prepared dataset (no {MANIFEST_NAME}; write it with data-prep)")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(fetched, target)
        shutil.rmtree(staging, ignore_errors=True)
    return target


def publish_directory(local: Path, uri: str) -> int:
    """Upload ``local`` to ``uri`` (``s3://bucket/prefix`` or a path), manifest last, so that a
    reader never takes a partial upload for a result; returns the file count."""
    store, prefix = open_store(uri)
    store.check()
    return upload_directory(store, local, prefix)
