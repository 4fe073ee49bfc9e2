"""k8s/serving: the KServe InferenceService and our MLflow serving runtime, checked against the
KServe CRD schemas and run as written (the runtime's own command line serving a real model)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.network_policy_eval import Pod, ingress_admits
from tests.test_manifests import K8S, _load, _validate_custom_resource, render


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http(url: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _venv_environment(**extra: str) -> dict[str, str]:
    """This environment with the virtual environment's scripts (mlflow, uvicorn) first on PATH."""
    binaries = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{binaries}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


@contextlib.contextmanager
def _serving(command: list[str], environment: dict[str, str], ready_url: str, log: Path) -> Iterator[None]:
    """Run a server in its own process group until ``ready_url`` answers 200; stop the group after."""
    executable = str(Path(sys.executable).parent / command[0])
    with log.open("wb") as output:
        server = subprocess.Popen(
            [executable, *command[1:]], env=environment, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log.read_text(errors="replace")[-2000:]
            with contextlib.suppress(OSError):
                if _http(ready_url)[0] == 200:
                    break
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-2000:]
            time.sleep(0.5)
        yield
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _serving_manifests() -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    documents = render("serving")
    (isvc,) = [doc for doc in documents if doc["kind"] == "InferenceService"]
    (runtime,) = [doc for doc in documents if doc["kind"] == "ServingRuntime"]
    return documents, isvc, runtime


def test_the_inference_service_serves_the_champion_with_our_mlflow_runtime() -> None:
    documents, isvc, runtime = _serving_manifests()
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    assert model["modelFormat"] == {"name": "mlflow", "version": "3"}
    assert model["runtime"] == runtime["metadata"]["name"]
    # The runtime serves exactly this format, and only when named (never picked automatically).
    assert runtime["spec"]["supportedModelFormats"] == [{**model["modelFormat"], "autoSelect": False}]
    # A placeholder in the shape `cdarts registry serving-uri NAME@champion` prints.
    assert re.fullmatch(r"s3://[a-z0-9.-]+/(.+/)?[^/]+/models/[^/]+/artifacts", model["storageUri"])
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container" and container["image"] == "ghcr.io/cdarts-pipelines/cdarts-cpu:0.1.0"
    command = [*container["command"], *container["args"]]
    assert " ".join(command) == "mlflow models serve -m /mnt/models --env-manager local --host 0.0.0.0 --port 8080"
    (port,) = [p["containerPort"] for p in container["ports"]]
    assert port == 8080
    assert container["readinessProbe"]["httpGet"] == {"path": "/ping", "port": port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": port}
    # The storage initializer finds the S3 keys through the ServiceAccount; the Secret is the
    # operator's (a template with empty values), annotated with the endpoint KServe needs.
    (account,) = [doc for doc in documents if doc["kind"] == "ServiceAccount"]
    assert predictor["serviceAccountName"] == account["metadata"]["name"]
    assert account["automountServiceAccountToken"] is False and predictor["automountServiceAccountToken"] is False
    (secret_ref,) = account["secrets"]
    (secret,) = _load(K8S / "secret-templates" / f"{secret_ref['name']}.yaml")
    assert secret["metadata"]["name"] == secret_ref["name"]
    assert set(secret["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert "serving.kserve.io/s3-endpoint" in secret["metadata"]["annotations"]
    # The namespace denies ingress (k8s/base); the predictor admits inference clients on its port.
    policies = [doc for doc in [*render("base"), *documents] if doc["kind"] == "NetworkPolicy"]
    labels = {
        **predictor["labels"],
        "serving.kserve.io/inferenceservice": isvc["metadata"]["name"],
        "component": "predictor",
    }
    server = Pod(isvc["metadata"]["namespace"], labels)
    assert ingress_admits(policies, server, Pod("apps", {"cdarts.io/inference-client": "true"}), port)
    assert not ingress_admits(policies, server, Pod("apps", {}), port)
    assert not ingress_admits(policies, server, Pod("cdarts", {"cdarts.io/mlflow-client": "true"}), port)


def test_the_serving_crd_check_catches_a_misspelt_field() -> None:
    _, isvc, runtime = _serving_manifests()
    _validate_custom_resource(isvc)
    _validate_custom_resource(runtime)
    model = isvc["spec"]["predictor"]["model"]
    model["storageURI"] = model.pop("storageUri")
    with pytest.raises(jsonschema.ValidationError, match="storageURI"):
        _validate_custom_resource(isvc)
    _, isvc, runtime = _serving_manifests()
    isvc["spec"]["predictor"]["model"]["modelFormat"] = {"nam": "mlflow"}
    with pytest.raises(jsonschema.ValidationError):
        _validate_custom_resource(isvc)
    runtime["spec"]["supportedModelFormat"] = runtime["spec"].pop("supportedModelFormats")
    with pytest.raises(jsonschema.ValidationError, match="supportedModelFormat"):
        _validate_custom_resource(runtime)


TINY_MODEL = '''
import numpy as np
import mlflow
from mlflow.pyfunc import PythonModel


class Mean(PythonModel):
    """Per image: the mean pixel and its complement, as two 'class probabilities'."""

    def predict(self, context, model_input, params=None):
        x = np.asarray(model_input)
        assert x.dtype == np.uint8, x.dtype
        mean = x.reshape(len(x), -1).mean(axis=1) / 255.0
        return np.stack([mean, 1.0 - mean], axis=1).astype(np.float32)


mlflow.models.set_model(Mean())
'''


@pytest.mark.slow
def test_the_runtime_command_serves_an_mlflow_pyfunc_model(tmp_path: Path) -> None:
    """The ServingRuntime's own command line (host and port swapped for loopback ones, the model
    directory for a local one) serves a models-from-code pyfunc with a uint8 N x H x W x C
    signature, answers the probes' paths and takes the {"inputs": ...} body."""
    import numpy as np

    code = tmp_path / "tiny_model.py"
    code.write_text(TINY_MODEL)
    model_dir = tmp_path / "models"
    with warnings.catch_warnings():  # MLflow's advice on type hints and input examples: beside the point
        warnings.simplefilter("ignore", UserWarning)
        import mlflow.pyfunc
        from mlflow.models import ModelSignature
        from mlflow.types.schema import Schema, TensorSpec

        signature = ModelSignature(
            inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, 2, 2, 1))]),
            outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 2))]),
        )
        mlflow.pyfunc.save_model(
            str(model_dir), python_model=str(code), signature=signature, pip_requirements=["numpy"]
        )

    _, _, runtime = _serving_manifests()
    (container,) = runtime["spec"]["containers"]
    port = _free_port()
    swap = {"/mnt/models": str(model_dir), "0.0.0.0": "127.0.0.1", "8080": str(port)}
    command = [swap.get(part, part) for part in [*container["command"], *container["args"]]]
    environment = _venv_environment(**{e["name"]: e["value"] for e in container["env"]})
    environment.update(HOME=str(tmp_path), TMPDIR=str(tmp_path))
    base = f"http://127.0.0.1:{port}"
    with _serving(command, environment, base + container["readinessProbe"]["httpGet"]["path"], tmp_path / "log"):
        assert _http(base + container["livenessProbe"]["httpGet"]["path"])[0] == 200
        images = [[[[0], [255]], [[255], [0]]], [[[255], [255]], [[255], [255]]]]  # N=2, 2 x 2, C=1
        status, body = _http(base + "/invocations", json.dumps({"inputs": images}).encode())
        assert status == 200, body
        assert json.loads(body)["predictions"] == [[0.5, 0.5], [1.0, 0.0]]
        status, body = _http(base + "/invocations", json.dumps({"inputs": [[1, 2, 3]]}).encode())
        assert status == 400 and b"shape" in body.lower()
