"""Where a KFP artifact lives, in the terms of our object store.

KFP names an artifact by a URI: ``minio://bucket/key`` for its bundled object store (MinIO or, since
KFP 2.15, SeaweedFS, both S3 servers), ``s3://bucket/key`` for S3, ``gs://`` for GCS, and a local
path under kfp.local. The artifact's URI is fixed per task execution before the container starts
(a retry of the same task gets the same one), and it contains the KFP run id, so locations derived
from it are run-scoped without being told the run id.
"""

from __future__ import annotations

from urllib.parse import urlparse

S3_SCHEMES = ("s3", "minio")


def object_store_uri(artifact_uri: str) -> str | None:
    """``s3://bucket/key`` for an artifact in an S3 store (``s3://`` or KFP's ``minio://``), the
    path itself for a local artifact, None for stores we cannot write (``gs://`` and others)."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme in S3_SCHEMES and parsed.netloc:
        return f"s3://{parsed.netloc}/{parsed.path.lstrip('/')}"
    if not parsed.scheme or len(parsed.scheme) == 1:  # a POSIX path, or a Windows drive letter
        return artifact_uri
    return None


def sibling_location(artifact_uri: str, suffix: str) -> str | None:
    """A location beside the artifact (``<uri><suffix>``), outside what KFP uploads as the artifact
    itself, in our store's terms; None where :func:`object_store_uri` is None."""
    base = object_store_uri(artifact_uri)
    return None if base is None else f"{base.rstrip('/')}{suffix}"
