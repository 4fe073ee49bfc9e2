"""Submit a compiled pipeline to a Kubeflow Pipelines server with ``kfp.Client``."""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdarts.errors import CdartsError


class SubmitError(CdartsError):
    """The KFP server could not be reached or refused the run."""


@dataclass(frozen=True)
class SubmittedRun:
    run_id: str
    url: str


@dataclass(frozen=True)
class PipelineVersionRef:
    """A pipeline version stored on the KFP server, which runs can reference."""

    pipeline_id: str
    version_id: str
    name: str


# What a run is created from: a compiled package sent with the run, or a stored version.
RunSource = Path | PipelineVersionRef


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


@contextlib.contextmanager
def client_errors(host: str, what: str) -> Iterator[None]:
    # The client prints "details" links meant for notebooks (we print our own) and warns about
    # pre-2.0 servers on every construction.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            yield
        except SubmitError:
            raise
        except Exception as error:  # the client raises urllib3, kfp_server_api and value errors alike
            raise SubmitError(f"{what} {host} failed: {_one_line(error)}") from None


SA_TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"


def _service_account_credentials() -> Any:
    """Credentials from the projected service-account token named by ``KF_PIPELINES_SA_TOKEN_PATH``
    (audience ``pipelines.kubeflow.org``), or None. kfp.Client only looks for that token when it
    is given no host, so with an explicit host we hand it over ourselves."""
    path = os.environ.get(SA_TOKEN_PATH_ENV)
    if not path:
        return None
    if not Path(path).is_file():
        raise SubmitError(f"{SA_TOKEN_PATH_ENV} names {path}, which is not a readable token file")
    from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

    return ServiceAccountTokenVolumeCredentials(path)


def connect(host: str, namespace: str | None = None) -> Any:
    """A ``kfp.Client`` of ``host``, with the service-account token when one is named."""
    import kfp

    credentials = _service_account_credentials()
    with client_errors(host, "connecting to"):
        return kfp.Client(host=host, namespace=namespace or "kubeflow", credentials=credentials)


class KfpRunService:
    """Runs of one experiment on a KFP server, authenticated with the projected
    service-account token when ``KF_PIPELINES_SA_TOKEN_PATH`` is set (in-cluster triggers)."""

    def __init__(self, host: str, experiment: str, namespace: str | None = None) -> None:
        self.host = host.rstrip("/")
        self.experiment = experiment
        self.namespace = namespace
        self.client = connect(host, namespace)

    def _url(self, run_id: str) -> str:
        return f"{self.host}/#/runs/details/{run_id}"

    def _experiment_id(self) -> str | None:
        by_name = json.dumps(
            {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": self.experiment}]}
        )
        found = self.client.list_experiments(filter=by_name, namespace=self.namespace, page_size=2)
        experiments = found.experiments or []
        return str(experiments[0].experiment_id) if experiments else None

    def find_run(self, run_name: str) -> SubmittedRun | None:
        """The oldest run of the experiment named ``run_name``, if any."""
        with client_errors(self.host, "looking up runs on"):
            experiment_id = self._experiment_id()
            if experiment_id is None:
                return None
            by_name = json.dumps(
                {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": run_name}]}
            )
            found = self.client.list_runs(
                experiment_id=experiment_id, filter=by_name, sort_by="created_at", page_size=1
            )
        runs = found.runs or []
        return SubmittedRun(str(runs[0].run_id), self._url(str(runs[0].run_id))) if runs else None

    def create_run(self, run_name: str, source: RunSource, arguments: dict[str, Any]) -> SubmittedRun:
        """Create a run of a stored pipeline version, or of a package sent with the run (inline)."""
        with client_errors(self.host, "submitting to"):
            if isinstance(source, PipelineVersionRef):
                # Finds or creates the experiment by name, as create_run_from_pipeline_package does.
                experiment = self.client.create_experiment(self.experiment, namespace=self.namespace)
                result = self.client.run_pipeline(
                    experiment_id=experiment.experiment_id,
                    job_name=run_name,
                    pipeline_id=source.pipeline_id,
                    version_id=source.version_id,
                    params=arguments,
                )
            else:
                result = self.client.create_run_from_pipeline_package(
                    str(source),
                    arguments=arguments,
                    run_name=run_name,
                    experiment_name=self.experiment,
                    namespace=self.namespace,
                )
        return SubmittedRun(str(result.run_id), self._url(str(result.run_id)))

    def wait(self, run_id: str, timeout_seconds: int) -> str:
        """Block until the run ends; its final state (``SUCCEEDED``, ``FAILED``, ``SKIPPED``, ...)."""
        with client_errors(self.host, f"waiting for run {run_id} on"):
            finished = self.client.wait_for_run_completion(run_id, timeout=timeout_seconds)
        return str(finished.state).upper()
