"""The Tracker protocol runners log through, and the trackers that need no service."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class LoggedModelRef:
    """An MLflow 3 LoggedModel and the run that logged it."""

    model_id: str
    run_id: str


class Tracker(Protocol):
    """What runners log through. ``step`` is a global, monotonically increasing step."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...
    def resume_after(self, step: int) -> None:
        """The run resumes from a checkpoint at ``step``: the steps past it will be logged again
        (a killed run may have logged some of them already), so none may appear twice."""
        ...

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def set_tags(self, tags: Mapping[str, str]) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def log_dataset(self, name: str, digest: str, source: str, context: str) -> None: ...
    def log_served_model(
        self, model_file: Path, contract: Mapping[str, Any], input_example: Any, tags: Mapping[str, str]
    ) -> LoggedModelRef | None:
        """Log the served classifier of ``model_file`` as this run's model (None when nothing is
        tracked)."""
        ...

    def log_model_metrics(
        self, model_id: str, metrics: Mapping[str, float], dataset_name: str, dataset_digest: str
    ) -> None:
        """Metrics of logged model ``model_id`` measured on a dataset (linked to both)."""
        ...


class NullTracker:
    """Discards everything."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        return None

    def resume_after(self, step: int) -> None:
        return None

    def log_params(self, params: Mapping[str, Any]) -> None:
        return None

    def set_tags(self, tags: Mapping[str, str]) -> None:
        return None

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        return None

    def log_dataset(self, name: str, digest: str, source: str, context: str) -> None:
        return None

    def log_served_model(
        self, model_file: Path, contract: Mapping[str, Any], input_example: Any, tags: Mapping[str, str]
    ) -> LoggedModelRef | None:
        return None

    def log_model_metrics(
        self, model_id: str, metrics: Mapping[str, float], dataset_name: str, dataset_digest: str
    ) -> None:
        return None


class JsonlTracker(NullTracker):
    """Appends one JSON object per ``log_metrics`` call to a ``metrics.jsonl`` file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        import json

        # JSON has no NaN/inf; write them as strings so a diverged run is still readable.
        clean = {k: (v if math.isfinite(v) else str(v)) for k, v in metrics.items()}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": step, **clean}) + "\n")

    def resume_after(self, step: int) -> None:
        self.truncate_after(step)

    def truncate_after(self, step: int) -> None:
        """Drop the lines logged beyond ``step`` (a resumed run logs them again: no duplicates)."""
        import json

        if not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if int(json.loads(line)["step"]) > step:
                    continue
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line of a killed run
            kept.append(line + "\n")
        from cdarts.atomic_files import write_text_atomic

        write_text_atomic(self.path, "".join(kept))


class FanOutTracker:
    """Forwards every call to several trackers."""

    def __init__(self, trackers: Sequence[Tracker]) -> None:
        self.trackers = list(trackers)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for tracker in self.trackers:
            tracker.log_metrics(metrics, step)

    def resume_after(self, step: int) -> None:
        for tracker in self.trackers:
            tracker.resume_after(step)

    def log_params(self, params: Mapping[str, Any]) -> None:
        for tracker in self.trackers:
            tracker.log_params(params)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for tracker in self.trackers:
            tracker.set_tags(tags)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        for tracker in self.trackers:
            tracker.log_artifact(path, artifact_path)

    def log_dataset(self, name: str, digest: str, source: str, context: str) -> None:
        for tracker in self.trackers:
            tracker.log_dataset(name, digest, source, context)

    def log_served_model(
        self, model_file: Path, contract: Mapping[str, Any], input_example: Any, tags: Mapping[str, str]
    ) -> LoggedModelRef | None:
        """The model of the first tracker that logs models (at most one does)."""
        for tracker in self.trackers:
            logged = tracker.log_served_model(model_file, contract, input_example, tags)
            if logged is not None:
                return logged
        return None

    def log_model_metrics(
        self, model_id: str, metrics: Mapping[str, float], dataset_name: str, dataset_digest: str
    ) -> None:
        for tracker in self.trackers:
            tracker.log_model_metrics(model_id, metrics, dataset_name, dataset_digest)
