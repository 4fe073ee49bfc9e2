"""A lease lock over one registered model's champion alias, built on the registry itself.

MLflow moves aliases last-write-wins and has no compare-and-set, so two register tasks that
read the same champion would both "beat" it and the slower write would win. The one atomic
primitive every MLflow backend offers is creating a registered model under a unique name: the
lock is a registered model ``<name>.promotion-lock`` that exists while a holder decides. Its tags
carry the holder's token and when the lease expires, so a holder that died (a killed pod) blocks
others for at most the lease; it is deleted again when the decision is recorded.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

from cdarts.errors import TrackingError

LOCK_SUFFIX = ".promotion-lock"
HOLDER_TAG, EXPIRES_TAG = "cdarts.lock.holder", "cdarts.lock.expires_at"


def _already_exists(error: Exception) -> bool:
    return getattr(error, "error_code", "") == "RESOURCE_ALREADY_EXISTS"


def _held_lock(client: Any, lock_name: str) -> Any | None:
    try:
        return client.get_registered_model(lock_name)
    except Exception:  # released in the meantime
        return None


def _delete_if_held_by(client: Any, lock_name: str, token: str) -> None:
    held = _held_lock(client, lock_name)
    if held is not None and held.tags.get(HOLDER_TAG) == token:
        with contextlib.suppress(Exception):  # deleted concurrently: nothing left to release
            client.delete_registered_model(lock_name)


@contextlib.contextmanager
def promotion_lock(
    client: Any, name: str, lease_seconds: float = 120.0, wait_seconds: float = 300.0, poll_seconds: float = 0.25
) -> Iterator[None]:
    """Hold the promotion lock of registered model ``name`` for the body of the ``with``."""
    lock_name, token = f"{name}{LOCK_SUFFIX}", uuid.uuid4().hex
    deadline = time.monotonic() + wait_seconds
    while True:
        tags = {HOLDER_TAG: token, EXPIRES_TAG: f"{time.time() + lease_seconds:.3f}"}
        try:
            client.create_registered_model(
                lock_name, tags=tags, description=f"held while a cdarts register task moves the aliases of {name}"
            )
            break
        except Exception as error:
            if not _already_exists(error):
                raise TrackingError(f"cannot take the promotion lock of {name!r} ({type(error).__name__})") from None
        held = _held_lock(client, lock_name)
        if held is not None and float(held.tags.get(EXPIRES_TAG, "0")) < time.time():
            _delete_if_held_by(client, lock_name, held.tags.get(HOLDER_TAG, ""))  # a dead holder's lease
            continue
        if time.monotonic() > deadline:
            raise TrackingError(
                f"another register task has held the promotion lock of {name!r} for over {wait_seconds:.0f} s; "
                f"retry later (or delete the registered model {lock_name!r} if no task is running)"
            )
        time.sleep(poll_seconds)
    try:
        yield
    finally:
        _delete_if_held_by(client, lock_name, token)
