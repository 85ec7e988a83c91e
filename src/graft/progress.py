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
