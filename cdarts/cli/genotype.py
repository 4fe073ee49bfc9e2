"""``cdarts genotype show|convert|diff|list``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from cdarts.cli.errors import fail, handles_user_errors

if TYPE_CHECKING:
    from cdarts.architecture import Architecture

app = typer.Typer(no_args_is_help=True, help="Inspect, convert and compare genotypes.")

GenotypeArgument = Annotated[
    str, typer.Argument(help="A reference name (DARTS_V2, ...), a genotype file, or a Genotype(...) string.")
]


def _describe_any(architecture: Architecture) -> str:
    """Per node its kept edges (cells), or per stage its blocks (chain)."""
    from cdarts.spaces.registry import space_of

    return space_of(architecture).describe(architecture)


@app.command("show")
@handles_user_errors
def show(
    genotype: GenotypeArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON form.")] = False,
) -> None:
    """Print an architecture of any search space: its string and, per node, the kept edges (per
    stage the blocks, in the chain space)."""
    from cdarts.architecture import resolve_architecture

    parsed = resolve_architecture(genotype)
    if as_json:
        typer.echo(parsed.to_json(), nl=False)
        return
    typer.echo(parsed.to_string())
    typer.echo(_describe_any(parsed))


@app.command("convert")
@handles_user_errors
def convert(
    genotype: GenotypeArgument,
    to: Annotated[
        Literal["json", "text", "nested", "flat"],
        typer.Option(help="json, the space's text form, or (DARTS) the nested CDARTS or flat DARTS string."),
    ] = "json",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of stdout.")] = None,
) -> None:
    """Convert an architecture of any space between JSON and its text forms."""
    from cdarts.architecture import resolve_architecture
    from cdarts.spaces.registry import space_of

    parsed = resolve_architecture(genotype)
    space = space_of(parsed)
    forms = space.text_forms(parsed)
    if to != "json" and to not in forms:
        raise fail(f"--to {to} is a DARTS-space form; a {space.name} architecture has {', '.join(['json', *forms])}")
    text = parsed.to_json() if to == "json" else forms[to] + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


@app.command("diff")
@handles_user_errors
def diff(
    first: GenotypeArgument,
    second: GenotypeArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print the differences as JSON.")] = False,
) -> None:
    """Compare two architectures (any space) as networks; exit 0 if identical, 1 if they differ."""
    from cdarts.architecture import resolve_architecture
    from cdarts.spaces.registry import space_of

    a, b = resolve_architecture(first), resolve_architecture(second)
    space_a, space_b = space_of(a), space_of(b)
    if space_a is not space_b:
        text = f"a is a {space_a.name} architecture, b a {space_b.name} one"
        differences: list[dict[str, object]] = [{"space_a": space_a.name, "space_b": space_b.name, "text": text}]
    else:
        differences = space_a.differences(a, b)
    if as_json:
        typer.echo(json.dumps({"identical": not differences, "differences": differences}, indent=2))
    elif not differences:
        typer.echo("identical architectures")
    else:
        for difference in differences:
            typer.echo(str(difference["text"]))
    raise typer.Exit(1 if differences else 0)


@app.command("list")
def list_names() -> None:
    """List the published architectures shipped with cdarts, of every space (name and space)."""
    from cdarts.spaces.registry import get_space, space_names

    for space in space_names():
        for name in get_space(space).reference_names():
            typer.echo(f"{name}  {space}")
