"""Conditional S3 writes through boto3's public API: ``put_object(IfNoneMatch="*")`` creates an
object only if it is absent, ``put_object(IfMatch=etag)`` replaces it only if it is unchanged.

These are the compare-and-swap the idempotency ledger builds on. boto3 is used only here and
only for these two requests (botocore >= 1.35.68 models both headers); everything else goes
through the minio SDK in ``cdarts.storage``. Failures are translated for the caller's retry
loop: a precondition failure is an answer (``False``), a refused request is a ``StorageError``,
an unreachable server or a 5xx answer is a ``ConnectionError`` (retried).
"""

from __future__ import annotations

from typing import Any

from cdarts.errors import StorageError

# The answers of a conditional PUT that lost: 412 (the condition is false) or 409 (another
# conditional write to the same key was in flight).
LOST_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})


class ConditionalWriter:
    """One boto3 S3 client for the conditional PUTs of one bucket."""

    def __init__(
        self,
        endpoint_url: str,
        bucket: str,
        region: str | None,
        access_key: str | None,
        secret_key: str | None,
        timeout_seconds: float,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region or "us-east-1",
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(
                # The caller retries with its own budget; botocore must not retry underneath it.
                retries={"max_attempts": 1, "mode": "standard"},
                connect_timeout=min(5.0, timeout_seconds),
                read_timeout=min(120.0, timeout_seconds),
                s3={"addressing_style": "path"},
                # S3-compatible servers differ on the newer default CRC checksums; MD5-free
                # requests are what every server accepts.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        if "IfMatch" not in self._put_parameters():
            raise StorageError("the installed botocore cannot send conditional PUTs; install botocore>=1.35.68")

    def _put_parameters(self) -> set[str]:
        shape = self.client.meta.service_model.operation_model("PutObject").input_shape
        return set(shape.members)

    def create(self, key: str, data: bytes) -> bool:
        """Write ``data`` at ``key`` only if no object is there; whether this write took effect."""
        return self._put(key, data, IfNoneMatch="*")

    def replace(self, key: str, data: bytes, etag: str) -> bool:
        """Write ``data`` at ``key`` only if its ETag is still ``etag``; whether it took effect."""
        return self._put(key, data, IfMatch=f'"{etag.strip(chr(34))}"')

    def _put(self, key: str, data: bytes, **condition: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **condition)
            return True
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            if code in LOST_CODES or status in (409, 412):
                return False
            if status >= 500 or code in ("SlowDown", "RequestTimeout", "InternalError"):
                raise ConnectionError(f"S3 answered {status} {code}") from None
            raise StorageError(f"conditional write of {key} to s3://{self.bucket} failed: {code or status}") from None
        except BotoCoreError as error:  # connection refused, reset, timed out
            raise ConnectionError(type(error).__name__) from None
