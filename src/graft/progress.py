"""Progress bars for long work (rich), shown only on a terminal and only when there is enough to do."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def track(items: Iterable[T], description: str, total: int | None = None, min_items: int = 200) -> Iterator[T]:
    """Iterate ``items`` with a transient progress bar on stderr when it is a terminal and there are many."""
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    if not sys.stderr.isatty() or (total is not None and total < min_items):
        yield from items
        return
    from rich.console import Console
    from rich.progress import track as rich_track

    yield from rich_track(items, description=description, total=total, transient=True,
                          console=Console(stderr=True))


class LiveBar:
    """A per-step bar with live metrics (``loss 0.412 acc 0.873``) on stderr, for one epoch or one pass.

    Shown when ``console`` is given (tests pass one that writes to a buffer) or stderr is a terminal; otherwise
    every call is a no-op, so scripts and logs see only the per-epoch lines. Leaves nothing behind when done."""

    def __init__(self, total: int, description: str, *, enabled: bool = True, console=None):
        self._progress = None
        if not enabled or (console is None and not sys.stderr.isatty()):
            return
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[metrics]}"), TimeRemainingColumn(), transient=True,
                                  console=console if console is not None else Console(stderr=True))
        self._task = self._progress.add_task(escape(description), total=total, metrics="")

    def __enter__(self) -> LiveBar:
        if self._progress is not None:
            self._progress.start()
        return self

    def advance(self, **metrics: float) -> None:
        if self._progress is not None:
            text = " ".join(f"{k} {v:.3f}" for k, v in metrics.items())
            self._progress.update(self._task, advance=1, metrics=text)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
