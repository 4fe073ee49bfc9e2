"""import_genotype component: a genotype given by name, JSON or string -> genotype artifact."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects.
from kfp import dsl
from kfp.dsl import HTML, Artifact, Output

from stages.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def import_genotype(genotype_spec: str, genotype: Output[Artifact], cells: Output[HTML]) -> None:
    """Validate a reference name, genotype JSON text or ``Genotype(...)`` string and store it."""
    import json
    import time
    from pathlib import Path

    from cdarts.genotype import Genotype, resolve_genotype
    from cdarts.report import genotype_html
    from cdarts.visualize import write_cell_diagrams

    start = time.perf_counter()
    text = genotype_spec.strip()
    parsed = Genotype.from_dict(json.loads(text)) if text.startswith("{") else resolve_genotype(text)
    out = Path(genotype.path)
    write_cell_diagrams(parsed, out)
    (out / "genotype.json").write_text(parsed.to_json(), encoding="utf-8")
    Path(cells.path).write_text(genotype_html(parsed), encoding="utf-8")
    genotype.metadata.update({"genotype": parsed.to_string(), "seconds": time.perf_counter() - start})
