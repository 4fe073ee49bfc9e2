from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cdarts.spaces.chain.architecture import CHAIN_ARCHITECTURES
from cdarts.spaces.chain.diagram import chain_svg, write_chain_diagram
from cdarts.spaces.nasbench201.architecture import Nb201Genotype
from cdarts.spaces.nasbench201.candidates import NB201_OPS
from cdarts.spaces.nasbench201.diagram import nb201_cell_svg, write_nb201_cell_diagram

SVG = "{http://www.w3.org/2000/svg}"
ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def _groups(root: ET.Element, kind: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if kind in g.get("class", "").split()]


def _texts(group: ET.Element) -> list[str]:
    return [t.text or "" for t in group.iter(f"{SVG}text")]


# NAS-Bench-201 cell


def test_nb201_cell_draws_one_labelled_edge_per_op_edge() -> None:
    genotype = Nb201Genotype.from_arch_string(
        "|avg_pool_3x3~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
    )
    root = ET.fromstring(nb201_cell_svg(genotype))
    drawn = sorted(
        (int(g.get("data-to", "-1")), int(g.get("data-from", "-1")), g.get("data-op")) for g in _groups(root, "edge")
    )
    assert drawn == sorted((i, j, op) for i, j, op in genotype.edges() if op != "none")
    labels = [t.text for t in root.iter(f"{SVG}text") if t.text in NB201_OPS]
    assert sorted(labels) == ["avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3", "skip_connect"]
    assert "none" not in labels
    node_labels = {text for g in _groups(root, "node") for text in _texts(g)}
    assert node_labels == {"in (0)", "1", "2", "out (3)"}


def test_nb201_skip_edges_curve_and_adjacent_edges_are_straight() -> None:
    genotype = Nb201Genotype.from_arch_string(ARCH)
    root = ET.fromstring(nb201_cell_svg(genotype))
    for edge in _groups(root, "edge"):
        span = int(edge.get("data-to", "0")) - int(edge.get("data-from", "0"))
        assert (edge.find(f"{SVG}path") is not None) == (span > 1)
        assert (edge.find(f"{SVG}line") is not None) == (span == 1)
    # Labels of different edges never share a position.
    positions = [(t.get("x"), t.get("y")) for g in _groups(root, "edge") for t in g.iter(f"{SVG}text")]
    assert len(positions) == 6 == len(set(positions))


def test_nb201_output_fed_only_by_none_edges_has_no_incoming_arrow() -> None:
    genotype = Nb201Genotype.from_arch_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|none~0|none~1|none~2|")
    root = ET.fromstring(nb201_cell_svg(genotype))
    targets = [g.get("data-to", "") for g in _groups(root, "edge")]
    assert sorted(targets) == ["1", "2", "2"]
    assert [g.get("data-node") for g in _groups(root, "node")] == ["0", "1", "2", "3"]


def test_nb201_title_holds_the_arch_string(tmp_path: Path) -> None:
    genotype = Nb201Genotype.from_arch_string(ARCH)
    svg = nb201_cell_svg(genotype)
    root = ET.fromstring(svg)
    title = root.find(f"{SVG}title")
    assert title is not None and title.text is not None and ARCH in title.text
    paths = write_nb201_cell_diagram(genotype, tmp_path / "diagrams")
    assert paths == [tmp_path / "diagrams" / "cell.svg"]
    assert paths[0].read_text(encoding="utf-8") == svg


def test_nb201_title_is_escaped(monkeypatch: pytest.MonkeyPatch) -> None:
    # Op names are validated, so feed markup through the one free-text path: the arch string.
    genotype = Nb201Genotype.from_arch_string(ARCH)
    nasty = ARCH + ' <b>&"</title>'
    monkeypatch.setattr(Nb201Genotype, "to_arch_string", lambda self: nasty)
    root = ET.fromstring(nb201_cell_svg(genotype))
    title = root.find(f"{SVG}title")
    assert title is not None and title.text is not None and title.text.endswith(nasty)
    assert len(list(title)) == 0


# chain space

CDARTS_A = [[3], [3, 3], [3, 1, 3], [3, 3, 3, 3], [3, 3, 3]]
FIXED_PARTS = 6  # stem, DS block, 1x1 conv to 960, pool, 1x1 conv to 1280, classifier


def test_chain_cdarts_a_draws_13_layers_and_the_fixed_parts(tmp_path: Path) -> None:
    assert CHAIN_ARCHITECTURES["CDARTS_A"] == CDARTS_A
    svg = chain_svg(CDARTS_A)
    root = ET.fromstring(svg)
    layers, fixed = _groups(root, "layer"), _groups(root, "fixed")
    assert len(layers) == 13 and len(fixed) == FIXED_PARTS
    assert len(root.findall(f".//{SVG}line")) == 13 + FIXED_PARTS - 1  # one arrow between consecutive boxes
    assert not _groups(root, "tied")
    assert [_texts(layer)[0] for layer in layers] == ["MB6 5x5 SE"] * 4 + ["MB6 3x3 SE"] + ["MB6 5x5 SE"] * 8
    stages = _groups(root, "stage")
    assert [g.get("data-channels") for g in stages] == ["24", "40", "80", "96", "192"]
    assert [len(_groups(g, "layer")) for g in stages] == [1, 2, 3, 4, 3]
    fixed_text = " ".join(text for g in fixed for text in _texts(g))
    assert all(part in fixed_text for part in ("3x3 /2", "->16", "192->960", "pool", "960->1280", "linear"))
    title = root.find(f"{SVG}title")
    assert title is not None and title.text is not None
    assert "13 MBConv layers" in title.text and "3; 3 3; 3 1 3; 3 3 3 3; 3 3 3" in title.text
    assert write_chain_diagram(CDARTS_A, tmp_path) == [tmp_path / "layers.svg"]
    assert (tmp_path / "layers.svg").read_text(encoding="utf-8") == svg


def test_chain_channels_and_strides_are_labelled() -> None:
    root = ET.fromstring(chain_svg(CDARTS_A))
    details = [_texts(layer)[1] for layer in _groups(root, "layer")]
    assert details[:4] == ["16->24 /2", "24->40 /2", "40->40", "40->80 /2"]
    assert sum(detail.endswith("/2") for detail in details) == 4  # the 96-channel stage keeps its size
    assert details[-1] == "192->192"


def test_chain_tied_repeat_of_the_80_channel_stage_is_marked_once() -> None:
    choices = [[0], [1, 2], [0, 1, 2, 5], [3, 3], [4]]
    root = ET.fromstring(chain_svg(choices))
    layers = _groups(root, "layer")
    assert len(layers) == 1 + 2 + 5 + 2 + 1
    tied = _groups(root, "tied")
    assert len(tied) == 1
    stage_80 = next(g for g in _groups(root, "stage") if g.get("data-channels") == "80")
    stage_layers = _groups(stage_80, "layer")
    assert len(stage_layers) == 5 and stage_layers[-1] is tied[0]
    assert _texts(tied[0])[:2] == _texts(stage_layers[-2])[:2] == ["MB6 7x7 SE", "80->80"]
    assert any("tied" in text for text in _texts(tied[0]))
    dashed = [r for g in layers for r in g.iter(f"{SVG}rect") if r.get("stroke-dasharray")]
    assert len(dashed) == 1
    # Four layers in another stage are not repeated.
    other = ET.fromstring(chain_svg([[0], [1, 2], [0, 1, 2], [3, 3, 3, 3], [4]]))
    assert len(_groups(other, "layer")) == 1 + 2 + 3 + 4 + 1 and not _groups(other, "tied")


def test_chain_labels_follow_the_choice_table_and_kernel_colours() -> None:
    root = ET.fromstring(chain_svg([[0], [1], [2], [3], [4, 5]]))
    layers = _groups(root, "layer")
    titles = [_texts(layer)[0] for layer in layers]
    assert titles == ["MB4 3x3 SE", "MB6 3x3 SE", "MB4 5x5 SE", "MB6 5x5 SE", "MB4 7x7 SE", "MB6 7x7 SE"]
    fills = [layer.find(f"{SVG}rect").get("fill") for layer in layers]  # type: ignore[union-attr]
    assert fills[0] == fills[1] != fills[2] == fills[3] != fills[4] == fills[5] != fills[0]


def test_chain_rejects_an_invalid_choice() -> None:
    with pytest.raises(ValueError, match="choice 6"):
        chain_svg([[6], [0], [0], [0], [0]])
