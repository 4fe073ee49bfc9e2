"""The cache key the Kubeflow Pipelines backend gives a task, recomputed from the compiled IR.

The backend's driver keys a task's cache entry on what its container receives: the resolved input
parameter values, the names of its input artifacts, its output definitions, and its image and
command line (kubeflow/pipelines, backend/src/v2/cacheutils: GenerateCacheKey). This module does
the same on a compiled pipeline for one hypothetical run: the pipeline's arguments and the run's
``{{$.pipeline_job_uuid}}`` are substituted. An input artifact is named by its producer's key when
the producer can be cached (a cache hit hands the same artifact on), and by the run otherwise.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

JOB_ID = "{{$.pipeline_job_uuid}}"
DAG_COMPONENT = "comp-exit-handler-1"


def _stage_tasks(ir: dict[str, Any]) -> dict[str, Any]:
    tasks: dict[str, Any] = ir["components"][DAG_COMPONENT]["dag"]["tasks"]
    return tasks


def _channel_sources(ir: dict[str, Any]) -> dict[str, Any]:
    """``pipelinechannel--x`` of the exit handler's DAG -> how the root fills it."""
    sources: dict[str, Any] = ir["root"]["dag"]["tasks"]["exit-handler-1"]["inputs"]["parameters"]
    return sources


def task_cache_key(ir: dict[str, Any], task_name: str, arguments: dict[str, Any], job_id: str) -> str | None:
    """The cache key of ``task_name`` in a run with ``arguments`` and ``job_id``; None when the
    task's caching is off (a re-run always executes it)."""
    return _key(ir, task_name, arguments, job_id, {})


def _pipeline_argument(ir: dict[str, Any], name: str, arguments: dict[str, Any]) -> Any:
    defaults = ir["root"]["inputDefinitions"]["parameters"]
    return arguments.get(name, defaults[name].get("defaultValue"))


def _key(
    ir: dict[str, Any], name: str, arguments: dict[str, Any], job_id: str, seen: dict[str, str | None]
) -> str | None:
    if name in seen:
        return seen[name]
    task = _stage_tasks(ir)[name]
    if not task.get("cachingOptions", {}).get("enableCache", False):
        seen[name] = None
        return None
    component = ir["components"][task["componentRef"]["name"]]
    executor = ir["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
    parameters: dict[str, Any] = {}
    for input_name, spec in task["inputs"].get("parameters", {}).items():
        if "componentInputParameter" in spec:
            root_name = _channel_sources(ir)[spec["componentInputParameter"]]["componentInputParameter"]
            parameters[input_name] = _pipeline_argument(ir, root_name, arguments)
        elif "runtimeValue" in spec:
            parameters[input_name] = str(spec["runtimeValue"]["constant"]).replace(JOB_ID, job_id)
        elif "taskOutputParameter" in spec:
            producer = spec["taskOutputParameter"]["producerTask"]
            upstream = _key(ir, producer, arguments, job_id, seen)
            parameters[input_name] = (
                f"{producer}:{upstream or job_id}:{spec['taskOutputParameter']['outputParameterKey']}"
            )
    artifacts = {}
    for input_name, spec in task["inputs"].get("artifacts", {}).items():
        producer = spec["taskOutputArtifact"]["producerTask"]
        upstream = _key(ir, producer, arguments, job_id, seen)
        artifacts[input_name] = f"{producer}:{upstream or job_id}:{spec['taskOutputArtifact']['outputArtifactKey']}"
    material = {
        "parameters": parameters,
        "artifacts": artifacts,
        "outputs": component.get("outputDefinitions", {}),
        "image": executor["image"],
        "command": [*executor.get("command", []), *executor.get("args", [])],
    }
    key = hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()
    seen[name] = key
    return key
