"""``cdarts model summary``: size and cost of a genotype's network."""

from __future__ import annotations

import json
from typing import Annotated, Literal

import typer

from cdarts.cli.errors import fail, handles_user_errors
from cdarts.cli.options import SetOption

app = typer.Typer(no_args_is_help=True, help="Inspect networks built from genotypes.")


@app.command("summary")
@handles_user_errors
def summary(
    genotype: Annotated[
        str | None, typer.Option("--genotype", "-g", help="Architecture name, file or string (any space).")
    ] = None,
    dataset: Annotated[
        Literal["cifar10", "cifar100", "imagenet"] | None, typer.Option(help="Sets the paper's sizes.")
    ] = None,
    channels: Annotated[int | None, typer.Option(min=1, help="Initial channels C (default: the paper's).")] = None,
    cells: Annotated[
        int | None, typer.Option(min=1, help="Cells (NAS-Bench-201: per stage; default: the paper's).")
    ] = None,
    supernet: Annotated[
        bool, typer.Option("--supernet", help="Summarise the search's joint network of --config instead.")
    ] = False,
    config: Annotated[
        str | None, typer.Option("--config", "-c", help="With --supernet: YAML config file or preset name.")
    ] = None,
    overrides: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Parameters (with and without the auxiliary head) and multiply-adds for one input. Chain-space
    architectures (CDARTS_A, CDARTS_B, chain:...) are ImageNet models at 224 px; NAS-Bench-201
    cells use the benchmark's C=16, N=5 at 32 px. With --supernet: S, E, the weight pool, the
    distillation heads (with the C x H x W map each reads) and the alphas of the configured
    space, with parameter counts."""
    if supernet:
        if config is None or genotype is not None or dataset is not None or channels or cells:
            raise fail("--supernet takes --config (and --set), not --genotype, --dataset, --channels or --cells")
        _supernet_summary(config, overrides or [], as_json)
        return
    if genotype is None or dataset is None:
        raise fail("give --genotype and --dataset (or --supernet --config FILE)")
    from cdarts.architecture import resolve_architecture
    from cdarts.model_summary import summarize_genotype
    from cdarts.spaces.registry import space_of

    parsed = resolve_architecture(genotype)
    spec, shape, heading = space_of(parsed).paper_network(parsed, dataset, channels, cells)
    result = summarize_genotype(parsed, spec).to_dict()
    if as_json:
        typer.echo(json.dumps({**result, "dataset": dataset, **shape}))
        return
    typer.echo(heading)
    typer.echo(f"params              {result['params']:>12,}  ({result['params'] / 1e6:.2f} M)")
    typer.echo(f"params_without_aux  {result['params_without_aux']:>12,}  ({result['params_without_aux'] / 1e6:.2f} M)")
    typer.echo(f"multiply_adds       {result['multiply_adds']:>12,}  ({result['multiply_adds'] / 1e6:.0f} M)")


def _supernet_summary(config_name: str, overrides: list[str], as_json: bool) -> None:
    from cdarts.config import load_config
    from cdarts.search.build import build_search_model
    from cdarts.supernet_summary import summarize_supernet

    experiment = load_config(config_name, overrides)
    data = experiment.data
    in_channels = data.channels if data.source == "synthetic" else 3  # prepared images are RGB
    num_classes = data.num_classes or (100 if data.source == "cifar100" else 10)
    model = build_search_model(experiment, in_channels, num_classes)
    result = summarize_supernet(model, in_channels, data.image_size)
    if as_json:
        shape = {"in_channels": in_channels, "num_classes": num_classes, "image_size": data.image_size}
        typer.echo(json.dumps({"space": experiment.search_space, **shape, **result.to_dict()}))
        return
    typer.echo(
        f"{experiment.search_space} supernet of {experiment.name}: {in_channels} x {data.image_size} x "
        f"{data.image_size} input, {num_classes} classes"
    )
    rows = [
        ("S (search network)", result.search_network, ""),
        ("E (initial architecture)", result.eval_network, ""),
        ("weight pool", result.weight_pool, ""),
        *[
            (f"head {index + 1}", head.params, "reads " + " x ".join(map(str, head.input_shape)))
            for index, head in enumerate(result.heads)
        ],
        *[(f"alphas {name}", _elements(shape), " x ".join(map(str, shape))) for name, shape in result.alphas.items()],
        ("stems, ensemble", result.other, ""),
        ("total", result.total, f"{result.total * 4 / 2**20:.1f} MiB as fp32"),
    ]
    for label, count, note in rows:
        typer.echo(f"{label:<26}{count:>12,}  {note}".rstrip())


def _elements(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count
