"""NAS-Bench-201 and chain spaces behind the common interfaces: architecture formats, joint
networks (parameter groups, pool transfer), derivation from alphas files, configs, summaries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cdarts.alphas_file import AlphasFile, load_alphas, save_alphas
from cdarts.architecture import architecture_from_dict, read_architecture_file, resolve_architecture
from cdarts.checkpoint import load_checkpoint, save_checkpoint
from cdarts.cli.main import app
from cdarts.config import ExperimentConfig, build_config, load_config
from cdarts.derivation import alpha_probabilities, derive_architecture
from cdarts.distributed import DistributedContext
from cdarts.errors import CheckpointError, ConfigError, GenotypeError
from cdarts.runners.data_prep import run_data_prep
from cdarts.runners.search import CHECKPOINT_NAME, run_search
from cdarts.search.build import build_search_model
from cdarts.search.optimizers import build_cycle_optimizers
from cdarts.search.steps import SearchStepper
from cdarts.spaces.chain.architecture import ChainArchitecture
from cdarts.spaces.chain.joint_network import ChainJointNetwork
from cdarts.spaces.darts.architecture import Genotype
from cdarts.spaces.darts.candidates import PRIMITIVES
from cdarts.spaces.darts.parser import reference_genotype
from cdarts.spaces.nasbench201.architecture import Nb201Genotype
from cdarts.spaces.nasbench201.joint_network import Nb201JointNetwork
from cdarts.spaces.nasbench201.networks import nb201_block_positions
from cdarts.spaces.shared.joint_base import JointModel
from tests.conftest import CONFIGS

NB201_ARCH = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
runner = CliRunner()


def _tiny(name: str) -> ExperimentConfig:
    return load_config(str(CONFIGS / f"tiny-{name}.yaml"))


def _model(config: ExperimentConfig) -> JointModel:
    assert config.data.num_classes is not None
    return build_search_model(config, config.data.channels, config.data.num_classes)


# -- architecture formats ---------------------------------------------------------------------


def test_chain_architectures_round_trip_through_string_and_json() -> None:
    cdarts_b = resolve_architecture("cdarts_b")
    assert isinstance(cdarts_b, ChainArchitecture)
    assert cdarts_b.to_string() == "chain:3420-5240-4322-1301-2442"
    assert ChainArchitecture.from_string(cdarts_b.to_string()) == cdarts_b
    assert architecture_from_dict(json.loads(cdarts_b.to_json())) == cdarts_b
    assert resolve_architecture(" chain:3-33-313-3333-333 ") == resolve_architecture("CDARTS_A")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("chain:3-33-313-3333", "chain architecture string"),
        ("chain:3-33-313-33333-333", "chain architecture string"),
        ("chain:3-33-313-3333-393", "choices must be integers 0..5"),
        ("chain:3-33-3a3-3333-333", "chain architecture string"),
    ],
)
def test_malformed_chain_strings_are_one_line_errors(text: str, fragment: str) -> None:
    with pytest.raises(GenotypeError, match=fragment):
        resolve_architecture(text)


def test_every_space_is_read_from_files_and_json_text(tmp_path: Path) -> None:
    architectures = [
        reference_genotype("DARTS_V2"),
        Nb201Genotype.from_arch_string(NB201_ARCH),
        resolve_architecture("CDARTS_A"),
    ]
    for index, architecture in enumerate(architectures):
        path = tmp_path / f"{index}.json"
        path.write_text(architecture.to_json())
        assert read_architecture_file(path) == architecture
        assert resolve_architecture(str(path)) == architecture
        assert resolve_architecture(architecture.to_json()) == architecture
    (tmp_path / "arch.txt").write_text(NB201_ARCH + "\n")
    assert resolve_architecture(str(tmp_path / "arch.txt")) == architectures[1]
    with pytest.raises(GenotypeError, match="unknown search space 'mobile'"):
        architecture_from_dict({"space": "mobile"})


# -- configs ------------------------------------------------------------------------------------


def test_each_space_gets_its_own_regulariser_unless_the_user_sets_one() -> None:
    nb201 = build_config({"search_space": "nasbench201"}).search.regularizer
    assert (nb201.primitives, nb201.reduction, nb201.stage_repeats) == (("none",), "mean", 1)
    chain = build_config({"search_space": "chain", "data": {"image_size": 32}}).search.regularizer
    assert (chain.primitives, chain.enabled) == (("skip",), True)
    no_skip = build_config({"search_space": "chain", "data": {"image_size": 32}, "chain": {"allow_skip": False}})
    assert not no_skip.search.regularizer.enabled
    explicit = build_config(
        {"search_space": "nasbench201", "search": {"regularizer": {"primitives": ["skip_connect"]}}}
    )
    assert explicit.search.regularizer.primitives == ("skip_connect",)
    assert build_config({}).search.regularizer.primitives == ("max_pool_3x3", "avg_pool_3x3", "skip_connect")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"search_space": "nasbench201", "search": {"epochs_per_cycle": 2}}, "exactly one joint epoch per cycle"),
        (
            {"search_space": "nasbench201", "search": {"regularizer": {"primitives": ["sep_conv_3x3"]}}},
            "not candidates",
        ),
        ({"search_space": "chain", "data": {"image_size": 16}}, "at least 32"),
        ({"search_space": "chain", "data": {"image_size": 32}, "chain": {"stage_layers": [1, 1, 5, 1, 1]}}, "1 to 4"),
        ({"search_space": "cells"}, "search_space"),
    ],
)
def test_inconsistent_space_configs_are_refused(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        build_config(data)


# -- joint networks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("space", ["nasbench201", "chain"])
def test_joint_step_updates_what_each_phase_owns(space: str) -> None:
    torch.manual_seed(0)
    config = _tiny(space)
    model = _model(config)
    model.rebuild_eval_network(model.current_genotype())
    arch_ids = {id(p) for p in model.arch_parameters()}
    assert arch_ids and not arch_ids & {id(p) for p in model.weight_parameters()}
    assert not arch_ids & {id(p) for p in model.search_weight_parameters() + model.eval_weight_parameters()}
    stepper = SearchStepper(model, config.search, torch.device("cpu"), DistributedContext())
    optimizers = build_cycle_optimizers(model, config.search)
    size = config.data.image_size
    batch = (torch.randn(4, 3, size, size), torch.tensor([0, 1, 2, 3]))
    alphas_before = [p.detach().clone() for p in model.arch_parameters()]
    search_only = [
        p for p in model.search_weight_parameters() if id(p) not in {id(q) for q in model.eval_weight_parameters()}
    ]
    search_before = [p.detach().clone() for p in search_only]
    metrics = stepper.arch_step(batch, optimizers, reg_coefficient=1.0)
    assert all(torch.isfinite(v) for v in metrics.values()) and float(metrics["search/loss_reg"]) > 0
    assert any(not torch.equal(a, p) for a, p in zip(alphas_before, model.arch_parameters(), strict=True))
    assert all(torch.equal(a, p) for a, p in zip(search_before, search_only, strict=True))  # Step A leaves W_S
    stepper.search_weight_step(batch, optimizers)
    assert any(not torch.equal(a, p) for a, p in zip(search_before, search_only, strict=True))


def test_nasbench201_search_and_eval_networks_have_the_same_skeleton() -> None:
    model = Nb201JointNetwork(in_channels=3, num_classes=4, image_size=8, channels=4, cells_per_stage=2)
    eval_network = model.rebuild_eval_network(Nb201Genotype.from_arch_string(NB201_ARCH))
    assert len(eval_network) == len(model.search_layers) == 2 * 3 + 2
    assert model.candidates[0] == "none" and tuple(model.alphas.shape) == (6, 5)
    out_search, out_eval = model(torch.randn(2, 3, 8, 8), "search"), model(torch.randn(2, 3, 8, 8), "eval")
    assert out_search.ensemble is not None and out_eval.ensemble is not None
    assert out_search.ensemble.shape == out_eval.ensemble.shape == (6, 4)


def _perturb(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn_like(parameter))


@pytest.mark.parametrize("space", ["nasbench201-stage_cells", "chain"])
def test_the_pool_keeps_what_e_learned_for_the_next_cycle(space: str) -> None:
    torch.manual_seed(0)
    space, _, layout = space.partition("-")
    config = _tiny(space)
    if layout:
        config = config.model_copy(update={"nasbench201": config.nasbench201.model_copy(update={"layout": layout})})
    model = _model(config)
    genotype = (
        Nb201Genotype.from_arch_string(NB201_ARCH)
        if space == "nasbench201"
        else ChainArchitecture.from_lists([[1], [2], [3, 3], [4], [5]])
    )
    fresh = model.rebuild_eval_network(genotype)
    inherited = [p.detach().clone() for p in fresh.parameters()]
    _perturb(fresh)
    trained = [p.detach().clone() for p in fresh.parameters()]
    model.write_back_to_pool()
    rebuilt = model.rebuild_eval_network(genotype)
    assert all(torch.equal(a, b) for a, b in zip(trained, rebuilt.parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(inherited, rebuilt.parameters(), strict=True))


def test_the_authors_nasbench201_pool_keeps_convs_and_blocks_while_cell_bn_restarts() -> None:
    """The authors' pool cells have non-affine BN: E's conv weights and whole ResNet blocks survive
    a cycle, the scale and shift of E's cell BN start again at 1 and 0."""
    torch.manual_seed(0)
    model = _model(_tiny("nasbench201"))
    assert isinstance(model, Nb201JointNetwork) and model.layout == "authors"
    genotype = Nb201Genotype.from_arch_string(NB201_ARCH)
    _perturb(model.rebuild_eval_network(genotype))
    trained = {name: p.detach().clone() for name, p in model.require_eval().named_parameters()}
    model.write_back_to_pool()
    eval_network = model.rebuild_eval_network(genotype)
    rebuilt = dict(eval_network.named_parameters())
    blocks = {str(index) for index in nb201_block_positions(model.cells_per_stage)}
    cell_bn = {
        f"{prefix}.{name}"
        for prefix, module in eval_network.named_modules()
        if isinstance(module, torch.nn.BatchNorm2d) and prefix.split(".")[0] not in blocks
        for name, _ in module.named_parameters()
    }
    restarted = 0
    for name, value in rebuilt.items():
        if name in cell_bn:
            restarted += 1
            assert torch.equal(value, torch.ones_like(value) if name.endswith("weight") else torch.zeros_like(value))
        else:
            assert torch.equal(value, trained[name]), name
    assert restarted > 0


def test_the_chain_pool_holds_the_tied_fifth_layer_of_the_80_channel_stage() -> None:
    model = ChainJointNetwork(in_channels=3, num_classes=4, image_size=32, stage_layers=(1, 1, 4, 1, 1))
    assert {key for key in model.weight_pool if key.startswith("s2_p4_")} == {f"s2_p4_c{c}" for c in range(6)}
    genotype = ChainArchitecture.from_lists([[0], [0], [1, 2, 3, 4], [0], [0]])
    stages = model.rebuild_eval_network(genotype)
    assert len(stages[2]) == 5
    _perturb(stages[2][4])
    model.write_back_to_pool()
    pooled = model.weight_pool["s2_p4_c4"]
    assert all(torch.equal(a, b) for a, b in zip(stages[2][4].parameters(), pooled.parameters(), strict=True))
    assert not all(
        torch.equal(a, b)
        for a, b in zip(stages[2][4].parameters(), model.weight_pool["s2_p3_c4"].parameters(), strict=True)
    )


def test_chain_slots_drop_skip_but_a_stages_first_slot_can_never_skip() -> None:
    model = ChainJointNetwork(in_channels=3, num_classes=4, image_size=32, stage_layers=(2, 1, 1, 1, 3))
    with torch.no_grad():
        model.search_network.alphas.zero_()
        model.search_network.alphas[:, -1] = 10.0  # skip is the strongest everywhere
        model.search_network.alphas[0, 3] = 5.0
    genotype = model.current_genotype()
    # Every stage keeps its first slot (skip is masked there: the best block wins), the rest skip.
    assert [len(stage) for stage in genotype.choices] == [1, 1, 1, 1, 1]
    assert genotype.choices[0] == (3,)
    probabilities = model.alpha_probabilities()["alphas"]
    assert probabilities[0, -1] == 0 and probabilities[1, -1] > 0.99


# -- alphas files and derivation ------------------------------------------------------------------


def test_alphas_files_derive_the_same_architecture_the_search_holds(tmp_path: Path) -> None:
    torch.manual_seed(1)
    for space, layout in (("nasbench201", {}), ("chain", {"stage_layers": [1, 1, 2, 1, 1], "allow_skip": True})):
        model = _model(_tiny(space))
        with torch.no_grad():
            for alphas in model.arch_parameters():
                alphas.normal_()
        path = tmp_path / f"{space}.pt"
        save_alphas(AlphasFile(space, model.candidates, dict(model.named_alphas()), layout), path)
        loaded = load_alphas(path)
        assert derive_architecture(loaded) == model.current_genotype()
        for name, probabilities in model.alpha_probabilities().items():
            assert torch.allclose(alpha_probabilities(loaded)[name], probabilities)


def test_old_darts_alphas_files_are_still_read_and_bad_shapes_refused(tmp_path: Path) -> None:
    alphas = {"alphas_normal": torch.randn(14, 8), "alphas_reduce": torch.randn(14, 8)}
    primitives = list(PRIMITIVES)  # format 1 stored the DARTS op names in this order
    save_checkpoint({"format": 1, "primitives": primitives, "n_nodes": 4, **alphas}, tmp_path / "old.pt")
    assert isinstance(derive_architecture(load_alphas(tmp_path / "old.pt")), Genotype)
    save_alphas(AlphasFile("nasbench201", ("a",) * 5, {"alphas": torch.zeros(7, 5)}), tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"shape \(7, 5\), expected \(6, 5\)"):
        load_alphas(tmp_path / "bad.pt")


# -- summaries and the CLI ------------------------------------------------------------------------


def test_model_summary_covers_every_space() -> None:
    nb201 = runner.invoke(app, ["model", "summary", "-g", NB201_ARCH, "--dataset", "cifar10", "--json"])
    assert nb201.exit_code == 0, nb201.output
    result = json.loads(nb201.stdout)
    assert result["space"] == "nasbench201" and result["params"] == result["params_without_aux"]
    # The benchmark's largest network (all nor_conv_3x3) has 1.53 M parameters at C=16, N=5.
    best = runner.invoke(
        app,
        [
            "model",
            "summary",
            "-g",
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
            "--dataset",
            "cifar10",
            "--json",
        ],
    )
    assert 1_520_000 < json.loads(best.stdout)["params"] < 1_540_000
    assert result["params"] < json.loads(best.stdout)["params"]
    chain = runner.invoke(app, ["model", "summary", "-g", "chain:3-33-313-3333-333", "--dataset", "imagenet", "--json"])
    assert json.loads(chain.stdout)["params"] == 6_993_560
    refused = runner.invoke(app, ["model", "summary", "-g", NB201_ARCH, "--dataset", "imagenet"])
    assert refused.exit_code == 2 and "32 px" in refused.output


def test_genotype_show_describes_every_space() -> None:
    shown = runner.invoke(app, ["genotype", "show", NB201_ARCH])
    assert shown.exit_code == 0 and "node 2: none <- node 0, skip_connect <- node 1" in shown.stdout
    chain = runner.invoke(app, ["genotype", "show", "CDARTS_A"])
    assert chain.exit_code == 0 and "stage 3 (80 ch): MB6 5x5 SE, MB6 3x3 SE, MB6 5x5 SE" in chain.stdout


# -- the search loop ----------------------------------------------------------------------------------


@pytest.mark.parametrize("space", ["nasbench201", "chain"])
def test_interrupted_and_resumed_search_equals_an_uninterrupted_one(space: str, tmp_path: Path) -> None:
    config = _tiny(space)
    config = config.model_copy(update={"search": config.search.model_copy(update={"search_iterations": 4})})
    run_data_prep(config.data, config.seed, tmp_path / "data")
    straight = run_search(config, tmp_path / "data", tmp_path / "straight")
    partial = run_search(config, tmp_path / "data", tmp_path / "resumed", max_iterations=2)
    assert not partial.completed and not (tmp_path / "resumed" / "genotype.json").exists()
    resumed = run_search(config, tmp_path / "data", tmp_path / "resumed")
    assert resumed.completed and resumed.genotype == straight.genotype
    assert all(torch.equal(straight.alphas[k], resumed.alphas[k]) for k in straight.alphas)
    state_a = load_checkpoint(tmp_path / "straight" / CHECKPOINT_NAME)["model"]
    state_b = load_checkpoint(tmp_path / "resumed" / CHECKPOINT_NAME)["model"]
    assert state_a.keys() == state_b.keys() and all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert read_architecture_file(tmp_path / "resumed" / "genotype.json") == straight.genotype
