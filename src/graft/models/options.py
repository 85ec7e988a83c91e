"""How to load a network, as one typed object: ``LoadOptions`` (what ``load_model`` takes besides the source).

The verbs that load a network (``probe``, ``fine_tune``, ``advise``, ``compare``, ``plan_surgery``...) take a
``LoadOptions`` (or a dict of its fields, validated the same way) and hand the object down; it round-trips
through JSON (a state dict passed as ``weights`` does not: pass a file for that).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import PurePath

from graft.errors import GraftError
from graft.jsonable import JsonSerializable
from graft.validation import suggest


def _floats(value) -> tuple[float, ...] | None:
    return None if value is None else tuple(float(v) for v in value)


def _strings(value, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise GraftError(f"{what} as a list of names", f"the string {value!r}", f"pass {what}=[{value!r}, ...]")
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
        set_("mean", _floats(self.mean))
        set_("std", _floats(self.std))
        if self.input_size is not None:
            size = (self.input_size,) if isinstance(self.input_size, int) else tuple(self.input_size)
            if not size or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in size):
                raise GraftError("input_size as positive integers (H, W) or (L,)", repr(self.input_size),
                                 "for example input_size=(32, 32)")
            set_("input_size", size)
        if self.num_classes is not None and (isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int)
                                             or self.num_classes < 1):
            raise GraftError("num_classes as a positive integer", repr(self.num_classes), "for example num_classes=10")
        if not isinstance(self.build, dict):
            raise GraftError("build as a dict of architecture arguments", type(self.build).__name__,
                             "for example build={'width': 16}")

    @classmethod
    def coerce(cls, options: LoadOptions | dict | None = None, **overrides) -> LoadOptions:
        """``options`` (an object, a dict of its fields, or None) with ``overrides`` applied; names that are not
        fields go into ``build`` only when they are passed as ``build``: unknown names are refused."""
        if options is None:
            fields = {}
        elif isinstance(options, LoadOptions):
            fields = options.to_kwargs()
        elif isinstance(options, dict):
            fields = dict(options)
        else:
            raise GraftError("load options as LoadOptions(...) or a dict of its fields", type(options).__name__,
                             "pass graft.LoadOptions(weights='file.pth', ...)")
        fields.update(overrides)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = [k for k in fields if k not in known]
        if unknown:
            hints = "; ".join(f"{k}: did you mean {suggest(k, known) or 'one of ' + ', '.join(sorted(known))}?"
                              for k in unknown)
            raise GraftError("load options that load_model knows (architecture arguments go in build={...})",
                             ", ".join(unknown), hints)
        return cls(**fields)

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
