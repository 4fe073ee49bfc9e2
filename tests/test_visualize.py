from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import torch

from cdarts.alpha_heatmap import write_alpha_heatmap
from cdarts.spaces.darts.candidates import PRIMITIVES
from cdarts.spaces.darts.diagram import cell_svg
from cdarts.spaces.darts.parser import reference_genotype

SVG = "{http://www.w3.org/2000/svg}"


def test_cell_diagram_is_valid_svg_with_one_labelled_edge_per_genotype_edge() -> None:
    genotype = reference_genotype("CDARTS_IMAGENET")
    root = ET.fromstring(cell_svg(genotype, reduction=True))
    labels = [t.text for t in root.iter(f"{SVG}text")]
    ops = [op for node in genotype.reduce for op, _ in node]
    assert sorted(label for label in labels if label in ops) == sorted(ops)
    assert {"c_{k-2}", "c_{k-1}", "c_k", "0", "3"} <= set(labels)


def test_alpha_heatmap_is_a_png(tmp_path: Path) -> None:
    probabilities = {"alphas_normal": torch.rand(14, 8), "alphas_reduce": torch.rand(14, 8)}
    labels = {name: [f"edge {i}" for i in range(14)] for name in probabilities}
    path = write_alpha_heatmap(probabilities, PRIMITIVES, labels, tmp_path / "alphas.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
