"""``cdarts run`` (local pipeline run) and ``cdarts compile``.

This module, ``submit`` and ``gitops`` are the CLI modules that touch kfp and the ``pipelines``
package, always lazily, so that the stage commands start fast.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

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
from cdarts.errors import ConfigError
from cdarts.out_dir_lock import out_dir_lock
from cdarts.safe_yaml import load_json
from cdarts.tracking import end_run, lineage_tags, redact_uri, resolve_tracking_uri, start_parent_run


def _print_summary(summary: dict[str, Any]) -> None:
    console = Console()
    table = Table(title="cdarts run", show_header=False)
    table.add_row("genotype", summary["genotype"])
    table.add_row("test top-1 / top-5", f"{summary['top1']:.4f} / {summary['top5']:.4f}")
    table.add_row("params / without aux head", f"{summary['params']:,} / {summary['params_without_aux']:,}")
    table.add_row("multiply-adds", f"{summary['multiply_adds']:,}")
    for stage, seconds in summary["stage_seconds"].items():
        table.add_row(f"time: {stage}", f"{seconds:.1f} s")
    for stage in summary.get("cached_tasks", []):
        table.add_row(f"time: {stage}", "served from the cache")
    table.add_row("wall time", f"{summary['wall_seconds']:.1f} s")
    if baselines := summary.get("random_baselines"):
        spread = f"std {100 * baselines['random_std_top1']:.2f}"
        table.add_row(
            "against random architectures",
            f"rank {baselines['rank']} of {baselines['random_count'] + 1}; random mean top-1 "
            f"{baselines['random_mean_top1']:.4f} ({spread} points); {baselines['report']}",
        )
    table.add_row("cell diagrams", "\n".join(summary["cell_diagrams"]))
    if summary.get("registered_model"):
        model = summary["registered_model"]
        table.add_row(
            "registered model", f"{model['name']} v{model['version']} {model['aliases']} ({model['decision']})"
        )
        table.add_row("MLflow", f"{summary['tracking_uri']} run {summary['mlflow_run_id']}")
    table.add_row("summary", str(Path(summary["run_dir"]) / "summary.json"))
    console.print(table)


@handles_user_errors
def run(
    config: Annotated[str, typer.Option("--config", "-c", help="YAML config file or preset name.")] = "demo",
    overrides: SetOption = None,
    pipeline: PipelineOption = "search",
    genotype: GenotypeOption = "CDARTS_CIFAR",
    source: Annotated[str | None, typer.Option(help="Data source override: digits, cifar10:PATH, ...")] = None,
    runs_root: Annotated[Path, typer.Option(help="Where run directories are created.")] = Path(".cdarts/runs"),
    progress: Annotated[bool, typer.Option(help="Show a line per stage.")] = True,
    stack: Annotated[
        str, typer.Option(help="none: embedded (sqlite MLflow, local files); local: the `cdarts services` stack.")
    ] = "none",
    stack_dir: Annotated[Path, typer.Option(help="State directory of the local stack.")] = Path(".cdarts/stack"),
    resume: Annotated[
        Path | None,
        typer.Option(help="Continue an interrupted run (its directory); search and retrain resume from checkpoints."),
    ] = None,
    cache: Annotated[
        bool,
        typer.Option(
            help="Serve data prep and the genotype step from kfp.local's cache (under RUNS_ROOT/.kfp-cache) when "
            "an earlier run had equal inputs, as KFP's cache does on a cluster."
        ),
    ] = False,
    random_baselines: Annotated[
        int,
        typer.Option(
            min=0,
            max=64,
            help="search pipeline: also retrain this many random architectures of the space with the same recipe "
            "and compare the searched one with them.",
        ),
    ] = 0,
) -> None:
    """Run a whole pipeline on this machine with kfp.local (no cluster; services only with --stack local)."""
    if resume is not None and random_baselines:
        raise fail("--random-baselines is fixed when a run starts; --resume repeats the run's own")
    if resume is not None:
        launch = _load_launch(resume)
        stack, pipeline = launch["stack"], launch["pipeline"]
    check_pipeline(pipeline)
    if random_baselines and pipeline != "search":
        raise fail("--random-baselines applies to the search pipeline only")
    if stack not in ("none", "local"):
        raise fail(f"unknown stack {stack!r}; choose none or local")
    stack_environment: dict[str, str] = {}
    if stack == "local":
        from cdarts.local_stack.stack import running_state

        stack_environment = running_state(stack_dir).environment()
    # Endpoints and credentials reach the tasks through the environment only, for this run only.
    with _environment(stack_environment):
        if resume is None:
            run_dir = _new_launch(
                config, overrides or [], pipeline, genotype, source, runs_root, stack, random_baselines
            )
        else:
            run_dir = resume
        # Two runs on one directory (a --resume started twice) would interleave tasks and outputs.
        with out_dir_lock(run_dir):
            _execute(run_dir, progress, run_dir.parent / ".kfp-cache" if cache else None)


LAUNCH_FILE = "launch.json"


def _load_launch(run_dir: Path) -> dict[str, Any]:
    path = run_dir / LAUNCH_FILE
    if not path.is_file():
        raise fail(f"{run_dir} is not a cdarts run directory (no {LAUNCH_FILE})")
    try:
        launch = load_json(path.read_text(encoding="utf-8"), str(path))
    except (ConfigError, OSError, ValueError) as error:  # ValueError: JSON syntax, encoding
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise fail(f"{path} is unreadable: {reason}") from None
    if not isinstance(launch, dict) or not all(isinstance(launch.get(key), str) for key in ("stack", "pipeline")):
        raise fail(f"{path} is not a cdarts launch file (no stack and pipeline names)")
    return launch


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _new_launch(
    config: str,
    overrides: list[str],
    pipeline: str,
    genotype: str,
    source: str | None,
    runs_root: Path,
    stack: str,
    random_baselines: int = 0,
) -> Path:
    """Resolve config and genotype, open the MLflow parent run, and record everything the run
    needs (no credentials) in ``launch.json``, so that ``--resume`` repeats exactly this run."""
    from cdarts.config import load_config, source_overrides
    from pipelines.local_run import new_run_dir

    experiment = load_config(config, [*overrides, *source_overrides(source)])
    run_dir = new_run_dir(runs_root).resolve()
    tracking_uri, parent_run_id = None, ""
    if experiment.tracking.enabled:
        tracking_uri = resolve_tracking_uri(experiment.tracking.uri)
        if experiment.tracking.uri is None and tracking_uri.startswith("sqlite:"):
            # Pin the embedded store for the tasks; a remote URI stays in the environment, where
            # its credentials belong, and out of the pipeline's parameters.
            experiment = experiment.model_copy(
                update={"tracking": experiment.tracking.model_copy(update={"uri": tracking_uri})}
            )
        parent_run_id = start_parent_run(
            tracking_uri,
            experiment.tracking.experiment,
            f"cdarts-{pipeline} {run_dir.name}",
            {**lineage_tags(experiment.digest()), "cdarts.run_dir": str(run_dir)},
        )
    # Checkpoints are mirrored under a scope fixed here, which a resumed run finds again.
    checkpoint_root = "s3://cdarts/checkpoints" if stack == "local" else str(run_dir / "checkpoints")
    arguments: dict[str, Any] = {
        "config": experiment.to_yaml(),
        "overrides": [],
        "mlflow_parent_run_id": parent_run_id,
        "checkpoint_root": checkpoint_root,
        "checkpoint_scope": run_dir.name,
    }
    if pipeline == "retrain":
        arguments["genotype"] = genotype_argument(genotype)
    if random_baselines:
        arguments["random_baselines"] = random_baselines
    run_dir.mkdir(parents=True, exist_ok=True)
    launch = {
        "pipeline": pipeline,
        "stack": stack,
        "arguments": arguments,
        "tracking_uri": tracking_uri if tracking_uri and tracking_uri.startswith("sqlite:") else None,
        "tracked": tracking_uri is not None,
    }
    (run_dir / LAUNCH_FILE).write_text(json.dumps(launch, indent=1), encoding="utf-8")
    return run_dir


def _execute(run_dir: Path, progress: bool, cache_root: Path | None) -> None:
    from pipelines.local_run import LocalRunError, run_locally

    launch = _load_launch(run_dir)
    arguments = launch["arguments"]
    tracking_uri = (launch["tracking_uri"] or resolve_tracking_uri(None)) if launch["tracked"] else None
    parent_run_id = arguments["mlflow_parent_run_id"]
    extra = {"mlflow_run_id": parent_run_id or None, "tracking_uri": redact_uri(tracking_uri) if tracking_uri else None}
    typer.echo(f"running cdarts-{launch['pipeline']} locally; task logs: {run_dir / 'pipeline.log'}", err=True)
    try:
        summary = run_locally(
            launch["pipeline"], arguments, run_dir, show_progress=progress, extra_summary=extra, cache_root=cache_root
        )
    except LocalRunError as error:
        if tracking_uri:
            end_run(tracking_uri, parent_run_id, succeeded=False)
        raise fail(f"{error}; continue with `cdarts run --resume {run_dir}`") from None
    if tracking_uri:
        end_run(tracking_uri, parent_run_id, succeeded=True)
    _print_summary(summary)
    typer.echo(str(run_dir))


@handles_user_errors
@with_compile_flags
def compile_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the pipeline YAML.")],
    pipeline: PipelineOption = "search",
    kubernetes_manifest_format: Annotated[
        bool,
        typer.Option(
            "--kubernetes-manifest-format",
            help="Write KFP's Pipeline and PipelineVersion resources instead of the IR, for KFP with "
            "--pipelineStore=kubernetes (pipeline definitions kept in git, applied by e.g. Argo CD).",
        ),
    ] = False,
    version_name: Annotated[
        str | None,
        typer.Option(
            help="With --kubernetes-manifest-format: the PipelineVersion's name (default: git-<commit> of a "
            "clean checkout, else spec-<sha256 of the IR>)."
        ),
    ] = None,
    namespace: Annotated[
        str | None, typer.Option(help="With --kubernetes-manifest-format: the resources' namespace.")
    ] = None,
    flags: CompileFlags = NO_FLAGS,
) -> None:
    """Compile a pipeline to KFP IR YAML for ``kfp run create -f`` (or to KFP's Pipeline and
    PipelineVersion resources)."""
    check_pipeline(pipeline)
    if not kubernetes_manifest_format and (version_name is not None or namespace is not None):
        raise fail("--version-name and --namespace apply to --kubernetes-manifest-format only")
    from pipelines.compile import compile_pipeline

    options = pipeline_options(flags)
    if kubernetes_manifest_format:
        from pipelines.pipeline_versions import compile_version_resources

        compile_version_resources(pipeline, out, options, version_name, namespace)
    else:
        compile_pipeline(pipeline, out, options)
    typer.echo(str(out))
