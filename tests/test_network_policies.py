"""NetworkPolicies as rendered, evaluated for concrete pods: who may reach MLflow (our pipeline
tasks, declared clients, the components of KFP's MLflow plugin) and who may not."""

from __future__ import annotations

from tests.network_policy_eval import Pod, ingress_admits
from tests.test_manifests import WORKLOAD_KINDS, _name, render

PIPELINE_NAMESPACE = {"cdarts.io/pipeline-namespace": "true"}


def test_network_policies_admit_only_pipeline_tasks_and_declared_clients() -> None:
    documents = render("overlays/standalone-seaweedfs")
    policies_rendered = [doc for doc in documents if doc["kind"] == "NetworkPolicy"]
    policies = {doc["metadata"]["name"]: doc["spec"] for doc in policies_rendered}
    assert policies["default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    for name, target, client_label, port in [
        ("cdarts-mlflow-ingress", "cdarts-mlflow", "cdarts.io/mlflow-client", 5000),
        ("cdarts-seaweedfs-ingress", "cdarts-seaweedfs", "cdarts.io/object-store-client", 8333),
    ]:
        policy = policies[name]
        assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": target}}
        (rule,) = policy["ingress"]
        assert rule["from"] == [
            {
                "namespaceSelector": {"matchLabels": PIPELINE_NAMESPACE},
                "podSelector": {"matchLabels": {"cdarts.io/pipeline-task": "true"}},
            },
            {"podSelector": {"matchLabels": {client_label: "true"}}},
        ]
        server = Pod("cdarts", {"app.kubernetes.io/name": target})
        task = {"cdarts.io/pipeline-task": "true"}
        # By namespace and label: a task pod of a marked namespace, never one that only sets the label.
        assert ingress_admits(policies_rendered, server, Pod("team-vision", task, PIPELINE_NAMESPACE), port)
        assert ingress_admits(policies_rendered, server, Pod("kubeflow", task, PIPELINE_NAMESPACE), port)
        assert not ingress_admits(policies_rendered, server, Pod("team-vision", task), port)
        assert not ingress_admits(policies_rendered, server, Pod("default", task), port)
        assert not ingress_admits(policies_rendered, server, Pod("team-vision", {client_label: "true"}), port)
        assert not ingress_admits(policies_rendered, server, Pod("team-vision", task, PIPELINE_NAMESPACE), port + 1)
    # The pods that must reach the object store carry the client label.
    labelled = {
        _name(doc)
        for doc in documents
        if doc["kind"] in WORKLOAD_KINDS
        and doc["spec"]["template"]["metadata"]["labels"].get("cdarts.io/object-store-client") == "true"
    }
    assert "Deployment/cdarts-mlflow" in labelled
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
        assert ingress_admits(policies_rendered, server, Pod("cdarts", template["metadata"]["labels"]), 5000)


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
        "team-vision",
        {"cdarts.io/pipeline-task": "true", "pipelines.kubeflow.org/v2_component": "true"},
        PIPELINE_NAMESPACE,
    )
    declared_client = Pod("cdarts", {"cdarts.io/mlflow-client": "true"})
    for source in (apiserver, driver, our_task_elsewhere, declared_client):
        assert ingress_admits(policies, server, source, port), source
    for source in (
        Pod("kubeflow", {"app": "ml-pipeline-ui", "application-crd-id": "kubeflow-pipelines"}),
        Pod("kubeflow", {}),
        Pod("default", {"app": "ml-pipeline"}),
        Pod("team-vision", {"pipelines.kubeflow.org/v2_component": "true"}),
        Pod("cdarts", {"app.kubernetes.io/name": "cdarts-retrain-trigger"}),
    ):
        assert not ingress_admits(policies, server, source, port), source
    assert not ingress_admits(policies, server, apiserver, 8080)
