"""What surgery will do, as data: the target, the steps with their reasons, and every tensor's fate.

A :class:`SurgeryPlan` is frozen, printable and JSON-serializable; it holds everything needed to apply it
again (``plan.apply(backbone)``), so a plan written by ``graft plan --json`` can be reviewed, stored in a
run folder, and replayed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from io import StringIO
from typing import Any

from graft.errors import GraftError, LabelError
from graft.jsonable import JsonSerializable
from graft.models.backbone import BackboneSpec, HeadSpec, InputSpec
from graft.surgery.execute import apply_surgery
from graft.validation import label_names as check_label_names
from graft.validation import positive_int, size_tuple

SIZE_MODES = ("auto", "native", "resize", "pad", "crop", "global_pool", "adapter")
KEEP_ROWS = ("auto", "require", "never")
ACTIONS = ("reused", "resized", "new", "dropped")


@dataclass(frozen=True)
class Target:
    """What the network should become. Everything is optional; what is left out stays as it is.

    Attributes
    ----------
    num_classes: outputs of the new head (defaults to ``len(label_names)``).
    label_names: the new classes, in order; rows of source classes with the same names are kept.
    in_chans: input channels of the new data.
    input_size: spatial size of the new data: (H, W) for images, (L,) for sequences.
    truncate_at: keep the blocks up to this one (name or index) and put a new head on top.
    size_mode: how to take a new input size: ``auto``, ``native`` (the network takes it as is),
        ``resize``, ``pad``/``crop`` (pad with ``pad_value`` or center-crop to the source size),
        ``global_pool`` (replace flatten + dense by pooling + dense), ``adapter`` (a learned input adapter).
    pad_value: the sentinel written where padding adds positions (in normalized input units).
    mask_channel: append a channel that is 1 on real data and 0 on padding (None: on when padding).
    keep_rows: ``auto`` keeps head rows of classes that match by name, ``require`` fails if none can be
        matched, ``never`` starts the head afresh.
    label_map: target name -> source name, for classes that were renamed.
    feature_names: the new data's feature names (table columns, sensor channels) along the axis the source
        network's features are named on; aligned by name when the source names its features.
    seed: seeds the initialization of new tensors, so that applying a plan twice gives the same weights.
    run_size: the size the network runs at (``--input-size``): the inputs (of ``input_size``) are resized to it in a
        parameter-free input layer, e.g. 32 px images run at 96 px through a network trained at 224 px; None: the
        planner decides with ``size_mode``.
    """

    num_classes: int | None = None
    label_names: tuple[str, ...] | None = None
    in_chans: int | None = None
    input_size: tuple[int, ...] | None = None
    truncate_at: str | None = None
    size_mode: str = "auto"
    pad_value: float = 0.0
    mask_channel: bool | None = None
    keep_rows: str = "auto"
    label_map: tuple[tuple[str, str], ...] = ()
    feature_names: tuple[str, ...] | None = None
    seed: int = 0
    run_size: tuple[int, ...] | None = None

    def __post_init__(self):
        set_ = object.__setattr__
        if self.label_names is not None:
            set_(self, "label_names", check_label_names(self.label_names, "target label names"))
            if self.num_classes is None:
                set_(self, "num_classes", len(self.label_names))
            elif self.num_classes != len(self.label_names):
                raise LabelError(f"{self.num_classes} label names (num_classes={self.num_classes})",
                                 f"{len(self.label_names)} names", "give one name per class, or leave num_classes out")
        if self.feature_names is not None:
            set_(self, "feature_names", check_label_names(tuple(self.feature_names), "target feature names"))
        if self.num_classes is not None:
            positive_int(self.num_classes, "num_classes")
        if self.in_chans is not None:
            positive_int(self.in_chans, "in_chans")
        if self.input_size is not None:
            set_(self, "input_size", size_tuple(self.input_size))
        if self.run_size is not None:
            set_(self, "run_size", size_tuple(self.run_size))
            if len(self.run_size) == 1 and self.input_size is not None and len(self.input_size) > 1:
                set_(self, "run_size", self.run_size * len(self.input_size))  # one value for images: a square
            if self.size_mode not in ("auto", "resize"):
                raise GraftError("run_size (--input-size) with size_mode 'auto' or 'resize'",
                                 f"size_mode={self.size_mode!r}", "leave size_mode out: the inputs are resized")
        if self.truncate_at is not None:
            set_(self, "truncate_at", str(self.truncate_at))
        if self.size_mode not in SIZE_MODES:
            raise GraftError(f"size_mode in {SIZE_MODES}", repr(self.size_mode), "pick one of them")
        if self.keep_rows not in KEEP_ROWS:
            raise GraftError(f"keep_rows in {KEEP_ROWS}", repr(self.keep_rows), "pick one of them")
        if isinstance(self.label_map, dict):
            set_(self, "label_map", tuple(sorted(self.label_map.items())))
        set_(self, "label_map", tuple((str(a), str(b)) for a, b in self.label_map))
        if self.label_map and self.label_names is not None:
            unknown = [a for a, _ in self.label_map if a not in self.label_names]
            if unknown:
                raise LabelError("label_map keys that are target label names", f"{unknown}",
                                 "map each new class name to the source class it continues")


@dataclass(frozen=True)
class Step:
    """One change: what it does, why, what else could have been done, and its parameters."""

    kind: str  # "truncate", "head", "features", "input_channels", "input_size"
    summary: str
    reason: str = ""
    alternatives: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TensorChange:
    """The fate of one tensor of the network."""

    name: str  # name in the new network (the old name for dropped tensors)
    action: str  # reused, resized, new, dropped
    old_shape: tuple[int, ...] | None = None
    new_shape: tuple[int, ...] | None = None
    trainable: bool | None = None  # None for buffers and dropped tensors
    old_name: str | None = None
    note: str = ""


@dataclass(frozen=True)
class SurgeryPlan(JsonSerializable):
    """Every change surgery makes to a network, decided before anything is changed."""

    source: BackboneSpec
    target: Target
    steps: tuple[Step, ...]
    tensors: tuple[TensorChange, ...]
    result_input: InputSpec
    result_head: HeadSpec
    result_labels: tuple[str, ...] | None = None
    warnings: tuple[str, ...] = ()
    verified: str = ""  # the dry run on the target shape

    # -- queries -------------------------------------------------------------------------------------
    def count(self, action: str) -> int:
        return sum(t.action == action for t in self.tensors)

    def tensor(self, name: str) -> TensorChange:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    def step(self, kind: str) -> Step | None:
        return next((s for s in self.steps if s.kind == kind), None)

    def apply(self, backbone, *, inplace: bool = False):
        """Carry out the plan on ``backbone`` (a copy unless ``inplace=True``); see :func:`apply_surgery`."""
        return apply_surgery(backbone, self, inplace=inplace)

    # -- display -------------------------------------------------------------------------------------
    def render(self, verbose: bool = False, width: int = 100) -> str:
        from graft.text import console as text_console
        from rich.table import Table

        buf = StringIO()
        con = text_console(buf, width=width, plain=True)
        src = self.source
        src_in = src.input.shape() or (src.input.channels, "?")
        res_in = self.result_input.shape() or (self.result_input.channels, "?")
        con.print(f"Surgery plan: {src.name} ({src.head.num_classes} classes, input {_shape(src_in)}) "
                  f"-> {self.result_head.num_classes} classes, input {_shape(res_in)}")
        if not self.steps:
            con.print("  nothing to change: the network already fits the target")
        for i, s in enumerate(self.steps, 1):
            con.print(f"  {i}. {s.kind}: {s.summary}")
            for col in s.params.get("columns", []) if s.kind == "features" else []:
                con.print(f"       {col}")
            if s.reason:
                con.print(f"     why: {s.reason}")
            for alt in s.alternatives:
                con.print(f"     other option: {alt}")
        table = Table(title="tensors", show_edge=False, pad_edge=False)
        for col in ("action", "tensor", "old shape", "new shape", "trainable", "note"):
            table.add_column(col, overflow="fold", no_wrap=col in ("action", "old shape", "new shape", "trainable"))
        dropped_groups: dict[str, list[TensorChange]] = {}
        for t in self.tensors:
            if t.action == "reused" and not verbose:
                continue
            if t.action == "dropped" and not verbose:
                dropped_groups.setdefault(_module_of(t.name), []).append(t)
                continue
            tr = "" if t.trainable is None else ("yes" if t.trainable else "frozen")
            table.add_row(t.action, t.name, _shape(t.old_shape), _shape(t.new_shape), tr, t.note)
        for module, group in dropped_groups.items():
            values = sum(_numel(t.old_shape) for t in group)
            table.add_row("dropped", f"{module}.* ({len(group)} tensors)", f"{values:,} values", "-", "", group[0].note)
        reused = [t for t in self.tensors if t.action == "reused"]
        if reused and not verbose:
            values = sum(_numel(t.new_shape) for t in reused)
            frozen = sum(t.trainable is False for t in reused)
            table.add_row("reused", f"{len(reused)} tensors", "", "", f"{frozen} frozen" if frozen else "",
                          f"{values:,} values unchanged (--verbose lists them)")
        con.print(table)
        counts = ", ".join(f"{self.count(a)} {a}" for a in ACTIONS)
        con.print(f"  tensors: {counts}")
        if self.verified:
            con.print(f"  checked: {self.verified}")
        for w in self.warnings:
            con.print(f"  warning: {w}")
        return buf.getvalue().rstrip()

    def __str__(self) -> str:
        return self.render()


def run_size(backbone) -> tuple[int, ...] | None:
    """The size a grafted network runs at when its plan resizes the inputs first (``--input-size``), else None:
    what a pass without gradients sizes its batches by (:meth:`graft.data.Data.inference_batch_size`)."""
    plans = getattr(backbone, "plans", None) or ([backbone.plan] if getattr(backbone, "plan", None) else [])
    for plan in reversed(plans):
        size = getattr(getattr(plan, "target", None), "run_size", None)
        if size:
            return tuple(size)
    return None


def _shape(shape) -> str:
    if shape is None:
        return "-"
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _module_of(name: str) -> str:
    """'layer3.0.bn1.weight' -> 'layer3.0': the block a tensor belongs to, for grouped display."""
    parts = name.split(".")[:-1]
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[: i + 1])
    return ".".join(parts[:1]) or name


def _numel(shape) -> int:
    n = 1
    for s in shape or ():
        n *= int(s)
    return n
