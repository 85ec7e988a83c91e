"""Problems found in a dataset before any model runs: what, how many, which samples, what to do.

Every loader collects :class:`Problem` records instead of failing on the first bad file, so that one
report lists everything. ``severity="error"`` stops the load unless the user asked to skip bad samples
(``on_error="skip"``), in which case the samples are dropped and listed in ``DataReport.skipped``.
"""

from __future__ import annotations

from dataclasses import dataclass

from graft.errors import DataError
from graft.jsonable import JsonSerializable

SHOWN = 5  # items named in a message; the full list stays in Problem.items


@dataclass(frozen=True)
class Problem(JsonSerializable):
    """One kind of problem and every sample it concerns."""

    kind: str  # e.g. "corrupt_image", "non_finite", "single_class", "duplicate_across_splits"
    severity: str  # "error": the data cannot be used as it is; "warning": worth knowing, handled
    message: str  # what was found, with counts
    fix: str  # what to do about it
    items: tuple[str, ...] = ()  # the samples or files concerned (all of them)
    skippable: bool = False  # dropping ``items`` solves it (on_error="skip")

    def render(self) -> str:
        shown = ", ".join(self.items[:SHOWN]) + (f" ... ({len(self.items)} in all)" if len(self.items) > SHOWN else "")
        text = f"[{self.severity}] {self.kind}: {self.message}"
        if shown:
            text += f"\n    {shown}"
        return text + f"\n    fix: {self.fix}"


@dataclass
class ProblemLog:
    """Collects problems while a loader scans its input."""

    problems: list[Problem]
    skipped: list[str]
    on_error: str = "raise"

    @classmethod
    def new(cls, on_error: str = "raise") -> ProblemLog:
        if on_error not in ("raise", "skip"):
            raise DataError("on_error 'raise' (stop on bad samples) or 'skip' (drop and list them)",
                            repr(on_error), "pick one of them")
        return cls([], [], on_error)

    def add(self, kind: str, severity: str, message: str, fix: str, items=(), skippable: bool = False) -> None:
        self.problems.append(Problem(kind, severity, message, fix, tuple(str(i) for i in items), skippable))

    def skip_or_keep(self, kind: str, bad: list[str], message: str, fix: str) -> set[str]:
        """Record bad samples; returns the ones to drop (all with on_error='skip', none otherwise)."""
        if not bad:
            return set()
        if self.on_error == "skip":
            self.add(kind, "warning", f"{message}; skipped (on_error='skip')", fix, bad, skippable=True)
            self.skipped.extend(bad)
            return set(bad)
        self.add(kind, "error", message, fix + "; or pass on_error='skip' (graft data --skip-bad) to drop them and list them", bad,
                 skippable=True)
        return set()

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    def raise_if_errors(self, what: str) -> None:
        errors = self.errors
        if errors:
            lines = "\n".join(p.render() for p in errors)
            raise DataError(f"{what} that graft can use", f"{len(errors)} problem(s):\n{lines}\n",
                            "fix the data as said above (graft data PATH lists every problem)")
