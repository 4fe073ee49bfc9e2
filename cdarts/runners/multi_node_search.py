"""The search on several nodes: a Kubeflow Trainer ``TrainJob`` that the calling (KFP task)
process creates and follows, whose rank 0 publishes the output directory to the object store;
the result is then read back from there like a one-node search's."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from cdarts.artifact_location import object_store_uri
from cdarts.config import ExperimentConfig
from cdarts.runners.launch import load_search_result
from cdarts.runners.search import SearchRunResult
from cdarts.storage import download_directory, is_remote, open_store
from cdarts.task_resources import scale_quantity
from cdarts.trainjob.client import run_trainjob
from cdarts.trainjob.spec import PodOwner, TrainJobError, TrainJobSettings, build_trainjob, trainjob_name

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# Trainer fails the TrainJob at its activeDeadlineSeconds; we give up waiting this much later.
DEADLINE_GRACE_SECONDS = 300


def trainjob_settings_from_env() -> TrainJobSettings:
    """The TrainJob settings the compiled pipeline hands the search task (``$CDARTS_TRAINJOB_SETTINGS``)."""
    return TrainJobSettings.from_env()


def trainjob_settings_for_run(
    gpus: int, node_selector: dict[str, str], tolerations: list[dict[str, str]]
) -> TrainJobSettings:
    """The compiled settings (CPU and memory per GPU) for a run: requests scaled by ``gpus`` per
    node, and the run's node selector and tolerations (its pipeline parameters)."""
    compiled = trainjob_settings_from_env()
    return dataclasses.replace(
        compiled,
        cpu_request=scale_quantity(compiled.cpu_request, gpus),
        cpu_limit=scale_quantity(compiled.cpu_limit, gpus),
        memory_request=scale_quantity(compiled.memory_request, gpus),
        memory_limit=scale_quantity(compiled.memory_limit, gpus),
        node_selector=dict(node_selector),
        tolerations=tuple(dict(t) for t in tolerations),
    )


def _s3_location(uri: str, what: str) -> str:
    location = object_store_uri(uri)
    if location is None or not is_remote(location):
        raise TrainJobError(f"the nodes of a multi-node search reach S3 only, and the {what} {uri!r} is not in S3")
    return location


def _pod_namespace() -> str | None:
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def run_multi_node_search(
    experiment: ExperimentConfig,
    dataset_uri: str,
    output_uri: str,
    out_dir: Path,
    nodes: int,
    gpus_per_node: int,
    checkpoint_mirror: str | None,
    parent_run_id: str,
    kfp_run_id: str,
    settings: TrainJobSettings,
    api_client: Any = None,
    *,
    poll_seconds: float = 10.0,
) -> SearchRunResult:
    """Run the search of ``experiment`` on ``nodes`` x ``gpus_per_node`` processes and return its
    result, downloaded into ``out_dir``.

    ``dataset_uri`` is the prepared dataset's artifact URI and ``output_uri`` where rank 0
    publishes the output (``s3://`` or KFP's ``minio://``; it also names the TrainJob, so a retry
    of the task finds its predecessor's). The TrainJob goes to ``settings.namespace`` or else
    this pod's namespace, owned by this pod when it is a KFP task pod of that namespace.
    ``api_client``: a ``kubernetes.client.ApiClient`` (default: in-cluster, else kubeconfig).
    """
    dataset = _s3_location(dataset_uri, "dataset")
    output = _s3_location(output_uri, "output location")
    if checkpoint_mirror and not is_remote(checkpoint_mirror):
        raise TrainJobError(f"the checkpoint mirror of a multi-node search must be in S3, not {checkpoint_mirror!r}")
    own_namespace = _pod_namespace()
    namespace = settings.namespace or own_namespace
    if namespace is None:
        raise TrainJobError("no namespace for the TrainJob: not running in a pod, and the settings name none")
    # An owner must live in the namespace of what it owns.
    owner = PodOwner.from_env() if namespace == own_namespace else None
    body = build_trainjob(
        settings,
        trainjob_name(output),
        nodes,
        gpus_per_node,
        dataset,
        output,
        experiment.to_yaml(),
        checkpoint_mirror,
        parent_run_id,
        kfp_run_id,
        owner,
    )
    timeout = settings.timeout_seconds + DEADLINE_GRACE_SECONDS if settings.timeout_seconds else None
    run_trainjob(body, namespace, api_client, timeout_seconds=timeout, poll_seconds=poll_seconds)
    store, prefix = open_store(output)
    download_directory(store, prefix, out_dir)
    return load_search_result(out_dir)
