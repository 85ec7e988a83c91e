"""Validation helpers used at graft's public boundary (scikit-learn style: check early, say clearly)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path

from graft.errors import GraftError, LabelError


def positive_int(value: object, name: str) -> int:
    """Return ``value`` as an int if it is a positive integer, else raise a clear error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GraftError(f"{name} to be a positive integer", f"{value!r}", f"pass {name}=1 or more")
    return value


def size_tuple(value: object, name: str = "input_size") -> tuple[int, ...]:
    """Normalize an input size: an int (square), or a sequence of 1 or 2 positive ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, Sequence) or isinstance(value, str) or not 1 <= len(value) <= 3:
        raise GraftError(
            f"{name} as H W (images), L (sequences) or one int for a square",
            f"{value!r}",
            f"pass for example {name}=(32, 32)",
        )
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise GraftError(f"{name} made of positive integers", f"{value!r}", f"pass for example {name}=(32, 32)")
        out.append(int(v))
    return tuple(out)


def is_dir(path) -> bool:
    """``Path(path).is_dir()``, False for a name the system cannot even look up (too long, a NUL byte)."""
    try:
        return Path(path).is_dir()
    except (OSError, ValueError):
        return False


def is_file(path) -> bool:
    """``Path(path).is_file()``, False for a name the system cannot even look up (too long, a NUL byte)."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def existing_file(path: str | Path, what: str = "a file") -> Path:
    """Return ``path`` as a Path if it names an existing, non-empty file."""
    p = Path(path).expanduser()
    if not is_file(p) and not is_dir(p):
        near = suggest(p.name, [c.name for c in p.parent.iterdir()] if p.parent.is_dir() else [])
        hint = f"did you mean {near}?" if near else "check the path (relative paths start from the current folder)"
        raise GraftError(what, f"a path that does not exist: {p}", hint)
    if p.is_dir():
        raise GraftError(what, f"a folder: {p}", "pass the file inside it")
    if p.stat().st_size == 0:
        raise GraftError(what, f"an empty file: {p}", "the file was probably not written completely; write it again")
    return p


def suggest(name: str, candidates: Iterable[str], n: int = 3) -> str:
    """'a', 'b' or 'c': the candidates closest to ``name``, for "did you mean" hints ('' if none)."""
    close = difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.5)
    return " or ".join(repr(c) for c in close)


def label_names(names: object, what: str = "label names") -> tuple[str, ...]:
    """Validate a sequence of class names: strings, none empty, no duplicates."""
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise LabelError(f"{what} as a list of strings", f"{type(names).__name__}: {names!r}"[:200],
                         "pass for example ['cat', 'dog']")
    out = tuple(str(n).strip() for n in names)
    if any(not n for n in out):
        raise LabelError(f"{what} without empty names", f"{list(out)!r}"[:200], "give every class a name")
    seen: set[str] = set()
    dups = sorted({n for n in out if n in seen or seen.add(n)})
    if dups:
        raise LabelError(f"{what} that are all different", f"duplicates {dups}", "rename or merge the repeated classes")
    return out


def option_fields(cls, options, overrides: dict, *, error: type[GraftError] = GraftError, what: str,
                  example: str) -> dict:
    """The fields of the options dataclass ``cls`` from ``options`` (an instance, a dict of its fields, or None)
    with ``overrides`` applied; a name that is not a field is refused with the closest one (``what``: what the
    fields are, in the message; ``example``: how to build one)."""
    import dataclasses

    if options is None:
        fields = {}
    elif isinstance(options, cls):
        fields = {f.name: getattr(options, f.name) for f in dataclasses.fields(cls)}
    elif isinstance(options, dict):
        fields = dict(options)
    else:
        raise error(f"{what} as {cls.__name__}(...) or a dict of its fields", type(options).__name__,
                    f"pass {example}")
    fields.update(overrides)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in fields if k not in known]
    if unknown:
        hints = "; ".join(f"{k}: did you mean {suggest(k, known) or 'one of ' + ', '.join(sorted(known))}?"
                          for k in unknown)
        raise error(what, ", ".join(unknown), hints)
    return fields
