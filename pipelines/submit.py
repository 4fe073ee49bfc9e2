"""Submit a compiled pipeline to a Kubeflow Pipelines server with ``kfp.Client``."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any


class SubmitError(Exception):
    """The KFP server could not be reached or refused the run."""


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def submit_run(
    host: str,
    package: Path,
    arguments: dict[str, Any],
    run_name: str,
    experiment: str,
    namespace: str | None = None,
    wait: bool = False,
    timeout_seconds: int = 7 * 24 * 3600,
) -> tuple[str, str]:
    """Create a run of ``package``; returns (run id, run URL in the KFP UI)."""
    import kfp

    # The client prints "details" links meant for notebooks (we print our own) and warns about
    # pre-2.0 servers on every construction.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            client = kfp.Client(host=host, namespace=namespace)
            result = client.create_run_from_pipeline_package(
                str(package),
                arguments=arguments,
                run_name=run_name,
                experiment_name=experiment,
                namespace=namespace,
            )
            if wait:
                client.wait_for_run_completion(result.run_id, timeout=timeout_seconds)
        except Exception as error:  # the client raises urllib3, kfp_server_api and value errors alike
            raise SubmitError(f"submitting to {host} failed: {_one_line(error)}") from None
    return str(result.run_id), f"{host.rstrip('/')}/#/runs/details/{result.run_id}"
