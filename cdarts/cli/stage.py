"""``cdarts stage <name>``: run one pipeline stage's runner on local paths."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cdarts.cli.errors import handles_user_errors
from cdarts.cli.options import ConfigOption, OutDirOption, SetOption
from cdarts.cli.progress import progress_display

app = typer.Typer(no_args_is_help=True, help="Run one stage of the pipeline locally.")


@app.command("search")
@handles_user_errors
def search(
    config: ConfigOption,
    out: OutDirOption,
    overrides: SetOption = None,
    max_iterations: Annotated[
        int | None,
        typer.Option(min=1, help="Stop after this many search iterations (checkpointed); rerun to resume."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Run (or resume) the cyclic joint search. Works under torchrun for several processes."""
    from cdarts.config import load_config
    from cdarts.runners.search import destroy_process_group, run_search

    experiment = load_config(config, overrides)
    try:
        with progress_display(progress) as callback:
            result = run_search(experiment, out, progress=callback, max_iterations=max_iterations)
    finally:
        destroy_process_group()
    if result.genotype_path is not None:  # only the main process writes and reports
        typer.echo(f"genotype: {result.genotype.to_string()}")
        typer.echo(f"written: {result.genotype_path} {result.alphas_path}")
    elif not result.completed:
        typer.echo(f"stopped after {result.cycles_run} cycle(s) this run; rerun the same command to resume")


@app.command("derive-genotype")
@handles_user_errors
def derive_genotype(
    alphas: Annotated[Path, typer.Option("--alphas", "-a", help="alphas.pt written by the search.")],
    out: OutDirOption,
) -> None:
    """Derive the genotype from searched alphas; write genotype.json and cell diagrams."""
    from cdarts.runners.derive_genotype import run_derive_genotype

    result = run_derive_genotype(alphas, out)
    typer.echo(f"genotype: {result.genotype.to_string()}")
    typer.echo(f"written: {result.genotype_path} {' '.join(str(p) for p in result.diagrams)} {result.heatmap_path}")
