"""A progress bar on stderr for commands that take a while (``detect``, ``nab run``, ``rollups rebuild``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

Advance = Callable[..., None]  # (done, total, description="")


@contextmanager
def progress_bar(label: str, show: bool) -> Iterator[Advance | None]:
    """A progress bar on stderr while the block runs (when ``show``: commands pass "not --quiet and
    stderr is a terminal"); yields its update function ``(done, total, description="")``, or None."""
    if not show:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task("", total=None)

        def update(done: int, total: int, description: str = "") -> None:
            bar.update(task, completed=done, total=total, description=description)

        yield update
