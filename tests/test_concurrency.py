"""One cdarts process per --out: a second writer is refused in one line while the first holds it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cdarts.cli.main import app
from cdarts.errors import CdartsError
from cdarts.out_dir_lock import LOCK_NAME

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from cdarts.out_dir_lock import out_dir_lock
    with out_dir_lock(Path(sys.argv[1])):
        print("held", flush=True)
        sys.stdin.readline()
    """
)


def _stage(out: Path) -> subprocess.CompletedProcess[str]:
    # derive-genotype takes the lock before reading its input, so a missing alphas file is enough
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cdarts",
            "stage",
            "derive-genotype",
            "--alphas",
            str(out / "none.pt"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_second_process_is_refused_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        refused = _stage(tmp_path)
        assert refused.returncode == 2
        assert (
            refused.stderr.strip()
            == f"cdarts: error: {tmp_path} is in use by another cdarts process (pid {holder.pid})"
        )
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    after = _stage(tmp_path)  # the lock is free again: the command runs (and fails on its input)
    assert after.returncode == 2
    assert "in use" not in after.stderr and "none.pt" in after.stderr


def test_other_local_ranks_take_no_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cdarts.out_dir_lock import out_dir_lock

    with out_dir_lock(tmp_path):
        monkeypatch.setenv("LOCAL_RANK", "1")
        with out_dir_lock(tmp_path):
            pass
    assert (tmp_path / LOCK_NAME).is_file()


def test_the_lock_is_released_for_the_next_command(tmp_path: Path) -> None:
    for _ in range(2):
        result = CliRunner().invoke(
            app, ["stage", "derive-genotype", "--alphas", str(tmp_path / "x.pt"), "--out", str(tmp_path)]
        )
        assert result.exit_code == 2 and "in use" not in result.output


SQLITE_RUN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from cdarts.tracking import start_parent_run
    go = Path(sys.argv[2])
    while not go.exists():  # imports done: start together with the other process
        time.sleep(0.01)
    print(start_parent_run(sys.argv[1], "cdarts", sys.argv[3], {}), flush=True)
    """
)


def test_two_runs_started_together_on_a_fresh_sqlite_store_both_succeed(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri, go = f"sqlite:///{tmp_path / '.cdarts' / 'mlflow.db'}", tmp_path / "go"
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", SQLITE_RUN, uri, str(go), name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for name in ("first", "second")
    ]
    go.touch()
    results = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-400:] for _, err in results]
    run_ids = [out.strip() for out, _ in results]
    # The store is complete for everyone after them: both runs are in it, and the registry works.
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert sorted(client.get_run(run_id).info.run_name for run_id in run_ids) == ["first", "second"]
    assert client.search_registered_models() == []


def test_data_prep_locks_beside_its_output_and_a_kill_releases_it(tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    holder_code = HOLDER.replace("out_dir_lock(Path(sys.argv[1]))", "out_dir_lock(Path(sys.argv[1]), beside=True)")
    holder = subprocess.Popen(
        [sys.executable, "-c", holder_code, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    prep = [sys.executable, "-m", "cdarts", "stage", "data-prep", "-c", str(CONFIGS / "tiny.yaml"), "-o", str(out)]
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        refused = subprocess.run(prep, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert refused.returncode == 2
        assert refused.stderr.strip() == f"cdarts: error: {out} is in use by another cdarts process (pid {holder.pid})"
        assert not out.exists()
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, the kernel drops the lock
        holder.wait(timeout=30)
    done = subprocess.run(prep, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-400:]
    assert (out / "manifest.json").is_file() and not (out / LOCK_NAME).exists()  # the lock is not in the dataset


def test_only_global_rank_0_locks_on_a_shared_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cdarts.out_dir_lock import out_dir_lock

    with out_dir_lock(tmp_path):  # node 0's rank 0 holds the shared --out
        monkeypatch.setenv("RANK", "4")  # node 1's first process: local rank 0, global rank 4
        monkeypatch.setenv("LOCAL_RANK", "0")
        with out_dir_lock(tmp_path):
            pass
        monkeypatch.setenv("RANK", "0")  # a second job's rank 0 is refused
        with pytest.raises(CdartsError, match="is in use by another cdarts process"), out_dir_lock(tmp_path):
            pass


def test_a_second_cdarts_run_resuming_the_same_run_directory_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "20261202-120000-abcdef"
    run_dir.mkdir()
    (run_dir / "launch.json").write_text('{"stack": "none", "pipeline": "search"}', encoding="utf-8")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        refused = subprocess.run(
            [sys.executable, "-m", "cdarts", "run", "--resume", str(run_dir)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 2
        assert refused.stderr.strip().splitlines() == [
            f"cdarts: error: {run_dir} is in use by another cdarts process (pid {holder.pid})"
        ]
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
