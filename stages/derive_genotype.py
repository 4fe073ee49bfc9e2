"""derive_genotype component: searched alphas -> genotype artifact and cell diagrams."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects.
from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Output

from stages.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def derive_genotype(
    config: str,
    overrides: list,
    alphas: Input[Artifact],
    genotype: Output[Artifact],
    cells: Output[HTML],
) -> None:
    """Derive the genotype (``genotype`` holds genotype.json, the diagrams: normal/reduce.svg, cell.svg
    or layers.svg by search space, and alphas.png). Cacheable like data_prep: no per-run inputs."""
    import time
    from pathlib import Path

    from cdarts.config import load_config_spec
    from cdarts.report import genotype_html
    from cdarts.runners.derive_genotype import run_derive_genotype
    from cdarts.runners.tracked_stage import tracked_stage

    start = time.perf_counter()
    experiment = load_config_spec(config, overrides)
    with tracked_stage("derive_genotype", experiment) as tracker:
        result = run_derive_genotype(Path(alphas.path), Path(genotype.path), tracker)
    Path(cells.path).write_text(genotype_html(result.genotype, result.heatmap_path), encoding="utf-8")
    genotype.metadata.update(
        {
            "genotype": result.genotype.to_string(),
            "mlflow_run_id": getattr(tracker, "run_id", ""),
            "seconds": time.perf_counter() - start,
        }
    )
