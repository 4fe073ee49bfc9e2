"""Experiment tracking: the Tracker protocol and its local implementations.

This is the only module that may import mlflow (the MLflow tracker lands with the lineage work);
the library only ever talks to a :class:`Tracker`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol


class Tracker(Protocol):
    """Receives metrics; ``step`` is a global, monotonically increasing step."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...


class NullTracker:
    """Discards everything."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        return None


class JsonlTracker:
    """Appends one JSON object per call to a ``metrics.jsonl`` file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        # JSON has no NaN/inf; write them as strings so a diverged run is still readable.
        clean = {k: (v if math.isfinite(v) else str(v)) for k, v in metrics.items()}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": step, **clean}) + "\n")


class FanOutTracker:
    """Forwards every call to several trackers."""

    def __init__(self, trackers: Sequence[Tracker]) -> None:
        self.trackers = list(trackers)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for tracker in self.trackers:
            tracker.log_metrics(metrics, step)
