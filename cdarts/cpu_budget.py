"""How many CPUs this process may use, and so how many DataLoader workers make sense.

A pod's CPU limit is a cgroup quota, not a smaller CPU count: ``os.cpu_count()`` still reports
every core of the node, and a loader with a worker per reported core (or a config written for a
bigger machine) runs dozens of processes into a quota of four. The budget is the smallest of the
cgroup v2 ``cpu.max`` quota, the cgroup v1 CFS quota and the CPU affinity mask.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_warned: set[tuple[int, int]] = set()


def _cgroup_quota(root: Path) -> float | None:
    """CPUs allowed by the cgroup quota (v2, then v1); None when unlimited or unknown."""
    try:
        quota, period = (root / "cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def available_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """Whole CPUs this process may keep busy (at least 1)."""
    limits = [len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1]
    quota = _cgroup_quota(cgroup_root)
    if quota is not None:
        limits.append(math.ceil(quota))
    return max(1, min(limits))


def capped_workers(requested: int, cgroup_root: Path = CGROUP_ROOT) -> int:
    """``requested`` loader workers, capped by this process's share of the CPUs: the node's
    budget split over the processes on it (``LOCAL_WORLD_SIZE`` under torchrun), less one core
    for the training process itself. Says so once when it caps."""
    processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    share = max(0, available_cpus(cgroup_root) // processes - 1)
    if requested > share and (requested, share) not in _warned:
        _warned.add((requested, share))
        print(
            f"cdarts: note: {requested} data loader workers capped to {share} "
            f"({available_cpus(cgroup_root)} CPUs for {processes} process(es))",
            file=sys.stderr,
        )
    return min(requested, share)
