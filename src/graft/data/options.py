"""How to read a dataset, as one typed object: ``DataOptions`` (what ``load_data`` takes besides the source).

The verbs that read data (``probe``, ``fine_tune``, ``advise``, ``compare``, ``pretrain``...) take a
``DataOptions`` (or a dict of its fields, validated the same way) and hand the object down; it round-trips
through JSON, so a run folder can record how its data was read.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from graft.data.arrays import LAYOUTS
from graft.data.audio import AudioFeatures
from graft.errors import DataError
from graft.jsonable import JsonSerializable
from graft.validation import option_fields

ON_ERROR = ("raise", "skip")
NORMALIZE = ("none", "zscore", "minmax")


def _names(value, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise DataError(f"{what} as a list of names", f"the string {value!r}", f"pass {what}=[{value!r}, ...]")
    if not isinstance(value, Iterable):
        raise DataError(f"{what} as a list of names", f"{type(value).__name__}: {value!r}"[:200],
                        f"pass {what}=['a', 'b', ...]")
    return tuple(map(str, value))


def _integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _image_size(value) -> tuple[int, int] | None:
    """``image_size`` as (height, width): one integer means a square; numpy integers become ints."""
    if value is None:
        return None
    size = (value, value) if _integer(value) else tuple(value) if isinstance(value, Iterable) else None
    if size is None or len(size) != 2 or not all(_integer(v) and v >= 1 for v in size):
        raise DataError("image_size as (height, width), two positive integers", repr(value),
                        "for example image_size=(32, 32)")
    return int(size[0]), int(size[1])


@dataclass(frozen=True)
class DataOptions(JsonSerializable):
    """Everything :func:`graft.data.load_data` accepts besides the source (see its docstring for each field).

    labels: which file-name group (``label_pattern``) or table column holds the label.
    label_names / classes: name the classes / keep only these, in this order.
    val_fraction / test_fraction / seed: splits made from train when the source has none (stratified, seeded).
    on_error: ``raise`` (stop at a bad sample, listing them all) or ``skip`` (drop them and list them).
    normalize / length: time series only. image_size / image_mode: images only. audio: audio features.
    split_of: a callable from file-name groups to a split name (not written to JSON).
    """

    labels: str | None = None
    label_names: tuple[str, ...] | None = None
    classes: tuple[str, ...] | None = None
    layout: str = "auto"
    val_fraction: float = 0.0
    test_fraction: float = 0.0
    seed: int = 0
    on_error: str = "raise"
    normalize: str = "none"
    length: int | None = None
    image_size: tuple[int, ...] | None = None
    image_mode: str | None = None
    audio: AudioFeatures = field(default_factory=AudioFeatures)
    label_pattern: str | None = None
    split_of: Callable[[dict], str] | None = field(default=None, compare=False)
    label_column: str = "label"
    path_column: str = "path"
    feature_columns: tuple[str, ...] | None = None
    feature_names: tuple[str, ...] | None = None
    feature_axis: int | None = None
    name: str | None = None

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        for what in ("label_names", "classes", "feature_columns", "feature_names"):
            set_(what, _names(getattr(self, what), what))
        if self.label_names is not None and not self.label_names:
            raise DataError("at least one name in label_names", "an empty list",
                            "leave label_names out to take them from the data")
        if self.classes is not None and not self.classes:
            raise DataError("at least one class in classes", "an empty list", "leave classes out to keep them all")
        set_("image_size", _image_size(self.image_size))
        if self.audio is None:
            set_("audio", AudioFeatures())
        elif isinstance(self.audio, dict):
            set_("audio", AudioFeatures.from_dict(self.audio))
        elif not isinstance(self.audio, AudioFeatures):
            raise DataError("audio as AudioFeatures(...) or a dict of its fields", repr(self.audio)[:200],
                            "for example audio=AudioFeatures(kind='mfcc')")
        for what in ("val_fraction", "test_fraction"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
                raise DataError(f"{what} between 0 and 1 (exclusive)", repr(value), "for example 0.2")
            set_(what, float(value))  # numpy scalars too: the JSON form holds plain numbers
        if not _integer(self.seed) or not 0 <= self.seed < 2**32:
            raise DataError("seed as an integer between 0 and 2**32 - 1", repr(self.seed), "for example seed=0")
        set_("seed", int(self.seed))
        if self.layout not in LAYOUTS:
            raise DataError(f"a layout among {LAYOUTS}", repr(self.layout), "NHWC for (N, H, W, C) images, NLC for "
                            "(N, length, channels) series, NF for tables")
        if self.feature_axis is not None:
            if not _integer(self.feature_axis):
                raise DataError("feature_axis as an integer (an axis of the samples, channels first)",
                                repr(self.feature_axis), "for example feature_axis=0 for named channels")
            set_("feature_axis", int(self.feature_axis))
        if self.val_fraction + self.test_fraction >= 1:
            raise DataError("val_fraction + test_fraction below 1", f"{self.val_fraction} + {self.test_fraction}",
                            "leave some samples for training")
        if self.on_error not in ON_ERROR:
            raise DataError("on_error 'raise' or 'skip'", repr(self.on_error), "skip drops bad samples and lists them")
        if self.normalize not in NORMALIZE:
            raise DataError(f"a normalization among {NORMALIZE}", repr(self.normalize), "zscore is the usual choice for UCR")

    @classmethod
    def coerce(cls, options: DataOptions | dict | None = None, **overrides) -> DataOptions:
        """``options`` (an object, a dict of its fields, or None) with ``overrides`` applied: unknown names are
        refused with the closest known one."""
        return cls(**option_fields(cls, options, overrides, error=DataError, what="data options that load_data knows",
                                   example="graft.DataOptions(val_fraction=0.1, ...)"))

    def to_kwargs(self) -> dict:
        """The fields as keyword arguments (the objects themselves, not their JSON form)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_dict(self) -> dict:
        out = super().to_dict()
        out.pop("split_of")  # a callable: not data
        return out
