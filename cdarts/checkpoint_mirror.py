"""A copy of a stage's checkpoint in the object store, so that a restarted task (a KFP retry, a
preempted pod, a new machine) continues from the newest complete checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

from cdarts.artifact_location import sibling_location
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


def task_checkpoint_mirror(checkpoint_root: str, scope: str, stage: str, artifact_uri: str) -> str | None:
    """The mirror of a pipeline task's checkpoint.

    With ``checkpoint_root``: ``<root>/<scope>/<stage>-last.pt`` (an explicit choice; the stage
    fails fast if it is unusable). Without: beside the task's own output artifact
    (``<artifact uri>.checkpoint/<stage>-last.pt``), which KFP fixes before the container starts and
    keeps across retries of the task, and which is already run-scoped. That default is used only
    where it lives in an S3 store we can reach (KFP's ``minio://`` or ``s3://`` root with our S3
    settings); otherwise a warning says that a retry starts over, and there is no mirror. Local
    artifacts (kfp.local) need none: the task directory itself survives a retry.
    """
    if checkpoint_root:
        return mirror_uri(checkpoint_root, scope, stage)
    beside = sibling_location(artifact_uri, ".checkpoint")
    if beside is None or not is_remote(beside):
        if beside is None:
            print(
                f"cdarts: warning: {artifact_uri} is in a store without checkpoint mirroring; a retried "
                f"{stage} starts over (set checkpoint_root=s3://... to resume)",
                file=sys.stderr,
            )
        return None
    location = f"{beside}/{stage}-last.pt"
    try:
        CheckpointMirror(location).check()
    except StorageError as error:
        print(
            f"cdarts: warning: cannot mirror checkpoints beside the task output ({error}); a retried "
            f"{stage} starts over (set checkpoint_root=s3://... to resume)",
            file=sys.stderr,
        )
        return None
    return location
