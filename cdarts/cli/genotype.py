"""``cdarts genotype show|convert|diff|list``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from cdarts.cli.errors import handles_user_errors

if TYPE_CHECKING:
    from cdarts.architecture import Architecture
    from cdarts.genotype import Genotype

app = typer.Typer(no_args_is_help=True, help="Inspect, convert and compare genotypes.")

GenotypeArgument = Annotated[
    str, typer.Argument(help="A reference name (DARTS_V2, ...), a genotype file, or a Genotype(...) string.")
]


def _describe_any(architecture: Architecture) -> str:
    """Per node its kept edges (cells), or per stage its blocks (chain)."""
    from cdarts.spaces import space_of

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
    to: Annotated[Literal["json", "nested", "flat"], typer.Option(help="Output form.")] = "json",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of stdout.")] = None,
) -> None:
    """Convert between JSON, the nested CDARTS string and the flat DARTS string."""
    from cdarts.genotype_parser import resolve_genotype

    parsed = resolve_genotype(genotype)
    text = parsed.to_json() if to == "json" else parsed.to_string(flat=to == "flat") + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


def genotype_differences(a: Genotype, b: Genotype) -> list[dict[str, object]]:
    """Per (cell, node), the edges only in ``a`` and only in ``b`` (edge order ignored)."""
    differences: list[dict[str, object]] = []
    for cell, reduction in (("normal", False), ("reduce", True)):
        nodes_a, concat_a = a.cell(reduction)
        nodes_b, concat_b = b.cell(reduction)
        for i in range(max(len(nodes_a), len(nodes_b))):
            edges_a = set(nodes_a[i]) if i < len(nodes_a) else set()
            edges_b = set(nodes_b[i]) if i < len(nodes_b) else set()
            if edges_a != edges_b:
                differences.append(
                    {
                        "cell": cell,
                        "node": i,
                        "only_a": sorted([op, idx] for op, idx in edges_a - edges_b),
                        "only_b": sorted([op, idx] for op, idx in edges_b - edges_a),
                    }
                )
        if set(concat_a) != set(concat_b):
            differences.append({"cell": cell, "concat_a": list(concat_a), "concat_b": list(concat_b)})
    return differences


@app.command("diff")
@handles_user_errors
def diff(
    first: GenotypeArgument,
    second: GenotypeArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print the differences as JSON.")] = False,
) -> None:
    """Compare two genotypes as architectures; exit 0 if identical, 1 if they differ."""
    from cdarts.genotype_parser import resolve_genotype

    differences = genotype_differences(resolve_genotype(first), resolve_genotype(second))
    if as_json:
        typer.echo(json.dumps({"identical": not differences, "differences": differences}, indent=2))
    elif not differences:
        typer.echo("identical architectures")
    else:
        for d in differences:
            if "node" in d:
                typer.echo(f"{d['cell']} node {d['node']}: a has {d['only_a']}, b has {d['only_b']}")
            else:
                typer.echo(f"{d['cell']} concat: a {d['concat_a']}, b {d['concat_b']}")
    raise typer.Exit(1 if differences else 0)


@app.command("list")
def list_names() -> None:
    """List the reference genotypes shipped with cdarts."""
    from cdarts.genotype_parser import reference_genotype_names

    for name in reference_genotype_names():
        typer.echo(name)
