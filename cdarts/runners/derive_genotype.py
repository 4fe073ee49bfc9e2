"""Runner of the ``derive_genotype`` stage: alphas -> genotype JSON, cell diagrams, heat-map."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cdarts.alphas_file import load_alphas
from cdarts.genotype import Genotype, derive_genotype
from cdarts.tracking import Tracker
from cdarts.visualize import write_alpha_heatmap, write_cell_diagrams


@dataclass
class DeriveGenotypeResult:
    genotype: Genotype
    genotype_path: Path
    diagrams: list[Path]
    heatmap_path: Path


def run_derive_genotype(alphas_path: Path, out_dir: Path, tracker: Tracker | None = None) -> DeriveGenotypeResult:
    """Derive the genotype from ``alphas.pt`` and write ``genotype.json``, ``normal.svg``,
    ``reduce.svg`` and ``alphas.png`` into ``out_dir``."""
    alphas, primitives, n_nodes = load_alphas(alphas_path)
    genotype = derive_genotype(alphas["alphas_normal"], alphas["alphas_reduce"], n_nodes, primitives)
    out_dir.mkdir(parents=True, exist_ok=True)
    diagrams = write_cell_diagrams(genotype, out_dir)
    heatmap = write_alpha_heatmap(alphas, primitives, n_nodes, out_dir / "alphas.png")
    # Written last: the genotype file marks the stage's output as complete.
    genotype_path = out_dir / "genotype.json"
    genotype_path.write_text(genotype.to_json(), encoding="utf-8")
    if tracker is not None:
        tracker.set_tags({"cdarts.genotype": genotype.to_string()})
        for path in (genotype_path, *diagrams, heatmap):
            tracker.log_artifact(path, "genotype")
    return DeriveGenotypeResult(genotype, genotype_path, diagrams, heatmap)
