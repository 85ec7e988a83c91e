"""Carrying out the steps of a plan on a module, and recording what happened to each tensor."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from graft.errors import GraftError
from graft.models.backbone import Backbone, BackboneSpec, describe
from graft.surgery.modules import FeatureAlign, GraftedNet, LearnedInputAdapter, PadCrop, Resize, SpatialPoolLinear
from graft.surgery.ops import add_zero_channels, adapt_input_channels, remap_rows, to_one_channel_normalized


@dataclass
class Executed:
    """The changed module, the name prefix of the body inside it, and notes on the tensors touched."""

    module: nn.Module
    prefix: str = ""
    # new tensor name -> (action, note, old name)
    touched: dict[str, tuple[str, str, str | None]] = field(default_factory=dict)
    head: str = ""
    first_layer: str = ""
    stop_at: str | None = None


def _default_init(layer: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default initialization of Linear / ConvNd, drawn from ``generator`` (reproducible)."""
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    if layer.bias is not None:
        fan_in = layer.weight[0].numel()
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


def _with_out(layer: nn.Module, out: int) -> nn.Module:
    if isinstance(layer, nn.Linear):
        return nn.Linear(layer.in_features, out, bias=layer.bias is not None,
                         device=layer.weight.device, dtype=layer.weight.dtype)
    new = copy.deepcopy(layer)
    new.out_channels = out
    new.weight = nn.Parameter(layer.weight.new_empty(out, *layer.weight.shape[1:]))
    if layer.bias is not None:
        new.bias = nn.Parameter(layer.bias.new_empty(out))
    return new


def _head(body: nn.Module, spec: BackboneSpec, p: dict, gen: torch.Generator, ex: Executed) -> None:
    old = body.get_submodule(spec.head.name)
    new = _with_out(old, p["num_classes"])
    rows = p["rows"]
    with torch.no_grad():
        if any(r is not None for r in rows):
            w, b, how = remap_rows(old.weight.detach(), None if old.bias is None else old.bias.detach(), rows, gen)
            new.weight.copy_(w)
            if new.bias is not None:
                new.bias.copy_(b)
        else:
            _default_init(new, gen)
            how = "all rows new: PyTorch default init (Kaiming uniform)"
    body.set_submodule(spec.head.name, new)
    same_shape = old.weight.shape == new.weight.shape
    for t in ("weight", "bias"):
        if getattr(new, t, None) is not None:
            action = "new" if all(r is None for r in rows) else ("resized" if not same_shape or rows != list(range(len(rows))) else "reused")
            ex.touched[f"{spec.head.name}.{t}"] = (action, how if t == "weight" else "", f"{spec.head.name}.{t}")


def _channels(body: nn.Module, p: dict, ex: Executed) -> None:
    layer = body.get_submodule(p["layer"])
    delta = None
    if isinstance(layer, nn.Linear):
        weight, how = layer.weight.detach().clone(), f"kept the {layer.in_features} input features"
    elif "new_mean" in p:
        weight, delta, how = to_one_channel_normalized(layer.weight.detach(), p["mean"], p["std"],
                                                       p["new_mean"], p["new_std"])
    else:
        weight, how = adapt_input_channels(layer.weight.detach(), p["to"])
    extra = int(p.get("mask_channels", 1 if p.get("mask_channel") else 0))  # plans before 0.2 said mask_channel
    if extra:
        weight = add_zero_channels(weight, extra)
        kind = "input" if isinstance(layer, nn.Linear) else "channel"
        how += f"; +{extra} zero-weight mask {kind}{'s' if extra > 1 else ''}"
    new = copy.deepcopy(layer)
    if isinstance(new, nn.Linear):
        new.in_features = weight.shape[1]
    else:
        new.in_channels = weight.shape[1]
    new.weight = nn.Parameter(weight)
    name = p["layer"]
    if delta is not None:
        had_bias = layer.bias is not None
        bias = (layer.bias.detach() if had_bias else torch.zeros_like(delta)) + delta
        new.bias = nn.Parameter(bias.to(weight.dtype))
        ex.touched[f"{name}.bias"] = ("resized" if had_bias else "new",
                                      "normalization offset folded in (grey mean vs per-channel means)",
                                      f"{name}.bias" if had_bias else None)
    body.set_submodule(name, new)
    ex.touched[f"{name}.weight"] = ("resized", how, f"{name}.weight")


def execute(module: nn.Module, spec: BackboneSpec, steps: tuple, seed: int) -> Executed:
    """Apply ``steps`` (the plan's :class:`~graft.surgery.plan.Step` tuple) to ``module`` (modified in place; pass a copy to keep the original)."""
    gen = torch.Generator().manual_seed(seed)
    ex = Executed(module, head=spec.head.name, first_layer=spec.first_layer)
    body, input_layer, new_head = module, None, None
    inputs: list[tuple[nn.Module, dict]] = []  # input layers in order, with their touched tensors
    for step in steps:
        p = step.params
        if step.kind == "features":
            align = FeatureAlign(p["axis"], p["sources"], p["extra"], p["sentinel"], p["mask"], p.get("from"))
            if align.adapter is not None:
                align.adapter.requires_grad_(True)
            inputs.append((align, {n: ("new", f"adapter from the {len(p['extra'])} new features, init zero", None)
                                   for n, _ in align.named_parameters()}))
        elif step.kind == "truncate":
            for name in p["removed"]:
                body.set_submodule(name, nn.Identity())
            new_head = nn.Linear(p["channels"], p["num_classes"])
            _default_init(new_head, gen)
            ex.stop_at = p["block"]
            ex.touched["head.weight"] = ("new", f"new head on {p['block']}: PyTorch default init", None)
            ex.touched["head.bias"] = ("new", "", None)
        elif step.kind == "head":
            _head(body, spec, p, gen, ex)
        elif step.kind == "input_channels":
            _channels(body, p, ex)
        elif step.kind == "input_size":
            mode = p["mode"]
            if mode == "resize":
                inputs.append((Resize(tuple(p["to"])), {}))
            elif mode == "pad":
                inputs.append((PadCrop(tuple(p["to"]), p["pad_value"], p["mask_channel"], p.get("mask_channels_in", 0)), {}))
            elif mode == "global_pool":
                old = body.get_submodule(p["linear"])
                lin = nn.Linear(p["channels"], old.out_features, bias=old.bias is not None)
                with torch.no_grad():
                    lin.weight.copy_(old.weight.reshape(old.out_features, p["channels"], -1).sum(-1))
                    if old.bias is not None:
                        lin.bias.copy_(old.bias)
                body.set_submodule(p["linear"], SpatialPoolLinear(p["channels"], lin))
                note = f"{tuple(old.weight.shape)} summed over the {old.in_features // p['channels']} positions"
                ex.touched[f"{p['linear']}.linear.weight"] = ("resized", note, f"{p['linear']}.weight")
                ex.touched[f"{p['linear']}.linear.bias"] = ("reused", "", f"{p['linear']}.bias")
                ex.touched.pop(f"{p['linear']}.weight", None)
                ex.touched.pop(f"{p['linear']}.bias", None)
                if p["linear"] == ex.head:
                    ex.head = f"{p['linear']}.linear"
            elif mode == "adapter":
                adapter = LearnedInputAdapter(p["in_chans"], p["out_chans"], tuple(p["to"]))
                with torch.no_grad():
                    eye = torch.eye(p["out_chans"]).reshape(p["out_chans"], p["out_chans"], *([1] * len(p["to"])))
                    w, how = adapt_input_channels(eye, p["in_chans"])
                    adapter.mix.weight.copy_(w)
                    adapter.mix.bias.zero_()
                notes = {}
                for name, _ in adapter.named_parameters():
                    note = f"1x1 channel map, init: {how}" if name == "mix.weight" else (
                        "residual 3x3, init zero" if name.startswith("refine") else "")
                    notes[name] = ("new", note, None)
                inputs.append((adapter, notes))
                for name, param in body.named_parameters():
                    if not (name.startswith(ex.head + ".")):
                        param.requires_grad_(False)
    if inputs:
        input_layer = inputs[0][0] if len(inputs) == 1 else nn.Sequential(*(m for m, _ in inputs))
        for i, (_, notes) in enumerate(inputs):
            prefix = "input_layer." if len(inputs) == 1 else f"input_layer.{i}."
            ex.touched.update({prefix + k: v for k, v in notes.items()})
    if input_layer is not None or ex.stop_at is not None:
        ex.module = GraftedNet(body, input_layer, ex.stop_at, new_head)
        ex.prefix = "body."
        ex.touched = {(k if k.startswith(("input_layer.", "head.")) else "body." + k): v for k, v in ex.touched.items()}
        ex.head = "head" if ex.stop_at is not None else "body." + ex.head
        ex.first_layer = "body." + ex.first_layer
    return ex


def apply_surgery(backbone: Backbone, plan, *, inplace: bool = False) -> Backbone:
    """Carry out ``plan`` on ``backbone``; returns the new Backbone (its ``.plan`` is ``plan``).

    With ``inplace=False`` (the default) the original network is left untouched and the result is a copy;
    with ``inplace=True`` the original module's layers are replaced where it stands (less memory).
    """
    src, spec = plan.source, backbone.spec
    if (spec.name, spec.head, spec.first_layer, spec.num_params) != (src.name, src.head, src.first_layer, src.num_params):
        raise GraftError(
            f"the network the plan was made for ({src.name}, {src.num_params:,} parameters, head "
            f"{src.head.name} -> {src.head.num_classes})",
            f"{spec.name} ({spec.num_params:,} parameters, head {spec.head.name} -> {spec.head.num_classes})",
            "make a new plan for this network: graft.plan_surgery(backbone, target)",
        )
    module = backbone.module if inplace else copy.deepcopy(backbone.module)
    ex = execute(module, src, plan.steps, plan.target.seed)
    blocks = [b.name for b in src.blocks]
    if ex.stop_at is not None:
        blocks = blocks[: blocks.index(ex.stop_at) + 1]
    blocks = [ex.prefix + b for b in blocks]
    if isinstance(getattr(ex.module, "input_layer", None), nn.Module) and any(
            True for _ in ex.module.input_layer.parameters()):
        blocks = ["input_layer", *blocks]
    res = plan.result_input
    new_spec = describe(
        ex.module, name=src.name, origin=src.origin, weights=src.weights, blocks=blocks,
        head=ex.head, first_layer=ex.first_layer, in_chans=res.channels, input_size=res.size or None, mean=res.mean, std=res.std,
        feature_names=res.feature_names, feature_axis=res.feature_axis,
        label_names=plan.result_labels,
        notes=(f"grafted from {src.name}: " + "; ".join(s.kind for s in plan.steps),) if plan.steps else (),
    )
    out = Backbone(ex.module, new_spec)
    out.plan = plan
    # a network grafted twice (a finished run continued on new data) keeps every plan, oldest first
    earlier = getattr(backbone, "plans", None) or ((backbone.plan,) if getattr(backbone, "plan", None) else ())
    out.plans = (*earlier, plan)
    return out
