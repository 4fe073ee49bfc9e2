"""Submit at most one KFP run per idempotency key.

The key is claimed in the :class:`~cdarts.idempotency.IdempotencyLedger` first (atomic, so of two
racing triggers exactly one proceeds); the holder then looks the run up on the KFP server by its
deterministic name (a previous holder may have created it and died before recording it), creates
it only if absent, and records the run id. A trigger that finds the key held waits for the holder
to finish and reports the same run.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass
from typing import Any, Protocol

from cdarts.errors import CdartsError
from cdarts.idempotency import IdempotencyLedger, new_holder_token
from pipelines.parent_run import ParentRun
from pipelines.submit import RunSource, SubmitError, SubmittedRun


class RunService(Protocol):
    def find_run(self, run_name: str) -> SubmittedRun | None: ...
    def create_run(self, run_name: str, source: RunSource, arguments: dict[str, Any]) -> SubmittedRun: ...


@dataclass(frozen=True)
class SubmitOutcome:
    key: str
    run: SubmittedRun
    created: bool  # False: the key's run already existed (re-sync, Job retry, or a racing trigger)


def run_name_for_key(prefix: str, key: str) -> str:
    """A KFP run name that identifies ``key`` (so the run can be found without the ledger)."""
    return f"{prefix}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:12]}"


def submit_once(
    key: str,
    run_name: str,
    ledger: IdempotencyLedger,
    runs: RunService,
    source: RunSource,
    arguments: dict[str, Any],
    details: dict[str, str] | None = None,
    wait_seconds: float = 300.0,
    poll_seconds: float = 2.0,
    parent: ParentRun | None = None,
) -> SubmitOutcome:
    """Create the run for ``key`` unless it exists; see the module docstring. ``parent`` (the
    MLflow parent run) is opened only when a run is really created."""
    holder = new_holder_token()
    deadline = time.monotonic() + wait_seconds
    while True:
        claim = ledger.claim(key, holder, details)
        if claim.acquired:
            break
        record = claim.record
        if record.state == "submitted" and record.run_id is not None:
            return SubmitOutcome(key, SubmittedRun(record.run_id, record.run_url or ""), created=False)
        if time.monotonic() > deadline:
            raise SubmitError(
                f"another trigger has held {key!r} for {time.time() - record.claimed_at:.0f} s without "
                "finishing; retry later"
            )
        time.sleep(poll_seconds)
    try:
        existing = runs.find_run(run_name)
        if existing is None:
            run = runs.create_run(run_name, source, {**arguments, **(parent.open() if parent else {})})
            if parent is not None:
                parent.created(run)
        else:
            run = existing
    except BaseException:
        # If even that fails the lease expires on its own; the submission error is what to report.
        with contextlib.suppress(CdartsError):
            ledger.abandon(claim)
        if parent is not None:
            with contextlib.suppress(CdartsError):
                parent.finished(succeeded=False)
        raise
    ledger.complete(claim, run.run_id, run.url)
    return SubmitOutcome(key, run, created=existing is None)
