"""Runner of the ``import_genotype`` stage: a given architecture -> ``genotype.json`` + diagrams."""

from __future__ import annotations

from pathlib import Path

from cdarts.architecture import Architecture, resolve_architecture
from cdarts.atomic_files import write_text_atomic
from cdarts.spaces.registry import space_of
from cdarts.tracking import Tracker


def run_import_genotype(spec: str, out_dir: Path, tracker: Tracker | None = None) -> Architecture:
    """``spec``: a reference name, a file, a ``Genotype(...)`` / arch / chain string or JSON text."""
    genotype = resolve_architecture(spec)
    diagrams = space_of(genotype).write_diagrams(genotype, out_dir)
    genotype_path = out_dir / "genotype.json"
    write_text_atomic(genotype_path, genotype.to_json())
    if tracker is not None:
        tracker.set_tags({"cdarts.genotype": genotype.to_string()})
        for path in (genotype_path, *diagrams):
            tracker.log_artifact(path, "genotype")
    return genotype
