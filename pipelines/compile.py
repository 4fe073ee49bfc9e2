"""Compile a pipeline to KFP IR YAML, with the images chosen at compile time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kfp import compiler

from pipelines.options import PipelineOptions
from pipelines.registry import build_pipeline
from stages.images import CPU_IMAGE, GPU_IMAGE


def _replace_images(document: dict[str, Any], options: PipelineOptions) -> None:
    replacements = {GPU_IMAGE: options.gpu_image, CPU_IMAGE: options.cpu_image}
    for executor in document.get("deploymentSpec", {}).get("executors", {}).values():
        container = executor.get("container", {})
        container["image"] = replacements.get(container.get("image"), container.get("image"))


def compile_pipeline(name: str, out_path: Path, options: PipelineOptions | None = None) -> list[dict[str, Any]]:
    """Write the compiled pipeline (IR document + Kubernetes platform document) to ``out_path``."""
    options = options or PipelineOptions()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(name, options), str(out_path))
    documents = [d for d in yaml.safe_load_all(out_path.read_text(encoding="utf-8")) if d is not None]
    _replace_images(documents[0], options)
    out_path.write_text(yaml.safe_dump_all(documents, sort_keys=False), encoding="utf-8")
    return documents
