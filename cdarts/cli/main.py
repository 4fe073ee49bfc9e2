"""The root ``cdarts`` command."""

from __future__ import annotations

from typing import Annotated

import typer

try:  # typer 0.2x carries its own copy of click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

from cdarts import __version__
from cdarts.cli import genotype, gitops, lineage, model, pipeline, pipeline_upload, registry, services, stage, submit

app = typer.Typer(
    name="cdarts",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_show_locals=False,
    help="CDARTS cyclic differentiable architecture search, as pipeline stages.",
)
app.add_typer(stage.app, name="stage")
app.add_typer(genotype.app, name="genotype")
app.add_typer(model.app, name="model")
app.add_typer(services.app, name="services")
app.add_typer(gitops.app, name="gitops")
app.add_typer(registry.app, name="registry")
app.add_typer(pipeline_upload.app, name="pipeline")
app.command("run")(pipeline.run)
app.command("compile")(pipeline.compile_command)
app.command("submit")(submit.submit)
app.command("lineage")(lineage.lineage)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cdarts {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """CDARTS cyclic differentiable architecture search, as pipeline stages."""


def main() -> None:
    """The console entry point: click's usage errors (an unknown option, a value out of range)
    become one line on stderr and exit code 2, like every other bad input, instead of a box."""
    try:
        exit_code = app(standalone_mode=False)
    except click_exceptions.NoArgsIsHelpError as help_requested:  # a bare group: typer printed its help
        if help_requested.format_message().strip():
            typer.echo(help_requested.format_message(), err=True)
        raise SystemExit(help_requested.exit_code) from None
    except click_exceptions.UsageError as error:
        message = " ".join(error.format_message().split())  # click wraps long messages
        command = error.ctx.command_path if error.ctx is not None else "cdarts"
        typer.echo(f"cdarts: error: {message} (see {command} --help)", err=True)
        raise SystemExit(error.exit_code) from None
    except click_exceptions.ClickException as error:
        typer.echo(f"cdarts: error: {' '.join(error.format_message().split())}", err=True)
        raise SystemExit(error.exit_code) from None
    except typer.Abort:
        typer.echo("cdarts: aborted", err=True)
        raise SystemExit(130) from None
    raise SystemExit(exit_code if isinstance(exit_code, int) else 0)
