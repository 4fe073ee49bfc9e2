"""``cdarts registry promote|rollback|serving-uri``: move the ``champion`` alias by hand, and
say where a serving system downloads a version from."""

from __future__ import annotations

from typing import Annotated

import typer

from cdarts.cli.errors import handles_user_errors

app = typer.Typer(no_args_is_help=True, help="Operate the model registry's champion alias.")

TrackingUriOption = Annotated[
    str | None,
    typer.Option(
        help="MLflow tracking URI (default $CDARTS_MLFLOW_TRACKING_URI, $MLFLOW_TRACKING_URI or the embedded store)."
    ),
]
ReasonOption = Annotated[str, typer.Option(help="Why; recorded on the model version.")]


@app.command("promote")
@handles_user_errors
def promote(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="The version to make champion.")],
    reason: ReasonOption,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Make VERSION the champion, whatever its metrics (the automatic gate is the register step)."""
    from cdarts.tracking import promote as promote_version
    from cdarts.tracking import resolve_tracking_uri

    decision = promote_version(resolve_tracking_uri(tracking_uri), name, version, reason)
    typer.echo(f"{name}: champion is version {decision['champion_version']} (was {decision['previous_version']})")


@app.command("rollback")
@handles_user_errors
def rollback(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    reason: ReasonOption,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Move the champion back to the version the current champion replaced."""
    from cdarts.tracking import resolve_tracking_uri
    from cdarts.tracking import rollback as rollback_champion

    decision = rollback_champion(resolve_tracking_uri(tracking_uri), name, reason)
    typer.echo(
        f"{name}: champion is version {decision['champion_version']} (rolled back from {decision['previous_version']})"
    )


@app.command("serving-uri")
@handles_user_errors
def serving_uri(
    model: Annotated[str, typer.Argument(help="NAME@ALIAS, NAME/VERSION, or NAME (its champion).")],
    artifacts_destination: Annotated[
        str | None,
        typer.Option(
            envvar="MLFLOW_ARTIFACTS_DESTINATION",
            help="The server's --artifacts-destination (e.g. s3://cdarts/mlflow), to turn a proxied "
            "mlflow-artifacts: location into the object-store URI a KServe storage initializer reads.",
        ),
    ] = None,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Print the object-store location of a registered version's model files (KServe storageUri)."""
    from cdarts.tracking import resolve_tracking_uri
    from cdarts.tracking.models import version_artifact_uri

    typer.echo(version_artifact_uri(resolve_tracking_uri(tracking_uri), model, artifacts_destination))
