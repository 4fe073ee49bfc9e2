"""Configs written when the DARTS networks' shape lived under ``search:`` and ``retrain:``
migrate to the ``darts:`` section, with one warning naming the new keys. ``search:`` keeps the
algorithm and ``retrain:`` the recipe of every space."""

from __future__ import annotations

import sys
from typing import Any

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
