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

from graft.data import Data, DatasetSpec, load_data
from graft.data import describe_data as _describe_data
from graft.data.problems import Problem
from graft.data.transforms import Preprocess
from graft.errors import CheckpointError, GraftError
from graft.features import FeatureSet
from graft.measures.summary import Measures, measure_layers
from graft.features import extract_features as _extract_features
from graft.models import Backbone, BackboneSpec, load_weights, read_checkpoint
from graft.models import load_model as _load_model
from graft.models.checkpoint import graft_metadata
from graft.surgery import SurgeryPlan, Target, apply_surgery
from graft.surgery import plan_surgery as _plan_surgery

__all__ = ["describe_data", "describe_model", "extract_features", "load_data", "load_model", "plan_surgery",
           "preprocessing", "pretrain", "probe", "save_model", "target_from_data"]


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
            known = dict(pretrained=False, num_classes=src.head.num_classes, in_chans=src.input.channels,
                         input_size=src.input.size, mean=src.input.mean, std=src.input.std,
                         label_names=list(src.label_names) if src.label_names else None)
            # build arguments may repeat one of these (sensor_cnn records its input_size): the spec wins
            build = {k: v for k, v in meta.get("build", {}).items() if k not in known}
            base = _load_model(src.name, **known, **build)
            base = Backbone(base.module, replace(base.spec, weights=src.weights))
            grafted = apply_surgery(base, plan, inplace=True)
            grafted.load_report = load_weights(grafted.module, ckpt.state_dict, strict=True)
            grafted.spec = replace(grafted.spec, weights=str(source))
            return grafted
    return _load_model(source, **kwargs)


def describe_model(source, **kwargs) -> BackboneSpec:
    """The backbone contract of ``source`` (what ``graft inspect`` prints)."""
    return load_model(source, **kwargs).spec


def _spec_of(data) -> DatasetSpec:
    if isinstance(data, DatasetSpec):
        return data
    if isinstance(data, Data):
        return data.spec
    return load_data(data).spec


def target_from_data(data: Data | DatasetSpec | str | Path, **overrides) -> Target:
    """A surgery Target from a dataset: its channels, input size, class names and feature names."""
    spec = _spec_of(data)
    fields = dict(label_names=spec.label_names, in_chans=spec.channels, input_size=spec.size or None,
                  feature_names=spec.feature_names)
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


def describe_data(source, *, model=None, load_kwargs: dict | None = None, **options) -> DatasetSpec:
    """What graft sees in ``source`` (see :func:`graft.data.load_data`), every problem listed; with ``model``,
    also whether a surgery plan can take that network to this data (``model_mismatch`` when none can)."""
    spec = _describe_data(source, **options)
    if model is None:
        return spec
    try:
        plan_surgery(model, data=spec, load_kwargs=load_kwargs)
    except GraftError as exc:
        problem = Problem("model_mismatch", "error", f"no surgery plan takes the network to this data: expected {exc.expected}; got {exc.got}",
                          exc.fix or "see graft plan", (str(model),))
        spec = replace(spec, problems=(*spec.problems, problem))
    return spec


def extract_features(model, data, *, split: str = "train", layers=None, load_kwargs: dict | None = None,
                     data_kwargs: dict | None = None, **options) -> FeatureSet:
    """Pooled features of ``data[split]`` at several layers of ``model`` (every block by default), from one
    pass, cached on disk; see :func:`graft.features.extract_features` for the options.

    ``model`` is a Backbone or anything :func:`load_model` takes (with ``load_kwargs``); ``data`` a
    :class:`Data` or anything :func:`load_data` takes (with ``data_kwargs``).
    """
    backbone = model if isinstance(model, Backbone) else load_model(model, **(load_kwargs or {}))
    data = data if isinstance(data, Data) else load_data(data, **(data_kwargs or {}))
    return _extract_features(backbone, data, split=split, layers=layers, **options)


def probe(model, data, *, split: str = "train", eval_split: str | None = "auto", layers=None,
          out: str | Path | None = None, plot: bool = False, source_data=None, source_split: str = "train",
          input_size: tuple[int, ...] | None = None, batch_size: int = 64, folds: int = 5, seed: int = 0,
          max_samples: int | None = None, load_kwargs: dict | None = None, data_kwargs: dict | None = None,
          cache_dir: str | Path | None = None, log=None) -> Measures:
    """Measure how well each layer of ``model`` transfers to ``data``: linear-probe accuracy, LogME, H-score and
    similarity to the source per layer, LEEP and NCE of the source head; the best layer and why.

    One extraction pass per split (cached). The probe trains on ``split`` and is evaluated on ``eval_split``
    (``"auto"``: ``test``, else ``val``, else cross-validation on ``split``; ``None``: cross-validation).
    Similarity uses the BatchNorm statistics the network stored, or, with ``source_data`` (a dataset of the
    source's kind, e.g. a few hundred source images), the Fréchet distance between feature distributions.
    ``max_samples`` caps every split (a stratified, seeded draw) to keep the measures quick on large data.
    With ``out``, writes ``out/measures.json`` (and ``out/measures.png`` with ``plot=True``).
    """
    backbone = model if isinstance(model, Backbone) else load_model(model, **(load_kwargs or {}))
    data = data if isinstance(data, Data) else load_data(data, **(data_kwargs or {}))
    if max_samples is not None:
        data = data.subsample(max_samples, seed=seed)
    if eval_split == "auto":
        eval_split = next((s for s in ("test", "val") if s in data.splits and s != split), None)
    options = dict(layers=layers, input_size=input_size, batch_size=batch_size, cache_dir=cache_dir)
    say = log or (lambda message: None)
    say(f"extracting features of {split} ({len(data[split])} samples)")
    train = _extract_features(backbone, data, split=split, batchnorm=True, **options)
    evaluated = None
    if eval_split is not None:
        say(f"extracting features of {eval_split} ({len(data[eval_split])} samples)")
        evaluated = _extract_features(backbone, data, split=eval_split, **options)
    source = None
    if source_data is not None:
        source_data = source_data if isinstance(source_data, Data) else load_data(source_data)
        say(f"extracting features of the source sample ({len(source_data[source_split])} samples)")
        source = _extract_features(backbone, source_data, split=source_split, **options)
    names = list(train.layers)
    measures = measure_layers(
        names, {n: train.features(n) for n in names}, train.labels(),
        {n: evaluated.features(n) for n in names} if evaluated else None,
        evaluated.labels() if evaluated else None, batchnorm=train.batchnorm_statistics(), logits=train.logits(),
        source_features={n: source.features(n) for n in names} if source else None,
        label_names=data.spec.label_names, model=backbone.spec.name, data=data.spec.name, train_split=split,
        eval_split=eval_split, folds=folds, seed=seed, progress=lambda name: say(f"measuring {name}"))
    extraction = {"extract_" + fs.split: round(fs.seconds, 3) for fs in (train, evaluated) if fs is not None}
    notes = list(dict.fromkeys(n for fs in (train, evaluated, source) if fs is not None for n in fs.notes))
    measures = replace(measures, seconds={**extraction, **measures.seconds}, notes=(*measures.notes, *notes))
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / "measures.json", measures.to_dict())
        if plot:
            from graft.report import plot_layer_measures

            plot_layer_measures(measures, out / "measures.png")
    elif plot:
        raise GraftError("a run folder for the plot (out=...)", "plot=True without out", "pass out='runs/NAME'")
    return measures


def preprocessing(backbone: Backbone, *, resize: bool = False) -> Preprocess:
    """The normalization the network was trained with (timm's pretrained_cfg, the zoo entry, or the
    preprocessing stored in a graft checkpoint), as a per-sample transform; ``resize=True`` also scales
    inputs to the size the network was trained at (otherwise the surgery plan decides about size)."""
    inp = backbone.spec.input
    return Preprocess(inp.mean, inp.std, inp.size if resize and inp.size else None)


def pretrain(arch: str, data: Data | str | Path, out: str | Path, *, epochs: int = 20, lr: float = 1e-3,
             batch_size: int = 64, seed: int = 0, log=None, data_kwargs: dict | None = None,
             **model_kwargs) -> tuple[Backbone, list[dict]]:
    """Train a fresh ``arch`` (zoo or timm name) on ``data`` and save it to ``out/model.safetensors`` with
    its classes, input spec and feature names, so it can be the source of a transfer.

    ``data_kwargs`` are passed to :func:`load_data` when ``data`` is a path. Writes ``out/dataset.json``, ``out/splits.json`` and ``out/history.jsonl`` next to the weights.
    Evaluation uses the ``val`` split, else ``test``.
    """
    import torch

    from graft.training import fit

    data = data if isinstance(data, Data) else load_data(data, **(data_kwargs or {}))
    spec = data.spec
    torch.manual_seed(seed)
    size = spec.size or None
    backbone = load_model(arch, pretrained=False, num_classes=len(spec.label_names), in_chans=spec.channels,
                          input_size=size, label_names=list(spec.label_names), feature_names=spec.feature_names,
                          feature_axis=spec.feature_axis, **model_kwargs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    eval_split = "val" if "val" in data.splits else ("test" if "test" in data.splits else None)
    history_file = out / "history.jsonl"
    history_file.write_text("")

    def record(entry: dict) -> None:
        with history_file.open("a") as f:
            f.write(json.dumps(entry) + "\n")
        if log is not None:
            log(entry)

    result = fit(backbone.module, data.loader("train", batch_size, seed=seed),
                 data.loader(eval_split, 256, shuffle=False) if eval_split else None, epochs=epochs, lr=lr,
                 seed=seed, eval_split=eval_split, log=record)
    backbone.spec = replace(backbone.spec, weights=str(out / "model.safetensors"),
                            notes=(*backbone.spec.notes, f"pretrained by graft on {spec.name} for {epochs} epochs"))
    save_model(backbone, out / "model.safetensors")
    _write_json(out / "dataset.json", spec.to_dict())
    data.write_splits(out)
    return backbone, result.history


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


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
