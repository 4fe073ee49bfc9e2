"""The MLflow run a stage logs into (or a no-op tracker when tracking is disabled)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from cdarts.config import ExperimentConfig
from cdarts.errors import CdartsError
from cdarts.tracking import NullTracker, Tracker, lineage_tags, resolve_tracking_uri, stage_run
from cdarts.tracking.upstream import claim_upstream_runs


@contextmanager
def tracked_stage(
    stage: str, experiment: ExperimentConfig, parent_run_id: str = "", kfp_run_id: str = "", *, strict: bool = False
) -> Iterator[Tracker]:
    """Open the stage's run: KFP's injected one, else nested under ``parent_run_id``, else a new
    top-level run. Tags carry the config digest, git commit, image and KFP run. With ``strict``
    a failed logging call fails the stage (register) instead of printing a warning."""
    # Under torchrun only rank 0 tracks: one run per stage, not one per process.
    if not experiment.tracking.enabled or int(os.environ.get("RANK", "0")) != 0:
        yield NullTracker()
        return
    uri = resolve_tracking_uri(experiment.tracking.uri)
    tags = lineage_tags(experiment.digest(), kfp_run_id, stage)
    with stage_run(stage, uri, experiment.tracking.experiment, parent_run_id or None, tags, strict=strict) as tracker:
        yield tracker


def link_upstream_runs(experiment: ExperimentConfig, run_ids: list[str], parent_run_id: str, kfp_run_id: str) -> None:
    """Claim the MLflow runs of the cacheable stages whose artifacts this stage consumes
    (:mod:`cdarts.tracking.upstream`). A failure only costs the link, never the stage: it is
    reported as a warning."""
    if not experiment.tracking.enabled or not any(run_ids) or int(os.environ.get("RANK", "0")) != 0:
        return
    try:
        claim_upstream_runs(resolve_tracking_uri(experiment.tracking.uri), run_ids, parent_run_id, kfp_run_id)
    except CdartsError as error:
        print(f"cdarts: warning: upstream runs not linked to this pipeline run: {error}", file=sys.stderr)
