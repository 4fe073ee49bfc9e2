"""Pipelines by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipelines.options import PipelineOptions
from pipelines.retrain_pipeline import build_retrain_pipeline
from pipelines.search_pipeline import build_search_pipeline

_BUILDERS: dict[str, Callable[[PipelineOptions], Callable[..., Any]]] = {
    "search": build_search_pipeline,
    "retrain": build_retrain_pipeline,
}
PIPELINE_NAMES = tuple(_BUILDERS)


def build_pipeline(name: str, options: PipelineOptions | None = None) -> Callable[..., Any]:
    """The ``search`` (cdarts-search) or ``retrain`` (cdarts-retrain) pipeline function."""
    try:
        builder = _BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown pipeline {name!r}; choose from {', '.join(PIPELINE_NAMES)}") from None
    return builder(options or PipelineOptions())
