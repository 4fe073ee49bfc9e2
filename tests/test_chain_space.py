"""The chain-structured space's blocks and the published CDARTS-a/b networks, checked against the
exact figures of ../shared/reference/chain-space.md (sections 1.2, 3.2, 3.3, 3.5 and 5)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from cdarts.cli.main import app
from cdarts.errors import GenotypeError
from cdarts.model_summary import summarize_genotype
from cdarts.spaces.chain.architecture import ChainArchitecture, chain_architecture
from cdarts.spaces.chain.blocks import InvertedResidual, round_to_8
from cdarts.spaces.chain.network import ChainNetwork, layer_specs
from cdarts.spaces.registry import get_space

runner = CliRunner()


def test_channel_rounding_follows_the_reference_rule() -> None:
    assert [round_to_8(v) for v in (96 / 4, 144 / 4, 160 / 4, 240 / 4, 480 / 4, 576 / 4, 1152 / 4)] == [
        24, 40, 40, 64, 120, 144, 288,
    ]  # fmt: skip
    assert [round_to_8(v) for v in (320 / 4, 384 / 4, 768 / 4, 16 / 4, 3.0)] == [80, 96, 192, 8, 8]


def test_one_inverted_residual_matches_the_closed_forms() -> None:
    block = InvertedResidual(16, 24, 5, 6, 2)
    assert block.mid_channels == 96 and block.squeeze_excite.reduce.out_channels == 24
    assert sum(p.numel() for p in block.parameters()) == 11_400
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        block.eval()(torch.zeros(1, 16, 112, 112))
    assert counter.get_total_flops() // 2 == 34_023_936
    assert not block.residual and InvertedResidual(24, 24, 3, 4, 1).residual


@pytest.mark.parametrize(
    ("name", "params", "multiply_adds", "layers"),
    [("CDARTS_A", 6_993_560, 297_655_936, 13), ("CDARTS_B", 6_465_224, 387_858_432, 21)],
)
def test_published_architectures_reproduce_their_size_and_cost(
    name: str, params: int, multiply_adds: int, layers: int
) -> None:
    architecture = ChainArchitecture.from_lists(chain_architecture(name))
    spec, _, _ = get_space("chain").paper_network(architecture, "imagenet", None, None)
    summary = summarize_genotype(architecture, spec)
    assert (summary.params, summary.multiply_adds) == (params, multiply_adds)
    assert len(ChainNetwork(chain_architecture(name)).layers()) == layers
    paper = {"CDARTS_A": (7.0e6, 294e6), "CDARTS_B": (6.4e6, 394e6)}[name]
    assert abs(summary.params - paper[0]) < 0.1e6 and abs(summary.multiply_adds / paper[1] - 1) < 0.02


def test_the_full_80_channel_stage_ties_its_last_choice_twice() -> None:
    stages = layer_specs(chain_architecture("CDARTS_B"))
    assert [len(stage) for stage in stages] == [4, 4, 5, 4, 4]
    assert stages[2][3] == stages[2][4]  # the tied fifth layer repeats the fourth choice
    assert [(s.kernel_size, s.expansion) for s in stages[2]] == [(7, 4), (5, 6), (5, 4), (5, 4), (5, 4)]
    assert [s.stride for stage in stages for s in stage[:1]] == [2, 2, 2, 1, 2]
    assert len(layer_specs([[3], [3], [3, 1, 3], [3], [3]])[2]) == 3  # a shorter stage never reaches the tie


def test_stage_outputs_have_the_reference_shapes() -> None:
    model = ChainNetwork(chain_architecture("CDARTS_A")).eval()
    with torch.no_grad():
        outputs = model.stage_outputs(torch.zeros(1, 3, 224, 224))
        logits = model(torch.zeros(2, 3, 224, 224))
    shapes = [tuple(out.shape[1:]) for out in outputs]
    assert shapes == [(16, 112, 112), (24, 56, 56), (40, 28, 28), (80, 14, 14), (96, 14, 14), (192, 7, 7), (960, 7, 7)]
    assert logits.shape == (2, 1000)


def test_squeeze_excite_widths_follow_the_expanded_width() -> None:
    widths = {
        layer.mid_channels: layer.squeeze_excite.reduce.out_channels
        for layer in ChainNetwork(chain_architecture("CDARTS_B")).layers()
    }
    assert widths == {96: 24, 144: 40, 160: 40, 480: 120, 320: 80, 576: 144, 384: 96, 768: 192}
    assert ChainNetwork(chain_architecture("CDARTS_A")).stem[1].squeeze_excite.reduce.out_channels == 8


def test_drop_path_ramps_with_depth_and_only_acts_in_training() -> None:
    model = ChainNetwork(chain_architecture("CDARTS_A"))
    model.set_drop_path_prob(0.2)
    rates = [layer.drop_path.drop_prob for layer in model.layers()]
    assert rates[0] == 0.0 and rates == sorted(rates) and rates[-1] == pytest.approx(0.2 * 12 / 13)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize(
    ("choices", "fragment"),
    [
        ([[3], [3], [3], [3]], "5 searchable stages"),
        ([[3], [], [3], [3], [3]], "1 to 4 layers"),
        ([[3], [3, 3, 3, 3, 3], [3], [3], [3]], "1 to 4 layers"),
        ([[3], [6], [3], [3], [3]], "choice 6"),
    ],
)
def test_bad_choice_lists_are_refused(choices: list[list[int]], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        layer_specs(choices)


def test_model_summary_reports_the_chain_models() -> None:
    result = runner.invoke(app, ["model", "summary", "-g", "CDARTS_A", "--dataset", "imagenet", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["params"], summary["multiply_adds"], summary["space"]) == (6_993_560, 297_655_936, "chain")
    wrong = runner.invoke(app, ["model", "summary", "-g", "CDARTS_B", "--dataset", "cifar10"])
    assert wrong.exit_code == 2 and "ImageNet model" in wrong.stderr
    with pytest.raises(GenotypeError, match="unknown chain-space architecture"):
        chain_architecture("CDARTS_C")
