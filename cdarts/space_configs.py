"""The config section of each search space (``darts:``, ``nasbench201:``, ``chain:``), and the
migration of configs written when the DARTS networks' shape lived under ``search:`` and
``retrain:``. ``search:`` keeps the algorithm and ``retrain:`` the recipe of every space."""

from __future__ import annotations

import sys
from typing import Any, Literal

from pydantic import Field, model_validator

from cdarts.config_base import MAX_CELLS, MAX_CHANNELS, MAX_NODES, CellCount, ConfigSection

Stem = Literal["cifar", "imagenet"]
StemMultiplier = Field(3, ge=1, le=16)


class DartsRetrainNetworkConfig(ConfigSection):
    """The retrained network of a DARTS genotype (the paper's "augment" network)."""

    stem: Stem = "cifar"
    init_channels: int = Field(36, ge=2, le=MAX_CHANNELS)
    cells: int = Field(
        20,
        ge=4,
        le=MAX_CELLS,
        description="cells in total (4 or more: every stage keeps one); reductions at cells/3 and 2*cells/3",
    )
    stem_multiplier: int = StemMultiplier
    param_count_rule: bool = Field(
        True, description="CIFAR reference rule: weight decay and drop-path chosen by parameter count"
    )

    @model_validator(mode="after")
    def _even(self) -> DartsRetrainNetworkConfig:
        if self.init_channels % 2:
            raise ValueError("init_channels must be even (factorized reduce halves it)")
        return self


class DartsConfig(ConfigSection):
    """The DARTS cell space (``search_space: darts``): the search networks S and E, the weight
    pool, and (``retrain:``) the retrained network."""

    stem: Stem = "cifar"
    init_channels: int = Field(16, ge=2, le=MAX_CHANNELS)
    stem_multiplier: int = StemMultiplier
    n_nodes: int = Field(4, ge=1, le=MAX_NODES)
    search_cells: tuple[CellCount, CellCount, CellCount] = (3, 3, 2)
    eval_cells: tuple[CellCount, CellCount, CellCount] = (7, 7, 6)
    node_aggregation: Literal["mean", "sum"] = "mean"
    pool_batchnorm: bool = False
    pool_transfer: Literal["all", "reference"] = "all"
    retrain: DartsRetrainNetworkConfig = DartsRetrainNetworkConfig()

    @model_validator(mode="after")
    def _even(self) -> DartsConfig:
        if self.init_channels % 2:
            raise ValueError("init_channels must be even (factorized reduce halves it)")
        return self


class NasBench201Config(ConfigSection):
    """The NAS-Bench-201 cell space (``search_space: nasbench201``); S, E and the retrained
    network all have this width and depth."""

    channels: int = Field(16, ge=1, le=MAX_CHANNELS, description="C of the first stage (16 in the benchmark)")
    cells_per_stage: int = Field(5, ge=1, le=MAX_CELLS, description="N cells per stage (5 in the benchmark)")
    benchmark_file: str | None = Field(
        None, description="JSON export of NAS-Bench-201 / NATS-Bench accuracies; looked up every cycle"
    )
    layout: Literal["authors", "stage_cells"] = Field(
        "authors",
        description="authors: heads after the stride-2 blocks (2C, 4C), the authors' BN affinities; "
        "stage_cells: heads after the first two stages' last cells (docs/reference-deviations.md)",
    )


class ChainConfig(ConfigSection):
    """The chain-structured (mobile) space (``search_space: chain``)."""

    stage_layers: tuple[int, int, int, int, int] = Field(
        (4, 4, 4, 4, 4), description="searchable slots of S per stage (24, 40, 80, 96, 192 channels), 1 to 4"
    )
    allow_skip: bool = Field(True, description="every slot but a stage's first may choose skip (shallower stages)")
    dropout: float = Field(0.2, ge=0, lt=1, description="before the classifier")

    @model_validator(mode="after")
    def _layers_in_range(self) -> ChainConfig:
        if not all(1 <= n <= 4 for n in self.stage_layers):
            raise ValueError("stage_layers must be 1 to 4 per stage")
        return self


SPACE_SECTIONS = ("darts", "nasbench201", "chain")
_SEARCH_KEYS = (
    "stem", "init_channels", "stem_multiplier", "n_nodes", "search_cells", "eval_cells",
    "node_aggregation", "pool_batchnorm", "pool_transfer",
)  # fmt: skip
_RETRAIN_KEYS = ("stem", "init_channels", "cells", "stem_multiplier", "param_count_rule")
_warned: set[tuple[str, ...]] = set()


def migrate_space_sections(data: dict[str, Any]) -> dict[str, Any]:
    """Move the DARTS networks' keys of the earlier layout (``search.n_nodes``,
    ``retrain.cells``, ...) into ``darts:``, warning once per set of keys. In a config of another
    space those keys never did anything: they are dropped, with the same warning."""
    search, retrain = data.get("search"), data.get("retrain")
    moved_search = [k for k in _SEARCH_KEYS if isinstance(search, dict) and k in search]
    moved_retrain = [k for k in _RETRAIN_KEYS if isinstance(retrain, dict) and k in retrain]
    if not moved_search and not moved_retrain:
        return data
    darts_space = data.get("search_space", "darts") == "darts"
    darts = dict(data.get("darts") or {}) if isinstance(data.get("darts", {}), dict) else data["darts"]
    out = dict(data)
    if moved_search:
        assert isinstance(search, dict)
        out["search"] = {k: v for k, v in search.items() if k not in moved_search}
        if darts_space and isinstance(darts, dict):
            darts = {**{k: search[k] for k in moved_search}, **darts}
    if moved_retrain:
        assert isinstance(retrain, dict)
        out["retrain"] = {k: v for k, v in retrain.items() if k not in moved_retrain}
        if darts_space and isinstance(darts, dict):
            nested = darts.get("retrain") or {}
            if isinstance(nested, dict):
                darts = {**darts, "retrain": {**{k: retrain[k] for k in moved_retrain}, **nested}}
    if darts_space:
        out["darts"] = darts
    keys = tuple([f"search.{k}" for k in moved_search] + [f"retrain.{k}" for k in moved_retrain])
    if keys not in _warned:
        _warned.add(keys)
        where = "darts." if darts_space else None
        new = ", ".join(k.replace("search.", "darts.").replace("retrain.", "darts.retrain.") for k in keys)
        message = (
            f"moved {', '.join(keys)} to {new} (the DARTS networks' shape now lives in darts:)"
            if where
            else f"ignored {', '.join(keys)}: they shape DARTS networks, and search_space is {data['search_space']}"
        )
        print(f"cdarts: warning: config: {message}; update the config file", file=sys.stderr)
    return out


def refuse_foreign_sections(data: dict[str, Any]) -> None:
    """A section of another space than ``search_space`` with settings of its own is an error
    (it would be ignored); one equal to the defaults is what a saved config holds and passes."""
    space = data.get("search_space", "darts")
    models: dict[str, type[ConfigSection]] = {
        "darts": DartsConfig,
        "nasbench201": NasBench201Config,
        "chain": ChainConfig,
    }
    for name, model in models.items():
        given = data.get(name)
        if name == space or given in (None, {}) or not isinstance(given, dict):
            continue
        try:
            at_defaults = model.model_validate(given) == model()
        except ValueError:
            continue  # a bad value: the section's own validation names the key
        if not at_defaults:
            raise ValueError(f"the {name}: section applies to search_space {name} only (this config's is {space})")
