"""``cdarts gitops``: turn the retrain requests synced from git into exactly one KFP run each."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from cdarts.cli.errors import fail, handles_user_errors
from cdarts.cli.pipeline_options import (
    NO_FLAGS,
    CompileFlags,
    pipeline_options,
    with_compile_flags,
)
from cdarts.cli.pipeline_source import InlineOption, PipelineVersionOption, check_source_flags, run_source
from cdarts.cli.submit import (
    CheckpointRootOption,
    HostOption,
    LedgerOption,
    NamespaceOption,
    TrackingUriOption,
    WaitSecondsOption,
    tracking_parent,
)
from cdarts.errors import CdartsError

app = typer.Typer(no_args_is_help=True, help="GitOps retraining: one KFP run per changed retrain request.")

RequestsArgument = Annotated[
    Path, typer.Argument(help="Directory of retrain requests (configs/retrain, or its ConfigMap mount).")
]
PeriodOption = Annotated[
    str,
    typer.Option(
        help="none: one run per request version; daily, weekly or monthly: one run per version and period "
        "(scheduled retrains)."
    ),
]
PERIODS = ("none", "daily", "weekly", "monthly")


def period_label(period: str, now: datetime) -> str | None:
    """The label of the period containing ``now`` (UTC): ``2026-11-29``, ``2026-W48``, ``2026-11``."""
    if period == "none":
        return None
    if period == "daily":
        return now.strftime("%Y-%m-%d")
    if period == "weekly":
        year, week, _ = now.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "monthly":
        return now.strftime("%Y-%m")
    raise fail(f"unknown --period {period!r}; choose one of {', '.join(PERIODS)}")


@app.command("keys")
@handles_user_errors
def keys(
    requests: RequestsArgument,
    ledger: LedgerOption = None,
    period: PeriodOption = "none",
) -> None:
    """Validate every request and print its idempotency key (and, with --ledger, its run)."""
    from cdarts.idempotency import open_ledger
    from pipelines.retrain_request import load_request, request_files

    label = period_label(period, datetime.now(UTC))
    opened = open_ledger(ledger) if ledger else None
    for path in request_files(requests):
        key = load_request(path).idempotency_key(label)
        state = ""
        if opened is not None:
            found = opened.read(key)
            state = "  not submitted" if found is None else f"  {found[0].state} {found[0].run_id or ''}".rstrip()
        typer.echo(f"{path.name}  {key}{state}")


@app.command("sync")
@handles_user_errors
@with_compile_flags
def sync(
    requests: RequestsArgument,
    host: HostOption,
    ledger: Annotated[
        str,
        typer.Option(envvar="CDARTS_IDEMPOTENCY_LEDGER", help="Where keys are recorded: s3://bucket/prefix or a dir."),
    ],
    namespace: NamespaceOption = None,
    revision: Annotated[
        str,
        typer.Option(
            envvar="CDARTS_GIT_REVISION",
            help="Git commit being synced (recorded for lineage; names the pipeline version).",
        ),
    ] = "",
    period: PeriodOption = "none",
    wait_for_holder: WaitSecondsOption = 300.0,
    checkpoint_root: CheckpointRootOption = "",
    tracking_uri: TrackingUriOption = None,
    inline: InlineOption = False,
    pipeline_version: PipelineVersionOption = None,
    flags: CompileFlags = NO_FLAGS,
) -> None:
    """Submit the retrain pipeline once per request version: a re-sync, a retried Job or a second
    Job racing this one finds the recorded run instead of creating another. Every request is
    validated before anything is submitted; exits non-zero if any submission failed. Runs are
    created from the pipeline version git-<revision> (of this code, with --revision unset),
    uploaded if absent."""
    check_source_flags(inline, pipeline_version)
    from cdarts.idempotency import open_ledger
    from pipelines.compile import compile_pipeline
    from pipelines.idempotent_submit import run_name_for_key, submit_once
    from pipelines.pipeline_versions import PipelineStore, revision_version_name
    from pipelines.retrain_request import load_request, request_files
    from pipelines.submit import KfpRunService, RunSource

    label = period_label(period, datetime.now(UTC))
    loaded = [load_request(path) for path in request_files(requests)]  # all valid, or nothing submitted
    if not loaded:
        typer.echo(f"no retrain requests in {requests}")
        return
    opened = open_ledger(ledger)
    # An existing version is not compiled: the compile flags do not apply to it.
    options = pipeline_options(flags) if pipeline_version is None else None
    version_name = revision_version_name(revision) if revision else None
    sources: dict[str | None, RunSource] = {}  # per namespace: runs use their namespace's pipeline
    services: dict[tuple[str, str | None], KfpRunService] = {}
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / "cdarts-retrain.yaml"
        if options is not None:
            compile_pipeline("retrain", package, options)
        for request in loaded:
            key = request.idempotency_key(label)
            stem = request.path.stem.lower().replace("_", "-")[:40]
            try:
                # A request may name its namespace (multi-user Kubeflow); else the trigger's.
                where = (request.request.experiment, request.request.namespace or namespace)
                if where not in services:
                    services[where] = KfpRunService(host, *where)
                if where[1] not in sources:
                    store = None if inline else PipelineStore(host, where[1], services[where].client)
                    sources[where[1]] = run_source(store, "retrain", package, pipeline_version, version_name)
                run_name = run_name_for_key(f"retrain-{stem}", key)
                parent = tracking_parent(
                    request.experiment_config,
                    run_name,
                    tracking_uri,
                    {"cdarts.gitops.request": request.path.name, "cdarts.gitops.revision": revision},
                )
                outcome = submit_once(
                    key,
                    run_name,
                    opened,
                    services[where],
                    sources[where[1]],
                    request.pipeline_arguments(checkpoint_root),
                    details={
                        "request": request.path.name,
                        "revision": revision,
                        "submitter": os.environ.get("HOSTNAME", ""),
                    },
                    wait_seconds=wait_for_holder,
                    parent=parent,
                )
            except CdartsError as error:
                failures += 1
                typer.echo(f"cdarts: error: {request.path.name}: {str(error).splitlines()[0]}", err=True)
                continue
            verb = "created" if outcome.created else "already submitted"
            typer.echo(f"{request.path.name}: {verb} run {outcome.run.run_id} (key {key}) {outcome.run.url}")
    if failures:
        raise fail(f"{failures} of {len(loaded)} retrain request(s) could not be submitted; rerun to retry them")
