from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cdarts.errors import GenotypeError
from cdarts.spaces.darts.architecture import Genotype, derive_cell, derive_genotype
from cdarts.spaces.darts.candidates import PRIMITIVES
from cdarts.spaces.darts.parser import (
    parse_genotype_file,
    parse_genotype_string,
    reference_genotype,
    reference_genotype_names,
    resolve_genotype,
)

P = {name: i for i, name in enumerate(PRIMITIVES)}

DARTS_V2_FLAT = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
    "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
    "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
    "('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)


def _alphas_with(entries: dict[tuple[int, str], float], n_nodes: int = 4) -> torch.Tensor:
    alphas = torch.zeros(sum(2 + i for i in range(n_nodes)), len(PRIMITIVES))
    for (edge, op), value in entries.items():
        alphas[edge, P[op]] = value
    return alphas


def test_derivation_keeps_top2_edges_strongest_first_and_ignores_none() -> None:
    alphas = _alphas_with(
        {
            # node 0 (edges 0, 1): 'none' is the strongest everywhere but must be ignored
            (0, "none"): 9.0,
            (0, "sep_conv_3x3"): 1.0,
            (1, "none"): 9.0,
            (1, "dil_conv_5x5"): 2.0,
            # node 1 (edges 2, 3, 4): edge from node 0 strongest, then c_{k-2}
            (2, "max_pool_3x3"): 1.5,
            (3, "avg_pool_3x3"): 0.5,
            (4, "skip_connect"): 3.0,
            # node 2 (edges 5..8) and node 3 (edges 9..13)
            (8, "sep_conv_5x5"): 2.0,
            (6, "dil_conv_3x3"): 1.0,
            (13, "sep_conv_3x3"): 0.7,
            (9, "skip_connect"): 0.6,
        }
    )
    cell = derive_cell(alphas, 4)
    assert cell[0] == (("dil_conv_5x5", 1), ("sep_conv_3x3", 0))
    assert cell[1] == (("skip_connect", 2), ("max_pool_3x3", 0))
    assert cell[2] == (("sep_conv_5x5", 3), ("dil_conv_3x3", 1))
    assert cell[3] == (("sep_conv_3x3", 4), ("skip_connect", 0))


def test_derive_genotype_concats_all_nodes() -> None:
    genotype = derive_genotype(torch.randn(14, 8), torch.randn(14, 8), 4)
    assert genotype.normal_concat == genotype.reduce_concat == (2, 3, 4, 5)
    assert all(op != "none" for node in genotype.normal + genotype.reduce for op, _ in node)


def test_derivation_requires_none_last() -> None:
    with pytest.raises(ValueError):
        derive_cell(torch.zeros(14, 8), 4, primitives=("none", *PRIMITIVES[:-1]))


@pytest.mark.parametrize("name", reference_genotype_names())
def test_reference_genotypes_round_trip_every_format(name: str) -> None:
    genotype = reference_genotype(name)
    assert parse_genotype_string(genotype.to_string()) == genotype
    assert parse_genotype_string(genotype.to_string(flat=True)) == genotype
    assert Genotype.from_dict(json.loads(genotype.to_json())) == genotype


def test_flat_darts_string_equals_nested_cdarts_file_form() -> None:
    assert parse_genotype_string(DARTS_V2_FLAT) == reference_genotype("darts_v2")
    assert reference_genotype("CDARTS_CIFAR").normal[3] == (("skip_connect", 0), ("skip_connect", 2))


def test_resolve_accepts_names_strings_and_files(tmp_path: Path) -> None:
    expected = reference_genotype("PDARTS")
    our_json = tmp_path / "genotype.json"
    our_json.write_text(expected.to_json())
    stage_map = tmp_path / "cells.json"
    stage_map.write_text(json.dumps({str(i): expected.to_string() for i in range(3)}))
    text_file = tmp_path / "genotype.txt"
    text_file.write_text(expected.to_string(flat=True) + "\n")
    for spec in ("pdarts", expected.to_string(), str(our_json), str(stage_map), str(text_file)):
        assert resolve_genotype(spec) == expected


def test_stage_files_with_different_genotypes_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "cells.json"
    path.write_text(
        json.dumps({"0": reference_genotype("DARTS_V1").to_string(), "1": reference_genotype("DARTS_V2").to_string()})
    )
    with pytest.raises(GenotypeError, match="different genotypes per stage"):
        parse_genotype_file(path)


SMUGGLED = [
    "__import__('os').system('touch /tmp/pwned')",
    "Genotype(normal=__import__('os').system('id'), normal_concat=[2], reduce=[], reduce_concat=[2])",
    "Genotype(normal=[[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)]], normal_concat=[2], "
    "reduce=[[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)]], reduce_concat=(lambda: [2])())",
    "Genotype(normal=[[(open('/etc/passwd').read(), 0), ('sep_conv_3x3', 1)]], normal_concat=[2], "
    "reduce=[], reduce_concat=[2])",
    "Genotype(normal=[[('sep_conv_3x3', 0).__class__, 1]], normal_concat=[2], reduce=[], reduce_concat=[2])",
    "Genotype(**{'normal': []})",
    "[x for x in ()]",
    "Genotype(normal=[[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)]], normal_concat=range(2, 10**9), "
    "reduce=[[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)]], reduce_concat=[2])",
]


@pytest.mark.parametrize("text", SMUGGLED)
def test_parser_rejects_code(text: str, tmp_path: Path) -> None:
    with pytest.raises(GenotypeError):
        parse_genotype_string(text)
    assert not Path("/tmp/pwned").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "Genotype(normal=[('bogus_op', 0), ('sep_conv_3x3', 1)], normal_concat=[2], "
            "reduce=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], reduce_concat=[2])",
            "unknown operation",
        ),
        (
            "Genotype(normal=[('none', 0), ('sep_conv_3x3', 1)], normal_concat=[2], "
            "reduce=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], reduce_concat=[2])",
            "unknown operation",
        ),
        (
            "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 2)], normal_concat=[2], "
            "reduce=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], reduce_concat=[2])",
            "out of range",
        ),
        (
            "Genotype(normal=[('sep_conv_3x3', 0)], normal_concat=[2], "
            "reduce=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], reduce_concat=[2])",
            "two edges per node",
        ),
        (
            "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], normal_concat=[7], "
            "reduce=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], reduce_concat=[2])",
            "normal_concat",
        ),
        ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], normal_concat=[2])", "exactly the keywords"),
        (
            "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], normal_concat=[2], "
            "reduce=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], reduce_concat=[2], extra=1)",
            "exactly the keywords",
        ),
        ("Genotype(normal=[", "cannot parse"),
        ("Genotype(" + "[" * 5000, "cannot parse"),
        ("x" * 30_000, "too long"),
    ],
)
def test_parser_rejects_malformed_genotypes(text: str, message: str) -> None:
    with pytest.raises(GenotypeError, match=message):
        parse_genotype_string(text)


def test_json_with_wrong_schema_version_is_rejected() -> None:
    data = reference_genotype("DARTS_V2").to_dict()
    data["schema_version"] = 99
    with pytest.raises(GenotypeError, match="schema_version"):
        Genotype.from_dict(data)


def test_unknown_names_and_broken_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(GenotypeError, match="neither a known genotype name"):
        resolve_genotype("NOT_A_GENOTYPE")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(GenotypeError, match="not valid JSON"):
        parse_genotype_file(broken)
