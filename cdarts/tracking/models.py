"""MLflow 3 LoggedModels: the served classifier logged by the run that trained it, metrics linked
to it, and the artifact location a serving system downloads it from."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cdarts.errors import TrackingError
from cdarts.serving import ServingContract
from cdarts.tracking.runs import _client, redact_uri

MODEL_NAME = "model"
CDARTS_PACKAGE = Path(__file__).resolve().parents[1]
SERVED_MODEL_FILE = Path(__file__).resolve().with_name("served_model.py")
SERVING_REQUIREMENTS = ("torch", "torchvision", "numpy")


def _requirements() -> list[str]:
    return [f"{name}=={installed_version(name).split('+')[0]}" for name in SERVING_REQUIREMENTS]


def _signature(contract: Mapping[str, Any]) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    parsed = ServingContract.from_dict(dict(contract))
    inputs = Schema([TensorSpec(np.dtype(np.uint8), parsed.input_shape)])
    outputs = Schema([TensorSpec(np.dtype(np.float32), (-1, len(parsed.classes)))])
    return ModelSignature(inputs=inputs, outputs=outputs)


def log_served_model(
    uri: str,
    run_id: str,
    model_file: Path,
    contract: Mapping[str, Any],
    input_example: npt.NDArray[np.uint8],
    tags: Mapping[str, str],
) -> str:
    """Log ``model_file`` (a retrain ``model.pt``) as a pyfunc LoggedModel of run ``run_id``;
    returns its model id. The signature is the uint8 N x H x W x C batch with a free batch size;
    the serving contract (classes, mean/std, dataset digest) goes into the model's metadata."""
    import mlflow
    import mlflow.pyfunc
    from mlflow.models import Model

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        # Model.log takes the run explicitly: no fluent run is started, so the stage's run (or
        # the one Kubeflow injected) is neither ended nor replaced.
        info = Model.log(
            artifact_path=None,
            name=MODEL_NAME,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            python_model=str(SERVED_MODEL_FILE),
            artifacts={"model": str(model_file)},
            code_paths=[str(CDARTS_PACKAGE)],
            signature=_signature(contract),
            input_example=input_example,
            pip_requirements=_requirements(),
            metadata={"cdarts_serving": dict(contract)},
            tags=dict(tags),
        )
    except Exception as error:
        detail = (str(error).strip().splitlines() or [""])[0].replace(uri, redact_uri(uri))[:200]
        raise TrackingError(
            f"logging the model to {redact_uri(uri)} failed ({type(error).__name__}: {detail})"
        ) from None
    return str(info.model_id)


def artifact_location(uri: str, model_id: str) -> str:
    """Where the model's files live (``mlflow-artifacts:/...`` behind a proxying server, or a
    direct ``s3://``/``file://`` location)."""
    try:
        return str(_client(uri).get_logged_model(model_id).artifact_location)
    except Exception:
        raise TrackingError(f"no logged model {model_id!r} in {redact_uri(uri)}") from None


def version_artifact_uri(uri: str, ref: str, artifacts_destination: str | None) -> str:
    """Where the files of registered version ``ref`` (``NAME@ALIAS``, ``NAME/VERSION``, ``NAME``)
    live. Behind a proxying server that is ``mlflow-artifacts:/<path>``, which is
    ``<artifacts_destination>/<path>`` in the object store."""
    from cdarts.tracking.lineage import model_version
    from cdarts.tracking.registry import version_model_id

    version = model_version(_client(uri), ref)
    model_id = version_model_id(version)
    if model_id is None:
        raise TrackingError(f"version {version.version} of {version.name!r} was not registered from a logged model")
    location = artifact_location(uri, model_id)
    if location.startswith("mlflow-artifacts:"):
        if not artifacts_destination:
            raise TrackingError(
                f"{location} is proxied by the MLflow server; pass --artifacts-destination (the server's "
                "--artifacts-destination) to resolve it"
            )
        path = location.removeprefix("mlflow-artifacts:").lstrip("/")
        return f"{artifacts_destination.rstrip('/')}/{path}"
    return location
