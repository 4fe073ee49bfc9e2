"""A rich progress display driven by the runners' ``(description, done, total)`` callback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from cdarts.search.cyclic_search import ProgressCallback


@contextmanager
def progress_display(enabled: bool = True) -> Iterator[ProgressCallback | None]:
    """Yield a callback that drives one bar per phase (None when disabled or not a terminal)."""
    if not enabled:
        yield None
        return
    console = Console(file=sys.stderr)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )
    tasks: dict[str, TaskID] = {}

    def update(description: str, done: int, total: int) -> None:
        if description not in tasks:
            tasks[description] = progress.add_task(description, total=total)
        progress.update(tasks[description], completed=done, total=total)

    with progress:
        yield update
