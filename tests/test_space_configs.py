"""One config section per search space: ``darts:`` holds the DARTS networks' shape, a section of
another space is refused, and configs of the earlier layout keep working through a migration
that warns once and names the new keys."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest
import yaml

from cdarts.config import build_config, load_config
from cdarts.errors import ConfigError
from cdarts.spaces.darts.config_migration import _warned
from tests.conftest import CONFIGS

EARLIER = {
    "search": {"n_nodes": 3, "init_channels": 8, "search_cells": [1, 1, 1], "warmup_epochs": 1},
    "retrain": {"cells": 8, "param_count_rule": False, "epochs": 3},
}


@pytest.fixture(autouse=True)
def _fresh_warnings() -> None:
    _warned.clear()


def test_the_earlier_layout_moves_into_the_darts_section_with_one_warning(capsys: pytest.CaptureFixture[str]) -> None:
    config = build_config(EARLIER)
    assert (config.darts.n_nodes, config.darts.init_channels, config.darts.search_cells) == (3, 8, (1, 1, 1))
    assert (config.darts.retrain.cells, config.darts.retrain.param_count_rule) == (8, False)
    assert (config.search.warmup_epochs, config.retrain.epochs) == (1, 3)  # the algorithm and recipe stay
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("cdarts: warning: config: moved search.init_channels")
    assert "darts.n_nodes" in warning[0] and "darts.retrain.cells" in warning[0]
    build_config(EARLIER)
    assert capsys.readouterr().err == ""  # once per set of keys
    new_layout = {
        "darts": {
            "n_nodes": 3,
            "init_channels": 8,
            "search_cells": [1, 1, 1],
            "retrain": {"cells": 8, "param_count_rule": False},
        },
        "search": {"warmup_epochs": 1},
        "retrain": {"epochs": 3},
    }
    assert build_config(new_layout).digest() == config.digest()


def test_overrides_of_the_earlier_layout_migrate_too() -> None:
    config = build_config({}, ["search.n_nodes=2", "retrain.init_channels=12"])
    assert config.darts.n_nodes == 2 and config.darts.retrain.init_channels == 12


def test_an_explicit_darts_value_wins_over_a_migrated_one() -> None:
    config = build_config({"search": {"n_nodes": 3}, "darts": {"n_nodes": 5}})
    assert config.darts.n_nodes == 5


def test_darts_keys_in_another_spaces_config_are_dropped_with_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    config = build_config({"search_space": "nasbench201", "search": {"init_channels": 8}, "retrain": {"cells": 3}})
    assert config.darts == build_config({}).darts  # nothing of it reached a section
    assert "ignored search.init_channels, retrain.cells" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"search_space": "nasbench201", "darts": {"n_nodes": 3}}, "the darts: section applies to search_space darts"),
        ({"nasbench201": {"channels": 8}}, "the nasbench201: section applies to search_space nasbench201"),
        ({"search_space": "darts", "chain": {"allow_skip": False}}, "the chain: section applies"),
    ],
)
def test_a_section_of_another_space_is_refused_in_one_line(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config(data)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_another_spaces_section_at_its_defaults_passes() -> None:
    """What a saved config holds: every section, the inactive ones at their defaults."""
    build_config({"search_space": "nasbench201", "darts": {"n_nodes": 4}, "chain": {}})


@pytest.mark.parametrize("preset", sorted(glob.glob(str(CONFIGS / "*.yaml"))))
def test_presets_use_the_new_layout_and_survive_a_save(
    preset: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_config(preset)
    assert capsys.readouterr().err == "", "a preset still uses the earlier layout"
    raw = yaml.safe_load(Path(preset).read_text())
    assert not {"n_nodes", "init_channels", "search_cells", "stem"} & set(raw.get("search") or {})
    saved = tmp_path / "config.yaml"
    saved.write_text(config.to_yaml())
    assert load_config(str(saved)).digest() == config.digest()


def test_a_darts_retrain_network_needs_a_cell_in_every_stage() -> None:
    with pytest.raises(ConfigError, match=r"darts\.retrain\.cells"):
        build_config({"darts": {"retrain": {"cells": 3}}})  # stages of 2, 1 and 0 cells
    assert build_config({"darts": {"retrain": {"cells": 4}}}).darts.retrain.cells == 4


@pytest.mark.parametrize("source", ["mnist", "fashion-mnist"])
def test_mnist_family_sources_take_a_location_on_the_command_line(source: str) -> None:
    from cdarts.config import source_overrides

    config = build_config({}, source_overrides(f"{source}:/data/{source}"))
    assert (config.data.source, config.data.location) == (source, f"/data/{source}")
