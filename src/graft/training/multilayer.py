"""The ``multilayer`` strategy: a linear head on selected features of every layer (Head2Toe), solved, not trained.

One extraction pass per split through ``graft.extract_features`` (cached: a second run, or ``graft probe`` before
it, reads the same features), then :func:`graft.measures.multilayer.multilayer_head` narrows, ranks, selects and
fits; C and the fraction of features kept are chosen on ``val`` (cross-validation on ``train`` without one).
The model is a :class:`graft.surgery.multilayer.MultilayerModel`: the network truncated after the deepest layer
that kept a feature, and the head. The run folder is an ordinary one (config, plan, metrics, confusion,
model.safetensors, run.json) plus ``multilayer.json``: which layers were kept, how much each weighs.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from graft.data import Data
from graft.errors import GraftError
from graft.features.cache import graft_version, weights_digest
from graft.features.extract import extract_features
from graft.measures.multilayer import MAX_WIDTH, multilayer_head
from graft.models import Backbone
from graft.surgery.multilayer import as_backbone, build_multilayer
from graft.surgery.saving import save_model


def _used(result, layers: list[str]) -> tuple[list[str], list[list[int]], np.ndarray]:
    """The layers that kept a feature, their widths, and the kept indices in the concatenation of those alone."""
    used, widths, keep, offset = [], [], [], 0
    for name in layers:
        chosen = result.selected[name]
        if chosen:
            used.append(name)
            widths.append(result.widths[name])
            keep.extend(offset + i for i in chosen)
            offset += result.widths[name][1]
    return used, widths, np.asarray(keep, dtype=np.int64)


def fit_multilayer(backbone: Backbone, data: Data, out: str | Path, *, seed: int = 0, max_width: int = MAX_WIDTH,
                   progress=True, log=None, plan=None):
    """Fit the multilayer head on ``backbone`` (grafted to ``data``) and write the run folder ``out``."""
    from graft.training.run import RunRecord, _with_spec, _write_json, evaluate

    say = log or (lambda message: None)
    out = Path(out)
    if (out / "run.json").exists() or (out / "checkpoints" / "last.json").exists():
        raise GraftError(f"an empty or new run folder for {out}", "a folder that already holds a run",
                         "pass another out= (a multilayer fit takes one pass: there is nothing to resume)")
    start = time.perf_counter()
    show = bool(progress)
    train = extract_features(backbone, data, split="train", progress=show)
    layers = list(train.layers)
    val = extract_features(backbone, data, split="val", progress=show) if "val" in data.splits else None
    say(f"features of {len(layers)} layers extracted in {time.perf_counter() - start:.1f} s")
    result, head = multilayer_head({n: train.features(n) for n in layers}, train.labels(),
                                   None if val is None else {n: val.features(n) for n in layers},
                                   None if val is None else val.labels(), choose="eval" if val else "cv",
                                   seed=seed, max_width=max_width)
    used, widths, keep = _used(result, layers)
    config = {"layers": used, "widths": widths, "pool": "avg", "spatial_dims": backbone.spec.input.spatial_dims,
              "classes": len(data.spec.label_names), "kept": int(len(keep))}
    labelled = _with_spec(backbone, replace(backbone.spec, label_names=tuple(data.spec.label_names)))
    model = as_backbone(labelled, build_multilayer(backbone.module, config, keep=keep, weight=head["weight"],
                                                   bias=head["bias"]))
    model.module.eval()
    seconds = time.perf_counter() - start
    say(f"kept {result.kept} of {result.total} features from {len(used)} of {len(layers)} layers "
        f"(deepest: {used[-1]}); {result.evaluated_on} accuracy {result.accuracy:.3f}")
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "config.json", {"strategy": {"name": "multilayer"}, "epochs": 1, "budget_seconds": None,
                                      "seed": seed, "start_weights": weights_digest(backbone.module),
                                      "model": backbone.spec.name, "data": data.fingerprint("train"),
                                      "data_name": data.spec.name, "label_names": list(data.spec.label_names),
                                      "eval_split": "val" if val else None, "graft": graft_version(),
                                      "max_width": max_width})
    if plan is not None:
        _write_json(out / "plan.json", plan.to_dict())
    _write_json(out / "multilayer.json", {**result.to_dict(), "model_layers": used})
    final_split = "test" if "test" in data.splits else ("val" if val else None)
    metrics = evaluate(model, data, final_split, out) if final_split else None
    save_model(model, out / "model.safetensors")
    trainable = sum(p.numel() for p in model.module.head.parameters())
    total = sum(p.numel() for p in backbone.module.parameters()) + trainable
    notes = [f"every layer, selected: {result.kept} of {result.total} features ({100 * result.fraction:g} %) from "
             f"{len(used)} layers; the network runs up to {used[-1]} only", *result.notes]
    record = RunRecord(run_dir=str(out), strategy="multilayer", epochs=1, epochs_run=1, stopped="", seconds=round(
        seconds, 3), best_epoch=1, best_accuracy=result.accuracy if val else None, final_split=final_split,
        final_accuracy=None if metrics is None else metrics.accuracy,
        final_macro_f1=None if metrics is None else metrics.macro_f1, trainable_params=trainable, total_params=total,
        label_names=tuple(data.spec.label_names), notes=tuple(notes))
    _write_json(out / "run.json", record.to_dict())
    return record
