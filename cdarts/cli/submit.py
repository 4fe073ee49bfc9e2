"""``cdarts submit``: compile a pipeline and create one run of it on a KFP server."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cdarts.cli.errors import fail, handles_user_errors
from cdarts.cli.options import SetOption
from cdarts.cli.pipeline_options import (
    NO_FLAGS,
    CompileFlags,
    GenotypeOption,
    PipelineOption,
    check_pipeline,
    genotype_argument,
    pipeline_options,
    with_compile_flags,
)
from cdarts.cli.pipeline_source import InlineOption, PipelineVersionOption, check_source_flags, run_source

if TYPE_CHECKING:
    from cdarts.config import ExperimentConfig
    from pipelines.parent_run import ParentRun
    from pipelines.submit import KfpRunService, RunSource, SubmittedRun

HostOption = Annotated[
    str,
    typer.Option(envvar="KF_PIPELINES_ENDPOINT", help="KFP API endpoint, e.g. http://ml-pipeline.kubeflow:8888."),
]
NamespaceOption = Annotated[str | None, typer.Option(help="Kubernetes namespace (multi-user KFP).")]
LedgerOption = Annotated[
    str | None,
    typer.Option(
        envvar="CDARTS_IDEMPOTENCY_LEDGER",
        help="Where idempotency keys are recorded: s3://bucket/prefix or a directory.",
    ),
]
WaitSecondsOption = Annotated[
    float, typer.Option(min=0, help="How long to wait for another trigger holding the same key.")
]
TrackingUriOption = Annotated[
    str | None,
    typer.Option(
        help="MLflow server to open the pipeline run's parent run on (default: the config's tracking.uri, "
        "$CDARTS_MLFLOW_TRACKING_URI, $MLFLOW_TRACKING_URI). Without one, stage runs are grouped by the "
        "kfp.run_id tag only.",
    ),
]
CheckpointRootOption = Annotated[
    str, typer.Option(help="Checkpoint mirror root for resumable tasks, e.g. s3://bucket/checkpoints.")
]


def tracking_parent(
    config: ExperimentConfig, run_name: str, tracking_uri: str | None, tags: dict[str, str]
) -> ParentRun | None:
    """The MLflow parent run to open for a submission, or None (tracking off, or no server known
    to the submitter: then the stages' runs are grouped by their kfp.run_id tag)."""
    from pipelines.parent_run import ParentRun, submitter_tracking_uri

    if not config.tracking.enabled:
        return None
    uri = tracking_uri or submitter_tracking_uri(config.tracking.uri)
    if uri is None:
        typer.echo("note: no MLflow server given (--tracking-uri); stage runs are grouped by kfp.run_id", err=True)
        return None
    return ParentRun(uri, config.tracking.experiment, run_name, config.digest(), tags)


def create_with_parent(
    runs: KfpRunService, name: str, source: RunSource, arguments: dict[str, Any], parent: ParentRun | None
) -> SubmittedRun:
    """Open the parent run (if any), create the KFP run nested under it, tag the parent with it."""
    extra = parent.open() if parent is not None else {}
    try:
        run = runs.create_run(name, source, {**arguments, **extra})
    except BaseException:
        if parent is not None:
            parent.finished(succeeded=False)
        raise
    if parent is not None:
        parent.created(run)
    return run


@handles_user_errors
@with_compile_flags
def submit(
    host: HostOption,
    experiment: Annotated[str, typer.Option(help="KFP experiment name.")] = "cdarts",
    pipeline: PipelineOption = "search",
    config: Annotated[str, typer.Option("--config", "-c", help="YAML config file or preset name.")] = "demo",
    overrides: SetOption = None,
    genotype: GenotypeOption = "CDARTS_CIFAR",
    namespace: NamespaceOption = None,
    run_name: Annotated[str | None, typer.Option(help="Run name (default: cdarts-<pipeline>-<time>).")] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="Submit at most one run for this key (recorded in --ledger; the run name derives from it)."),
    ] = None,
    ledger: LedgerOption = None,
    wait_for_holder: WaitSecondsOption = 300.0,
    gpus: Annotated[int, typer.Option(min=1, help="GPUs per GPU step.")] = 1,
    checkpoint_root: CheckpointRootOption = "",
    wait: Annotated[bool, typer.Option(help="Wait for the run to finish.")] = False,
    tracking_uri: TrackingUriOption = None,
    inline: InlineOption = False,
    pipeline_version: PipelineVersionOption = None,
    flags: CompileFlags = NO_FLAGS,
) -> None:
    """Submit a pipeline run to a KFP server, created from the pipeline version of this code
    (compiled and uploaded if absent); prints the version, the run id and URL."""
    check_pipeline(pipeline)
    check_source_flags(inline, pipeline_version)
    from cdarts.config import load_config
    from cdarts.idempotency import open_ledger
    from pipelines.compile import compile_pipeline
    from pipelines.idempotent_submit import run_name_for_key, submit_once
    from pipelines.pipeline_versions import PipelineStore
    from pipelines.submit import KfpRunService

    if idempotency_key is not None and not ledger:
        raise fail("--idempotency-key needs --ledger (or CDARTS_IDEMPOTENCY_LEDGER) to record the key")
    if idempotency_key is not None and run_name:
        raise fail("--run-name cannot be combined with --idempotency-key (the key names the run)")
    experiment_config = load_config(config, overrides)
    arguments: dict[str, Any] = {
        "config": experiment_config.to_yaml(),
        "overrides": [],
        "gpus": gpus,
        "checkpoint_root": checkpoint_root,
    }
    if pipeline == "retrain":
        arguments["genotype"] = genotype_argument(genotype)
    # An existing version is not compiled: the compile flags do not apply to it.
    options = pipeline_options(flags) if pipeline_version is None else None
    opened_ledger = open_ledger(ledger) if idempotency_key is not None and ledger else None
    runs = KfpRunService(host, experiment, namespace)
    name = run_name or f"cdarts-{pipeline}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if idempotency_key is not None:
        name = run_name_for_key(f"cdarts-{pipeline}", idempotency_key)
    parent = tracking_parent(experiment_config, name, tracking_uri, {"kfp.experiment": experiment})
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / f"cdarts-{pipeline}.yaml"
        if options is not None:
            compile_pipeline(pipeline, package, options)
        store = None if inline else PipelineStore(host, namespace, runs.client)
        source = run_source(store, pipeline, package, pipeline_version)
        if opened_ledger is not None and idempotency_key is not None:
            outcome = submit_once(
                idempotency_key,
                name,
                opened_ledger,
                runs,
                source,
                arguments,
                details={"host": host, "experiment": experiment, "submitter": os.environ.get("HOSTNAME", "")},
                wait_seconds=wait_for_holder,
                parent=parent,
            )
            run = outcome.run
            typer.echo(f"{'created' if outcome.created else 'already submitted'}: key {idempotency_key}")
        else:
            run = create_with_parent(runs, name, source, arguments, parent)
    typer.echo(f"run id: {run.run_id}")
    typer.echo(f"run url: {run.url}")
    if parent is not None and parent.run_id is not None:
        typer.echo(f"mlflow parent run: {parent.run_id}")
    if wait:
        state = runs.wait(run.run_id, timeout_seconds=7 * 24 * 3600)
        typer.echo(f"run state: {state}")
        if state != "SUCCEEDED":
            typer.echo(f"error: run {run.run_id} ended {state}", err=True)
            raise typer.Exit(1)
