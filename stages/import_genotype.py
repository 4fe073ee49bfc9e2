"""import_genotype component: a genotype given by name, JSON or string -> genotype artifact."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects.
from kfp import dsl
from kfp.dsl import HTML, Artifact, Output

from stages.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def import_genotype(
    config: str,
    overrides: list,
    genotype_spec: str,
    genotype: Output[Artifact],
    cells: Output[HTML],
) -> None:
    """Validate a reference name, genotype JSON text or ``Genotype(...)`` string and store it.
    Cacheable like data_prep: no per-run inputs."""
    import time
    from pathlib import Path

    from cdarts.config import load_config_spec
    from cdarts.report import genotype_html
    from cdarts.runners.import_genotype import run_import_genotype
    from cdarts.runners.tracked_stage import tracked_stage

    start = time.perf_counter()
    experiment = load_config_spec(config, overrides)
    with tracked_stage("import_genotype", experiment) as tracker:
        parsed = run_import_genotype(genotype_spec, Path(genotype.path), tracker)
    Path(cells.path).write_text(genotype_html(parsed), encoding="utf-8")
    genotype.metadata.update(
        {
            "genotype": parsed.to_string(),
            "mlflow_run_id": getattr(tracker, "run_id", ""),
            "seconds": time.perf_counter() - start,
        }
    )
