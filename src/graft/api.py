"""The public verbs of graft, chained across the stages (data -> models -> surgery -> ...).

``cli.py`` calls exactly one of these per subcommand.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path

from torch import nn

from graft.data import DatasetSpec, describe_dataset
from graft.errors import CheckpointError, GraftError
from graft.models import Backbone, BackboneSpec, load_weights, read_checkpoint
from graft.models import load_model as _load_model
from graft.models.checkpoint import graft_metadata
from graft.surgery import SurgeryPlan, Target, apply_surgery
from graft.surgery import plan_surgery as _plan_surgery

__all__ = ["describe_model", "load_model", "plan_surgery", "save_model", "target_from_data"]


def load_model(source, **kwargs) -> Backbone:
    """Load any network (see :func:`graft.models.load_model`), including grafted ones saved by graft.

    A ``.safetensors`` file written by :func:`save_model` after surgery carries its plan: the source
    architecture is rebuilt, the plan replayed, and the saved weights loaded strictly.
    """
    if isinstance(source, (str, Path)) and str(source).endswith(".safetensors") and Path(source).is_file():
        ckpt = read_checkpoint(source)
        meta = graft_metadata(ckpt)
        if "plan" in meta:
            plan = SurgeryPlan.from_dict(meta["plan"])
            src = plan.source
            if src.origin not in ("zoo", "timm"):
                raise CheckpointError(
                    "a grafted network whose source architecture graft can build (timm or zoo)",
                    f"{source}, grafted from a user-defined {src.name}",
                    "rebuild it yourself: plan = SurgeryPlan.from_dict(json.loads(meta)['plan']); "
                    "net = plan.apply(graft.load_model(MyModule())); graft.load_weights(net.module, path)")
            base = _load_model(src.name, pretrained=False, num_classes=src.head.num_classes,
                               in_chans=src.input.channels, input_size=src.input.size, mean=src.input.mean,
                               std=src.input.std, label_names=list(src.label_names) if src.label_names else None,
                               **meta.get("build", {}))
            base = Backbone(base.module, replace(base.spec, weights=src.weights))
            grafted = apply_surgery(base, plan, inplace=True)
            grafted.load_report = load_weights(grafted.module, ckpt.state_dict, strict=True)
            grafted.spec = replace(grafted.spec, weights=str(source))
            return grafted
    return _load_model(source, **kwargs)


def describe_model(source, **kwargs) -> BackboneSpec:
    """The backbone contract of ``source`` (what ``graft inspect`` prints)."""
    return load_model(source, **kwargs).spec


def target_from_data(data: DatasetSpec | str | Path, **overrides) -> Target:
    """A surgery Target from a dataset: its channels, input size and class names."""
    spec = data if isinstance(data, DatasetSpec) else describe_dataset(data)
    fields = dict(label_names=spec.label_names, in_chans=spec.channels, input_size=spec.size or None)
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return Target(**fields)


def plan_surgery(model, target: Target | None = None, *, data: DatasetSpec | str | Path | None = None,
                 load_kwargs: dict | None = None, **target_fields) -> SurgeryPlan:
    """Plan the surgery that takes ``model`` to ``target``, or to the shape and classes of ``data``.

    ``model`` is a Backbone or anything :func:`load_model` accepts (with ``load_kwargs``); the target is a
    :class:`Target`, its fields as keyword arguments, or a dataset whose fields the keywords override.
    """
    backbone = model if isinstance(model, Backbone) else load_model(model, **(load_kwargs or {}))
    if data is not None:
        if target is not None:
            raise GraftError("a target or a dataset, not both", "both", "pass data=... and override fields by name")
        target = target_from_data(data, **target_fields)
        target_fields = {}
    return _plan_surgery(backbone, target, **target_fields)


def save_model(backbone: Backbone, path: str | Path) -> Path:
    """Write the network's weights to ``path`` (safetensors, atomically) with its contract and plan.

    A grafted network (one returned by ``plan.apply``) is saved with its plan, so that
    :func:`load_model` rebuilds it from the file alone.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise GraftError("a path ending in .safetensors", str(path), "graft writes weights as safetensors only")
    meta: dict = {"arch": backbone.spec.name, "spec": backbone.spec.to_dict()}
    plan = getattr(backbone, "plan", None)
    body = getattr(backbone.module, "body", backbone.module) if plan is not None else backbone.module
    build = getattr(body, "graft_build_kwargs", None)
    if build:
        meta["build"] = build
    if plan is not None:
        meta["plan"] = plan.to_dict()
    if not isinstance(backbone.module, nn.Module):
        raise GraftError("a Backbone with an nn.Module", type(backbone.module).__name__, "pass a Backbone")
    tensors = {k: v.detach().contiguous().cpu() for k, v in backbone.module.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"graft": json.dumps(meta)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
