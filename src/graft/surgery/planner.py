"""``plan_surgery`` decides; ``apply_surgery`` (surgery/execute.py) does.

The plan's tensor list is not a prediction: the planner runs the steps on a copy of the network and
compares the state dicts before and after, then checks with a dry run that the result takes the target's
input shape and gives the target's number of outputs. Applying the plan runs the very same steps.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn

from graft.errors import GraftError, ShapeError
from graft.models.backbone import Backbone, HeadSpec, InputSpec
from graft.models.trace import example_input, trace
from graft.surgery.decide import (after_alignment, decide_channels, decide_features, decide_head,
                                  decide_input_size, decide_truncation)
from graft.surgery.execute import Executed, apply_surgery, execute  # noqa: F401  (apply_surgery: re-exported)
from graft.surgery.plan import SurgeryPlan, Target, TensorChange


def _adapt_stats(values: tuple[float, ...] | None, channels: int) -> tuple[float, ...] | None:
    """Per-channel normalization for the new channel count (averaged for 1, repeated cyclically otherwise)."""
    if not values:
        return None
    if channels == 1:
        return (sum(values) / len(values),)
    return tuple(values[i % len(values)] for i in range(channels))


def _diff(before: dict[str, torch.Tensor], ex: Executed) -> list[TensorChange]:
    params = dict(ex.module.named_parameters())
    after = ex.module.state_dict()
    seen_old: set[str] = set()
    changes: list[TensorChange] = []
    for name, tensor in after.items():
        trainable = params[name].requires_grad if name in params else None
        old_name = name[len(ex.prefix):] if ex.prefix and name.startswith(ex.prefix) else name
        if name in ex.touched:
            action, note, old_name = ex.touched[name]
        elif old_name not in before:
            action, note, old_name = "new", "", None
        elif tuple(before[old_name].shape) != tuple(tensor.shape):
            action, note = "resized", ""
        elif torch.equal(before[old_name], tensor):
            action, note = "reused", ""
        else:
            action, note = "resized", "values changed"
        if old_name is not None:
            seen_old.add(old_name)
        old_shape = tuple(before[old_name].shape) if old_name in before else None
        changes.append(TensorChange(name, action, old_shape, tuple(tensor.shape), trainable,
                                    old_name if old_name != name else None, note))
    for name, tensor in before.items():
        if name not in seen_old:
            changes.append(TensorChange(name, "dropped", tuple(tensor.shape), None, None, None,
                                        "runs after the truncation point" if ex.stop_at else ""))
    return changes


def plan_surgery(backbone: Backbone, target: Target | None = None, **target_fields) -> SurgeryPlan:
    """Decide how to change ``backbone`` for ``target``; nothing is changed (see :meth:`SurgeryPlan.apply`).

    ``target`` is a :class:`Target`, or its fields as keyword arguments::

        plan = plan_surgery(backbone, num_classes=15, in_chans=1, input_size=(28, 28))
        print(plan)             # every step, why, and every tensor: reused, resized, new, dropped
        new = plan.apply(backbone)
    """
    if not isinstance(backbone, Backbone):
        raise GraftError("a Backbone (from graft.load_model)", type(backbone).__name__,
                         "wrap the network first: backbone = graft.load_model(module)")
    if target is None:
        target = Target(**target_fields)
    elif target_fields:
        target = replace(target, **target_fields)
    spec = backbone.spec
    warnings: list[str] = []
    truncate = decide_truncation(backbone, target)
    head, labels = (None, target.label_names) if truncate else decide_head(backbone, target, warnings)
    if truncate and labels is None and truncate.params["num_classes"] == spec.head.num_classes:
        labels = spec.label_names
    features = decide_features(backbone, target, warnings)
    aligned = after_alignment(target, features, backbone)
    mask_in = features.params["mask_channels"] if features else 0
    size = decide_input_size(backbone, aligned, mask_in)
    channels = decide_channels(backbone, aligned, size, mask_in)
    steps = tuple(s for s in (truncate, head, features, channels, size) if s is not None)

    before = {k: v.detach().clone() for k, v in backbone.module.state_dict().items()}
    ex = execute(copy.deepcopy(backbone.module), spec, steps, target.seed)
    tensors = _diff(before, ex)

    in_chans = target.in_chans or spec.input.channels
    size_params = size.params if size else {}
    new_size = tuple(target.input_size) if target.input_size else spec.input.size
    if spec.input.spatial_dims and not new_size:
        new_size = None
    num_classes = truncate.params["num_classes"] if truncate else (target.num_classes or spec.head.num_classes)
    verified = ""
    if new_size is not None or spec.input.spatial_dims == 0:
        x = example_input(in_chans, new_size or (), like=ex.module)
        tr = trace(ex.module, x)
        if not tr.ok or tr.output_shape is None or tr.output_shape[-1] != num_classes:
            raise ShapeError(f"a network that maps {tuple(x.shape)} to {num_classes} outputs after surgery",
                             f"a dry run that gave {tr.error or tr.output_shape}",
                             "choose another size_mode (resize, pad, global_pool, adapter) or truncation point")
        verified = f"dry run of the result: input {tuple(x.shape)} -> output {tr.output_shape}"
    head_layer = ex.module.get_submodule(ex.head)
    head_in = head_layer.in_features if isinstance(head_layer, nn.Linear) else head_layer.in_channels
    flexible = True if size_params.get("mode") in ("resize", "pad", "adapter", "global_pool") else spec.input.flexible_size
    names = (target.feature_names or spec.input.feature_names) if spec.input.feature_names else None
    result_input = InputSpec(in_chans, new_size, _adapt_stats(spec.input.mean, in_chans),
                             _adapt_stats(spec.input.std, in_chans), flexible,
                             spec.input.min_size if size_params.get("mode") in (None, "native") else None,
                             spec.input.spatial_dims, names,
                             (spec.input.feature_axis or 0) if names else None)
    return SurgeryPlan(spec, target, steps, tuple(tensors), result_input,
                       HeadSpec(ex.head, "linear" if isinstance(head_layer, nn.Linear) else "conv", head_in, num_classes),
                       labels, tuple(warnings), verified)
