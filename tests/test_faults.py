"""Disk faults on complete-markers: no partial or empty marker is left, and the error is one line."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cdarts import atomic_files
from cdarts.atomic_files import write_text_atomic
from cdarts.checkpoint import load_checkpoint, save_checkpoint
from cdarts.cli.errors import handles_user_errors
from cdarts.errors import CdartsError, DiskError
from cdarts.runners.import_genotype import run_import_genotype


def _full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic_files.os, "fsync", fsync)


def test_text_marker_on_full_disk_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _full_disk(monkeypatch)
    with pytest.raises(DiskError) as raised:
        write_text_atomic(tmp_path / "genotype.json", "{}")
    assert str(raised.value) == f"cannot write {tmp_path / 'genotype.json'}: No space left on device"
    assert list(tmp_path.iterdir()) == []


def test_full_disk_keeps_the_previous_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_checkpoint({"step": 1}, tmp_path / "last.pt")
    _full_disk(monkeypatch)
    with pytest.raises(DiskError, match="No space left on device"):
        save_checkpoint({"step": 2}, tmp_path / "last.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 1


def test_a_failing_writer_removes_its_temp_file(tmp_path: Path) -> None:
    def boom(handle: object) -> None:
        raise ValueError("not serialisable")

    with pytest.raises(ValueError):
        atomic_files.write_with_atomic(tmp_path / "model.pt", boom)
    assert list(tmp_path.iterdir()) == []


def test_stage_runner_on_full_disk_writes_no_genotype(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _full_disk(monkeypatch)
    with pytest.raises(CdartsError, match=r"cannot write .*genotype\.json: No space left on device"):
        run_import_genotype("DARTS_V2", tmp_path)
    assert not any(p.name.startswith((".genotype", "genotype")) for p in tmp_path.iterdir())


def _app(error: BaseException) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @handles_user_errors
    def go() -> None:
        raise error

    return app


def test_os_error_in_the_cli_is_one_line_exit_2() -> None:
    error = OSError(errno.EROFS, os.strerror(errno.EROFS), "/data/out/model.pt")
    result = CliRunner().invoke(_app(error), [])
    assert result.exit_code == 2
    assert result.output.strip() == "cdarts: error: cannot write /data/out/model.pt: Read-only file system"


def test_disk_error_in_the_cli_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _full_disk(monkeypatch)
    app = typer.Typer()

    @app.command()
    @handles_user_errors
    def go() -> None:
        run_import_genotype("DARTS_V2", tmp_path)

    result = CliRunner().invoke(app, [])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cdarts: error: cannot write ")
    assert "Traceback" not in result.output


def test_resumed_search_leaves_no_duplicate_metric_lines(tiny_config, tiny_dataset: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import json

    from cdarts.runners.search import run_search

    out = tmp_path / "search"
    run_search(tiny_config, tiny_dataset, out, max_iterations=1)
    metrics = out / "metrics.jsonl"
    first = metrics.read_text(encoding="utf-8").splitlines()
    assert first
    # the kill came after more lines were logged than the checkpoint holds, one of them torn
    last_step = json.loads(first[-1])["step"]
    with metrics.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"step": last_step + 1, "search/loss": 1.0}) + "\n" + '{"step": ')
    run_search(tiny_config, tiny_dataset, out)
    steps = [json.loads(line)["step"] for line in metrics.read_text(encoding="utf-8").splitlines()]
    keys = [(json.loads(line)["step"], tuple(sorted(json.loads(line)))) for line in metrics.read_text().splitlines()]
    assert len(keys) == len(set(keys)), "a metric line was logged twice"
    assert steps == sorted(steps)
    assert (out / "genotype.json").is_file()


def test_truncate_after_keeps_lines_up_to_the_step(tmp_path: Path) -> None:
    from cdarts.tracking.protocol import JsonlTracker

    tracker = JsonlTracker(tmp_path / "metrics.jsonl")
    for step in (1, 2, 3):
        tracker.log_metrics({"loss": float(step)}, step)
    tracker.truncate_after(2)
    tracker.log_metrics({"loss": 3.5}, 3)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [line.split(",")[0] for line in lines] == ['{"step": 1', '{"step": 2', '{"step": 3']
    assert '"loss": 3.5' in lines[-1]


def test_resumed_retrain_leaves_no_duplicate_metric_lines(tiny_config, tiny_dataset: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import json

    from cdarts.runners.retrain import run_retrain
    from cdarts.spaces.darts.parser import reference_genotype

    genotype = reference_genotype("CDARTS_CIFAR")
    config = tiny_config.model_copy(update={"retrain": tiny_config.retrain.model_copy(update={"epochs": 2})})
    run_retrain(config, tiny_dataset, genotype, tmp_path / "straight")
    out = tmp_path / "resumed"
    run_retrain(config, tiny_dataset, genotype, out, max_epochs=1)
    with (out / "metrics.jsonl").open("a", encoding="utf-8") as handle:  # killed after logging epoch 2
        handle.write(json.dumps({"step": 2, "retrain/train_loss": 1.0}) + "\n")
    run_retrain(config, tiny_dataset, genotype, out)

    def steps(path: Path) -> list[int]:
        return [json.loads(line)["step"] for line in path.read_text(encoding="utf-8").splitlines()]

    assert steps(out / "metrics.jsonl") == steps(tmp_path / "straight" / "metrics.jsonl")


def test_data_prep_removes_a_killed_runs_partial_directory(tiny_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    from cdarts.runners.data_prep import run_data_prep

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = tmp_path / "tiny"
    stale = tmp_path / f".tiny.partial-{dead.stdout.strip()}-deadbeef"
    old_style = tmp_path / ".tiny.partial-0a1b2c3d"
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # another live data prep
    live = tmp_path / f".tiny.partial-{writer.pid}-cafecafe"
    reused = tmp_path / f".tiny.partial-{os.getpid()}-feedfeed"  # a killed run's pid, ours again (new container)
    for directory in (stale, old_style, live, reused):
        (directory / "train").mkdir(parents=True)
    try:
        run_data_prep(tiny_config.data, tiny_config.seed, out)
    finally:
        writer.kill()
        writer.wait()
    assert not stale.exists() and not old_style.exists() and not reused.exists()
    assert live.exists()  # a live process's partial directory is left alone
    assert (out / "manifest.json").is_file()


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A real, full file system: a 256 KiB tmpfs filled to its last block (needs root to mount)."""
    mount = tmp_path / "full"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root); the fsync-fault tests above cover the logic")
    try:
        with (mount / "filler").open("wb", buffering=0) as filler, contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 4096)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_marker_on_a_really_full_disk_is_one_line_and_leaves_nothing(full_disk: Path) -> None:
    with pytest.raises(DiskError, match=rf"^cannot write {full_disk}/genotype\.json: No space left on device$"):
        write_text_atomic(full_disk / "genotype.json", '{"normal": []}' * 1000)
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]  # no empty marker, no temp file


def test_data_prep_onto_a_full_disk_fails_in_one_line_and_marks_nothing_done(full_disk: Path) -> None:
    out = full_disk / "prepared"
    configs = Path(__file__).resolve().parents[1] / "configs"
    done = subprocess.run(
        [sys.executable, "-m", "cdarts", "stage", "data-prep", "-c", str(configs / "tiny.yaml"), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=full_disk.parent,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"cdarts: error: cannot write {full_disk}/") and line.endswith(": No space left on device")
    assert not (out / "manifest.json").exists()
    left = sorted(p.name for p in full_disk.iterdir() if not p.name.endswith(".cdarts.lock"))
    assert left == ["filler"]  # no partial directory left either
