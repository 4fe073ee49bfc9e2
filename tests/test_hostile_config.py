"""Hostile configs: non-finite or absurd values, impossible devices, configs the prepared data
cannot serve, and deeply nested YAML/JSON -- each refused in one line naming the key or file,
before anything is written to the output directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cdarts.cli.main import app
from cdarts.config import build_config, load_config, load_config_spec, parse_overrides
from cdarts.errors import CdartsError, ConfigError, DataError, GenotypeError
from cdarts.out_dir_lock import LOCK_NAME
from cdarts.safe_yaml import MAX_DEPTH, load_json, load_yaml


def _written(out: Path) -> list[str]:
    """Everything under ``out`` but the stage lock (taken before the command reads its config)."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.name != LOCK_NAME) if out.exists() else []


def _one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("cdarts: error:"), output
    assert "Traceback" not in output
    return lines[0]


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
    ("darts.init_channels", "100000"),
    ("darts.n_nodes", "0"),
    ("darts.search_cells", "[0, 0, 0]"),
    ("darts.eval_cells", "[1, 1, 100000]"),
    ("search.search_iterations", "1000000000"),
    ("darts.retrain.cells", "100000"),
    ("retrain.epochs", "0"),
    ("retrain.batch_size", "1000000"),
    ("nasbench201.cells_per_stage", "0"),
    ("evaluate.timing_repeats", "0"),
    ("seed", "-5"),
    ("seed", "99999999999999999999"),
    ("search.arch_betas", "[0.5, .inf]"),
    ("search.arch_betas", "[0.5, 1.0]"),
    ("search.head_channels", "[0, 16]"),
    ("search.weight_lr_min", "1.0"),  # above search.weight_lr (0.08)
    ("retrain.weight_lr_min", "1.0"),  # above retrain.weight_lr (0.05)
    ("retrain.auxiliary_weight", ".nan"),
    ("tracking.promotion_margin", ".inf"),
    ("chain.dropout", ".nan"),
    ("data.image_size", "30"),  # not a multiple of 4: the cells halve it twice
    ("device", "mps"),
    ("device", "tpu"),
    ("device", "cuda:abc"),
    ("device", "'cpu; rm -rf /'"),
]


@pytest.mark.parametrize(("key", "value"), BAD_VALUES)
def test_bad_value_refused_naming_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("tiny", [f"{key}={value}"])
    message = str(info.value)
    assert "\n" not in message
    section, _, leaf = key.rpartition(".")
    # the dotted key, or a section check's "search: weight_lr_min must ..."
    assert key in message or f"{section}: {leaf} " in message, message


def test_every_preset_still_loads() -> None:
    presets = sorted(Path("configs").glob("*.yaml"))
    assert len(presets) >= 5
    for path in presets:
        load_config(str(path))


def test_nan_in_the_config_file_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "nan.yaml"
    path.write_text("search:\n  weight_decay: .NaN\nretrain:\n  grad_clip: .inf\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    message = str(info.value)
    assert "\n" not in message and "search.weight_decay" in message and "finite" in message


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["darts.stem=imagenet", "data.image_size=48"], "darts.stem"),  # 48 is not a multiple of 32
        (["data.image_size=6"], "data.image_size"),  # (on tiny-nasbench201, below)
        (["data.source=digits", "data.image_size=2048"], "image_size"),  # 1797 float images of 2048 px
        (["data.num_train=9000000", "data.image_size=32"], "data.num_train"),  # 9M x 32 x 32 x 3 floats: 103 GiB
    ],
)
def test_sizes_no_network_can_use(overrides: list[str], key: str) -> None:
    preset = "tiny-nasbench201" if overrides == ["data.image_size=6"] else "tiny"
    with pytest.raises(ConfigError) as info:
        load_config(preset, overrides)
    assert key in str(info.value) and "\n" not in str(info.value)


def test_bounds_are_not_off_by_one() -> None:
    """The limits themselves are accepted; only values beyond them are refused."""
    config = load_config("tiny", ["search.weight_momentum=0.0", "search.arch_betas=[0.0, 0.9999]", "seed=4294967295"])
    assert config.seed == 2**32 - 1 and config.search.arch_betas == (0.0, 0.9999)
    assert load_config("tiny", ["device=cuda:3"]).device == "cuda:3"  # the form; the machine is checked later
    with pytest.raises(ConfigError, match="seed"):
        load_config("tiny", ["seed=4294967296"])


@pytest.mark.parametrize(
    ("key", "value"), [("search.arch_lr", ".inf"), ("data.image_size", "1000000"), ("darts.search_cells", "[0,0,0]")]
)
def test_cli_refuses_bad_value_and_writes_nothing(tmp_path: Path, key: str, value: str) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["stage", "search", "--config", "tiny", "--set", f"{key}={value}", "--out", str(out)]
    )
    assert result.exit_code == 2, result.output
    assert key in _one_error_line(result.output)
    assert _written(out) == []


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


# -- devices ------------------------------------------------------------------------------------


def _no_cuda(monkeypatch: pytest.MonkeyPatch, count: int = 0) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


@pytest.mark.parametrize(
    ("name", "gpus", "expected"),
    [
        ("cuda", 0, "CUDA is not available"),
        ("cuda:7", 0, "CUDA is not available"),
        ("cuda:7", 2, "has 2 CUDA device(s)"),
        ("cuda:2", 2, "has 2 CUDA device(s)"),
        ("mps", 0, "unsupported device type"),
        ("not-a-device", 0, "unknown device"),
    ],
)
def test_resolve_device_refuses_what_the_machine_lacks(
    monkeypatch: pytest.MonkeyPatch, name: str, gpus: int, expected: str
) -> None:
    from cdarts.devices import resolve_device

    _no_cuda(monkeypatch, gpus)
    with pytest.raises(ConfigError) as info:
        resolve_device(name)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_resolve_device_accepts_an_existing_index(monkeypatch: pytest.MonkeyPatch) -> None:
    from cdarts.devices import resolve_device

    _no_cuda(monkeypatch, 2)
    assert str(resolve_device("cuda:1")) == "cuda:1"
    assert str(resolve_device("cpu")) == "cpu"


def test_cli_impossible_device_before_data_prep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --data the search prepares the data into OUT/data first: the device is checked before."""
    _no_cuda(monkeypatch)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["stage", "search", "--config", "tiny", "--set", "device=cuda:7", "--out", str(out)]
    )
    assert result.exit_code == 2, result.output
    assert "cuda:7" in _one_error_line(result.output)
    assert _written(out) == []


# -- the config against the prepared data ------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "overrides", "key"),
    [
        ("search", ["data.num_classes=10"], "data.num_classes"),
        ("retrain", ["data.num_classes=3"], "data.num_classes"),
        ("search", ["data.image_size=16"], "data.image_size"),  # the arrays were stored at 8 px
        ("retrain", ["data.image_size=32"], "data.image_size"),
        ("search", ["search.batch_size=40"], "search.batch_size"),  # the search halves have 32 images each
        ("retrain", ["retrain.batch_size=65"], "retrain.batch_size"),  # 64 training images
    ],
)
def test_config_the_data_cannot_serve(tiny_dataset: Path, stage: str, overrides: list[str], key: str) -> None:
    from cdarts.data.prepared import PreparedDataset
    from cdarts.data_compatibility import check_config_against_data

    prepared = PreparedDataset.load(tiny_dataset)
    check_config_against_data(load_config("tiny"), prepared, stage, world_size=1)  # type: ignore[arg-type]
    with pytest.raises(DataError) as info:
        check_config_against_data(load_config("tiny", overrides), prepared, stage, world_size=1)  # type: ignore[arg-type]
    message = str(info.value)
    assert key in message and str(tiny_dataset) in message and "\n" not in message


def test_batch_sizes_are_per_process(tiny_dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cdarts.data.prepared import PreparedDataset
    from cdarts.data_compatibility import check_config_against_data

    prepared = PreparedDataset.load(tiny_dataset)
    config = load_config("tiny", ["search.batch_size=16", "retrain.batch_size=16"])
    for stage in ("search", "retrain"):
        check_config_against_data(config, prepared, stage, world_size=2)  # 32 / 2 and 64 / 2 images each
    with pytest.raises(DataError, match=r"search\.batch_size 16 .* \(4 processes\)"):
        check_config_against_data(config, prepared, "search", world_size=4)
    monkeypatch.setenv("WORLD_SIZE", "8")  # torchrun's, when not given
    with pytest.raises(DataError, match=r"retrain\.batch_size 16 .* \(8 processes\)"):
        check_config_against_data(config, prepared, "retrain")


def test_tampered_counts_are_refused(tiny_dataset: Path, tmp_path: Path) -> None:
    import shutil

    from cdarts.data.prepared import PreparedDataset
    from cdarts.data_compatibility import check_config_against_data

    copy = tmp_path / "prepared"
    shutil.copytree(tiny_dataset, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["counts"]["search_val"] = "many"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"counts\.search_val"):
        check_config_against_data(load_config("tiny"), PreparedDataset.load(copy), "search", world_size=1)


@pytest.mark.parametrize(
    ("stage", "override"),
    [("search", "search.batch_size=40"), ("search", "data.num_classes=7"), ("retrain", "retrain.batch_size=65")],
)
def test_cli_stage_refuses_before_writing(tiny_dataset: Path, tmp_path: Path, stage: str, override: str) -> None:
    out = tmp_path / "out"
    extra = ["--genotype", "DARTS_V2"] if stage == "retrain" else []
    args = ["stage", stage, "--config", "tiny", "--data", str(tiny_dataset), "--set", override, "--out", str(out)]
    result = CliRunner().invoke(app, [*args, *extra, "--no-progress"])
    assert result.exit_code == 2, result.output
    assert override.partition("=")[0] in _one_error_line(result.output)
    assert _written(out) == []


# -- more readers with bounded nesting ----------------------------------------------------------


def test_deep_manifest(tiny_dataset: Path, tmp_path: Path) -> None:
    import shutil

    from cdarts.data.prepared import PreparedDataset

    copy = tmp_path / "prepared"
    shutil.copytree(tiny_dataset, copy)
    (copy / "manifest.json").write_text('{"schema_version": 1, "classes": ' + _deep_flow() + "}")
    with pytest.raises(DataError) as info:
        PreparedDataset.load(copy)
    assert "nests deeper" in str(info.value) and "manifest.json" in str(info.value)


def test_deep_benchmark_file(tmp_path: Path) -> None:
    from cdarts.spaces.nasbench201.lookup import JsonBenchmarkLookup

    path = tmp_path / "bench.json"
    path.write_text('{"|none~0|": ' + _deep_flow() + "}")
    with pytest.raises(DataError) as info:
        JsonBenchmarkLookup(path)
    assert "nests deeper" in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("opening", ["[", '{"a": '])
def test_deep_architecture_json_and_trainjob_settings(opening: str) -> None:
    from cdarts.architecture import architecture_from_json
    from cdarts.trainjob.spec import TrainJobSettings

    text = opening * DEEP + "1" + ("]" if opening == "[" else "}") * DEEP
    with pytest.raises(GenotypeError, match="nests deeper"):
        architecture_from_json(text)
    with pytest.raises(CdartsError, match="TrainJob settings nests deeper"):
        TrainJobSettings.from_json(text)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b'{"stack": ', "is unreadable: Expecting value"),
        (b"[1, 2]", "is not a cdarts launch file"),
        (b'{"stack": "none"}', "is not a cdarts launch file"),
        (b'{"stack": 3, "pipeline": "search"}', "is not a cdarts launch file"),
        (b'{"stack": "none", "pipeline": ' + _deep_flow().encode() + b"}", "nests deeper"),
        (b'{"stack": "\xff"}', "is unreadable"),
    ],
)
def test_a_resumed_run_with_a_damaged_launch_file_is_refused_in_one_line(
    tmp_path: Path, content: bytes, fragment: str
) -> None:
    (tmp_path / "launch.json").write_bytes(content)
    result = CliRunner().invoke(app, ["run", "--resume", str(tmp_path)])
    assert result.exit_code == 2
    assert fragment in _one_error_line(result.output)
