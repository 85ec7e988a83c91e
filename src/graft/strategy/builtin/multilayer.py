"""``multilayer``: a linear head on selected features of every layer (Head2Toe, Evci et al. 2022), solved, not trained.

One extraction pass per split through ``graft.features.extract_features`` (cached: a second run, or ``graft
probe`` before it, reads the same features), then :func:`graft.measures.multilayer.multilayer_head` narrows,
ranks, selects and fits; C and the fraction of features kept are chosen on ``val`` (cross-validation on
``train`` without one). The model is a :class:`graft.surgery.multilayer.MultilayerModel`: the network truncated
after the deepest layer that kept a feature, and the head. The run folder is an ordinary one (config, plan,
metrics, model.safetensors, run.json) plus ``multilayer.json``: which layers were kept, how much each weighs.

Its cheap measurement is the probe's multilayer measure (every layer at once): the advisor's candidate needs it,
and the probe skips it when even a perfect result could not change the advice (``ceiling``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from graft.strategy.registry import StrategyDefinition, register_strategy
from graft.strategy.spec import Phase, Strategy

@dataclass(frozen=True)
class MultilayerStrategy(Strategy):
    """The multilayer config: :class:`Strategy`'s fields plus ``max_width``, the features each layer is narrowed to
    at most (None: the measure's default, :data:`graft.measures.multilayer.MAX_WIDTH`)."""

    max_width: int | None = None

    def __post_init__(self):
        super().__post_init__()
        from graft.errors import GraftError

        if self.max_width is not None and (isinstance(self.max_width, bool) or not isinstance(self.max_width, int)
                                           or self.max_width < 1):
            raise GraftError("max_width as a positive number of features per layer", repr(self.max_width),
                             "for example 256")


def compile_multilayer(strategy, num_blocks: int, epochs: int, has_adapter: bool = False) -> tuple[Phase, ...]:
    # priced as one pass over each split; fit_multilayer fits it
    return (Phase("every layer, selected (solved, body frozen)", 1, (-1,), (strategy.lr,), solve_head=True),)


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


def fit_multilayer(run):
    """Fit the multilayer head on ``run.backbone`` (grafted to ``run.data``) into the run folder ``run.out``."""
    from graft.features.extract import extract_features
    from graft.measures.multilayer import MAX_WIDTH, multilayer_head
    from graft.surgery.multilayer import as_backbone, build_multilayer

    backbone, data, say = run.backbone, run.data, run.log
    max_width = getattr(run.strategy, "max_width", None) or MAX_WIDTH
    start = time.perf_counter()
    train = extract_features(backbone, data, split="train", progress=bool(run.progress))
    layers = list(train.layers)
    val = extract_features(backbone, data, split="val", progress=bool(run.progress)) if "val" in data.splits else None
    say(f"features of {len(layers)} layers extracted in {time.perf_counter() - start:.1f} s")
    budget = getattr(run, "budget", None)
    # a budget (a comparison's share, --budget): the head's search stops where 80 % of it is spent, leaving the rest
    # for the evaluation and the files; its first fit always runs
    deadline = None if budget is None else getattr(run, "started", start) + 0.8 * budget
    result, head = multilayer_head({n: train.features(n) for n in layers}, train.labels(),
                                   None if val is None else {n: val.features(n) for n in layers},
                                   None if val is None else val.labels(), choose="eval" if val else "cv",
                                   seed=run.seed, max_width=max_width, deadline=deadline)
    used, widths, keep = _used(result, layers)
    config = {"layers": used, "widths": widths, "pool": "avg", "spatial_dims": backbone.spec.input.spatial_dims,
              "classes": len(data.spec.label_names), "kept": int(len(keep))}
    model = as_backbone(backbone, build_multilayer(backbone.module, config, keep=keep, weight=head["weight"],
                                                   bias=head["bias"]))
    model.spec = replace(model.spec, label_names=tuple(data.spec.label_names))
    model.module.eval()
    say(f"kept {result.kept} of {result.total} features from {len(used)} of {len(layers)} layers "
        f"(deepest: {used[-1]}); {result.evaluated_on} accuracy {result.accuracy:.3f}")
    run.write_json("multilayer.json", {**result.to_dict(), "model_layers": used})
    trainable = sum(p.numel() for p in model.module.head.parameters())
    total = sum(p.numel() for p in backbone.module.parameters()) + trainable
    notes = [f"every layer, selected: {result.kept} of {result.total} features ({100 * result.fraction:g} %) from "
             f"{len(used)} layers; the network runs up to {used[-1]} only", *result.notes]
    return run.finish(model, seconds=time.perf_counter() - start, epochs=1, epochs_run=1, best_epoch=1,
                      best_accuracy=result.accuracy if val else None, trainable_params=trainable, total_params=total,
                      notes=notes, config={"max_width": max_width})


def multilayer_score(s, multilayer_quality: float) -> float:
    """The candidate's score: it needs little data and lower layers that carry what the top ones miss."""
    return 0.52 + 0.10 * s.distance - 0.40 * s.size + 1.0 * max(0.0, multilayer_quality - s.quality)


def prior_multilayer(s, e):
    # on bench/advisor_regret.py it was the best strategy on one of three tasks at 8 per class, the one where the
    # lower layers added the most over the best single layer, and behind fine-tuning on every larger task
    if s.multilayer_quality is None:
        return None
    every = e.measures.multilayer
    gain = max(0.0, s.multilayer_quality - s.quality)
    return ("multilayer", multilayer_score(s, s.multilayer_quality),
            f"every layer at once reaches {every['accuracy']:.3f} on {every['evaluated_on']} "
            f"({every['kept']} features from {sum(1 for v in every['selected'].values() if v)} layers): "
            f"{100 * gain:.0f} points of quality over the best single layer; one pass, nothing trained"
            + ("" if s.size < 0.35 else ", but with this much data fine-tuning usually does better"))


MULTILAYER = register_strategy(StrategyDefinition(
    "multilayer", "a linear head on selected features of every layer, solved; the network runs only up to the "
    "deepest layer kept (Head2Toe, Evci et al. 2022)", compile_multilayer, config=MultilayerStrategy, solved=True, one_pass=True,
    fit=fit_multilayer, prior=prior_multilayer, measure="multilayer", ceiling=lambda s: multilayer_score(s, 1.0)))
