"""compare_baselines component: the searched architecture's evaluation against the random ones'."""

from typing import List  # noqa: UP035 - KFP reads typing.List for a list of artifacts

# No `from __future__ import annotations` here: KFP reads the real annotation objects.
from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Markdown, Metrics, Output

from stages.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def compare_baselines(
    config: str,
    overrides: list,
    mlflow_parent_run_id: str,
    run_id: str,
    searched: Input[Artifact],
    random: Input[List[Artifact]],  # noqa: UP006
    report: Output[Markdown],
    page: Output[HTML],
    metrics: Output[Metrics],
    comparison: Output[Artifact],
) -> None:
    """Top-1 of the searched architecture against the random ones' (mean, std, rank, the gap in
    std units), with params and multiply-adds of each (``comparison`` holds comparison.json)."""
    import shutil
    import time
    from pathlib import Path

    from cdarts.config import load_config_spec
    from cdarts.runners.compare_baselines import run_compare_baselines
    from cdarts.runners.tracked_stage import tracked_stage

    start = time.perf_counter()
    experiment = load_config_spec(config, overrides)
    out = Path(comparison.path)
    with tracked_stage("compare_baselines", experiment, mlflow_parent_run_id, run_id) as tracker:
        result = run_compare_baselines(Path(searched.path), [Path(a.path) for a in random], out, tracker)
    shutil.copyfile(out / "comparison.md", report.path)
    shutil.copyfile(out / "comparison.html", page.path)
    for name, value in result.metrics().items():
        metrics.log_metric(name.removeprefix("compare/"), value)
    comparison.metadata.update(
        {"rank": result.rank, "gap_in_std": result.gap_in_std, "seconds": time.perf_counter() - start}
    )
