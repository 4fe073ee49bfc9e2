"""DataLoader workers are capped by the CPUs a pod may use (its cgroup quota), per process."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdarts.cpu_budget import available_cpus, capped_workers


def _cgroup(tmp_path: Path, cpu_max: str) -> Path:
    (tmp_path / "cpu.max").write_text(cpu_max)
    return tmp_path


def test_the_cgroup_quota_bounds_the_cpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(64)))  # a 64-core node
    assert available_cpus(_cgroup(tmp_path, "400000 100000\n")) == 4  # a limit of 4 CPUs
    assert available_cpus(_cgroup(tmp_path, "150000 100000\n")) == 2  # 1.5 CPUs: two busy at most
    assert available_cpus(_cgroup(tmp_path, "max 100000\n")) == 64  # no limit: the affinity mask
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("800000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert available_cpus(v1) == 8
    assert available_cpus(tmp_path / "missing") == 64


def test_workers_are_a_share_of_the_cpus_per_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(64)))
    cgroup = _cgroup(tmp_path, "1600000 100000")  # 16 CPUs
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert capped_workers(4, cgroup) == 4  # what fits is kept, silently
    assert capsys.readouterr().err == ""
    assert capped_workers(32, cgroup) == 15  # one core stays with the training process
    assert "32 data loader workers capped to 15" in capsys.readouterr().err
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # four GPU processes share the pod's 16 CPUs
    assert capped_workers(8, cgroup) == 3
    assert capped_workers(8, _cgroup(tmp_path, "100000 100000")) == 0  # one CPU: load in-process
