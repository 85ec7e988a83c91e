"""Frozen dataclasses <-> JSON, for the objects handed between stages (DatasetSpec, SurgeryPlan...).

``to_dict`` turns nested dataclasses, tuples and dicts into plain JSON data; ``from_dict`` rebuilds the
dataclass from its type hints, so ``from_dict(T, json.loads(json.dumps(to_dict(x)))) == x``.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def to_dict(obj: Any) -> Any:
    """Plain JSON-ready data from dataclasses, tuples, lists and dicts."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [to_dict(o) for o in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value)
            except (TypeError, ValueError, KeyError):
                continue
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise TypeError(f"expected an object for {tp.__name__}")
        return from_dict(tp, value)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v) for v in value)
        return tuple(_convert(a, v) for a, v in zip(args, value, strict=False)) if args else tuple(value)
    if origin is dict:
        return {k: _convert(args[1], v) for k, v in value.items()} if args else dict(value)
    if tp is float and isinstance(value, int):
        return float(value)
    return value


def from_dict(cls: type[T], data: dict) -> T:
    """Rebuild dataclass ``cls`` from :func:`to_dict` output (unknown keys are ignored)."""
    hints = typing.get_type_hints(cls)
    kwargs = {f.name: _convert(hints[f.name], data[f.name]) for f in dataclasses.fields(cls) if f.name in data}
    return cls(**kwargs)


def dumps(obj: Any) -> str:
    return json.dumps(to_dict(obj), indent=2, sort_keys=False)


class JsonSerializable:
    """Mixin for frozen dataclasses: ``to_dict``/``to_json`` and ``from_dict``/``from_json`` that round-trip."""

    def to_dict(self) -> dict:
        return to_dict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict):
        return from_dict(cls, data)

    @classmethod
    def from_json(cls, text: str):
        from graft.errors import GraftError

        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GraftError(f"a {cls.__name__} in JSON", f"invalid JSON ({exc})",
                             f"write it with {cls.__name__}.to_json()") from None
        if not isinstance(data, dict):
            raise GraftError(f"a {cls.__name__} in JSON (an object)", type(data).__name__, "pass the whole file")
        try:
            return cls.from_dict(data)
        except GraftError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:  # missing or mistyped fields
            raise GraftError(f"a {cls.__name__} in JSON", f"an object that is not one ({type(exc).__name__}: "
                             f"{str(exc)[:200]})", f"pass a file graft wrote ({cls.__name__}.to_json()), of this "
                             "kind and version") from None
