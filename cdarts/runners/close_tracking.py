"""Runner of the pipeline's exit task: end the MLflow parent run with the pipeline's outcome.

A parent run opened by ``cdarts submit`` or GitOps would otherwise stay RUNNING forever (no
process waits for the KFP run). KFP's MLflow plugin ends its own runs, so with no parent given
there is nothing to do.
"""

from __future__ import annotations

from cdarts.config import ExperimentConfig
from cdarts.tracking import end_run, resolve_tracking_uri


def run_close_tracking(config: ExperimentConfig, parent_run_id: str, pipeline_state: str) -> str:
    """End ``parent_run_id`` FINISHED if ``pipeline_state`` is ``SUCCEEDED``, else FAILED; returns
    what was done (one line for the task log)."""
    if not config.tracking.enabled or not parent_run_id:
        return "no MLflow parent run to close"
    succeeded = pipeline_state.upper() == "SUCCEEDED"
    end_run(resolve_tracking_uri(config.tracking.uri), parent_run_id, succeeded)
    return f"MLflow parent run {parent_run_id} ended {'FINISHED' if succeeded else 'FAILED'} ({pipeline_state})"
