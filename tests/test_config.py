from __future__ import annotations

from pathlib import Path

import pytest

from cdarts.config import ExperimentConfig, load_config, parse_overrides
from cdarts.errors import ConfigError
from tests.conftest import CONFIGS


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_is_valid(path: Path) -> None:
    assert isinstance(load_config(str(path)), ExperimentConfig)


def test_official_presets_follow_the_reference_scripts() -> None:
    cifar = load_config(str(CONFIGS / "cifar10.yaml")).search
    assert (cifar.warmup_epochs, cifar.search_iterations, cifar.eval_warmup_epochs) == (2, 32, 1)
    assert (cifar.weight_lr, cifar.arch_lr, cifar.distill_type, cifar.fix_heads) == (0.08, 3e-4, "smooth_l1", True)
    assert cifar.regularizer.ratio == 0.667 and cifar.num_cycles == 30
    imagenet = load_config(str(CONFIGS / "imagenet.yaml")).search
    assert (imagenet.warmup_epochs, imagenet.eval_warmup_epochs, imagenet.sample_ratio) == (10, 3, 0.2)
    assert (imagenet.distill_type, imagenet.fix_heads, imagenet.weight_lr) == ("kl", False, 0.8)
    darts = load_config(str(CONFIGS / "imagenet.yaml")).darts
    assert darts.eval_cells == (5, 5, 4) and darts.stem == "imagenet"


def test_preset_names_resolve_from_the_configs_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDARTS_CONFIG_DIR", str(CONFIGS))
    assert load_config("tiny").name == "tiny"


def test_overrides_are_applied_and_typed() -> None:
    config = load_config(
        str(CONFIGS / "tiny.yaml"), ["search.arch_lr=0.01", "seed=7", "search.regularizer.enabled=false"]
    )
    assert config.search.arch_lr == 0.01 and config.seed == 7 and config.search.regularizer.enabled is False


def test_digest_changes_with_content() -> None:
    a = load_config(str(CONFIGS / "tiny.yaml"))
    b = load_config(str(CONFIGS / "tiny.yaml"), ["seed=1"])
    assert a.digest() == load_config(str(CONFIGS / "tiny.yaml")).digest() != b.digest()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["search.bogus=1"], "search.bogus: unknown key"),
        (["search.arch_lr=fast"], "search.arch_lr: Input should be a valid number"),
        (["search.distill_type=l2"], "search.distill_type"),
        (["search.warmup_epochs=10"], "search_iterations must exceed warmup_epochs"),
        (["data.batch_size=0"], "data.batch_size"),
        (["novalue"], "must look like key.subkey=value"),
        (["search.regularizer.primitives=[conv_9x9]"], "are not candidates of the darts space"),
    ],
)
def test_bad_values_give_one_line_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config(str(CONFIGS / "tiny.yaml"), overrides)
    assert "\n" not in str(info.value)


def test_bad_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "missing.yaml"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("search: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(broken))
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(str(scalar))


def test_parse_overrides_nests_dotted_keys() -> None:
    assert parse_overrides(["a.b.c=1", "a.d=x"]) == {"a": {"b": {"c": 1}, "d": "x"}}
