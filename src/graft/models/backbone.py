"""The backbone contract: one description of any network, however it was built.

Every network graft handles is wrapped in a :class:`Backbone`: the ``nn.Module`` plus a frozen,
JSON-serializable :class:`BackboneSpec` that names its first layer, its ordered blocks, where features can
be tapped, its head, and what input it expects. The spec is derived from data, never from per-model code:
timm models give it through their own metadata (``pretrained_cfg``, ``feature_info``); graft's zoo gives the
same fields in its entries; any other module gives it through its module tree (the last ``Linear`` or 1x1
conv is the head, top-level children are blocks). Every derived name can be overridden.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from io import StringIO

import torch
from torch import nn

from graft.errors import LabelError, ModelStructureError, ShapeError
from graft.jsonable import JsonSerializable
from graft.models.trace import Trace, example_input, runs_at, smallest_size, trace
from graft.validation import label_names as check_label_names
from graft.validation import suggest

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_PROBE_SIZES = {1: [(64,), (128,), (256,)], 2: [(32, 32), (64, 64), (224, 224)], 3: [(16, 16, 16)]}


@dataclass(frozen=True)
class InputSpec:
    """What the network takes: channels, spatial size (None: unknown or any), normalization."""

    channels: int
    size: tuple[int, ...] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    flexible_size: bool | None = None  # True: global pooling, any size >= min_size works
    min_size: tuple[int, ...] | None = None
    spatial_dims: int = 2  # 0 for vectors (Linear first layer), 1 for sequences, 2 for images
    feature_names: tuple[str, ...] | None = None  # names of the entries along feature_axis (columns, sensors)
    feature_axis: int | None = None  # axis of the per-sample shape (C, *size) they label; 0 = channels

    def shape(self) -> tuple[int, ...] | None:
        """Per-sample shape (C, *size), or None when the size is not known."""
        if self.spatial_dims == 0:
            return (self.channels,)
        return (self.channels, *self.size) if self.size else None


@dataclass(frozen=True)
class BlockSpec:
    """One block (stage) of the network, in execution order."""

    name: str
    params: int
    out_shape: tuple[int, ...] | None = None  # per sample, at the native input size
    reduction: float | None = None  # input size / output size along the first spatial axis


@dataclass(frozen=True)
class HeadSpec:
    """The classifier at the top: a Linear, or a 1x1 convolution (SqueezeNet)."""

    name: str
    kind: str  # "linear" or "conv"
    in_features: int
    num_classes: int


@dataclass(frozen=True)
class BackboneSpec(JsonSerializable):
    """The contract of one network; round-trips through JSON."""

    name: str
    origin: str  # "timm", "zoo" or "module"
    first_layer: str
    head: HeadSpec
    blocks: tuple[BlockSpec, ...]
    taps: tuple[str, ...]
    input: InputSpec
    label_names: tuple[str, ...] | None = None
    num_params: int = 0
    weights: str | None = None  # where the weights came from
    notes: tuple[str, ...] = field(default_factory=tuple)

    def block_index(self, name_or_index: str | int) -> int:
        """Index of a block given its name or its (possibly negative) index."""
        names = [b.name for b in self.blocks]
        if isinstance(name_or_index, int) and not isinstance(name_or_index, bool):
            if -len(names) <= name_or_index < len(names):
                return name_or_index % len(names)
            raise ModelStructureError(f"a block index between 0 and {len(names) - 1}", str(name_or_index),
                                      f"blocks are: {', '.join(names)}")
        if str(name_or_index).lstrip("-").isdigit():
            return self.block_index(int(name_or_index))
        if name_or_index in names:
            return names.index(name_or_index)
        near = suggest(str(name_or_index), names)
        raise ModelStructureError("the name of a block of this network", repr(name_or_index),
                                  f"did you mean {near}?" if near else f"blocks are: {', '.join(names)}")

    def render(self, width: int = 100) -> str:
        """Human-readable summary (the ``graft inspect`` output)."""
        from graft.text import console as text_console
        from rich.table import Table

        buf = StringIO()
        console = text_console(buf, width=width, plain=True)
        inp = self.input
        size = "x".join(map(str, inp.size)) if inp.size else "unknown"
        if inp.spatial_dims == 0:
            size = "vector"
        console.print(f"{self.name}  ({self.origin}; weights: {self.weights or 'random init'})")
        console.print(f"  parameters: {self.num_params:,}")
        console.print(f"  input: {inp.channels} channels, size {size}"
                      + (f", mean {_fmt(inp.mean)} std {_fmt(inp.std)}" if inp.mean else ", normalization unknown"))
        if inp.flexible_size:
            console.print(f"  input size: any size >= {'x'.join(map(str, inp.min_size or ()))} (global pooling)")
        elif inp.flexible_size is False:
            console.print("  input size: fixed (flatten + dense head); other sizes need resize, pad, pooling or an adapter")
        console.print(f"  first layer: {self.first_layer}")
        console.print(f"  head: {self.head.name} ({self.head.kind}, {self.head.in_features} -> {self.head.num_classes})")
        if self.label_names:
            shown = ", ".join(self.label_names[:8]) + (" ..." if len(self.label_names) > 8 else "")
            console.print(f"  labels ({len(self.label_names)}): {shown}")
        table = Table(title="blocks", show_edge=False, pad_edge=False)
        for col in ("#", "block", "params", "output (C x size)", "reduction", "tap"):
            table.add_column(col, justify="right" if col in ("#", "params", "reduction") else "left")
        taps = set(self.taps)
        for i, b in enumerate(self.blocks):
            out = "x".join(map(str, b.out_shape)) if b.out_shape else "?"
            red = f"{b.reduction:g}" if b.reduction else ""
            table.add_row(str(i), b.name, f"{b.params:,}", out, red, "yes" if b.name in taps else "")
        console.print(table)
        for note in self.notes:
            console.print(f"  note: {note}")
        return buf.getvalue().rstrip()

    def __str__(self) -> str:
        return self.render()


def _fmt(values: tuple[float, ...] | None) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")" if values else "?"


class Backbone:
    """A network and its contract. ``module`` is the ``nn.Module``; ``spec`` describes it."""

    def __init__(self, module: nn.Module, spec: BackboneSpec):
        self.module = module
        self.spec = spec
        self.load_report = None  # the LoadReport of the weights, when graft loaded them

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def get(self, name: str) -> nn.Module:
        """The submodule called ``name`` (a clear error if there is none)."""
        return get_submodule(self.module, name)

    def __repr__(self) -> str:
        return (f"Backbone({self.spec.name!r}, blocks={len(self.spec.blocks)}, head={self.spec.head.name!r} "
                f"{self.spec.head.in_features}->{self.spec.head.num_classes}, input={self.spec.input.shape()})")


def get_submodule(module: nn.Module, name: str) -> nn.Module:
    modules = dict(module.named_modules())
    if name not in modules:
        near = suggest(name, [n for n in modules if n])
        raise ModelStructureError(f"a module called {name!r} in {type(module).__name__}", "no such module",
                                  f"did you mean {near}?" if near else "list the names with graft inspect")
    return modules[name]


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _is_head_layer(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) or (isinstance(m, _CONVS) and all(k == 1 for k in m.kernel_size))


def find_head(module: nn.Module, hint: str | None = None) -> str:
    """Name of the classifier: ``hint`` if given, else the last parametrized leaf if it is a Linear/1x1 conv."""
    modules = dict(module.named_modules())
    if hint:
        if hint not in modules:
            get_submodule(module, hint)
        if isinstance(modules[hint], nn.Sequential):  # e.g. SqueezeNet's 'classifier' block
            inner = [n for n, m in modules[hint].named_modules() if _is_head_layer(m)]
            if inner:
                return f"{hint}.{inner[-1]}"
        if not _is_head_layer(modules[hint]):
            raise ModelStructureError("a head that is an nn.Linear or a 1x1 convolution",
                                      f"{hint} is {type(modules[hint]).__name__}",
                                      "name the classifier layer itself with head='...'")
        return hint
    leaves = [(n, m) for n, m in modules.items() if n and not list(m.children()) and any(True for _ in m.parameters(recurse=False))]
    if not leaves:
        raise ModelStructureError("a network with parameters", f"{type(module).__name__} has none",
                                  "pass a trained network")
    name, last = leaves[-1]
    if not _is_head_layer(last):
        raise ModelStructureError(
            "a recognizable head: the last layer with parameters should be an nn.Linear or a 1x1 convolution",
            f"{type(module).__name__} whose last layer with parameters is {name!r} ({type(last).__name__})",
            "name the classifier with head='...' (graft inspect lists the modules), or add one: "
            "nn.Sequential(net, nn.Flatten(), nn.Linear(features, classes))",
        )
    return name


def find_first_layer(module: nn.Module, hint: str | None = None) -> str:
    modules = dict(module.named_modules())
    if hint:
        layer = get_submodule(module, hint)
        if not isinstance(layer, (*_CONVS, nn.Linear)):
            raise ModelStructureError("a first layer that is a convolution or an nn.Linear",
                                      f"{hint} is {type(layer).__name__}", "name the first conv with first_layer='...'")
        return hint
    for name, m in modules.items():
        if isinstance(m, (*_CONVS, nn.Linear)):
            return name
    raise ModelStructureError("a network whose first layer is a convolution or an nn.Linear",
                              f"{type(module).__name__} without either", "name it with first_layer='...'")


def _default_blocks(module: nn.Module, head: str) -> list[str]:
    names: list[str] = []
    for name, child in module.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)) and len(child) >= 2:
            names += [f"{name}.{sub}" for sub, _ in child.named_children()]
        else:
            names.append(name)
    modules = dict(module.named_modules())
    keep = []
    for n in names:
        if head == n or head.startswith(n + "."):
            continue
        if _params(modules[n]) > 0:
            keep.append(n)
    return keep


def _timm_cfg(module: nn.Module) -> dict:
    cfg = getattr(module, "pretrained_cfg", None)
    return dict(cfg) if isinstance(cfg, dict) else {}


def _timm_classifier(module: nn.Module) -> str | None:
    """The name of the module timm's ``get_classifier()`` returns, if the model has one."""
    getter = getattr(module, "get_classifier", None)
    if not callable(getter):
        return None
    try:
        clf = getter()
    except Exception:  # some models need arguments or have no classifier
        return None
    return next((n for n, m in module.named_modules() if m is clf and n), None)


def imagenet_label_names() -> tuple[str, ...]:
    """Short names of the 1000 ImageNet-1k classes, from timm's bundled class info."""
    from timm.data import ImageNetInfo

    full = [d.strip() for d in ImageNetInfo().label_descriptions()]
    short = [d.split(",")[0].strip() for d in full]
    counts = {n: short.count(n) for n in short}
    names = [s if counts[s] == 1 else f"{s} ({i})" for i, s in enumerate(short)]  # 'crane' is a bird and a machine
    return tuple(names)


def _features(names, axis, channels: int, size) -> tuple[tuple[str, ...] | None, int | None]:
    """Validated feature names and their axis (0 = channels, 1.. = spatial axes of the input size)."""
    if names is None:
        return None, None
    names = check_label_names(tuple(names), "feature names")
    axis = 0 if axis is None else int(axis)
    shape = (channels, *(size or ()))
    if not 0 <= axis < len(shape) or shape[axis] != len(names):
        raise ShapeError(f"one feature name per entry of axis {axis} of the input {tuple(shape)}",
                         f"{len(names)} names", "pass feature_axis= (0 = channels) and one name per entry")
    return names, axis


def describe(
    module: nn.Module,
    *,
    name: str | None = None,
    origin: str = "module",
    weights: str | None = None,
    blocks: list[str] | None = None,
    taps: list[str] | None = None,
    head: str | None = None,
    first_layer: str | None = None,
    in_chans: int | None = None,
    input_size: tuple[int, ...] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    label_names: list[str] | tuple[str, ...] | None = None,
    feature_names: list[str] | tuple[str, ...] | None = None,
    feature_axis: int | None = None,
    notes: tuple[str, ...] = (),
) -> BackboneSpec:
    """Derive the contract of ``module``; explicit arguments override what is derived."""
    cfg = _timm_cfg(module)
    modules = dict(module.named_modules())
    head_hint = head or (cfg.get("classifier") if cfg.get("classifier") in modules else None) or _timm_classifier(module)
    head_name = find_head(module, head_hint)
    first_hint = first_layer or (cfg.get("first_conv") if cfg.get("first_conv") in modules else None)
    first_name = find_first_layer(module, first_hint)
    first = modules[first_name]
    spatial = next((d for t, d in ((nn.Conv1d, 1), (nn.Conv2d, 2), (nn.Conv3d, 3)) if isinstance(first, t)), 0)
    channels = in_chans or (first.in_channels if isinstance(first, _CONVS) else first.in_features)
    head_mod = modules[head_name]
    head_spec = HeadSpec(
        head_name,
        "linear" if isinstance(head_mod, nn.Linear) else "conv",
        head_mod.in_features if isinstance(head_mod, nn.Linear) else head_mod.in_channels,
        head_mod.out_features if isinstance(head_mod, nn.Linear) else head_mod.out_channels,
    )
    notes = list(notes)

    if input_size is None and cfg.get("input_size") and spatial == 2:
        input_size = tuple(cfg["input_size"][1:])
    if mean is None and cfg.get("mean") and len(cfg["mean"]) == channels:
        mean, std = tuple(cfg["mean"]), tuple(cfg["std"])

    # Dry runs: execution order, shapes, whether other sizes work, the smallest size.
    tr: Trace | None = None
    flexible: bool | None = None
    min_size = None
    if spatial == 0:
        input_size = ()
        tr = trace(module, example_input(channels, (), like=module))
        flexible = False
    elif input_size is not None:
        tr = trace(module, example_input(channels, input_size, like=module))
        if not tr.ok:
            raise ModelStructureError(f"a network that runs on inputs of shape {(channels, *input_size)}",
                                      f"an error in a dry run: {tr.error}",
                                      "check input_size and the number of input channels")
        bigger = tuple(s + max(8, s // 2) for s in input_size)
        big = trace(module, example_input(channels, bigger, like=module))
        flexible = big.ok and big.output_shape == tr.output_shape
        if flexible:
            min_size = smallest_size(module, channels, input_size)
    else:
        working = [s for s in _PROBE_SIZES.get(spatial, []) if runs_at(module, channels, s)]
        if len(working) >= 2:
            flexible = True
            tr = trace(module, example_input(channels, working[0], like=module))
            min_size = smallest_size(module, channels, working[0])
            notes.append(f"input size not given; traced at {'x'.join(map(str, working[0]))} (any size >= min works)")
        elif len(working) == 1:
            flexible = False
            notes.append(f"network runs only at {working[0]} among probe sizes; pass input_size to confirm")
            input_size = working[0]
            tr = trace(module, example_input(channels, working[0], like=module))
        else:
            notes.append("input size unknown and no probe size ran (flatten + dense head?): pass input_size=(H, W)")

    if blocks is not None:
        for b in blocks:
            get_submodule(module, b)
        block_names = list(blocks)
    elif getattr(module, "block_names", None) and callable(module.block_names):
        block_names = list(module.block_names())
    else:
        block_names = _default_blocks(module, head_name)
    if tr is not None and tr.ok:
        never = [b for b in block_names if b not in tr.inputs]
        if never and blocks is None:
            notes.append(f"blocks never run in a forward pass, left out: {', '.join(never)}")
            block_names = [b for b in block_names if b in tr.inputs]
        block_names.sort(key=lambda b: tr.order.index(b) if b in tr.order else len(tr.order))
    ref = (input_size or (None,))[0] if spatial else None
    block_specs = []
    for b in block_names:
        out = tr.outputs.get(b) if tr is not None else None
        per_sample = tuple(out[1:]) if out else None
        red = None
        if per_sample and spatial and len(per_sample) == spatial + 1 and ref:
            red = round(ref / per_sample[1], 3)
        block_specs.append(BlockSpec(b, _params(modules[b]), per_sample, red))

    if taps is not None:
        for t in taps:
            get_submodule(module, t)
        tap_names = tuple(taps)
    else:
        # every block; for timm models also the stage outputs its feature_info names (e.g. the stem after
        # its activation), in execution order
        extra = [f["module"] for f in getattr(module, "feature_info", None) or []
                 if isinstance(f, dict) and f.get("module") in modules and f["module"] not in block_names]
        if tr is not None and tr.ok:
            extra = [e for e in extra if e in tr.starts]
            names = sorted(set(block_names) | set(extra), key=lambda n: tr.ends.get(n, len(tr.order) * 2))
        else:
            names = block_names + extra
        tap_names = tuple(names)

    if label_names is None and cfg.get("num_classes") == 1000 and head_spec.num_classes == 1000:
        label_names = imagenet_label_names()  # timm's 1000-class heads are ImageNet-1k
    if label_names is not None:
        label_names = check_label_names(label_names, "source label names")
        if len(label_names) != head_spec.num_classes:
            raise LabelError(f"{head_spec.num_classes} source label names (one per row of the head {head_name})",
                             f"{len(label_names)} names", "pass one name per output of the network, in order")

    return BackboneSpec(
        name=name or cfg.get("architecture") or type(module).__name__,
        origin=origin,
        first_layer=first_name,
        head=head_spec,
        blocks=tuple(block_specs),
        taps=tap_names,
        input=InputSpec(channels, tuple(input_size) if input_size is not None else None,
                        tuple(mean) if mean else None, tuple(std) if std else None, flexible,
                        tuple(min_size) if min_size else None, spatial, *_features(feature_names, feature_axis,
                                                                                     channels, input_size)),
        label_names=tuple(label_names) if label_names else None,
        num_params=_params(module),
        weights=weights,
        notes=tuple(notes),
    )

