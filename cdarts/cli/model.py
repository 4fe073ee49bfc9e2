"""``cdarts model summary``: size and cost of a genotype's network."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Literal

import typer

from cdarts.cli.errors import fail, handles_user_errors

app = typer.Typer(no_args_is_help=True, help="Inspect networks built from genotypes.")


@app.command("summary")
@handles_user_errors
def summary(
    genotype: Annotated[str, typer.Option("--genotype", "-g", help="Genotype name, file or Genotype(...) string.")],
    dataset: Annotated[Literal["cifar10", "cifar100", "imagenet"], typer.Option(help="Sets the paper's sizes.")],
    channels: Annotated[int | None, typer.Option(min=2, help="Initial channels C (default: the paper's).")] = None,
    cells: Annotated[int | None, typer.Option(min=3, help="Number of cells (default: the paper's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Parameters (with and without the auxiliary head) and multiply-adds for one input. Chain-space
    architectures (CDARTS_A, CDARTS_B) are ImageNet models at 224 px."""
    from cdarts.chain_space import CHAIN_ARCHITECTURES, chain_architecture
    from cdarts.genotype import resolve_genotype
    from cdarts.model_summary import PAPER_SIZES, summarize_chain, summarize_genotype

    spec = PAPER_SIZES[dataset]
    if genotype.upper() in CHAIN_ARCHITECTURES:
        if dataset != "imagenet" or channels is not None or cells is not None:
            raise fail(
                f"{genotype} is a chain-space ImageNet model: use --dataset imagenet, without --channels/--cells"
            )
        choices = chain_architecture(genotype)
        result = summarize_chain(choices).to_dict()
        shape = {"space": "chain", "choices": choices, "image_size": 224}
        heading = f"{dataset}: chain-space {genotype.upper()}, choices {choices}, 224 px input"
    else:
        spec = dataclasses.replace(spec, init_channels=channels or spec.init_channels, cells=cells or spec.cells)
        result = summarize_genotype(resolve_genotype(genotype), spec).to_dict()
        shape = {
            "space": "darts",
            "init_channels": spec.init_channels,
            "cells": spec.cells,
            "image_size": spec.image_size,
        }
        heading = f"{dataset}: C={spec.init_channels}, {spec.cells} cells, {spec.image_size} px input"
    if as_json:
        typer.echo(json.dumps({**result, "dataset": dataset, **shape}))
        return
    typer.echo(heading)
    typer.echo(f"params              {result['params']:>12,}  ({result['params'] / 1e6:.2f} M)")
    typer.echo(f"params_without_aux  {result['params_without_aux']:>12,}  ({result['params_without_aux'] / 1e6:.2f} M)")
    typer.echo(f"multiply_adds       {result['multiply_adds']:>12,}  ({result['multiply_adds'] / 1e6:.0f} M)")
