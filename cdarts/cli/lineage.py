"""``cdarts lineage MODEL[@alias|/version]``: from a registered model back to its data."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cdarts.cli.errors import handles_user_errors


@handles_user_errors
def lineage(
    model: Annotated[str, typer.Argument(help="NAME@ALIAS, NAME/VERSION, or NAME (its champion).")],
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            help="MLflow tracking URI (default $CDARTS_MLFLOW_TRACKING_URI, $MLFLOW_TRACKING_URI or the embedded "
            "store)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print model version -> evaluate run -> retrain run -> genotype -> search run -> dataset."""
    from cdarts.tracking import lineage as trace
    from cdarts.tracking import resolve_tracking_uri

    chain = trace(resolve_tracking_uri(tracking_uri), model)
    if as_json:
        typer.echo(json.dumps(chain, indent=2))
        return
    for step in chain:
        facts = ", ".join(f"{k}={v}" for k, v in step.items() if k not in ("kind",) and v is not None)
        typer.echo(f"{step['kind']:>14}: {facts}")
