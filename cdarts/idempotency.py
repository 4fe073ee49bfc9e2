"""An idempotency ledger in the object store: at most one pipeline run per key.

Each key owns one small JSON record, ``<prefix>/<sha256(key)>.json``, moved through its states
with conditional writes only (create-if-absent, replace-if-unchanged), so two triggers racing on
the same key cannot both win:

    (absent) --claim--> claimed --complete--> submitted
                           |
                           +--abandon--> abandoned   (the run could not be created; claimable again)

A claim is a lease: a claim older than ``lease_seconds`` whose holder never completed it is taken
over (again by compare-and-swap), so a trigger killed between claiming and submitting does not
block the key forever. A write retried after a lost response may report "not applied" although
it was; every record therefore carries its writer's token and outcomes are decided by re-reading.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from cdarts.errors import StorageError
from cdarts.storage import ObjectStore

State = Literal["claimed", "submitted", "abandoned"]


@dataclass(frozen=True)
class LedgerRecord:
    """What the ledger knows about one key."""

    key: str
    state: State
    holder: str  # token of the trigger that wrote this state
    claimed_at: float  # unix seconds
    run_id: str | None = None
    run_url: str | None = None
    details: dict[str, str] = field(default_factory=dict)  # e.g. git revision, request file

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> LedgerRecord:
        try:
            raw: dict[str, Any] = json.loads(data)
            return cls(**raw)
        except (ValueError, TypeError) as error:
            raise StorageError(f"idempotency record {where} is corrupt ({type(error).__name__})") from None


@dataclass(frozen=True)
class Claim:
    """The outcome of :meth:`IdempotencyLedger.claim`.

    ``acquired``: this trigger holds the key and must submit, then :meth:`complete` or
    :meth:`abandon`. Otherwise ``record`` says who holds it or which run was already submitted.
    """

    acquired: bool
    record: LedgerRecord
    version: str = ""


def new_holder_token() -> str:
    return secrets.token_hex(8)


class IdempotencyLedger:
    def __init__(self, store: ObjectStore, prefix: str, lease_seconds: float = 600.0) -> None:
        self.store = store
        self.prefix = prefix.strip("/")
        self.lease_seconds = lease_seconds

    def record_key(self, key: str) -> str:
        name = f"{hashlib.sha256(key.encode('utf-8')).hexdigest()}.json"
        return f"{self.prefix}/{name}" if self.prefix else name

    def check(self) -> None:
        """Fail fast if the store is unusable or silently ignores conditional writes (an S3 server
        without ``If-None-Match`` support would let two triggers both win)."""
        self.store.check()
        probe = self.record_key(f"probe-{new_holder_token()}")
        try:
            if not self.store.create_if_absent(probe, b"1"):
                raise StorageError("the idempotency ledger could not create its probe record")
            if self.store.create_if_absent(probe, b"2"):
                raise StorageError(
                    "the object store ignores conditional writes (If-None-Match); the idempotency ledger "
                    "needs them (MinIO >= 2024-11, SeaweedFS >= 3.80, AWS S3)"
                )
        finally:
            self.store.delete(probe)  # every trigger run checks; leave nothing behind

    def read(self, key: str) -> tuple[LedgerRecord, str] | None:
        found = self.store.read_versioned(self.record_key(key))
        if found is None:
            return None
        data, version = found
        return LedgerRecord.from_bytes(data, self.record_key(key)), version

    def claim(self, key: str, holder: str, details: dict[str, str] | None = None) -> Claim:
        """Try to take ``key``: create its record, or take over an abandoned or expired claim."""
        mine = LedgerRecord(key=key, state="claimed", holder=holder, claimed_at=time.time(), details=details or {})
        record_key = self.record_key(key)
        for _ in range(8):  # each pass either decides or observes a concurrent change
            current = self.read(key)
            if current is None:
                self.store.create_if_absent(record_key, mine.to_bytes())
            else:
                record, version = current
                if record.holder == holder and record.state == "claimed":
                    return Claim(True, record, version)
                if record.state == "submitted" or (record.state == "claimed" and not self._expired(record)):
                    return Claim(False, record, version)
                self.store.replace_if_version(record_key, mine.to_bytes(), version)
            # Whether our write applied is decided by what the record now says, not by the
            # write's answer (see the module docstring).
            after = self.read(key)
            if after is not None and after[0].holder == holder and after[0].state == "claimed":
                return Claim(True, after[0], after[1])
        raise StorageError(f"could not settle the idempotency record of {key!r}: it keeps changing")

    def _expired(self, record: LedgerRecord) -> bool:
        return time.time() - record.claimed_at > self.lease_seconds

    def complete(self, claim: Claim, run_id: str, run_url: str) -> LedgerRecord:
        """Record the submitted run. Raises if the claim was taken over meanwhile (the run exists;
        the message names it so that an operator can reconcile)."""
        done = replace(claim.record, state="submitted", run_id=run_id, run_url=run_url)
        self._settle(claim, done, f"run {run_id} was submitted but")
        return done

    def abandon(self, claim: Claim) -> None:
        """Give the key up after a failed submission, so that a retry can claim it at once."""
        self._settle(claim, replace(claim.record, state="abandoned"), "the failed submission's claim")

    def _settle(self, claim: Claim, new: LedgerRecord, what: str) -> None:
        record_key = self.record_key(claim.record.key)
        self.store.replace_if_version(record_key, new.to_bytes(), claim.version)
        after = self.read(claim.record.key)
        if after is None or after[0] != new:
            raise StorageError(
                f"{what} the idempotency claim on {claim.record.key!r} was taken over by another trigger "
                f"(lease {self.lease_seconds:.0f} s expired)"
            )


def open_ledger(uri: str, lease_seconds: float = 600.0) -> IdempotencyLedger:
    """A ledger at ``s3://bucket/prefix`` or in a local directory, checked to be usable."""
    from cdarts.storage import open_store

    store, prefix = open_store(uri)
    ledger = IdempotencyLedger(store, prefix, lease_seconds)
    ledger.check()
    return ledger
