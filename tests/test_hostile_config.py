"""Hostile config values and deeply nested YAML/JSON: one-line errors naming the key or file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cdarts.cli.main import app
from cdarts.config import build_config, load_config, load_config_spec, parse_overrides
from cdarts.errors import CdartsError, ConfigError, GenotypeError
from cdarts.safe_yaml import MAX_DEPTH, load_json, load_yaml

BAD_VALUES = [
    ("search.arch_lr", ".nan"),
    ("search.arch_lr", ".inf"),
    ("search.arch_lr", "-1e-3"),
    ("search.arch_lr", "0"),
    ("search.weight_lr", "-.inf"),
    ("search.weight_momentum", "1.0"),
    ("search.weight_momentum", "-0.1"),
    ("search.weight_decay", ".nan"),
    ("search.grad_clip", "0"),
    ("search.distill_weight", ".inf"),
    ("search.sample_ratio", "1.5"),
    ("search.regularizer.ratio", "2"),
    ("search.regularizer.coeff", ".nan"),
    ("retrain.drop_path_prob", "1.0"),
    ("retrain.label_smoothing", ".nan"),
    ("retrain.weight_lr", "1e9"),
    ("data.test_fraction", ".inf"),
    ("data.image_size", "1000000"),
    ("data.image_size", "0"),
    ("data.channels", "100000"),
    ("data.num_classes", "10000000"),
    ("data.num_train", "1000000000"),
    ("data.num_workers", "-1"),
    ("search.batch_size", "10000000"),
    ("search.init_channels", "100000"),
    ("search.n_nodes", "0"),
    ("search.search_cells", "[0, 0, 0]"),
    ("search.eval_cells", "[1, 1, 100000]"),
    ("search.search_iterations", "1000000000"),
    ("retrain.cells", "100000"),
    ("retrain.epochs", "0"),
    ("retrain.batch_size", "1000000"),
    ("nasbench201.cells_per_stage", "0"),
    ("evaluate.timing_repeats", "0"),
    ("seed", "-5"),
    ("seed", "99999999999999999999"),
]


@pytest.mark.parametrize(("key", "value"), BAD_VALUES)
def test_bad_value_refused_naming_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("tiny", [f"{key}={value}"])
    message = str(info.value)
    assert "\n" not in message
    assert key in message


def test_every_preset_still_loads() -> None:
    for path in sorted(Path("configs").glob("*.yaml")):
        load_config(str(path))


@pytest.mark.parametrize(
    ("key", "value"), [("search.arch_lr", ".inf"), ("data.image_size", "1000000"), ("search.search_cells", "[0,0,0]")]
)
def test_cli_refuses_bad_value_and_writes_nothing(tmp_path: Path, key: str, value: str) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["stage", "search", "--config", "tiny", "--set", f"{key}={value}", "--out", str(out)]
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("cdarts: error:"), result.output
    assert key in lines[0]
    assert not out.exists() or not any(out.iterdir())


DEEP = 5000


def _deep_flow(depth: int = DEEP) -> str:
    return "[" * depth + "]" * depth


def _deep_block(depth: int = 200) -> str:
    return "".join(f"{'  ' * level}k{level}:\n" for level in range(depth)) + "  " * depth + "x: 1\n"


@pytest.mark.parametrize("text", [_deep_flow(), _deep_block(), "a: " + _deep_flow(), "- " * 500 + "x"])
def test_load_yaml_refuses_deep_nesting(text: str) -> None:
    with pytest.raises(ConfigError, match=r"thing nests deeper than 64 levels"):
        load_yaml(text, "thing")


def test_load_json_refuses_deep_nesting_as_requested_error() -> None:
    with pytest.raises(GenotypeError, match=r"^g nests deeper"):
        load_json('{"a": ' + _deep_flow() + "}", "g", GenotypeError)


def test_moderate_nesting_and_brackets_in_strings_are_fine() -> None:
    depth = MAX_DEPTH - 1
    assert load_yaml(_deep_flow(depth), "x") is not None
    assert load_json(json.dumps({"s": "[" * 1000}), "x") == {"s": "[" * 1000}
    assert load_yaml("a: '[[[[[[[[[['  # {{{{{{{{{{{{{{{{\n", "x") == {"a": "[" * 10}


def test_deep_config_file(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("search:\n  regularizer: " + _deep_flow() + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="the config text nests"):
        load_config_spec("a: 1\nb: " + _deep_flow())


def test_deep_override_value() -> None:
    with pytest.raises(ConfigError, match=r"override 'search\.arch_lr' nests deeper"):
        parse_overrides(["search.arch_lr=" + _deep_flow()])
    with pytest.raises(ConfigError):
        build_config({}, ["seed=" + _deep_flow()])


def test_cli_deep_override_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["stage", "search", "--config", "tiny", "--set", "seed=" + _deep_flow(), "--out", str(out)]
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "nests deeper" in lines[0]


def test_cli_deep_genotype_file(tmp_path: Path) -> None:
    path = tmp_path / "genotype.json"
    path.write_text('{"space": "darts", "normal": ' + _deep_flow() + "}")
    result = CliRunner().invoke(app, ["genotype", "show", str(path)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("cdarts: error:") and "nests deeper" in lines[0]
    assert "RecursionError" not in result.output


def test_deep_retrain_request(tmp_path: Path) -> None:
    from pipelines.retrain_request import load_request

    path = tmp_path / "request.yaml"
    path.write_text("config: tiny\ngenotype: " + _deep_flow() + "\n")
    with pytest.raises(CdartsError) as info:
        load_request(path)
    assert "nests deeper" in str(info.value) and "\n" not in str(info.value)


def test_deep_cluster_settings(tmp_path: Path) -> None:
    from pipelines.cluster_settings import load_cluster_settings

    path = tmp_path / "cluster.yaml"
    path.write_text(_deep_block())
    with pytest.raises(ConfigError) as info:
        load_cluster_settings(path)
    assert "nests deeper" in str(info.value) and str(path) in str(info.value)
