"""Saving and reloading networks with their surgery plan: a grafted network rebuilds from its file alone."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from torch import nn

from graft.errors import CheckpointError, GraftError
from graft.files import replacing
from graft.models import Backbone, load_weights, read_checkpoint
from graft.models import LoadOptions
from graft.models import load_network as _load_model
from graft.models.checkpoint import graft_metadata
from graft.surgery.multilayer import HEAD_PREFIX, MultilayerModel, as_backbone, build_multilayer
from graft.surgery.execute import apply_surgery
from graft.surgery.plan import SurgeryPlan
from graft.validation import is_dir, is_file


def load_model(source, options: LoadOptions | dict | None = None, **kwargs) -> Backbone:
    """Load any network (see :func:`graft.models.loading.load_network` for the sources and options), including
    grafted ones saved by graft. ``options``: a :class:`~graft.models.options.LoadOptions` (or a dict of its
    fields); keyword arguments override it, and those that are not its fields (in a dict too) are the
    architecture's own (``width=16``, ``in_chans=1``).

    A ``.safetensors`` file written by :func:`save_model` after surgery carries its plan: the source
    architecture is rebuilt, the plan replayed, and the saved weights loaded strictly. A finished run folder
    (``graft fit --out``) stands for its ``model.safetensors``, so a run continues on new data.
    """
    if isinstance(source, (str, Path)) and is_dir(source) and (Path(source) / "run.json").is_file():
        source = Path(source) / "model.safetensors"  # a finished run folder: continue from what it trained
    if isinstance(source, (str, Path)) and str(source).endswith(".safetensors") and is_file(source):
        ckpt = read_checkpoint(source)
        meta = graft_metadata(ckpt)
        if "plan" in meta:
            plans = [SurgeryPlan.from_dict(p) for p in (*meta.get("earlier_plans", ()), meta["plan"])]
            src = plans[0].source
            if src.origin not in ("zoo", "timm"):
                raise CheckpointError(
                    "a grafted network whose source architecture graft can build (timm or zoo)",
                    f"{source}, grafted from a user-defined {src.name}",
                    "rebuild it yourself: plan = SurgeryPlan.from_dict(json.loads(meta)['plan']); "
                    "net = plan.apply(graft.load_model(MyModule())); graft.load_weights(net.module, path)")
            known = dict(pretrained=False, num_classes=src.head.num_classes, in_chans=src.input.channels,
                         input_size=src.input.size, mean=src.input.mean, std=src.input.std,
                         label_names=list(src.label_names) if src.label_names else None)
            # build arguments may repeat one of these (sensor_cnn records its input_size): the spec wins
            build = {k: v for k, v in meta.get("build", {}).items() if k not in known}
            base = _load_model(src.name, **known, **build)
            base = Backbone(base.module, replace(base.spec, weights=src.weights))
            grafted = base
            for plan in plans:
                grafted = apply_surgery(grafted, plan, inplace=True)
            state = dict(ckpt.state_dict)
            head = {k[len(HEAD_PREFIX):]: state.pop(k) for k in list(state) if k.startswith(HEAD_PREFIX)}
            grafted.load_report = load_weights(grafted.module, state, strict=True)
            grafted.spec = replace(grafted.spec, weights=str(source))
            if "multilayer" in meta:  # the multilayer strategy's model: the body, truncated, and its head
                if grafted.spec.label_names != tuple(meta["spec"].get("label_names") or ()):
                    grafted.spec = replace(grafted.spec, label_names=tuple(meta["spec"].get("label_names") or ()))
                grafted = as_backbone(grafted, build_multilayer(grafted.module, meta["multilayer"], head))
            return grafted
    if isinstance(options, dict):  # a dict is read as keyword arguments: its architecture arguments go to build
        kwargs, options = {**options, **kwargs}, None
    known = {k: kwargs.pop(k) for k in list(kwargs) if k in LoadOptions.__dataclass_fields__}
    opts = LoadOptions.coerce(options, **known)
    return _load_model(source, **{**opts.load_arguments(), **kwargs})


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
    if not isinstance(backbone.module, nn.Module):
        raise GraftError("a Backbone with an nn.Module", type(backbone.module).__name__, "pass a Backbone")
    module = backbone.module
    multilayer = isinstance(module, MultilayerModel)
    if multilayer:
        if getattr(backbone, "plan", None) is None:
            raise GraftError("a multilayer model grafted by graft (with its surgery plan)", "one without a plan",
                             "fit it through graft.fine_tune(..., strategy='multilayer'), which plans the surgery")
        meta["multilayer"] = module.config()
        module = module.full_body()
    plan = getattr(backbone, "plan", None)
    build = next((m.graft_build_kwargs for m in module.modules() if getattr(m, "graft_build_kwargs", None)),
                 None)
    if build:
        meta["build"] = build
    if plan is not None:
        meta["plan"] = plan.to_dict()
        earlier = list(getattr(backbone, "plans", ()))[:-1]
        if earlier:  # grafted more than once: the plans that made the network ``plan`` was made for
            meta["earlier_plans"] = [p.to_dict() for p in earlier]
    tensors = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    if multilayer:
        tensors.update({HEAD_PREFIX + k: v for k, v in backbone.module.head_state().items()})
    with replacing(path) as tmp:
        save_file(tensors, str(tmp), metadata={"graft": json.dumps(meta)})
    return path
