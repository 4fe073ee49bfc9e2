"""The MLflow parent run of a pipeline run submitted to a cluster (``cdarts submit``, GitOps).

It is opened just before the KFP run is created, passed to every task as
``mlflow_parent_run_id`` (so each stage's run nests under it), and tagged with the KFP run id
once KFP has assigned one. A submission that fails marks it FAILED.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from cdarts.tracking import CDARTS_TRACKING_URI_ENV, end_run, lineage_tags, start_parent_run, tag_run
from pipelines.submit import SubmittedRun


def submitter_tracking_uri(configured: str | None) -> str | None:
    """The MLflow server a submitter opens the parent run on: the config's, else
    ``$CDARTS_MLFLOW_TRACKING_URI``, else ``$MLFLOW_TRACKING_URI``; never an embedded store
    (the cluster's tasks could not reach a file on this machine)."""
    uri = configured or os.environ.get(CDARTS_TRACKING_URI_ENV) or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri or uri.startswith(("sqlite:", "file:")) or "://" not in uri:
        return None
    return uri


class ParentRun:
    """Opens the parent run on demand; see the module docstring."""

    def __init__(self, uri: str, experiment: str, run_name: str, config_digest: str, tags: Mapping[str, str]) -> None:
        self.uri, self.experiment, self.run_name = uri, experiment, run_name
        self.tags = {**lineage_tags(config_digest), **tags}
        self.run_id: str | None = None

    def open(self) -> dict[str, Any]:
        """Create the run; the pipeline arguments that nest the stages under it."""
        self.run_id = start_parent_run(self.uri, self.experiment, self.run_name, self.tags)
        return {"mlflow_parent_run_id": self.run_id}

    def created(self, run: SubmittedRun) -> None:
        if self.run_id is not None:
            tag_run(self.uri, self.run_id, {"kfp.run_id": run.run_id, "kfp.run_url": run.url})

    def finished(self, succeeded: bool) -> None:
        if self.run_id is not None:
            end_run(self.uri, self.run_id, succeeded)
