"""How to load a network, as one typed object: ``LoadOptions`` (what ``load_model`` takes besides the source).

The verbs that load a network (``probe``, ``fine_tune``, ``advise``, ``compare``, ``plan_surgery``...) take a
``LoadOptions`` (or a dict of its fields, validated the same way) and hand the object down; it round-trips
through JSON (a state dict passed as ``weights`` does not: pass a file for that).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePath

from graft.errors import GraftError
from graft.jsonable import JsonSerializable
from graft.validation import option_fields


def _integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _floats(value, what: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise GraftError(f"{what} as one number per input channel", repr(value)[:200],
                         f"for example {what}=(0.5, 0.5, 0.5)")
    values = tuple(value)
    if not values or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
        raise GraftError(f"{what} as one number per input channel", repr(value)[:200],
                         f"for example {what}=(0.5, 0.5, 0.5)")
    return tuple(float(v) for v in values)


def _flag(value, what: str, optional: bool = False) -> bool | None:
    if value is None and optional:
        return None
    if not isinstance(value, bool) and type(value).__name__ != "bool_":  # numpy booleans too
        raise GraftError(f"{what} as True or False" + (" (or None)" if optional else ""), repr(value)[:200],
                         f"for example {what}=False")
    return bool(value)


def _strings(value, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise GraftError(f"{what} as a list of names", f"the string {value!r}", f"pass {what}=[{value!r}, ...]")
    if not isinstance(value, (list, tuple)):
        raise GraftError(f"{what} as a list of names", type(value).__name__, f"pass {what}=['a', 'b', ...]")
    return tuple(map(str, value))


@dataclass(frozen=True)
class LoadOptions(JsonSerializable):
    """Everything :func:`graft.load_model` accepts besides the source.

    weights: a local weights file for a named architecture or a module. arch: the architecture of a plain
    checkpoint. pretrained: for names without weights, download the published ones (None: the loader's
    default, True). num_classes: the head to build. strict: load weights strictly (False: what fits, reported).
    label_names, input_size, mean, std, blocks, taps, head, first_layer, feature_names, feature_axis: override
    what the backbone contract derives. build: further keyword arguments of the architecture (``width=16``).
    """

    weights: str | None = None
    arch: str | None = None
    pretrained: bool | None = None
    num_classes: int | None = None
    strict: bool = True
    label_names: tuple[str, ...] | None = None
    input_size: tuple[int, ...] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    blocks: tuple[str, ...] | None = None
    taps: tuple[str, ...] | None = None
    head: str | None = None
    first_layer: str | None = None
    feature_names: tuple[str, ...] | None = None
    feature_axis: int | None = None
    build: dict = field(default_factory=dict)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        if isinstance(self.weights, PurePath):
            set_("weights", str(self.weights))
        for what in ("label_names", "blocks", "taps", "feature_names"):
            set_(what, _strings(getattr(self, what), what))
        set_("mean", _floats(self.mean, "mean"))
        set_("std", _floats(self.std, "std"))
        if self.input_size is not None:
            size = ((self.input_size,) if _integer(self.input_size) else
                    tuple(self.input_size) if isinstance(self.input_size, Iterable) else None)
            if not size or any(not _integer(v) or v < 1 for v in size):
                raise GraftError("input_size as positive integers (H, W) or (L,)", repr(self.input_size),
                                 "for example input_size=(32, 32)")
            set_("input_size", tuple(int(v) for v in size))  # numpy integers too: the JSON form holds plain ones
        if self.num_classes is not None:
            if not _integer(self.num_classes) or self.num_classes < 1:
                raise GraftError("num_classes as a positive integer", repr(self.num_classes),
                                 "for example num_classes=10")
            set_("num_classes", int(self.num_classes))
        if self.feature_axis is not None:
            if not _integer(self.feature_axis):
                raise GraftError("feature_axis as an integer (an axis of the input, channels first)",
                                 repr(self.feature_axis), "for example feature_axis=0 for named channels")
            set_("feature_axis", int(self.feature_axis))
        set_("strict", _flag(self.strict, "strict"))
        set_("pretrained", _flag(self.pretrained, "pretrained", optional=True))
        if not isinstance(self.build, dict):
            raise GraftError("build as a dict of architecture arguments", type(self.build).__name__,
                             "for example build={'width': 16}")
        shadowed = sorted(k for k in self.build if k in {f.name for f in dataclasses.fields(self)})
        if shadowed:  # load_arguments would let build's value win over the field's, silently
            raise GraftError("build holding only the architecture's own arguments",
                             f"build keys that are load options: {shadowed}",
                             "pass them as options: " + ", ".join(f"{k}=..." for k in shadowed))

    @classmethod
    def coerce(cls, options: LoadOptions | dict | None = None, **overrides) -> LoadOptions:
        """``options`` (an object, a dict of its fields, or None) with ``overrides`` applied; names that are not
        fields go into ``build`` only when they are passed as ``build``: unknown names are refused."""
        return cls(**option_fields(cls, options, overrides, what="load options that load_model knows (architecture "
                                   "arguments go in build={...})", example="graft.LoadOptions(weights='file.pth', ...)"))

    def to_kwargs(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def load_arguments(self) -> dict:
        """The keyword arguments of :func:`graft.load_model`: the fields that are set, ``build`` spread out."""
        kwargs = {k: v for k, v in self.to_kwargs().items() if k != "build" and v is not None}
        if kwargs.get("strict") is True:
            kwargs.pop("strict")
        for k in ("label_names", "blocks", "taps", "feature_names"):
            if k in kwargs:
                kwargs[k] = list(kwargs[k])
        return {**kwargs, **self.build}
