"""The cdarts Kubeflow pipelines and their compilation."""

from __future__ import annotations

from pipelines.options import PipelineOptions
from pipelines.registry import PIPELINE_NAMES, build_pipeline

__all__ = ["PIPELINE_NAMES", "PipelineOptions", "build_pipeline"]
