"""Option types shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOption = Annotated[str, typer.Option("--config", "-c", help="YAML config file or preset name (tiny, demo, ...).")]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config value: key.subkey=value (repeatable)."),
]
OutDirOption = Annotated[Path, typer.Option("--out", "-o", help="Output directory.")]
