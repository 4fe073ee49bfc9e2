"""Dotted config overrides: ``--set key.sub=value``, the data source shorthand and the pipeline's
UI parameters, as nested dicts merged onto a config before it is validated."""

from __future__ import annotations

import json
from typing import Any

import yaml

from cdarts.errors import ConfigError
from cdarts.safe_yaml import load_yaml

__all__ = ["SOURCES_WITH_LOCATION", "parse_overrides", "pipeline_overrides", "source_overrides"]


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["search.arch_lr=1e-3", "seed=3"]`` -> nested dict; values are YAML scalars."""
    result: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key.subkey=value")
        try:
            value = load_yaml(raw, f"override {key.strip()!r}")
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: value is not valid YAML") from None
        parts = key.strip().split(".")
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r} conflicts with another override")
            node = child
        node[parts[-1]] = value
    return result


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


SOURCES_WITH_LOCATION = ("cifar10", "cifar100", "mnist", "fashion-mnist", "imagefolder")


def source_overrides(source: str | None) -> list[str]:
    """``digits`` / ``cifar10:PATH`` / ``imagefolder:DIR`` -> overrides of the data section."""
    if not source:
        return []
    name, _, location = source.partition(":")
    if name in ("digits", "synthetic"):
        if location:
            raise ConfigError(f"source {name!r} takes no location")
        return [f"data.source={name}", "data.location=null"]
    if name not in SOURCES_WITH_LOCATION:
        raise ConfigError(
            f"unknown source {name!r}; use digits, synthetic, cifar10:PATH, cifar100:PATH, mnist:PATH, "
            "fashion-mnist:PATH or imagefolder:DIR"
        )
    if not location:
        raise ConfigError(f"source {name!r} needs a location: {name}:PATH")
    return [f"data.source={name}", f"data.location={json.dumps(location)}"]


def pipeline_overrides(
    data_source: str = "", seed: int = -1, search_iterations: int = 0, retrain_epochs: int = 0
) -> list[str]:
    """Overrides from the pipeline's UI parameters; empty / negative / zero values keep the config's."""
    overrides = source_overrides(data_source)
    if seed >= 0:
        overrides.append(f"seed={seed}")
    if search_iterations > 0:
        overrides.append(f"search.search_iterations={search_iterations}")
    if retrain_epochs > 0:
        overrides.append(f"retrain.epochs={retrain_epochs}")
    return overrides
