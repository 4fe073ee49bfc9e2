"""Runner of the ``derive_genotype`` stage: alphas -> genotype JSON, diagrams, heat-map."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cdarts.alpha_heatmap import write_alpha_heatmap
from cdarts.alphas_file import load_alphas
from cdarts.architecture import Architecture
from cdarts.atomic_files import write_text_atomic
from cdarts.derivation import alpha_probabilities, alpha_row_labels, derive_architecture
from cdarts.spaces.registry import space_of
from cdarts.tracking import Tracker


@dataclass
class DeriveGenotypeResult:
    genotype: Architecture
    genotype_path: Path
    diagrams: list[Path]
    heatmap_path: Path


def run_derive_genotype(alphas_path: Path, out_dir: Path, tracker: Tracker | None = None) -> DeriveGenotypeResult:
    """Derive the architecture from ``alphas.pt`` (any search space) and write ``genotype.json``,
    its diagrams (``normal.svg``/``reduce.svg``, ``cell.svg`` or ``layers.svg``) and ``alphas.png``
    into ``out_dir``."""
    alphas_file = load_alphas(alphas_path)
    genotype = derive_architecture(alphas_file)
    out_dir.mkdir(parents=True, exist_ok=True)
    diagrams = space_of(genotype).write_diagrams(genotype, out_dir)
    heatmap = write_alpha_heatmap(
        alpha_probabilities(alphas_file), alphas_file.candidates, alpha_row_labels(alphas_file), out_dir / "alphas.png"
    )
    # Written last: the genotype file marks the stage's output as complete.
    genotype_path = out_dir / "genotype.json"
    write_text_atomic(genotype_path, genotype.to_json())
    if tracker is not None:
        tracker.set_tags({"cdarts.genotype": genotype.to_string()})
        for path in (genotype_path, *diagrams, heatmap):
            tracker.log_artifact(path, "genotype")
    return DeriveGenotypeResult(genotype, genotype_path, diagrams, heatmap)
