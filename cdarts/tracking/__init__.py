"""Experiment tracking: the Tracker protocol, local trackers, and MLflow (runs, model registry,
lineage). This package is the only place that imports mlflow, always lazily.

Runs: a parent run per pipeline run and a nested run per stage, named after the stage. When
Kubeflow Pipelines (2.17+, MLflow plugin) injects ``MLFLOW_RUN_ID``, a stage logs into that run
instead. Logging during training never kills it: transient failures are retried, then reported.
"""

from __future__ import annotations

from cdarts.tracking.lineage import lineage
from cdarts.tracking.protocol import FanOutTracker, JsonlTracker, NullTracker, Tracker
from cdarts.tracking.registry import (
    CHALLENGER,
    CHAMPION,
    model_aliases,
    promote,
    promote_if_better,
    register_model,
    rollback,
)
from cdarts.tracking.runs import (
    MlflowTracker,
    check_tracking,
    end_run,
    git_commit,
    lineage_tags,
    redact_uri,
    resolve_tracking_uri,
    stage_run,
    start_parent_run,
)

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "FanOutTracker",
    "JsonlTracker",
    "MlflowTracker",
    "NullTracker",
    "Tracker",
    "check_tracking",
    "end_run",
    "git_commit",
    "lineage",
    "lineage_tags",
    "model_aliases",
    "promote",
    "promote_if_better",
    "redact_uri",
    "register_model",
    "resolve_tracking_uri",
    "rollback",
    "stage_run",
    "start_parent_run",
]
