"""Deciding the steps of a surgery plan: what to change, why, and what else could be done.

Each ``decide_*`` function reads the backbone's contract and the target and returns a :class:`Step` (or
None when nothing needs to change). The steps carry every parameter the executor needs, so a plan read
back from JSON replays exactly.
"""

from __future__ import annotations

import math

from torch import nn

from graft.errors import GraftError, LabelError, ModelStructureError, ShapeError
from graft.models.backbone import Backbone
from graft.models.trace import example_input, runs_at, trace
from graft.surgery.ops import match_rows, normalize_label
from graft.surgery.plan import Step, Target
from graft.validation import suggest

SIZE_OPTIONS = {
    "native": "feed the new size as it is (networks with global pooling take any size above a minimum)",
    "resize": "resize inputs to the size the network was trained at (no new weights; distorts aspect and scale)",
    "pad": "pad (with a sentinel, plus a mask channel) or center-crop to the trained size: keeps values and scale",
    "global_pool": "replace flatten + dense by global average pooling + dense: the network takes any size",
    "adapter": "a small learned input adapter (resize + 1x1 conv + residual 3x3) trained first with the body frozen",
}


def _size(s) -> str:
    return "x".join(map(str, s)) if s else "?"


def _source_size(backbone: Backbone, why: str) -> tuple[int, ...]:
    size = backbone.spec.input.size
    if not size:
        raise ShapeError(f"the input size {backbone.spec.name} was trained at ({why})", "unknown",
                         "pass it when loading: load_model(..., input_size=(H, W)) or --source-size H W")
    return size


def decide_truncation(backbone: Backbone, target: Target) -> Step | None:
    if target.truncate_at is None:
        return None
    spec = backbone.spec
    index = spec.block_index(target.truncate_at)
    block = spec.blocks[index].name
    size = _source_size(backbone, "to trace the blocks")
    tr = trace(backbone.module, example_input(spec.input.channels, size, like=backbone.module))
    if not tr.ok or block not in tr.ends:
        raise ModelStructureError(f"a forward pass that runs block {block!r}", tr.error or "the block never ran",
                                  "pick another block (graft inspect lists them)")
    out = tr.outputs[block]
    channels = int(out[1]) if len(out) >= 2 else int(math.prod(out[1:]))
    end = tr.ends[block]
    removed: list[str] = []
    for name, mod in backbone.module.named_modules():
        if not name or tr.starts.get(name, -1) <= end or any(name.startswith(r + ".") for r in removed):
            continue
        if any(True for _ in mod.parameters()) or any(True for _ in mod.buffers()):
            removed.append(name)
    num_classes = target.num_classes or spec.head.num_classes
    kept_params = sum(b.params for b in spec.blocks[: index + 1])
    return Step(
        "truncate",
        f"keep blocks 0..{index} (up to {block}: {channels} channels at {_size(out[2:]) or '1'}); drop the "
        f"{len(removed)} modules that run after it, the head included; new head {channels} -> {num_classes} "
        f"on average-pooled features",
        f"asked for (truncate_at={target.truncate_at}); keeps {kept_params:,} of {spec.num_params:,} parameters",
        ("probe every block first (the features stage) to see which one transfers best",),
        {"block": block, "index": index, "channels": channels, "num_classes": num_classes, "removed": removed},
    )


def decide_head(backbone: Backbone, target: Target, warnings: list[str]) -> tuple[Step | None, tuple[str, ...] | None]:
    """The head step and the label names of the result."""
    spec = backbone.spec
    src_n, source_labels = spec.head.num_classes, spec.label_names
    headless = bool(getattr(getattr(backbone, "load_report", None), "head_missing", ()))  # a file without its head
    if headless:
        source_labels = None  # no row was learned: none can be kept
    if target.num_classes is None:
        return None, source_labels
    n, labels = target.num_classes, target.label_names
    label_map = dict(target.label_map)
    if label_map and source_labels:
        norm = {normalize_label(s) for s in source_labels}
        bad = [v for v in label_map.values() if normalize_label(v) not in norm]
        if bad:
            hints = "; ".join(f"{b!r}: did you mean {suggest(b, source_labels) or 'one of ' + ', '.join(source_labels[:5])}?" for b in bad)
            raise LabelError("label_map values that are source class names", f"{bad}", hints)
    if target.keep_rows == "require":
        if not source_labels:
            raise LabelError(f"the source's label names, to keep the head rows of {spec.name}",
                             "none are known for this network",
                             "pass them when loading: load_model(..., label_names=[...]) (one per output, in order)")
        if not labels:
            raise LabelError("the target's label names, to match them with the source's", "none given",
                             "pass Target(label_names=[...]) or --labels a,b,c")
    rows = match_rows(source_labels, labels, label_map) if (labels and target.keep_rows != "never") else [None] * n
    numbered = []  # classes matched only by a bare number ("1".."K", as UCR sets name theirs): no match in auto,
    same_numbers = False  # unless both sides have the very same numbered classes (the same dataset, re-planned)
    if target.keep_rows == "auto" and labels and source_labels:
        same_numbers = list(labels) == list(source_labels) and all(bare_number(n) for n in labels)
    if target.keep_rows == "auto" and not same_numbers:
        for i, r in enumerate(rows):
            if r is not None and bare_number(labels[i]) and labels[i] not in label_map:
                rows[i] = None
                numbered.append(labels[i])
    kept = [r for r in rows if r is not None]
    if target.keep_rows == "require" and not kept:
        raise LabelError("at least one target class whose name matches a source class",
                         f"none of {list(labels)[:6]} among {list(source_labels)[:6]}",
                         "fix the names, or map renamed classes with label_map={'new name': 'old name'}")
    if n == src_n and rows == list(range(src_n)) and not headless:
        if same_numbers:
            warnings.append(f"the classes are bare numbers ({', '.join(labels[:6])}{' ...' if n > 6 else ''}), the "
                            "same on both sides: taken to be the same classes, so the head is kept; if they are "
                            "not (two UCR sets both name theirs 1..K), pass keep_rows='never' (--keep-rows never)")
        return None, labels
    if labels and source_labels and not kept and target.keep_rows == "auto" and not numbered:
        warnings.append(f"no target class matches a source class by name (target: {', '.join(labels[:4])}...; "
                        f"source: {', '.join(source_labels[:4])}...): the head starts afresh. If classes were "
                        "renamed, map them with label_map.")
    if kept:
        kept_names = [labels[i] for i, r in enumerate(rows) if r is not None]
        new_names = [labels[i] for i, r in enumerate(rows) if r is None]
        reason = (f"matched by name: {len(kept)} of the {n} target classes were learned by the source "
                  f"({', '.join(kept_names[:8])}{' ...' if len(kept_names) > 8 else ''})")
        if new_names:
            reason += f"; new: {', '.join(new_names[:8])}{' ...' if len(new_names) > 8 else ''}"
        dropped = src_n - len(set(kept))
        if dropped:
            reason += f"; {dropped} source classes dropped"
        if numbered:
            reason += f"; {_numbered_reason(numbered)}"
    elif headless:
        reason = "the weights file has no classifier (a backbone saved without its head): every row is new"
    elif numbered:
        reason = f"no row kept: {_numbered_reason(numbered)}"
    elif target.keep_rows == "never":
        reason = "keep_rows='never': all rows start afresh"
    elif not labels or not source_labels:
        side = "target" if not labels else "source"
        reason = f"the {side} label names are unknown, so no row can be matched: all rows are new"
    else:
        reason = "no class name in common: all rows are new"
    init = ("learned rows are copied; new rows are drawn from the learned rows' statistics" if kept else
            "new rows use PyTorch's default initialization (Kaiming uniform weights, small uniform biases)")
    return Step(
        "head",
        f"replace head {spec.head.name} ({spec.head.in_features} -> {src_n}) by {spec.head.in_features} -> {n}: "
        f"{len(kept)} rows kept, {n - len(kept)} new",
        f"{reason}. Initialization: {init}",
        ("keep_rows='never' starts every row afresh" if kept else "name the classes (label_names) to keep learned rows",),
        {"num_classes": n, "rows": rows},
    ), labels


def bare_number(name: str) -> bool:
    """A class name that is only a number ("1", "07", "-1", "2.0"): it says nothing about what the class is."""
    try:
        float(str(name).strip())
    except ValueError:
        return False
    return True


def _numbered_reason(numbered: list[str]) -> str:
    shown = ", ".join(numbered[:8]) + (" ..." if len(numbered) > 8 else "")
    return (f"{len(numbered)} class name{'s' if len(numbered) > 1 else ''} in common ({shown}) "
            f"{'are' if len(numbered) > 1 else 'is'} only a number, which says nothing about what a class is (UCR "
            "sets name theirs 1..K), and the two sets of classes differ: not matched by it (keep_rows='require' or "
            "label_map matches them)")


def decide_features(backbone: Backbone, target: Target, warnings: list[str]) -> Step | None:
    """Align the new data's named features (columns, sensors) with the ones the network learned."""
    inp = backbone.spec.input
    new = target.feature_names
    if new is None:
        return None
    if inp.feature_names is None:
        warnings.append("the new data names its features but the source network does not: they are taken by "
                        "position. Name the source's features (load_model(..., feature_names=[...])) to align by name.")
        return None
    axis, src = inp.feature_axis or 0, inp.feature_names
    have = target.in_chans if axis == 0 else (target.input_size[axis - 1] if target.input_size
                                                and len(target.input_size) >= axis else None)
    if have is not None and have != len(new):
        raise ShapeError(f"one target feature name per entry of axis {axis} ({have} entries)", f"{len(new)} names",
                         "give one name per column/channel of the new data")
    position = {normalize_label(n): j for j, n in enumerate(new)}
    sources = [position.get(normalize_label(n)) for n in src]
    used = {j for j in sources if j is not None}
    extra = [j for j in range(len(new)) if j not in used]
    if sources == list(range(len(new))) and not extra:
        return None
    if not used:
        warnings.append(f"no feature name in common between the source ({', '.join(src[:4])}...) and the new data "
                        f"({', '.join(new[:4])}...): every source feature is a sentinel until the adapter learns")
    mask = target.mask_channel if target.mask_channel is not None else any(j is None for j in sources)
    channels_after = len(src) if axis == 0 else (target.in_chans or inp.channels)
    columns = []
    for i, (name, j) in enumerate(zip(src, sources)):
        if j is None:
            columns.append(f"{name}: missing -> sentinel {target.pad_value:g}" + (", marked 0 in the mask" if mask else ""))
        else:
            columns.append(f"{name}: kept (new position {j} -> {i})" if j != i else f"{name}: kept")
    columns += [f"{new[j]}: new -> learned adapter into the {len(src)} source features (starts at zero)" for j in extra]
    missing = sources.count(None)
    summary = (f"align {len(new)} named features with the {len(src)} the network learned (axis {axis}): "
               f"{len(used)} kept, {missing} missing, {len(extra)} new")
    reason = ("features are matched by name, so a column keeps the weights learned for it wherever it sits; "
              "missing ones get a sentinel" + (" and a mask" if mask else "") + ", new ones a zero-initialized "
              "adapter, so the network starts from what it learned")
    params = {"axis": axis, "sources": sources, "extra": extra, "sentinel": target.pad_value, "mask": bool(mask),
              "mask_channels": channels_after if mask else 0, "from": len(new), "to": len(src), "columns": columns}
    return Step("features", summary, reason, ("retrain the first layer on the new columns (size_mode='adapter')",),
                params)


def after_alignment(target: Target, features: Step | None, backbone: Backbone) -> Target:
    """The target as the rest of the plan sees it: the feature axis has the source's length."""
    if features is None:
        return target
    from dataclasses import replace

    axis, n = features.params["axis"], features.params["to"]
    if axis == 0:
        return replace(target, in_chans=n)
    size = list(target.input_size or backbone.spec.input.size or ())
    if len(size) >= axis:
        size[axis - 1] = n
    return replace(target, input_size=tuple(size) if size else None)


def _flatten_linear(backbone: Backbone) -> tuple[str, int]:
    """The first dense layer and the channels of the feature map it reads flattened."""
    spec = backbone.spec
    size = _source_size(backbone, "to find the flattened feature map")
    tr = trace(backbone.module, example_input(spec.input.channels, size, like=backbone.module))
    modules = dict(backbone.module.named_modules())
    linears = [n for n in tr.order if isinstance(modules.get(n), nn.Linear)]
    if not tr.ok or not linears:
        raise ModelStructureError("a dense layer that reads a flattened feature map", "none found in a dry run",
                                  "use size_mode='resize', 'pad' or 'adapter' instead")
    lin = linears[0]
    features = math.prod(tr.inputs[lin][1:])
    before = [n for n in tr.order if tr.starts[n] < tr.starts[lin] and len(tr.outputs.get(n, ())) >= 3]
    for n in reversed(before):
        out = tr.outputs[n]
        if math.prod(out[1:]) == features:
            return lin, int(out[1])
    raise ModelStructureError(f"a feature map of {features} values flattened into {lin}", "no module output of that size",
                              "use size_mode='resize', 'pad' or 'adapter' instead")


def decide_input_size(backbone: Backbone, target: Target, mask_in: int = 0) -> Step | None:
    """``mask_in``: mask channels the input already carries (appended by feature alignment)."""
    spec, inp = backbone.spec, backbone.spec.input
    want, mode = target.input_size, target.size_mode
    if target.run_size is not None:
        return _run_size(backbone, target)
    if target.mask_channel and mode not in ("auto", "pad", "crop"):
        raise GraftError("mask_channel only with padding (size_mode 'pad' or 'auto')", f"size_mode={mode!r}",
                         "drop mask_channel or use size_mode='pad'")
    if want is None:
        if mode in ("auto", "native"):
            return None
        if mode != "global_pool":
            raise GraftError(f"a target input_size for size_mode={mode!r}", "none", "pass input_size=(H, W)")
        want = _source_size(backbone, "for global_pool")
    if inp.spatial_dims == 0:
        raise ShapeError("a convolutional network to change the input size", f"{spec.name} takes vectors",
                         "for tables, name the features on both sides (feature_names=) so graft aligns them by name")
    if len(want) != inp.spatial_dims:
        raise ShapeError(f"an input size with {inp.spatial_dims} axes ({spec.name}'s first layer is "
                         f"{inp.spatial_dims}-D)", f"{_size(want)} ({len(want)} axes)",
                         "give H W for images, L for sequences")
    src = inp.size
    reason = ""
    if mode == "auto":
        if inp.flexible_size:
            minimum = inp.min_size or (1,) * len(want)
            if all(w >= m for w, m in zip(want, minimum)):
                if src and tuple(want) == tuple(src):
                    return None
                mode, reason = "native", (f"the network ends in global pooling, so it takes {_size(want)} as it is "
                                          f"(smallest size it takes: {_size(minimum)})")
            else:
                mode, reason = "resize", f"{_size(want)} is below the smallest size the network takes ({_size(minimum)})"
        else:
            src = _source_size(backbone, "it has a fixed-size (flatten + dense) head")
            if tuple(want) == tuple(src):
                return None
            if all(w <= s for w, s in zip(want, src)):
                mode, reason = "pad", (f"flatten + dense head fixed at {_size(src)} and {_size(want)} fits inside it: "
                                       "padding keeps every value at its scale, the mask marks what is padding")
            else:
                mode, reason = "resize", (f"flatten + dense head fixed at {_size(src)} and {_size(want)} is larger "
                                          "along some axis: resizing keeps all of it without new weights")
    else:
        reason = f"asked for (size_mode={mode!r})"
    if mode == "crop":
        mode = "pad"
    params: dict = {"mode": mode, "from": list(want), "to": list(src) if src else None}
    if mode == "native":
        if not runs_at(backbone.module, inp.channels, tuple(want)):
            raise ShapeError(f"a network that takes {_size(want)} inputs as they are",
                             f"{spec.name} fails at that size (fixed-size head?)",
                             "use size_mode='resize', 'pad', 'global_pool' or 'adapter'")
        summary = f"feed {_size(want)} inputs as they are (no change to the network)"
    elif mode == "resize":
        src = _source_size(backbone, "to resize to it")
        params["to"] = list(src)
        summary = f"resize inputs {_size(want)} -> {_size(src)} in a parameter-free input layer"
    elif mode == "pad":
        src = _source_size(backbone, "to pad to it")
        mask = target.mask_channel if target.mask_channel is not None else any(w < s for w, s in zip(want, src))
        mask = mask and not mask_in  # an existing mask is padded with 0 instead
        params.update(to=list(src), pad_value=target.pad_value, mask_channel=bool(mask), mask_channels_in=mask_in)
        axes = [("pad" if w < s else "crop" if w > s else "keep") + f" {w}->{s}" for w, s in zip(want, src)]
        summary = (f"pad/crop inputs to {_size(src)} ({', '.join(axes)}); sentinel {target.pad_value:g}"
                   + ("; mask channel appended (1 = data, 0 = padding)" if mask else "")
                   + (f"; the {mask_in} mask channel{'s' if mask_in > 1 else ''} from feature alignment padded with 0"
                      if mask_in else ""))
    elif mode == "global_pool":
        if inp.flexible_size:
            raise GraftError("size_mode='global_pool' for a network with a flatten + dense head",
                             f"{spec.name}, which already pools globally", "use size_mode='native' (or 'auto')")
        linear, channels = _flatten_linear(backbone)
        params.update(linear=linear, channels=channels)
        summary = (f"replace flatten -> {linear} by global average pooling -> {linear} ({channels} channels): "
                   f"weights summed over positions; the network then takes any size")
    elif mode == "adapter":
        src = _source_size(backbone, "to adapt to it")
        channels = (target.in_chans or inp.channels) + mask_in
        params.update(to=list(src), in_chans=channels, out_chans=inp.channels)
        summary = (f"learned input adapter ({channels}x{_size(want)} -> {inp.channels}x{_size(src)}); training "
                   f"starts with the body frozen (adapter and head only), then unfreezes with a 10-20x smaller "
                   f"learning rate")
        reason += "; starts equal to resize + channel adaptation, so nothing learned is lost at step 0"
    applicable = [m for m in SIZE_OPTIONS if m != mode and not (m == "global_pool" and inp.flexible_size)
                  and not (m == "native" and inp.flexible_size is False)]
    return Step("input_size", summary, reason, tuple(f"{m}: {SIZE_OPTIONS[m]}" for m in applicable), params)


def _run_size(backbone: Backbone, target: Target) -> Step | None:
    """The network runs at ``target.run_size`` (``--input-size``): the data's inputs are resized to it."""
    spec, inp = backbone.spec, backbone.spec.input
    want, run = target.input_size, tuple(target.run_size)
    if len(run) == 1 and inp.spatial_dims > 1:  # one value for images: a square
        run = run * inp.spatial_dims
    if inp.spatial_dims == 0:
        raise ShapeError("a convolutional network to run at another input size", f"{spec.name} takes vectors",
                         "leave --input-size out for tables")
    if len(run) != inp.spatial_dims:
        raise ShapeError(f"--input-size with {inp.spatial_dims} value{'s' if inp.spatial_dims > 1 else ''} "
                         f"({spec.name}'s first layer is {inp.spatial_dims}-D)", _size(run),
                         "give H W for images, L for sequences")
    if want is None:
        raise GraftError("the data's input size, to resize it to --input-size", "none",
                         "describe the data first (graft.load_data sets it)")
    if not inp.flexible_size and tuple(run) != tuple(_source_size(backbone, "it has a fixed-size head")):
        raise ShapeError(f"--input-size {_size(inp.size)}, the only size {spec.name} takes (a flatten + dense head)",
                         _size(run), f"pass --input-size {' '.join(map(str, inp.size))} or leave it out")
    minimum = inp.min_size or (1,) * len(run)
    if not all(r >= m for r, m in zip(run, minimum)):
        raise ShapeError(f"--input-size at least {_size(minimum)} (the smallest size {spec.name} takes)", _size(run),
                         f"pass --input-size {' '.join(map(str, minimum))} or more")
    if tuple(want) == run:
        return None
    source = f"; the network was trained at {_size(inp.size)}" if inp.size else ""
    return Step("input_size", f"resize inputs {_size(want)} -> {_size(run)} in a parameter-free input layer",
                f"asked for (--input-size {' '.join(map(str, run))}){source}",
                tuple(f"{m}: {SIZE_OPTIONS[m]}" for m in ("native", "pad", "adapter")),
                {"mode": "resize", "from": list(want), "to": list(run)})


def decide_channels(backbone: Backbone, target: Target, size_step: Step | None, mask_in: int = 0) -> Step | None:
    spec, inp = backbone.spec, backbone.spec.input
    size_params = size_step.params if size_step else {}
    if size_params.get("mode") == "adapter":
        return None  # the adapter maps channels
    want = target.in_chans or inp.channels
    mask = mask_in + int(bool(size_params.get("mask_channel")))
    if want == inp.channels and not mask:
        return None
    layer = backbone.get(spec.first_layer)
    if isinstance(layer, nn.Linear) and want == inp.channels:
        pass  # a dense first layer (tables): only mask inputs are added
    elif isinstance(layer, nn.Linear):
        raise ShapeError(f"{inp.channels} input features for the dense first layer {spec.first_layer}",
                         f"{want}", "name the features on both sides (feature_names=) so graft aligns them by name")
    elif not isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        raise ShapeError("a convolution as first layer, to adapt input channels",
                         f"{spec.first_layer} is {type(layer).__name__}", "use size_mode='adapter'")
    if getattr(layer, "groups", 1) != 1:
        raise ShapeError("a first convolution with groups=1", f"groups={layer.groups}", "use size_mode='adapter'")
    params = {"layer": spec.first_layer, "from": inp.channels, "to": want, "mask_channels": mask}
    if want == inp.channels:
        how, why = f"keep the {want} input {'features' if isinstance(layer, nn.Linear) else 'filters'} of {spec.first_layer}", ""
    elif want == 1 and inp.mean and inp.std and inp.channels > 1:
        new_mean, new_std = sum(inp.mean) / len(inp.mean), sum(inp.std) / len(inp.std)
        params.update(mean=list(inp.mean), std=list(inp.std), new_mean=new_mean, new_std=new_std)
        how = (f"sum the {inp.channels} input filters of {spec.first_layer} into 1, rescaled for the grey input's "
               f"normalization (mean {new_mean:.3g}, std {new_std:.3g}), the offset folded into a bias")
        why = ("a grey image then gives the response of the colour image whose channels all equal it, exactly "
               "away from the zero-padded border")
    elif want == 1:
        how = f"sum the {inp.channels} input filters of {spec.first_layer} into 1"
        why = "a grey image then gives exactly the response of the colour image whose channels all equal it"
    else:
        how = f"repeat the {inp.channels} input filters of {spec.first_layer} to {want} and scale by {inp.channels}/{want}"
        why = "keeps the expected activation at the scale the next layers were trained on (timm's rule)"
    if mask:
        how += (f"; {mask} more input channel{'s' if mask > 1 else ''} with zero weights for the mask "
                "(ignored until trained)")
    return Step("input_channels", how, why, ("a learned input adapter (size_mode='adapter') maps channels instead",),
                params)
