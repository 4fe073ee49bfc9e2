"""NAS-Bench-201 genotypes (arch strings, derivation with `none`) and the benchmark look-up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cdarts.errors import DataError, GenotypeError
from cdarts.spaces.nasbench201.architecture import Nb201Genotype
from cdarts.spaces.nasbench201.candidates import NB201_OPS
from cdarts.spaces.nasbench201.lookup import JsonBenchmarkLookup

BEST_CIFAR10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def test_arch_strings_round_trip_through_every_form() -> None:
    genotype = Nb201Genotype.from_arch_string(BEST_CIFAR10)
    assert genotype.nodes[2] == ("skip_connect", "nor_conv_3x3", "nor_conv_3x3")
    assert genotype.to_arch_string() == BEST_CIFAR10
    assert Nb201Genotype.from_dict(json.loads(json.dumps(genotype.to_dict()))) == genotype
    assert [edge[:2] for edge in genotype.edges()] == [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]


def test_derivation_takes_the_argmax_over_all_five_ops_including_none() -> None:
    alphas = torch.zeros(6, 5)
    for row, column in enumerate([0, 3, 1, 4, 2, 0]):
        alphas[row, column] = 1.0
    genotype = Nb201Genotype.from_alphas(alphas)
    assert genotype.to_arch_string() == (
        "|none~0|+|nor_conv_3x3~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
    )
    with pytest.raises(GenotypeError, match="6 x 5"):
        Nb201Genotype.from_alphas(torch.zeros(14, 8))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|", "3 computed nodes"),
        ("|nor_conv_3x3~0|+|nor_conv_3x3~1|nor_conv_3x3~0|+|none~0|none~1|none~2|", "input 1 where input 0"),
        ("|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown NAS-Bench-201 op"),
        ("__import__('os')", "not of the form"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "one op per earlier node"),
        ("|" + "none~0|" * 200, "at most"),
    ],
)
def test_malformed_arch_strings_are_one_line_errors(text: str, fragment: str) -> None:
    with pytest.raises(GenotypeError, match=fragment) as raised:
        Nb201Genotype.from_arch_string(text)
    assert "\n" not in str(raised.value)


def test_the_lookup_reads_a_user_supplied_benchmark_file(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({BEST_CIFAR10: {"cifar10-test": 94.37, "cifar100-test": 73.51}}))
    lookup = JsonBenchmarkLookup(path)
    assert len(lookup) == 1
    assert lookup.metrics(Nb201Genotype.from_arch_string(BEST_CIFAR10)) == {
        "cifar10-test": 94.37,
        "cifar100-test": 73.51,
    }
    other = Nb201Genotype(tuple(tuple(NB201_OPS[0] for _ in range(i)) for i in (1, 2, 3)))
    assert lookup.metrics(other) is None


@pytest.mark.parametrize(
    ("content", "error", "fragment"),
    [
        ("not json", DataError, "not JSON"),
        ("[1, 2]", DataError, "must map arch strings"),
        (json.dumps({BEST_CIFAR10: {"cifar10-test": "high"}}), DataError, "metric names to numbers"),
        (json.dumps({"|bad~0|+|none~0|none~1|+|none~0|none~1|none~2|": {"x": 1}}), GenotypeError, "unknown NAS-Bench"),
    ],
)
def test_a_broken_benchmark_file_is_a_clear_error(tmp_path: Path, content: str, error: type, fragment: str) -> None:
    path = tmp_path / "bench.json"
    path.write_text(content)
    with pytest.raises(error, match=fragment):
        JsonBenchmarkLookup(path)
    with pytest.raises(DataError, match="cannot read"):
        JsonBenchmarkLookup(tmp_path / "missing.json")


def test_search_and_derived_networks_follow_the_macro_skeleton() -> None:
    from cdarts.spaces.nasbench201.networks import Nb201DerivedCell, Nb201Network, ResNetBasicBlock

    torch.manual_seed(0)
    search = Nb201Network(num_classes=10, channels=4, cells_per_stage=1)
    assert [type(layer).__name__ for layer in search.layers] == [
        "Nb201SearchCell", "ResNetBasicBlock", "Nb201SearchCell", "ResNetBasicBlock", "Nb201SearchCell",
    ]  # fmt: skip
    images = torch.randn(2, 3, 8, 8)
    logits = search(images)
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert search.alphas is not None and search.alphas.grad is not None and search.alphas.grad.abs().sum() > 0
    derived = Nb201Network(num_classes=10, channels=4, cells_per_stage=1, genotype=search.current_genotype())
    assert derived(images).shape == (2, 10) and derived.arch_parameters() == []
    assert isinstance(derived.layers[1], ResNetBasicBlock) and derived.layers[1].conv_a[1].stride == (2, 2)
    cell = derived.layers[0]
    assert isinstance(cell, Nb201DerivedCell)


def test_a_derived_cell_with_only_none_into_the_output_passes_zeros() -> None:
    from cdarts.spaces.nasbench201.networks import Nb201DerivedCell

    genotype = Nb201Genotype.from_arch_string("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|none~2|")
    cell = Nb201DerivedCell(genotype, 4)
    assert len(cell.ops) == 2  # none edges are left out
    assert torch.equal(cell(torch.randn(2, 4, 8, 8)), torch.zeros(2, 4, 8, 8))
    skip_only = Nb201DerivedCell(
        Nb201Genotype.from_arch_string("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"), 4
    )
    x = torch.randn(2, 4, 8, 8)
    assert torch.equal(skip_only(x), x)


def test_search_cell_edges_are_weighted_by_their_own_alpha_row() -> None:
    from cdarts.spaces.nasbench201.networks import Nb201SearchCell

    cell = Nb201SearchCell(4)
    x = torch.randn(2, 4, 8, 8)
    weights = torch.zeros(6, 5)
    weights[5, NB201_OPS.index("skip_connect")] = 1.0  # only edge (3 <- 2) is on: node 2 is 0
    assert torch.equal(cell(x, weights), torch.zeros_like(x))
    weights[3, NB201_OPS.index("skip_connect")] = 1.0  # and edge (3 <- 0): the input itself
    assert torch.allclose(cell(x, weights), x)
