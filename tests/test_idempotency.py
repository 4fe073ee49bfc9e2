"""The idempotency ledger and submit-once, on a real S3 server (SeaweedFS) and a local directory."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cdarts.errors import StorageError
from cdarts.idempotency import IdempotencyLedger, open_ledger
from cdarts.storage import LocalStore, ObjectStore, S3Settings, S3Store
from pipelines.idempotent_submit import run_name_for_key, submit_once
from pipelines.submit import SubmitError, SubmittedRun


class RecordingRuns:
    """A run service that counts creations (the KFP-facing side is tested with kfp.Client in
    test_gitops.py); ``create_delay`` widens the window in which racing triggers could collide."""

    def __init__(self, create_delay: float = 0.0, fail_creates: int = 0) -> None:
        self.created: list[str] = []
        self.create_delay = create_delay
        self.fail_creates = fail_creates
        self.lock = threading.Lock()

    def find_run(self, run_name: str) -> SubmittedRun | None:
        with self.lock:
            return SubmittedRun(run_name, "url") if run_name in self.created else None

    def create_run(self, run_name: str, package: Path, arguments: dict[str, Any]) -> SubmittedRun:
        time.sleep(self.create_delay)
        with self.lock:
            if self.fail_creates:
                self.fail_creates -= 1
                raise SubmitError("KFP refused the run (test)")
            self.created.append(run_name)
            return SubmittedRun(f"{run_name}#{len(self.created)}", "url")


@pytest.fixture(params=["s3", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalStore(tmp_path / "ledger")
    request.getfixturevalue("s3_env")
    return S3Store(S3Settings.from_env(), "cdarts")


def _prefix(tmp_path: Path) -> str:
    return f"idempotency/{tmp_path.name}"  # one namespace per test on the shared server


def test_the_first_claim_wins_and_later_claims_see_the_submitted_run(store: ObjectStore, tmp_path: Path) -> None:
    ledger = IdempotencyLedger(store, _prefix(tmp_path))
    ledger.check()
    first = ledger.claim("sha:file.yaml", "holder-a")
    assert first.acquired
    held = ledger.claim("sha:file.yaml", "holder-b")
    assert not held.acquired and held.record.holder == "holder-a" and held.record.state == "claimed"
    ledger.complete(first, "run-1", "http://kfp/#/runs/details/run-1")
    later = ledger.claim("sha:file.yaml", "holder-c")
    assert not later.acquired and later.record.state == "submitted" and later.record.run_id == "run-1"
    assert ledger.claim("sha:other.yaml", "holder-c").acquired  # keys are independent


def test_an_abandoned_or_expired_claim_can_be_taken_over(store: ObjectStore, tmp_path: Path) -> None:
    ledger = IdempotencyLedger(store, _prefix(tmp_path), lease_seconds=0.5)
    claim = ledger.claim("k", "crashed")
    ledger.abandon(claim)
    again = ledger.claim("k", "retry")
    assert again.acquired and again.record.holder == "retry"
    assert not ledger.claim("k", "third").acquired  # the lease is fresh
    time.sleep(0.7)
    taken = ledger.claim("k", "third")
    assert taken.acquired
    with pytest.raises(StorageError, match="taken over"):
        ledger.complete(again, "late-run", "url")  # the slow holder learns it lost the key
    assert ledger.complete(taken, "run-3", "url").run_id == "run-3"


def test_concurrent_triggers_with_the_same_key_create_exactly_one_run(store: ObjectStore, tmp_path: Path) -> None:
    ledger = IdempotencyLedger(store, _prefix(tmp_path))
    runs = RecordingRuns(create_delay=0.3)
    barrier = threading.Barrier(6)
    outcomes: list[Any] = []

    def trigger() -> None:
        barrier.wait()
        outcomes.append(
            submit_once(
                "abc123:cifar.yaml", "retrain-x", ledger, runs, Path("p.yaml"), {}, wait_seconds=30, poll_seconds=0.05
            )
        )

    threads = [threading.Thread(target=trigger) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert runs.created == ["retrain-x"]
    assert len(outcomes) == 6
    assert sum(outcome.created for outcome in outcomes) == 1
    assert {outcome.run.run_id for outcome in outcomes} == {"retrain-x#1"}


def test_a_run_created_by_a_holder_that_died_before_recording_it_is_found_not_duplicated(
    store: ObjectStore, tmp_path: Path
) -> None:
    ledger = IdempotencyLedger(store, _prefix(tmp_path), lease_seconds=0.2)
    runs = RecordingRuns()
    ledger.claim("k", "died")  # claimed, then the run was created, then the pod was killed
    runs.create_run("retrain-k", Path("p.yaml"), {})
    time.sleep(0.3)
    outcome = submit_once("k", "retrain-k", ledger, runs, Path("p.yaml"), {}, wait_seconds=5, poll_seconds=0.05)
    assert not outcome.created and runs.created == ["retrain-k"]
    record = ledger.read("k")
    assert record is not None and record[0].state == "submitted"


def test_a_failed_submission_releases_the_key_for_the_retry(store: ObjectStore, tmp_path: Path) -> None:
    ledger = IdempotencyLedger(store, _prefix(tmp_path))
    runs = RecordingRuns(fail_creates=1)
    with pytest.raises(SubmitError, match="refused"):
        submit_once("k", "retrain-k", ledger, runs, Path("p.yaml"), {}, wait_seconds=1)
    record = ledger.read("k")
    assert record is not None and record[0].state == "abandoned"
    outcome = submit_once("k", "retrain-k", ledger, runs, Path("p.yaml"), {}, wait_seconds=1)
    assert outcome.created and runs.created == ["retrain-k"]


def test_a_holder_that_never_finishes_makes_waiters_give_up_with_a_clear_error(tmp_path: Path) -> None:
    ledger = IdempotencyLedger(LocalStore(tmp_path), "ledger")
    ledger.claim("k", "stuck")
    with pytest.raises(SubmitError, match="another trigger has held 'k'"):
        submit_once("k", "retrain-k", ledger, RecordingRuns(), Path("p.yaml"), {}, wait_seconds=0.2, poll_seconds=0.05)


def test_a_corrupt_record_is_reported_not_overwritten(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    ledger = IdempotencyLedger(store, "ledger")
    path = tmp_path / ledger.record_key("k")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(StorageError, match="corrupt"):
        ledger.claim("k", "me")
    assert path.read_text() == "{not json"


class IgnoresConditions(LocalStore):
    """A store that accepts every conditional write, as an S3 server without If-None-Match does."""

    def create_if_absent(self, key: str, data: bytes) -> bool:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return True


def test_a_store_that_ignores_conditional_writes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="ignores conditional writes"):
        IdempotencyLedger(IgnoresConditions(tmp_path), "ledger").check()


def test_conditional_writes_on_s3_compare_and_swap(s3_env: str, tmp_path: Path) -> None:
    store = S3Store(S3Settings.from_env(), "cdarts")
    key = f"cas/{tmp_path.name}"
    assert store.read_versioned(key) is None
    assert store.create_if_absent(key, b"one")
    assert not store.create_if_absent(key, b"two")
    found = store.read_versioned(key)
    assert found is not None and found[0] == b"one"
    assert not store.replace_if_version(key, b"three", "0" * 32)
    assert store.replace_if_version(key, b"three", found[1])
    assert not store.replace_if_version(key, b"four", found[1])  # the version moved on
    assert store.read_versioned(key) is not None and store.read_versioned(key)[0] == b"three"  # type: ignore[index]


def test_open_ledger_checks_the_store_and_leaves_no_probe(s3_env: str, tmp_path: Path) -> None:
    ledger = open_ledger(f"s3://cdarts/idempotency/{tmp_path.name}")
    assert ledger.prefix == f"idempotency/{tmp_path.name}"
    assert ledger.store.list_keys(ledger.prefix) == []  # the conditional-write probe was removed
    with pytest.raises(StorageError, match="does not exist"):
        open_ledger("s3://no-such-bucket/idempotency")


def test_run_names_are_stable_and_distinct_per_key() -> None:
    assert run_name_for_key("retrain-cifar", "a:b.yaml") == run_name_for_key("retrain-cifar", "a:b.yaml")
    assert run_name_for_key("retrain-cifar", "a:b.yaml") != run_name_for_key("retrain-cifar", "c:b.yaml")
