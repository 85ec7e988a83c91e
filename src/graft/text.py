"""Text for people: rich consoles that print what they are given literally.

Paths, class names, layer names and messages come from the user; rich would read ``[/x]`` in them as markup (and
raise, or silently drop ``[a-z]`` from a suggested regex) and ``:smile:`` as an emoji. Every console graft prints
through is built here, with markup, emoji and highlighting off; styling is passed explicitly
(``console.print(text, style="bold")``, or :func:`styled` for a mix of styled and literal parts).
"""

from __future__ import annotations

from typing import IO

__all__ = ["console", "styled"]


def console(file: IO[str] | None = None, *, stderr: bool = False, width: int | None = None, plain: bool = False):
    """A rich Console that prints strings as they are (no markup, emoji or highlighting). ``plain``: no colour and
    no terminal codes either (renders to a buffer: ``render`` methods)."""
    from rich.console import Console

    extra = {"force_terminal": False, "color_system": None} if plain else {}
    return Console(file=file, stderr=stderr, width=width, markup=False, emoji=False, highlight=False, **extra)


def styled(*parts):
    """One line from parts: a string is literal, a ``(string, style)`` pair is drawn in that style (a rich Text)."""
    from rich.text import Text

    return Text.assemble(*parts)
