"""The public verbs of graft, chained across the stages (data -> models -> surgery -> ...).

``cli.py`` calls exactly one of these per subcommand.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path


from graft.data import Data, DatasetSpec, load_data
from graft.data import describe_data as _describe_data
from graft.data.problems import Problem
from graft.data.transforms import Preprocess
from graft.errors import GraftError
from graft.features import FeatureSet
from graft.measures.summary import Measures, measure_layers
from graft.features import extract_features as _extract_features
from graft.models import Backbone, BackboneSpec
from graft.surgery import SurgeryPlan, Target
from graft.surgery.saving import load_model, save_model
from graft.training.run import RunRecord, load_run
from graft.surgery import plan_surgery as _plan_surgery

__all__ = ["describe_data", "describe_model", "extract_features", "fine_tune", "load_data", "load_model", "load_run",
           "export_run", "plan_surgery", "predict", "preprocessing", "pretrain", "probe", "save_model", "target_from_data"]


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
          input_size: tuple[int, ...] | None = None, batch_size: int | None = None, folds: int = 5, seed: int = 0,
          max_samples: int | None = None, load_kwargs: dict | None = None, data_kwargs: dict | None = None,
          cache_dir: str | Path | None = None, log=None, choose_c: str = "cv", multilayer=True) -> Measures:
    """Measure how well each layer of ``model`` transfers to ``data``: linear-probe accuracy, LogME, H-score and
    similarity to the source per layer, LEEP and NCE of the source head; the best layer and why.

    One extraction pass per split (cached). The probe trains on ``split`` and is evaluated on ``eval_split``
    (``"auto"``: ``test``, else ``val``, else cross-validation on ``split``; ``None``: cross-validation).
    Similarity uses the BatchNorm statistics the network stored, or, with ``source_data`` (a dataset of the
    source's kind, e.g. a few hundred source images), the Fréchet distance between feature distributions.
    ``max_samples`` caps every split (a stratified, seeded draw) to keep the measures quick on large data.
    ``choose_c="eval"`` chooses the probe's regularization on ``eval_split`` instead of by cross-validation on
    ``split`` (5x faster; for a validation split only, as ``graft advise`` does). ``multilayer``: also probe
    every layer at once with feature selection (:func:`graft.measures.multilayer.multilayer_probe`); a callable
    decides from the per-layer measures (see :func:`graft.measures.summary.measure_layers`).
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
        eval_split=eval_split, folds=folds, seed=seed, choose_c=choose_c, multilayer=multilayer,
        progress=lambda name: say(f"measuring {name}"))
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

    evaluation = data.loader(eval_split, data.inference_batch_size(eval_split), shuffle=False) if eval_split else None
    result = fit(backbone.module, data.loader("train", batch_size, seed=seed), evaluation, epochs=epochs, lr=lr,
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


def fine_tune(model, data, out: str | Path, *, strategy="full", epochs: int | None = None, budget=None,
              batch_size: int = 32, seed: int = 0, resume: bool = False, patience: int | None = None,
              plateau: int | None = None, load_kwargs: dict | None = None, data_kwargs: dict | None = None,
              target: dict | None = None, log=None, progress=True, report: bool = True,
              **strategy_options) -> RunRecord:
    """Adapt ``model`` to ``data`` and train it with ``strategy`` into the run folder ``out``.

    The surgery is planned from the data (``target`` overrides fields: ``keep_rows``, ``size_mode``...), applied
    to a copy, and written to ``out/plan.json``; then :func:`graft.training.run.fine_tune` trains it
    (strategies: linear, partial:K, lp-ft, full, two-phase, gradual, scratch, adapter-warmup, multilayer;
    ``lr=``, ``layer_decay=``, ``batchnorm=``, ``l2sp=``... tune them). ``resume=True`` continues an interrupted run;
    ``model`` may be a finished run folder, to continue training it (on new data: the plan keeps the head rows
    of classes it already knows, by name). ``strategy="auto"``: the advisor decides (:func:`graft.pipeline.fit_auto`).
    The run folder gets ``report.html`` (``report=False``: not).
    """
    import torch

    from graft.training.run import fine_tune as _fine_tune

    if strategy == "auto":
        from graft.pipeline import fit_auto

        return fit_auto(model, data, out, budget=budget, epochs=epochs, batch_size=batch_size, seed=seed,
                        resume=resume, target=target, load_kwargs=load_kwargs, data_kwargs=data_kwargs,
                        epoch_log=log, progress=progress, patience=patience, plateau=plateau, **strategy_options)[0]
    torch.manual_seed(seed)  # a randomly initialized network (pretrained=False) is then the same on every call
    backbone = model if isinstance(model, Backbone) else load_model(model, **(load_kwargs or {}))
    data = data if isinstance(data, Data) else load_data(data, **(data_kwargs or {}))
    plan = plan_surgery(backbone, data=data, **(target or {}))
    grafted = plan.apply(backbone)
    record = _fine_tune(grafted, data, out, strategy=strategy, epochs=epochs, budget=budget, batch_size=batch_size,
                        seed=seed, resume=resume, patience=patience, plateau=plateau, plan=plan, log=log,
                        progress=progress, **strategy_options)
    if report:
        from graft.report.html import write_report

        write_report(out)
    return record


def predict(run, data, *, split: str | None = None, data_kwargs: dict | None = None, out: str | Path | None = None):
    """Predictions of a finished run (or a Backbone) on ``data[split]`` (default: test, else the only split).

    Returns ``(ids, predicted names, probabilities (N, C), Metrics or None)``; the metrics are computed when
    the data's classes are the run's. With ``out``, writes a CSV of id, prediction and probability.
    """
    import numpy as np
    import torch

    from graft.training.metrics import classification_report

    backbone = run if isinstance(run, Backbone) else load_run(run)
    data = data if isinstance(data, Data) else load_data(data, **(data_kwargs or {}))
    split = split or ("test" if "test" in data.splits else list(data.splits)[0])
    names = list(backbone.spec.label_names or [])
    inp = backbone.spec.input
    prep = Preprocess(inp.mean, inp.std, None)
    module = backbone.module.eval()
    probs = []
    with torch.inference_mode():
        for x, _ in data.loader(split, data.inference_batch_size(split), shuffle=False):
            probs.append(torch.softmax(module(prep.batch(x)), 1).numpy())
    p = np.concatenate(probs) if probs else np.zeros((0, len(names)))
    pred = p.argmax(1)
    ids = list(getattr(data[split], "ids", range(len(p))))
    labels = [names[i] if i < len(names) else str(i) for i in pred]
    metrics = None
    if tuple(data.spec.label_names) == tuple(names) and len(p):
        metrics = classification_report(np.asarray(data[split].y), pred, names)
    if out is not None:
        import csv

        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "prediction", "probability"])
            for i, lab, row in zip(ids, labels, p):
                writer.writerow([i, lab, f"{row.max():.4f}"])
        os.replace(tmp, out)
    return ids, labels, p, metrics


def export_run(run, format: str = "onnx", out: str | Path | None = None, *, input_size: tuple[int, ...] | None = None):
    """Export a finished run's network (with its input normalization built in: it takes inputs as graft's
    loaders give them) to ONNX or TorchScript, and verify the written file by running it against the network.

    ``out`` defaults to ``RUN/model.onnx`` (or ``model.pt``); ``input_size`` is needed only when the network
    does not record one. Returns the :class:`~graft.training.export.ExportReport`.
    """
    import torch

    from graft.training.export import export_model
    from graft.training.run import _Prep

    backbone = run if isinstance(run, Backbone) else load_run(run)
    inp = backbone.spec.input
    size = tuple(input_size) if input_size else inp.size
    if inp.spatial_dims and not size:
        raise GraftError("the input size to export at", "none recorded in the network",
                         "pass input_size=(H, W) (graft export RUN --input-size H W)")
    if format not in ("onnx", "torchscript"):
        raise GraftError("format onnx or torchscript", repr(format), "onnx is the one that lasts")
    if out is None:
        if isinstance(run, Backbone):
            raise GraftError("out= for a network that is not a run folder", "no path", "pass out='model.onnx'")
        out = Path(run) / ("model.onnx" if format == "onnx" else "model.pt")
    example = torch.rand(2, inp.channels, *(size or ()))
    module = torch.nn.Sequential(_Prep(Preprocess(inp.mean, inp.std, None)), backbone.module).eval()
    return export_model(module, example, out, format=format)
