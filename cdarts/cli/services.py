"""``cdarts services up|down|status``: the local SeaweedFS + MLflow stack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cdarts.cli.errors import handles_user_errors

app = typer.Typer(no_args_is_help=True, help="Start, stop and inspect the local S3 + MLflow stack.")
StateDirOption = Annotated[Path, typer.Option(help="Where the stack keeps its data and state.")]


@app.command("up")
@handles_user_errors
def up(state_dir: StateDirOption = Path(".cdarts/stack")) -> None:
    """Start SeaweedFS (S3) and an MLflow server on 127.0.0.1 (credentials: <state-dir>/stack.json)."""
    from cdarts.local_stack.stack import up as start

    state = start(state_dir)
    typer.echo(f"S3:     {state.s3_endpoint} (buckets cdarts, mlflow)")
    typer.echo(f"MLflow: {state.tracking_uri}")
    typer.echo(f"credentials: {state_dir / 'stack.json'} (mode 0600); run pipelines with `cdarts run --stack local`")


@app.command("down")
@handles_user_errors
def down(state_dir: StateDirOption = Path(".cdarts/stack")) -> None:
    """Stop the local stack (its data stays in the state directory)."""
    from cdarts.local_stack.stack import down as stop

    typer.echo("stopped" if stop(state_dir) else "not running")


@app.command("status")
@handles_user_errors
def status(state_dir: StateDirOption = Path(".cdarts/stack")) -> None:
    """Whether the services run and answer (JSON)."""
    from cdarts.local_stack.stack import status as inspect

    report = inspect(state_dir)
    typer.echo(json.dumps(report, indent=2))
    if not report["running"]:
        raise typer.Exit(1)
