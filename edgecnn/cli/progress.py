"""Device side: progress on a terminal for long work: a bar with the time left, on stderr, gone when done; nothing in a pipe."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def timed_bar(what: str, opts: Any = None, *, enabled: bool = True) -> Iterator[Callable[[float], None] | None]:
    """Yield ``tick(fraction_done)`` that moves a bar with its time left, or None off a terminal (or when disabled)."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn(f"[bold]{what}[/bold]"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("time left"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(what, total=1.0)
        yield lambda fraction: bar.update(task, completed=fraction)
