"""``cdarts stage <name>``: run one pipeline stage's runner on local paths."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from cdarts.cli.errors import fail, handles_user_errors
from cdarts.cli.options import ConfigOption, OutDirOption, SetOption
from cdarts.cli.progress import progress_display
from cdarts.out_dir_lock import locks_out_dir, out_dir_lock

app = typer.Typer(no_args_is_help=True, help="Run one stage of the pipeline locally.")

DataOption = Annotated[Path, typer.Option("--data", "-d", help="Prepared dataset directory (from data-prep).")]
ProgressOption = Annotated[bool, typer.Option(help="Show progress bars.")]
ParentRunOption = Annotated[
    str, typer.Option(help="Nest the stage's MLflow run under this run (a pipeline run's parent).")
]
KfpRunOption = Annotated[str, typer.Option(help="KFP run id, recorded as a tag of the stage's MLflow run.")]
CheckpointMirrorOption = Annotated[
    str | None,
    typer.Option(help="Also keep the checkpoint at this URI (s3://bucket/key or a path) and resume from it."),
]


@app.command("data-prep")
@handles_user_errors
def data_prep(
    config: ConfigOption,
    out: OutDirOption,
    overrides: SetOption = None,
    source: Annotated[
        str | None,
        typer.Option(
            help="Override the data source: digits, cifar10:PATH, cifar100:PATH, fashion-mnist:PATH, mnist:PATH, "
            "imagefolder:DIR."
        ),
    ] = None,
) -> None:
    """Validate a data source and write a prepared dataset directory (manifest + arrays or shards)."""
    from cdarts.config import load_config, source_overrides
    from cdarts.runners.data_prep import run_data_prep
    from cdarts.runners.tracked_stage import tracked_stage

    experiment = load_config(config, [*(overrides or []), *source_overrides(source)])
    # The lock sits beside OUT: the data prep replaces OUT as a whole when it is complete.
    with out_dir_lock(out, beside=True), tracked_stage("data_prep", experiment) as tracker:
        prepared = run_data_prep(experiment.data, experiment.seed, out, tracker)
    counts = prepared.manifest["counts"]
    typer.echo(
        f"prepared {experiment.data.source}: {counts['train']} train / {counts['test']} test images, "
        f"{prepared.num_classes} classes, digest {prepared.digest} -> {out}"
    )


@app.command("search")
@handles_user_errors
@locks_out_dir
def search(
    config: ConfigOption,
    out: OutDirOption,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            "-d",
            help="Prepared dataset directory (from data-prep), or its s3:// prefix (fetched once per machine). "
            "Default: the config's data, prepared into OUT/data (reused by a rerun, which resumes).",
        ),
    ] = None,
    overrides: SetOption = None,
    max_iterations: Annotated[
        int | None,
        typer.Option(min=1, help="Stop after this many search iterations (checkpointed); rerun to resume."),
    ] = None,
    checkpoint_mirror: CheckpointMirrorOption = None,
    progress: ProgressOption = True,
    mlflow_parent_run_id: ParentRunOption = "",
    kfp_run_id: KfpRunOption = "",
    publish: Annotated[
        str | None,
        typer.Option(help="Once finished, rank 0 uploads OUT to this s3://bucket/prefix (manifest last)."),
    ] = None,
) -> None:
    """Run (or resume) the cyclic joint search. Works under torchrun for several processes."""
    from cdarts.config import load_config
    from cdarts.devices import resolve_device
    from cdarts.distributed import destroy_process_group
    from cdarts.runners.data_prep import run_data_prep
    from cdarts.runners.search import run_search
    from cdarts.runners.tracked_stage import tracked_stage
    from cdarts.storage import is_remote
    from cdarts.trainjob.node_data import fetch_prepared_dataset, publish_directory

    experiment = load_config(config, overrides)
    resolve_device(experiment.device)  # an impossible device is refused before the data is prepared
    if data is not None:
        dataset = fetch_prepared_dataset(data) if is_remote(data) else Path(data)
    else:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise fail("under torchrun, prepare the data first (cdarts stage data-prep) and pass --data")
        dataset = out / "data"
        if not (dataset / "manifest.json").is_file():
            prepared = run_data_prep(experiment.data, experiment.seed, dataset)
            typer.echo(
                f"prepared {experiment.data.source} ({prepared.manifest['counts']['train']} train images) -> {dataset}"
            )
    try:
        with (
            progress_display(progress) as callback,
            tracked_stage("search", experiment, mlflow_parent_run_id, kfp_run_id) as tracker,
        ):
            result = run_search(
                experiment,
                dataset,
                out,
                tracker=tracker,
                progress=callback,
                max_iterations=max_iterations,
                checkpoint_mirror=checkpoint_mirror,
            )
    finally:
        destroy_process_group()
    if result.genotype_path is not None:  # only the main process writes and reports
        typer.echo(f"genotype: {result.genotype.to_string()}")
        typer.echo(f"written: {result.genotype_path} {result.alphas_path}")
        if publish:
            typer.echo(f"published {publish_directory(out, publish)} files -> {publish}")
    elif not result.completed:
        typer.echo(f"stopped with {result.cycles_completed} cycle(s) completed; rerun the same command to resume")


@app.command("derive-genotype")
@handles_user_errors
@locks_out_dir
def derive_genotype(
    alphas: Annotated[Path, typer.Option("--alphas", "-a", help="alphas.pt written by the search.")],
    out: OutDirOption,
) -> None:
    """Derive the genotype from searched alphas; write genotype.json and cell diagrams."""
    from cdarts.runners.derive_genotype import run_derive_genotype

    result = run_derive_genotype(alphas, out)
    typer.echo(f"genotype: {result.genotype.to_string()}")
    typer.echo(f"written: {result.genotype_path} {' '.join(str(p) for p in result.diagrams)} {result.heatmap_path}")


GENOTYPE_HELP = (
    "Architecture: a name (DARTS_V2, CDARTS_A, ...), a genotype file, a Genotype(...) string, a NAS-Bench-201 "
    "arch string (|op~0|+...) or a chain string (chain:3-33-...)."
)


@app.command("retrain")
@handles_user_errors
@locks_out_dir
def retrain(
    config: ConfigOption,
    data: DataOption,
    genotype: Annotated[str, typer.Option("--genotype", "-g", help=GENOTYPE_HELP)],
    out: OutDirOption,
    overrides: SetOption = None,
    max_epochs: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many epochs (checkpointed); rerun to resume.")
    ] = None,
    checkpoint_mirror: CheckpointMirrorOption = None,
    progress: ProgressOption = True,
    mlflow_parent_run_id: ParentRunOption = "",
    kfp_run_id: KfpRunOption = "",
    stage_name: Annotated[
        str, typer.Option(help="The tracked stage: retrain, or retrain_baseline for a random baseline.")
    ] = "retrain",
) -> None:
    """Train the genotype's network from scratch (resumes from the checkpoint in --out). Works
    under torchrun for several processes (data parallel)."""
    from cdarts.architecture import resolve_architecture
    from cdarts.config import load_config
    from cdarts.distributed import destroy_process_group
    from cdarts.runners.launch import RETRAIN_STAGES
    from cdarts.runners.retrain import run_retrain
    from cdarts.runners.tracked_stage import tracked_stage

    if stage_name not in RETRAIN_STAGES:
        raise typer.BadParameter(f"must be one of {', '.join(RETRAIN_STAGES)}", param_hint="--stage-name")
    experiment = load_config(config, overrides)
    parsed = resolve_architecture(genotype)
    try:
        with (
            progress_display(progress) as callback,
            tracked_stage(stage_name, experiment, mlflow_parent_run_id, kfp_run_id) as tracker,
        ):
            result = run_retrain(
                experiment,
                data,
                parsed,
                out,
                tracker=tracker,
                progress=callback,
                max_epochs=max_epochs,
                checkpoint_mirror=checkpoint_mirror,
            )
    finally:
        destroy_process_group()
    if result.completed and result.model_path is None:
        return  # a torchrun process other than rank 0: rank 0 reports
    if not result.completed:
        typer.echo(f"stopped after {result.epochs_run} epoch(s) this run; rerun the same command to resume")
        return
    summary = result.summary
    typer.echo(
        f"final test top-1 {summary['final_test_top1']:.4f} (best over epochs, selected on the test set: "
        f"{summary['best_test_top1_selected_on_test']:.4f}); params {summary['params_without_aux']:,} "
        f"without aux -> {result.model_path}"
    )


@app.command("evaluate")
@handles_user_errors
@locks_out_dir
def evaluate(
    config: ConfigOption,
    data: DataOption,
    model: Annotated[Path, typer.Option("--model", "-m", help="Retrain output directory or model.pt.")],
    out: OutDirOption,
    overrides: SetOption = None,
) -> None:
    """Test-split metrics, confusion matrix, size and speed of a retrained model (metrics.json)."""
    from cdarts.config import load_config
    from cdarts.runners.evaluate import run_evaluate
    from cdarts.runners.tracked_stage import tracked_stage

    experiment = load_config(config, overrides)
    with tracked_stage("evaluate", experiment) as tracker:
        metrics = run_evaluate(experiment, data, model, out, tracker=tracker)
    typer.echo(
        f"top-1 {metrics['top1']:.4f}  top-5 {metrics['top5']:.4f}  loss {metrics['loss']:.4f}  "
        f"params {metrics['params_without_aux']:,} (+aux {metrics['params']:,})  "
        f"multiply-adds {metrics['multiply_adds']:,}  latency {metrics['latency_ms_batch1']:.1f} ms  "
        f"-> {out / 'metrics.json'}"
    )
