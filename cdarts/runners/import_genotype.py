"""Runner of the ``import_genotype`` stage: a given genotype -> ``genotype.json`` + diagrams."""

from __future__ import annotations

import json
from pathlib import Path

from cdarts.genotype import Genotype, resolve_genotype
from cdarts.tracking import Tracker
from cdarts.visualize import write_cell_diagrams


def run_import_genotype(spec: str, out_dir: Path, tracker: Tracker | None = None) -> Genotype:
    """``spec``: a reference name, a file, a ``Genotype(...)`` string or genotype JSON text."""
    text = spec.strip()
    genotype = Genotype.from_dict(json.loads(text)) if text.startswith("{") else resolve_genotype(text)
    diagrams = write_cell_diagrams(genotype, out_dir)
    genotype_path = out_dir / "genotype.json"
    genotype_path.write_text(genotype.to_json(), encoding="utf-8")
    if tracker is not None:
        tracker.set_tags({"cdarts.genotype": genotype.to_string()})
        for path in (genotype_path, *diagrams):
            tracker.log_artifact(path, "genotype")
    return genotype
