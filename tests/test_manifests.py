"""Kubernetes manifests: every kustomization renders with `kubectl kustomize` and validates
strictly (Kubernetes 1.30 and the newest schema kubernetes-validate has); custom resources
validate against their published CRD schemas; workloads are locked down; NetworkPolicies admit
exactly the declared clients; no credential values."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from cdarts.cli.main import app
from tests.conftest import REPO_ROOT
from tests.fake_kfp_server import start_fake_kfp

K8S = REPO_ROOT / "k8s"
KUSTOMIZATIONS = [
    "overlays/kfp-object-store",
    "overlays/standalone-minio",
    "overlays/production",
    "gitops/on-change",
    "gitops/scheduled",
    "serving",
]
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
SCHEMAS = K8S / "schemas"
CRD_SCHEMAS = {
    ("argoproj.io/v1alpha1", "Application"): SCHEMAS / "application.argoproj.io-v1alpha1.json",
    ("trainer.kubeflow.org/v1alpha1", "TrainJob"): SCHEMAS / "trainjob.trainer.kubeflow.org-v1alpha1.json",
    ("serving.kserve.io/v1beta1", "InferenceService"): SCHEMAS / "inferenceservice.serving.kserve.io-v1beta1.json",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): SCHEMAS / "servingruntime.serving.kserve.io-v1alpha1.json",
}
STANDALONE_MANIFESTS = [K8S / "argocd" / "application.yaml", K8S / "trainer" / "search-trainjob.yaml"]
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "CronJob", "InferenceService"}
LONG_RUNNING_KINDS = {"Deployment", "StatefulSet", "InferenceService"}


@cache
def render(kustomization: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "kubectl (with its built-in kustomize) is needed to render k8s/"
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / kustomization)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _name(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata'].get('name') or doc['metadata'].get('generateName')}"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_kustomization_renders_and_validates_strictly(kustomization: str, version: str) -> None:
    documents = render(kustomization)
    assert documents
    for doc in documents:
        if (doc["apiVersion"], doc["kind"]) in CRD_SCHEMAS:
            try:
                _validate_custom_resource(doc)
            except jsonschema.ValidationError as error:
                pytest.fail(f"{kustomization}: {_name(doc)} does not match its CRD schema: {error.message}")
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{kustomization}: {_name(doc)} is invalid for Kubernetes {version}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{kustomization}: no schema for {doc['apiVersion']} {doc['kind']}; add its CRD to CRD_SCHEMAS")


def _strict(schema: Any) -> Any:
    """The CRD schema as the API server applies it, plus: unknown fields are errors (the server
    would silently prune them, which hides typos) unless the schema preserves them."""
    if isinstance(schema, dict):
        result = {key: _strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            result["additionalProperties"] = False
        return result
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


def _validate_custom_resource(doc: dict[str, Any]) -> None:
    key = (doc["apiVersion"], doc["kind"])
    data = json.loads(CRD_SCHEMAS[key].read_text())
    schema = _strict(data["schema"])
    schema["properties"]["metadata"] = {"type": "object"}  # checked by the API server, not the CRD
    body = copy.deepcopy(doc)
    jsonschema.Draft4Validator(schema).validate(body)


@pytest.mark.parametrize("path", STANDALONE_MANIFESTS, ids=lambda p: p.name)
def test_custom_resources_match_their_published_crd_schemas(path: Path) -> None:
    for doc in _load(path):
        _validate_custom_resource(doc)


def test_the_crd_check_catches_a_misspelt_field() -> None:
    (trainjob,) = _load(K8S / "trainer" / "search-trainjob.yaml")
    trainjob["spec"]["trainer"]["numProcsPerNode"] = trainjob["spec"]["trainer"].pop("numProcPerNode")
    with pytest.raises(jsonschema.ValidationError, match="numProcsPerNode"):
        _validate_custom_resource(trainjob)
    (application,) = _load(K8S / "argocd" / "application.yaml")
    del application["spec"]["destination"]["server"]
    application["spec"]["project"] = 7
    with pytest.raises(jsonschema.ValidationError):
        _validate_custom_resource(application)


# Fields of an InferenceService's predictor.model that describe the model, not the container.
MODEL_FIELDS = {"modelFormat", "runtime", "runtimeVersion", "protocolVersion", "storageUri", "storage"}
# Fields of an InferenceService's predictor that KServe copies into the predictor's PodSpec.
POD_FIELDS = {"securityContext", "automountServiceAccountToken", "serviceAccountName", "nodeSelector", "tolerations"}


def _overlay(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Maps merged key by key, everything else replaced: how KServe's merge of a runtime container
    with predictor.model treats the fields checked here (securityContext, resources, probes)."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _overlay(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _predictor_pod(isvc: dict[str, Any], documents: list[dict[str, Any]]) -> dict[str, Any]:
    """The predictor pod KServe builds: the named ServingRuntime's kserve-container overlaid with
    predictor.model's container fields; pod-level fields from the predictor."""
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    (runtime,) = [
        doc for doc in documents if doc["kind"] == "ServingRuntime" and doc["metadata"]["name"] == model["runtime"]
    ]
    (base,) = [c for c in runtime["spec"]["containers"] if c["name"] == "kserve-container"]
    container = _overlay(base, {key: value for key, value in model.items() if key not in MODEL_FIELDS})
    pod = {key: value for key, value in predictor.items() if key in POD_FIELDS}
    pod["containers"] = [container]
    pod["volumes"] = [*runtime["spec"].get("volumes", []), *predictor.get("volumes", [])]
    return pod


def _pod_specs(doc: dict[str, Any], documents: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    if doc["kind"] == "InferenceService":
        assert documents is not None, "an InferenceService's pod needs its ServingRuntime"
        return [_predictor_pod(doc, documents)]
    return [spec["template"]["spec"]]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_workloads_run_locked_down_with_resources(kustomization: str) -> None:
    documents = render(kustomization)
    workloads = [doc for doc in documents if doc["kind"] in WORKLOAD_KINDS]
    assert workloads
    for doc in workloads:
        for pod in _pod_specs(doc, documents):
            where = f"{kustomization}: {_name(doc)}"
            assert pod["securityContext"]["runAsNonRoot"] is True, where
            assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
            assert pod.get("automountServiceAccountToken") is False, where
            for container in pod["containers"]:
                context = container["securityContext"]
                assert context["allowPrivilegeEscalation"] is False, where
                assert context["capabilities"]["drop"] == ["ALL"], where
                assert context["readOnlyRootFilesystem"] is True, where
                assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
                assert {"cpu", "memory"} <= set(container["resources"]["limits"]), where
                if doc["kind"] in LONG_RUNNING_KINDS:
                    assert "readinessProbe" in container and "livenessProbe" in container, where


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)


def _selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions); {} selects everything."""
    selector = selector or {}
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if (
            (operator == "In" and not (present and labels[key] in values))
            or (operator == "NotIn" and present and labels[key] in values)
            or (operator == "Exists" and not present)
            or (operator == "DoesNotExist" and present)
        ):
            return False
    return True


def _ingress_admits(policies: list[dict[str, Any]], target: Pod, source: Pod, port: int) -> bool:
    """NetworkPolicy ingress semantics for TCP to a numbered port: a pod no ingress policy selects
    admits everything; a selected pod admits a connection that some rule of some selecting policy
    admits. A peer without namespaceSelector means the policy's own namespace; namespaces are
    matched on the kubernetes.io/metadata.name label Kubernetes sets on every namespace."""
    selecting = [
        policy
        for policy in policies
        if policy["metadata"]["namespace"] == target.namespace
        and "Ingress" in policy["spec"].get("policyTypes", ["Ingress"])
        and _selects(policy["spec"]["podSelector"], target.labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            ports = rule.get("ports", [])
            if ports and not any(p.get("port") == port and p.get("protocol", "TCP") == "TCP" for p in ports):
                continue
            if not rule.get("from"):
                return True
            for peer in rule["from"]:
                if "ipBlock" in peer:
                    continue
                if "namespaceSelector" in peer:
                    namespace_ok = _selects(
                        peer["namespaceSelector"], {"kubernetes.io/metadata.name": source.namespace}
                    )
                else:
                    namespace_ok = source.namespace == policy["metadata"]["namespace"]
                if namespace_ok and _selects(peer.get("podSelector"), source.labels):
                    return True
    return False


def test_network_policies_admit_only_pipeline_tasks_and_declared_clients() -> None:
    documents = render("overlays/standalone-minio")
    policies_rendered = [doc for doc in documents if doc["kind"] == "NetworkPolicy"]
    policies = {doc["metadata"]["name"]: doc["spec"] for doc in policies_rendered}
    assert policies["default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    for name, target, client_label in [
        ("cdarts-mlflow-ingress", "cdarts-mlflow", "cdarts.io/mlflow-client"),
        ("cdarts-minio-ingress", "cdarts-minio", "cdarts.io/object-store-client"),
    ]:
        policy = policies[name]
        assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": target}}
        (rule,) = policy["ingress"]
        assert rule["from"] == [
            {"namespaceSelector": {}, "podSelector": {"matchLabels": {"cdarts.io/pipeline-task": "true"}}},
            {"podSelector": {"matchLabels": {client_label: "true"}}},
        ]
    # The pods that must reach the object store carry the client label.
    labelled = {
        _name(doc)
        for doc in documents
        if doc["kind"] in WORKLOAD_KINDS
        and doc["spec"]["template"]["metadata"]["labels"].get("cdarts.io/object-store-client") == "true"
    }
    assert {"Deployment/cdarts-mlflow", "Job/cdarts-minio-bucket-init"} <= labelled
    (trigger,) = [doc for doc in render("gitops/on-change") if doc["kind"] == "Job"]
    assert trigger["spec"]["template"]["metadata"]["labels"]["cdarts.io/object-store-client"] == "true"
    # The trigger (Job and CronJob) opens an MLflow parent run per submission: MLflow admits it.
    (mlflow,) = [doc for doc in documents if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "cdarts-mlflow"]
    server = Pod("cdarts", mlflow["spec"]["template"]["metadata"]["labels"])
    triggers = [doc for doc in render("gitops/on-change") if doc["kind"] in ("Job", "CronJob")]
    assert len(triggers) == 2
    for doc in triggers:
        template = (
            doc["spec"]["jobTemplate"]["spec"]["template"] if doc["kind"] == "CronJob" else doc["spec"]["template"]
        )
        assert _ingress_admits(policies_rendered, server, Pod("cdarts", template["metadata"]["labels"]), 5000)


def test_kfp_components_of_the_mlflow_plugin_reach_mlflow_and_other_pods_do_not() -> None:
    """KFP 2.17's MLflow plugin calls MLflow from the API server (run start and end), the driver
    pods (a nested run per task) and the launcher in task pods; labels as KFP's manifests and
    Argo compiler set them (docs/cluster-mlflow.md)."""
    documents = render("base")
    policies = [doc for doc in documents if doc["kind"] == "NetworkPolicy"]
    (mlflow,) = [doc for doc in documents if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "cdarts-mlflow"]
    server = Pod(mlflow["metadata"]["namespace"], mlflow["spec"]["template"]["metadata"]["labels"])
    (container,) = mlflow["spec"]["template"]["spec"]["containers"]
    (port,) = [p["containerPort"] for p in container["ports"]]
    apiserver = Pod("kubeflow", {"app": "ml-pipeline", "application-crd-id": "kubeflow-pipelines"})
    driver = Pod(
        "kubeflow",
        {
            "pipelines.kubeflow.org/v2_component": "true",
            "pipeline/runid": "0b6c6d0e-4f1e-4bb2-9d55-2f3c1a7e9f10",
            "workflows.argoproj.io/workflow": "cdarts-search-7xk2p",
        },
    )
    our_task_elsewhere = Pod(
        "team-vision", {"cdarts.io/pipeline-task": "true", "pipelines.kubeflow.org/v2_component": "true"}
    )
    declared_client = Pod("cdarts", {"cdarts.io/mlflow-client": "true"})
    for source in (apiserver, driver, our_task_elsewhere, declared_client):
        assert _ingress_admits(policies, server, source, port), source
    for source in (
        Pod("kubeflow", {"app": "ml-pipeline-ui", "application-crd-id": "kubeflow-pipelines"}),
        Pod("kubeflow", {}),
        Pod("default", {"app": "ml-pipeline"}),
        Pod("team-vision", {"pipelines.kubeflow.org/v2_component": "true"}),
        Pod("cdarts", {"app.kubernetes.io/name": "cdarts-retrain-trigger"}),
    ):
        assert not _ingress_admits(policies, server, source, port), source
    assert not _ingress_admits(policies, server, apiserver, 8080)


def test_the_overlays_choose_their_object_store_and_backend() -> None:
    def settings(kustomization: str, namespace: str) -> dict[str, str]:
        (config_map,) = [
            doc
            for doc in render(kustomization)
            if doc["kind"] == "ConfigMap" and doc["metadata"]["namespace"] == namespace
        ]
        return dict(config_map["data"])

    assert settings("overlays/kfp-object-store", "kubeflow")["CDARTS_S3_ENDPOINT"].startswith(
        "http://seaweedfs.kubeflow"
    )
    kfp_store = settings("overlays/kfp-object-store", "cdarts")
    assert kfp_store["MLFLOW_ARTIFACTS_DESTINATION"].startswith("s3://mlpipeline/")
    assert (kfp_store["CDARTS_TASK_S3_SECRET"], kfp_store["CDARTS_TASK_S3_SECRET_KEYS"]) == (
        "mlpipeline-minio-artifact",
        "accesskey,secretkey",
    )
    assert "cdarts-minio" in settings("overlays/standalone-minio", "cdarts")["CDARTS_S3_ENDPOINT"]
    kinds = {_name(doc) for doc in render("overlays/standalone-minio")}
    assert {"StatefulSet/cdarts-minio", "Job/cdarts-minio-bucket-init"} <= kinds
    production = render("overlays/production")
    assert "PersistentVolumeClaim/cdarts-mlflow-db" not in {_name(doc) for doc in production}
    (mlflow,) = [doc for doc in production if doc["kind"] == "Deployment"]
    assert mlflow["spec"]["replicas"] == 2
    (container,) = mlflow["spec"]["template"]["spec"]["containers"]
    backend = {env["name"]: env for env in container["env"]}["MLFLOW_BACKEND_STORE_URI"]
    assert backend == {
        "name": "MLFLOW_BACKEND_STORE_URI",
        "valueFrom": {"secretKeyRef": {"name": "cdarts-mlflow-db", "key": "MLFLOW_BACKEND_STORE_URI"}},
    }
    assert "PodDisruptionBudget/cdarts-mlflow" in {_name(doc) for doc in production}


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command and args."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), text)


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


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["Job", "CronJob"])
def test_the_rendered_trigger_runs_as_written_and_submits_once(kind: str, tmp_path: Path, mlflow_server: str) -> None:
    """Run the trigger's own command line from the rendered manifest, with its mounted request
    files and its settings, against an in-memory KFP API and a real MLflow server (the in-cluster
    addresses do not resolve here); then once more, as a re-sync would."""
    documents = render("gitops/scheduled")
    (workload,) = [doc for doc in documents if doc["kind"] == kind]
    (pod,) = _pod_specs(workload)
    (container,) = pod["containers"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert volumes["kfp-token"]["projected"]["sources"][0]["serviceAccountToken"]["audience"] == (
        "pipelines.kubeflow.org"
    )
    # The requests directory is the mounted ConfigMap generated from configs/retrain.
    requests_mount = container["command"][-1]
    config_map_name = volumes[mounts[requests_mount]]["configMap"]["name"]
    (requests,) = [
        doc for doc in documents if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == config_map_name
    ]
    requests_dir = tmp_path / "requests"
    requests_dir.mkdir()
    for name, text in requests["data"].items():
        (requests_dir / name).write_text(text)
        assert text.encode() == (REPO_ROOT / "configs" / "retrain" / name).read_bytes()
    settings = next(
        doc
        for doc in render("overlays/standalone-minio")
        if doc["kind"] == "ConfigMap" and doc["metadata"]["namespace"] == "cdarts"
    )["data"]
    (env_from,) = container["envFrom"]
    assert env_from["configMapRef"]["name"] == "cdarts-settings"
    fake = start_fake_kfp()
    assert settings["CDARTS_MLFLOW_TRACKING_URI"].startswith("http://cdarts-mlflow.cdarts.svc")
    environment = {
        **settings,
        "KF_PIPELINES_ENDPOINT": fake.url,
        "CDARTS_MLFLOW_TRACKING_URI": mlflow_server,
        "CDARTS_IDEMPOTENCY_LEDGER": str(tmp_path / "ledger"),
    }
    command = [_expand(part, environment) for part in [*container["command"], *container["args"]]]
    assert command[:4] == ["cdarts", "gitops", "sync", requests_mount]
    arguments = [str(requests_dir), *command[4:]]
    runner = CliRunner()
    try:
        first = runner.invoke(app, ["gitops", "sync", *arguments], env=environment)
        again = runner.invoke(app, ["gitops", "sync", *arguments], env=environment)
    finally:
        assert fake.server is not None
        fake.server.shutdown()
    assert first.exit_code == 0, first.output
    assert again.exit_code == 0 and again.output.count("already submitted") == len(requests["data"])
    assert len(fake.runs) == len(requests["data"])
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    for run in fake.runs:
        parameters = run["runtime_config"]["parameters"]
        assert parameters["checkpoint_root"] == settings["CDARTS_CHECKPOINT_ROOT"]
        spec = json.dumps(run["pipeline_spec"])
        assert settings["CDARTS_GPU_IMAGE"] in spec and settings["CDARTS_CPU_IMAGE"] in spec
        # The stages nest under a parent run the trigger opened on the settings' MLflow server.
        assert client.get_run(parameters["mlflow_parent_run_id"]).data.tags["kfp.run_id"] == run["run_id"]


def test_argo_cd_syncs_the_trigger_and_passes_the_revision_it_reads() -> None:
    (application,) = _load(K8S / "argocd" / "application.yaml")
    source = application["spec"]["source"]
    assert (REPO_ROOT / source["path"] / "kustomization.yaml").is_file()
    annotations = source["kustomize"]["commonAnnotations"]
    assert annotations == {"cdarts.io/git-revision": "${ARGOCD_APP_REVISION}"}
    (job,) = [doc for doc in render(str(Path(source["path"]).relative_to("k8s"))) if doc["kind"] == "Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    revision = {env["name"]: env for env in container["env"]}["CDARTS_GIT_REVISION"]
    assert revision["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.annotations['cdarts.io/git-revision']"
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PostSync"


def test_the_trainjob_runs_options_the_stage_commands_have() -> None:
    (trainjob,) = _load(K8S / "trainer" / "search-trainjob.yaml")
    script = " ".join(trainjob["spec"]["trainer"]["command"])
    assert "-m cdarts stage search" in script
    prepare, search = script.split("stage data-prep", 1)[1].split("stage search", 1)
    for stage, part in [("data-prep", prepare.split("&&")[0]), ("search", search)]:
        help_text = (
            CliRunner().invoke(app, ["stage", stage, "--help"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"}).output
        )
        options = re.findall(r"(?<![\w-])--[a-z][\w-]*", part)
        assert options
        for option in options:
            assert option in help_text, f"stage {stage} has no {option}"


CREDENTIAL_PATTERNS = [
    re.compile(r"AKIA[0-9A-Z]{16}"),  # AWS access key id
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"(?i)minioadmin"),
    re.compile(r"(?i)(password|secret|token)['\"]?\s*[:=]\s*['\"][^'\"$]{6,}['\"]"),
    re.compile(r"(?i)postgres(ql)?(\+\w+)?://[^:/\s]+:[^@\s]+@"),  # a URI with a password in it
]


def test_nothing_in_k8s_or_images_holds_a_credential_value() -> None:
    files = [
        p for p in [*K8S.rglob("*"), *(REPO_ROOT / "images").rglob("*")] if p.is_file() and "schemas" not in p.parts
    ]
    assert len(files) > 10
    for path in files:
        text = path.read_text(encoding="utf-8")
        for pattern in CREDENTIAL_PATTERNS:
            match = pattern.search(text)
            # Comments may show the shape of a value with a placeholder, never a value.
            if match and not text[: match.start()].splitlines()[-1:][0].lstrip().startswith("#"):
                pytest.fail(f"{path.relative_to(REPO_ROOT)} looks like it holds a credential: {match.group(0)[:12]}...")
    for path in (K8S / "secret-templates").glob("*.yaml"):
        (secret,) = _load(path)
        assert secret["kind"] == "Secret"
        values = {**secret.get("stringData", {}), **secret.get("data", {})}
        assert values and all(value == "" for value in values.values()), path.name
    for kustomization in KUSTOMIZATIONS:
        documents = render(kustomization)
        for doc in documents:
            assert doc["kind"] != "Secret", f"{kustomization} ships a Secret; Secrets come from the operator"
            for pod in _pod_specs(doc, documents) if doc["kind"] in WORKLOAD_KINDS else []:
                for container in pod["containers"]:
                    for env in container.get("env", []):
                        if re.search(r"(?i)(secret|password|access_key|token)(?!_path)", env["name"]):
                            assert "value" not in env, f"{kustomization}: {env['name']} is a literal"


def _settings_maps() -> list[tuple[str, dict[str, Any]]]:
    return [
        (kustomization, doc)
        for kustomization in KUSTOMIZATIONS
        for doc in render(kustomization)
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "cdarts-settings"
    ]


def _env_entries(doc: dict[str, Any], documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if doc["kind"] == "TrainJob":
        return list(doc["spec"]["trainer"].get("env", []))
    if doc["kind"] not in WORKLOAD_KINDS:
        return []
    return [env for pod in _pod_specs(doc, documents) for c in pod["containers"] for env in c.get("env", [])]


def test_our_mlflow_endpoint_never_takes_the_variable_kfp_injects() -> None:
    """KFP's MLflow plugin sets MLFLOW_TRACKING_URI (with MLFLOW_RUN_ID) in task pods; a
    ConfigMap-as-env entry of the same name would be fused with it into one invalid env entry
    when Argo applies the driver's pod-spec patch. Our endpoint is CDARTS_MLFLOW_TRACKING_URI."""
    maps = _settings_maps()
    assert {doc["metadata"]["namespace"] for _, doc in maps} == {"cdarts", "kubeflow"}
    for kustomization, doc in maps:
        where = f"{kustomization}: {doc['metadata']['namespace']}/cdarts-settings"
        assert "MLFLOW_TRACKING_URI" not in doc["data"], where
        assert doc["data"]["CDARTS_MLFLOW_TRACKING_URI"] == "http://cdarts-mlflow.cdarts.svc.cluster.local:5000", where
    sources = [(kustomization, render(kustomization)) for kustomization in KUSTOMIZATIONS]
    sources += [(path.name, _load(path)) for path in STANDALONE_MANIFESTS]
    from_config_map = []
    for where, documents in sources:
        for doc in documents:
            for env in _env_entries(doc, documents):
                reference = env.get("valueFrom", {}).get("configMapKeyRef")
                assert env["name"] != "MLFLOW_TRACKING_URI", f"{where}: {_name(doc)} sets MLFLOW_TRACKING_URI"
                if reference and reference["name"] == "cdarts-settings":
                    assert reference["key"] != "MLFLOW_TRACKING_URI", f"{where}: {_name(doc)}"
                    from_config_map.append((env["name"], reference["key"]))
    assert ("CDARTS_MLFLOW_TRACKING_URI", "CDARTS_MLFLOW_TRACKING_URI") in from_config_map  # the TrainJob
    # The compiled tasks read these keys of the pipeline namespace's ConfigMap into same-named variables.
    from pipelines.task_settings import SETTINGS_KEYS

    (task_settings,) = _load(K8S / "pipeline-namespace" / "task-settings.yaml")
    assert "MLFLOW_TRACKING_URI" not in SETTINGS_KEYS and set(SETTINGS_KEYS) <= set(task_settings["data"])


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
    assert _ingress_admits(policies, server, Pod("apps", {"cdarts.io/inference-client": "true"}), port)
    assert not _ingress_admits(policies, server, Pod("apps", {}), port)
    assert not _ingress_admits(policies, server, Pod("cdarts", {"cdarts.io/mlflow-client": "true"}), port)


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
