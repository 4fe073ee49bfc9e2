"""Compile a pipeline to KFP IR YAML (or to KFP's Pipeline/PipelineVersion resources), with the
images chosen at compile time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kfp import compiler

from pipelines.options import PipelineOptions
from pipelines.registry import build_pipeline
from stages.images import CPU_IMAGE, GPU_IMAGE


@dataclass(frozen=True)
class ResourceNames:
    """Write the Pipeline and PipelineVersion resources (KFP with ``--pipelineStore=kubernetes``)
    instead of the IR: the version's name and the namespace of both (None: the applier's)."""

    version_name: str
    namespace: str | None = None


def _ir_document(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """The IR: the first document, or the PipelineVersion resource's ``spec.pipelineSpec``."""
    for document in documents:
        if document.get("kind") == "PipelineVersion":
            ir: dict[str, Any] = document["spec"]["pipelineSpec"]
            return ir
    return documents[0]


def _replace_images(document: dict[str, Any], options: PipelineOptions) -> None:
    replacements = {GPU_IMAGE: options.gpu_image, CPU_IMAGE: options.cpu_image}
    for executor in document.get("deploymentSpec", {}).get("executors", {}).values():
        container = executor.get("container", {})
        container["image"] = replacements.get(container.get("image"), container.get("image"))


def compile_pipeline(
    name: str, out_path: Path, options: PipelineOptions | None = None, resources: ResourceNames | None = None
) -> list[dict[str, Any]]:
    """Write the compiled pipeline (IR document + Kubernetes platform document, or with
    ``resources`` the Pipeline and PipelineVersion resources holding them) to ``out_path``."""
    options = options or PipelineOptions()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {}
    if resources is not None:
        manifest = {
            "kubernetes_manifest_format": True,
            "kubernetes_manifest_options": compiler.KubernetesManifestOptions(
                pipeline_version_name=resources.version_name,
                namespace=resources.namespace,
                include_pipeline_manifest=True,
            ),
        }
    compiler.Compiler().compile(build_pipeline(name, options), str(out_path), **manifest)
    documents = [d for d in yaml.safe_load_all(out_path.read_text(encoding="utf-8")) if d is not None]
    _replace_images(_ir_document(documents), options)
    out_path.write_text(yaml.safe_dump_all(documents, sort_keys=False), encoding="utf-8")
    return documents
