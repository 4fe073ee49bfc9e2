"""Experiment tracking: the Tracker protocol, local trackers, and MLflow (runs, model registry,
lineage). This package is the only place that imports mlflow, always lazily.

Runs: a parent run per pipeline run and a nested run per stage, named after the stage. When
Kubeflow Pipelines (2.17+, MLflow plugin) injects ``MLFLOW_RUN_ID``, a stage logs into that run
(and KFP's tracking URI) instead. Logging during training never kills it: it is asynchronous, and
failures are reported once per run. Models are logged by the run that trained them.
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
    register_logged_model,
    rollback,
)
from cdarts.tracking.runs import (
    CDARTS_TRACKING_URI_ENV,
    MlflowTracker,
    check_tracking,
    end_run,
    git_commit,
    lineage_tags,
    redact_uri,
    resolve_tracking_uri,
    stage_run,
    start_parent_run,
    tag_run,
)

__all__ = [
    "CDARTS_TRACKING_URI_ENV",
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
    "register_logged_model",
    "resolve_tracking_uri",
    "rollback",
    "stage_run",
    "start_parent_run",
    "tag_run",
]
