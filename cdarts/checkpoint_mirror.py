"""A copy of a stage's checkpoint in the object store, so that a restarted task (a KFP retry, a
preempted pod, a new machine) continues from the newest complete checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

from cdarts.errors import StorageError
from cdarts.storage import LocalStore, ObjectStore, is_remote, open_store


class CheckpointMirror:
    """Mirrors one checkpoint file to ``uri`` (``s3://bucket/key`` or a local path).

    An S3 object appears only once its upload is complete, so the remote copy is always a whole
    checkpoint; downloads are checked against the recorded checksum.
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.store: ObjectStore
        if is_remote(uri):
            self.store, self.key = open_store(uri)
        else:  # a local path: the store root is the file's directory
            self.store, self.key = LocalStore(Path(uri).parent), Path(uri).name

    def check(self) -> None:
        """Fail fast (before any training) if the store is unreachable or refuses us."""
        self.store.check()

    def restore(self, local: Path) -> bool:
        """Fetch the mirrored checkpoint when there is none locally; True if one was fetched."""
        if local.exists() or not self.store.exists(self.key):
            return False
        self.store.download_file(self.key, local)
        return True

    def publish(self, local: Path) -> None:
        """Upload the newest checkpoint. A failure after the store's retries is reported but does
        not stop training: the local checkpoint is intact and the next one will try again."""
        try:
            self.store.upload_file(local, self.key)
        except StorageError as error:
            print(f"cdarts: warning: checkpoint not mirrored to {self.uri}: {error}", file=sys.stderr)


def mirror_uri(checkpoint_root: str, run_id: str, stage: str) -> str | None:
    """``<root>/<run id>/<stage>-last.pt``, the run-scoped mirror of a stage; None without a root."""
    if not checkpoint_root:
        return None
    return f"{checkpoint_root.rstrip('/')}/{run_id}/{stage}-last.pt"
