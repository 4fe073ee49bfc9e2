"""``cdarts model summary --supernet``: S, E, pool, heads (with the map each reads) and alphas of
every space, and NAS-Bench-201 laid out as the authors' benchmark201 code runs it."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from cdarts.cli.main import app
from cdarts.config import load_config
from cdarts.search.build import build_search_model
from cdarts.spaces.nasbench201.joint_network import Nb201JointNetwork
from cdarts.spaces.nasbench201.networks import Nb201SearchCell, ResNetBasicBlock
from cdarts.supernet_summary import summarize_supernet

runner = CliRunner()


def _summary(*args: str) -> dict[str, object]:
    result = runner.invoke(app, ["model", "summary", "--supernet", "--json", *args])
    assert result.exit_code == 0, result.output
    summary: dict[str, object] = json.loads(result.output)
    return summary


def _head_shapes(summary: dict[str, object]) -> list[list[int]]:
    return [head["input_shape"] for head in summary["heads"]]  # type: ignore[attr-defined]


def test_nasbench201_heads_read_the_outputs_of_the_stride_2_blocks() -> None:
    summary = _summary("-c", "nasbench201-cifar10")
    assert summary["space"] == "nasbench201"
    assert _head_shapes(summary) == [[32, 16, 16], [64, 8, 8]]  # 2C x 16 x 16 and 4C x 8 x 8, C = 16


def test_the_stage_cells_layout_keeps_the_earlier_taps() -> None:
    summary = _summary("-c", "nasbench201-cifar10", "--set", "nasbench201.layout=stage_cells")
    assert _head_shapes(summary) == [[16, 32, 32], [32, 16, 16]]


@pytest.mark.parametrize("preset", ["tiny", "tiny-nasbench201", "tiny-chain"])
def test_the_parts_add_up_to_every_parameter_once(preset: str) -> None:
    config = load_config(preset)
    assert config.data.num_classes is not None
    torch.manual_seed(0)
    model = build_search_model(config, config.data.channels, config.data.num_classes)
    statistics = {name: buffer.clone() for name, buffer in model.named_buffers()}
    result = summarize_supernet(model, config.data.channels, config.data.image_size)
    alphas = sum(int(torch.tensor(shape).prod()) for shape in result.alphas.values())
    parts = result.search_network + result.eval_network + result.weight_pool + alphas + result.other
    assert parts + sum(head.params for head in result.heads) == result.total
    assert result.total == sum(p.numel() for p in model.parameters())
    assert min(result.search_network, result.eval_network, result.weight_pool) > 0
    assert len(result.heads) == 2 and all(head.params > 0 for head in result.heads)
    for name, before in statistics.items():  # summarising ran in eval mode: BN statistics untouched
        if name in dict(model.named_buffers()):
            assert torch.equal(dict(model.named_buffers())[name], before), name


def test_darts_alphas_and_heads_follow_the_config() -> None:
    summary = _summary("-c", "tiny")
    assert summary["alphas"] == {"alphas_normal": [14, 8], "alphas_reduce": [14, 8]}
    channels = [shape[0] for shape in _head_shapes(summary)]
    assert channels[1] == 2 * channels[0]  # the heads sit after the two reduction stages
    text = runner.invoke(app, ["model", "summary", "--supernet", "-c", "tiny"])
    assert text.exit_code == 0 and "weight pool" in text.output and "reads " in text.output


def test_the_authors_nasbench201_bn_affinities() -> None:
    model = Nb201JointNetwork(in_channels=3, num_classes=4, image_size=8, channels=4, cells_per_stage=1)

    def affine(modules: torch.nn.Module, kind: type) -> set[bool]:
        return {
            bn.affine
            for layer in modules.children()
            if isinstance(layer, kind)
            for bn in layer.modules()
            if isinstance(bn, torch.nn.BatchNorm2d)
        }

    assert affine(model.search_layers, Nb201SearchCell) == {False}
    assert affine(model.search_layers, ResNetBasicBlock) == {True}  # S's blocks are affine
    assert affine(model.weight_pool, Nb201SearchCell) == {False}  # the pool's cells are not
    assert affine(model.weight_pool, ResNetBasicBlock) == {True}


@pytest.mark.parametrize(
    "args",
    [
        ["--supernet"],
        ["--supernet", "-c", "tiny", "--genotype", "DARTS_V2"],
        ["--supernet", "-c", "tiny", "--set", "darts.init_channels=-1"],
        ["--genotype", "DARTS_V2"],
    ],
)
def test_bad_combinations_are_refused_in_one_line(args: list[str]) -> None:
    result = runner.invoke(app, ["model", "summary", *args])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("cdarts: error:"), result.output
