"""The contract every registered search space keeps (the way timm tests every registered model):
build its joint network, run one joint step that touches only each phase's parameter groups,
derive one architecture from the live model and from an alphas file alike, round-trip it through
JSON and text, retrain one step, draw it and summarise the supernet. A new space registered in
``cdarts.spaces.registry`` is covered here without touching this file; it needs a preset
``configs/tiny-<name>.yaml``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cdarts.alphas_file import AlphasFile, load_alphas, save_alphas
from cdarts.architecture import architecture_from_dict, architecture_from_json, resolve_architecture
from cdarts.config import ExperimentConfig, load_config
from cdarts.derivation import derive_architecture
from cdarts.distributed import DistributedContext
from cdarts.search.optimizers import build_cycle_optimizers
from cdarts.search.steps import SearchStepper
from cdarts.spaces.base import SearchSpace
from cdarts.spaces.registry import get_space, space_names, space_of
from cdarts.spaces.shared.joint_base import JointModel
from cdarts.supernet_summary import summarize_supernet
from tests.conftest import CONFIGS


def _config(name: str) -> ExperimentConfig:
    path = CONFIGS / ("tiny.yaml" if name == "darts" else f"tiny-{name}.yaml")
    config = load_config(str(path))
    assert config.search_space == name
    return config


def _setup(name: str) -> tuple[SearchSpace, ExperimentConfig, JointModel]:
    torch.manual_seed(0)
    space, config = get_space(name), _config(name)
    assert config.data.num_classes is not None
    model = space.build_joint_network(config, config.data.channels, config.data.num_classes)
    with torch.no_grad():  # away from the near-uniform initial alphas: a derivation that drifts shows
        for alphas in model.arch_parameters():
            alphas.normal_()
    return space, config, model


def _batch(config: ExperimentConfig, count: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    assert config.data.num_classes is not None
    size = config.data.image_size
    return torch.randn(count, config.data.channels, size, size), torch.arange(count) % config.data.num_classes


def _snapshot(parameters: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    return [p.detach().clone() for p in parameters]


def _changed(before: list[torch.Tensor], parameters: list[torch.nn.Parameter]) -> bool:
    return any(not torch.equal(a, p) for a, p in zip(before, parameters, strict=True))


def test_every_space_is_registered() -> None:
    assert set(space_names()) == {"darts", "nasbench201", "chain"}
    assert {get_space(name).name for name in space_names()} == set(space_names())
    assert list(ExperimentConfig.space_sections()) == list(space_names())  # a config section per space


@pytest.mark.parametrize("name", space_names())
def test_the_config_section_names_the_networks_candidates(name: str) -> None:
    _, config, model = _setup(name)
    assert config.space_section() is getattr(config, name)
    assert config.space_candidates() == model.candidates


@pytest.mark.parametrize("name", space_names())
def test_one_joint_step_touches_only_each_phases_groups(name: str) -> None:
    _, config, model = _setup(name)
    model.rebuild_eval_network(model.current_genotype())
    alphas = model.arch_parameters()
    eval_ids = {id(p) for p in model.eval_weight_parameters()}
    search_ids = {id(p) for p in model.search_weight_parameters()}
    search_only = [p for p in model.search_weight_parameters() if id(p) not in eval_ids]
    eval_only = [p for p in model.eval_weight_parameters() if id(p) not in search_ids]
    pool = list(model.get_submodule("weight_pool").parameters())
    assert alphas and search_only and eval_only and pool
    assert not {id(p) for p in alphas} & (eval_ids | search_ids | {id(p) for p in pool})
    stepper = SearchStepper(model, config.search, torch.device("cpu"), DistributedContext())
    optimizers = build_cycle_optimizers(model, config.search)

    before = [_snapshot(group) for group in (alphas, search_only, eval_only, pool)]
    metrics = stepper.arch_step(_batch(config), optimizers, reg_coefficient=1.0)
    assert all(bool(torch.isfinite(value)) for value in metrics.values())
    assert [_changed(b, g) for b, g in zip(before, (alphas, search_only, eval_only, pool), strict=True)] == [
        True,  # Step A moves the alphas
        False,  # not S's own weights
        True,  # and E's
        False,  # the pool only changes at the end of a cycle
    ]
    before = [_snapshot(group) for group in (alphas, search_only, eval_only, pool)]
    stepper.search_weight_step(_batch(config), optimizers)
    assert [_changed(b, g) for b, g in zip(before, (alphas, search_only, eval_only, pool), strict=True)] == [
        False,
        True,  # Step B moves only W_S
        False,
        False,
    ]


@pytest.mark.parametrize("name", space_names())
def test_the_live_model_and_its_alphas_file_derive_one_architecture(name: str, tmp_path: Path) -> None:
    space, config, model = _setup(name)
    live = model.current_genotype()
    assert space_of(live) is space
    layout = space.alphas_layout(config)
    alphas = {key: value.detach() for key, value in model.named_alphas().items()}
    assert space.derive_from_alphas(alphas, model.candidates, layout) == live
    save_alphas(AlphasFile(name, model.candidates, alphas, layout), tmp_path / "alphas.pt")
    loaded = load_alphas(tmp_path / "alphas.pt")
    assert derive_architecture(loaded) == live
    rows = space.expected_alpha_rows(layout)
    assert {key: tuple(value.shape) for key, value in alphas.items()} == {
        key: (count, len(model.candidates)) for key, count in rows.items()
    }
    assert {key: len(labels) for key, labels in space.alpha_row_labels(layout).items()} == rows


@pytest.mark.parametrize("name", space_names())
def test_the_architecture_round_trips_through_json_and_text(name: str) -> None:
    space, _, model = _setup(name)
    architecture = model.current_genotype()
    assert architecture_from_dict(architecture.to_dict()) == architecture
    assert space.architecture_from_dict(architecture.to_dict()) == architecture
    assert architecture_from_json(architecture.to_json()) == architecture
    assert resolve_architecture(architecture.to_string()) == architecture
    assert space.describe(architecture).strip()


@pytest.mark.parametrize("name", space_names())
def test_the_derived_architecture_retrains_one_step(name: str) -> None:
    space, config, model = _setup(name)
    assert config.data.num_classes is not None
    architecture = model.current_genotype()
    spec = space.retrain_spec(config, config.data.channels, config.data.num_classes)
    network = space.build_retrain_network(architecture, spec)
    images, labels = _batch(config)
    logits, _ = network(images)
    assert tuple(logits.shape) == (4, config.data.num_classes)
    before = _snapshot(list(network.parameters()))
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(logits, labels).backward()
    optimizer.step()
    assert _changed(before, list(network.parameters()))


@pytest.mark.parametrize("name", space_names())
def test_the_architecture_is_drawn_and_the_supernet_summarised(name: str, tmp_path: Path) -> None:
    space, config, model = _setup(name)
    architecture = model.current_genotype()
    drawings = space.drawings(architecture)
    assert drawings and all(caption and svg.lstrip().startswith("<svg") for caption, svg in drawings)
    written = space.write_diagrams(architecture, tmp_path)
    assert written and all(path.is_file() and path.read_text().lstrip().startswith("<svg") for path in written)
    summary = summarize_supernet(model, config.data.channels, config.data.image_size)
    assert len(summary.heads) == 2 and all(len(head.input_shape) == 3 for head in summary.heads)
    assert summary.total == sum(p.numel() for p in model.parameters())


OTHER_ARCHITECTURE = {
    "darts": ("DARTS_V1", "DARTS_V2"),
    "nasbench201": (
        "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|",
        "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_3x3~1|none~2|",
    ),
    "chain": ("CDARTS_A", "CDARTS_B"),
}


@pytest.mark.parametrize("name", space_names())
def test_genotype_convert_and_diff_work_in_every_space(name: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cdarts.cli.main import app

    runner = CliRunner()
    first, second = OTHER_ARCHITECTURE[name]
    for form in ("json", "text"):
        out = tmp_path / f"{form}.txt"
        converted = runner.invoke(app, ["genotype", "convert", first, "--to", form, "--out", str(out)])
        assert converted.exit_code == 0, converted.output
        assert resolve_architecture(str(out)) == resolve_architecture(first)
        same = runner.invoke(app, ["genotype", "diff", first, str(out)])
        assert same.exit_code == 0 and "identical" in same.stdout
    different = runner.invoke(app, ["genotype", "diff", first, second, "--json"])
    assert different.exit_code == 1
    report = json.loads(different.stdout)
    assert not report["identical"] and all(d["text"] for d in report["differences"])
    other_space = next(OTHER_ARCHITECTURE[n][0] for n in space_names() if n != name)
    across = runner.invoke(app, ["genotype", "diff", first, other_space])
    assert across.exit_code == 1 and f"a is a {name} architecture" in across.stdout
    if name != "darts":
        refused = runner.invoke(app, ["genotype", "convert", first, "--to", "flat"])
        assert refused.exit_code == 2
        assert [line for line in refused.output.splitlines() if line.strip()] == [
            f"cdarts: error: --to flat is a DARTS-space form; a {name} architecture has json, text"
        ]
