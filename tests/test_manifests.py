"""Kubernetes manifests: every kustomization renders with `kubectl kustomize` and validates
strictly (Kubernetes 1.30 and the newest schema kubernetes-validate has); custom resources
validate against their published CRD schemas; workloads are locked down; NetworkPolicies admit
exactly the declared clients; no credential values."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from cdarts.cli.main import app
from pipelines.cluster_settings import is_pinned
from tests.conftest import REPO_ROOT
from tests.fake_kfp_server import start_fake_kfp

K8S = REPO_ROOT / "k8s"
KUSTOMIZATIONS = [
    "overlays/kfp-object-store",
    "overlays/kfp-multi-user",
    "overlays/standalone-seaweedfs",
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
    # KFP's own resources, written by `cdarts compile --kubernetes-manifest-format`.
    ("pipelines.kubeflow.org/v2beta1", "Pipeline"): SCHEMAS / "pipeline.pipelines.kubeflow.org-v2beta1.json",
    ("pipelines.kubeflow.org/v2beta1", "PipelineVersion"): (
        SCHEMAS / "pipelineversion.pipelines.kubeflow.org-v2beta1.json"
    ),
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
    assert "cdarts-seaweedfs" in settings("overlays/standalone-seaweedfs", "cdarts")["CDARTS_S3_ENDPOINT"]
    kinds = {_name(doc) for doc in render("overlays/standalone-seaweedfs")}
    assert {"StatefulSet/cdarts-seaweedfs", "Service/cdarts-seaweedfs"} <= kinds
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
        for doc in render("overlays/standalone-seaweedfs")
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
    # Runs go to the configured KFP namespace, with images pinned by digest (never a tag).
    assert f"--namespace={settings['CDARTS_PIPELINE_NAMESPACE']}" in command
    assert is_pinned(settings["CDARTS_GPU_IMAGE"]) and is_pinned(settings["CDARTS_CPU_IMAGE"])
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
        # The run references the pipeline version the trigger uploaded for the synced revision.
        spec = fake.packages[run["pipeline_version_reference"]["pipeline_version_id"]]
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
    assert {doc["metadata"]["namespace"] for _, doc in maps} == {"cdarts", "kubeflow", "team-vision"}
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
