"""The advisor: from cheap measurements to a strategy, the blocks to unfreeze, the learning rates, and why.

Inputs are what ``graft probe`` measures (per-layer linear-probe accuracy with its interval, LogME, similarity
to the source) and what the data says (samples per class, classes). Four signals come out of them:

- **feature quality** ``q``: the best probe accuracy above chance, ``(acc - 1/C) / (1 - 1/C)``;
- **top-block drop**: how far the last layer's probe falls below the best layer's (beyond its interval, the
  top blocks are specialized to the source: fine-tune them, keep the ones below);
- **distance** from the source: the top layers' similarity (BN shift; 1 = one source standard deviation apart),
  or, without it, what the probe says (weak features = far);
- **data size**: samples per class, on a log scale (10 per class -> 0, 1000 -> 1).

When the probe also ran the multilayer probe (every layer at once, selected), its accuracy makes a fifth signal and
the ``multilayer`` candidate: how much quality the lower layers add over the best single one.

The four-scenario rule of thumb (small/large data x similar/different domain) is the prior: each candidate gets a
score from the signals with the reasons that moved it, and the advice is the best. When the top two are within
``margin`` of each other the advice is marked ambiguous, and ``graft fit --strategy auto`` settles it with short
trials (successive halving) instead of trusting the prior.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from typing import TYPE_CHECKING

from graft.errors import GraftError
from graft.jsonable import JsonSerializable
from graft.strategy.registry import registered_strategies

if TYPE_CHECKING:
    from graft.measures.summary import Measures

FAR_SHIFT = 1.0  # a BN shift of 1 (means a source standard deviation apart) counts as far from the source
ENOUGH_EPOCHS = 6  # a strategy that affords fewer epochs in the budget left for the fit is marked down
SHORT_PENALTY = 0.3  # by this much when it affords none, linearly less up to ENOUGH_EPOCHS


@dataclass(frozen=True)
class Advice(JsonSerializable):
    """What to do (``advice.json``): the strategy and its options, the layer to tap, the blocks to unfreeze,
    the scenario in words, the reasons, every candidate with its score, and the trials that settled it."""

    strategy: str
    options: dict
    tap_layer: str | None
    unfreeze: tuple[str, ...]
    scenario: str
    reasons: tuple[str, ...]
    candidates: tuple[dict, ...]
    ambiguous: bool
    measurements: dict
    trials: tuple[dict, ...] = field(default_factory=tuple)

    def render(self) -> str:
        lines = [f"advice: {self.strategy}" + (f" {self.options}" if self.options else ""),
                 f"scenario: {self.scenario}"]
        lines += [f"  - {r}" for r in self.reasons]
        lines.append("candidates: " + ", ".join(f"{c['strategy']} {c['score']:.2f}"
                                                + (" (left out: not enough time)" if c.get("left_out") else "")
                                                for c in self.candidates))
        if self.ambiguous and not self.trials:
            lines.append("the top candidates score within the margin: short trials decide (graft fit --strategy auto)")
        for t in self.trials:
            rounds = "; ".join(f"{r['epochs']} epochs: val {r['val_accuracy']:.3f}" for r in t["rounds"])
            lines.append(f"trial {t['strategy']}: {rounds}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Signals:
    quality: float
    drop: float  # 0..1: the last layer below the best layer's interval (1: by 10 points or more)
    distance: float  # 0..1
    size: float  # 0..1
    best_index: int
    last_index: int
    per_class: float
    distance_source: str
    multilayer_quality: float | None = None  # the multilayer probe's accuracy above chance, when it ran


def _signals(measures: Measures, samples_per_class: Sequence[int]) -> Signals:
    layers = list(measures.layers)
    probed = [e for e in layers if e.probe_accuracy is not None]
    if not probed:
        raise GraftError("measures with linear-probe accuracies per layer", "none", "run graft probe (without --no-probe)")
    chance = 1 / max(2, len(measures.label_names))
    names = [e.name for e in layers]
    best = next(e for e in layers if e.name == measures.best_layer)
    last = probed[-1]
    quality = max(0.0, (best.probe_accuracy - chance) / (1 - chance))
    gap = best.probe_accuracy - last.probe_accuracy
    outside = best.probe_low is None or last.probe_accuracy < best.probe_low
    drop = min(1.0, max(0.0, gap / 0.10)) if outside else 0.0
    top = [e.similarity for e in layers[-2:] if e.similarity is not None]
    if top:
        distance, source = min(1.0, max(top) / FAR_SHIFT), f"BN shift of the top blocks {max(top):.2f}"
    else:
        distance, source = min(1.0, 1.0 - quality), "no similarity measured: inferred from the probe"
    per_class = min(samples_per_class) if samples_per_class else measures.num_train / max(1, len(measures.label_names))
    size = min(1.0, max(0.0, (math.log10(max(per_class, 1)) - 1) / 2))
    every = measures.multilayer
    every_quality = None if not every else max(0.0, (every["accuracy"] - chance) / (1 - chance))
    return Signals(quality, drop, distance, size, names.index(best.name), names.index(last.name), per_class, source,
                   every_quality)


def measure_skip_reason(measure: str, measures: Measures, *, samples_per_class: Sequence[int] = (),
                        blocks: Sequence[str] | None = None, margin: float = 0.05,
                        epochs_for: Callable[[str], int] | None = None) -> str | None:
    """Whether the optional probe measurement ``measure`` (such as ``multilayer``: every layer at once) is worth
    taking, from the per-layer measures: ``None`` when a strategy whose prior needs it could still come within
    ``margin`` of the best other candidate, else the reason to skip it. Each such strategy registers a
    ``ceiling``, the most its prior can give when the measure comes out perfect; when even that leaves it
    ``margin`` behind, the measurement cannot change the advice (bench/advisor_probe_cost.py: it is most of the
    advice's time on the larger tasks)."""
    per_layer = replace(measures, **{measure: None})
    s = _signals(per_layer, samples_per_class)
    ranked = advise(per_layer, samples_per_class=samples_per_class, blocks=blocks, margin=margin,
                    epochs_for=epochs_for).candidates
    others = next((c for c in ranked if not c.get("left_out")), None)
    if others is None:  # nothing else is sound in the time left: the measure may find what is
        return None
    needing = [d for d in registered_strategies().values() if d.measure == measure and d.prior is not None]
    ceilings = {d.name: d.ceiling(s) for d in needing}
    if not ceilings:
        return f"no registered strategy needs the {measure} measure"
    name, ceiling = max(ceilings.items(), key=lambda kv: kv[1])
    if ceiling > others["score"] - margin:
        return None
    return (f"even with a perfect {measure} measure, {name} would score {ceiling:.2f} against "
            f"{others['strategy']}'s {others['score']:.2f} ({s.per_class:.0f} per class)")


@dataclass(frozen=True)
class Evidence:
    """What a strategy's prior sees besides the signals: the layers, the best one, the blocks above it."""

    measures: Measures
    best_name: str
    above: tuple[str, ...]
    num_layers: int

    @property
    def k(self) -> int:
        return max(1, len(self.above))

    @staticmethod
    def pct(value: float) -> str:
        return f"{100 * value:.0f} %"


def _scenario(s: Signals) -> str:
    amount = "small data" if s.size < 0.35 else "large data" if s.size > 0.75 else "medium data"
    kind = "far from the source" if s.distance > 0.5 else "similar to the source"
    return f"{amount} ({s.per_class:.0f} per class), {kind}"


def advise(measures: Measures, *, samples_per_class: Sequence[int] = (), blocks: Sequence[str] | None = None,
           margin: float = 0.05, lr: float | None = None, epochs_for: Callable[[str], int] | None = None) -> Advice:
    """The strategy for the data ``measures`` describes (see the module docstring for how it decides).

    ``epochs_for(strategy)``: how many epochs of it the time left for the fit affords (``graft fit --strategy
    auto --budget``). A strategy that affords fewer than the epochs it needs to adapt soundly (its registered
    ``sound``) is left out: ranked after every one that fits, never advised while one does. One that affords fewer
    than ``ENOUGH_EPOCHS`` loses up to ``SHORT_PENALTY``:
    on a short budget, fine-tuning everything for one or two epochs loses to a partial fine-tune whose frozen
    prefix is computed once and which runs many epochs in the same time (BENCHMARKS.md, FSDD)."""
    s = _signals(measures, samples_per_class)
    names = list(blocks) if blocks is not None else [e.name for e in measures.layers]
    best_name = measures.layers[s.best_index].name
    # the blocks above the best probe layer (in the trainer's block list) are the ones to fine-tune
    # (when the top loses nothing against the best layer, the top block alone)
    above = names[names.index(best_name) + 1:] if best_name in names and s.drop > 0 else names[-1:]
    evidence = Evidence(measures, best_name, tuple(above), len(measures.layers))
    definitions = registered_strategies()
    cands: list[tuple[str, float, str]] = []
    kind: dict[str, object] = {}
    for definition in definitions.values():
        proposed = definition.prior(s, evidence) if definition.prior is not None else None
        if proposed is not None:
            cands.append(proposed)
            kind[proposed[0]] = definition
    affordable, unsound = {}, set()
    if epochs_for is not None:
        for i, (name, score, why) in enumerate(cands):
            epochs = affordable[name] = int(epochs_for(name))
            sound = kind[name].sound
            if epochs < sound:  # never fitted for a fraction of what it needs: ranked after every sound candidate
                unsound.add(name)
                cands[i] = (name, score, f"{why}; left out: the budget left affords {epochs} epoch"
                            f"{'s' if epochs != 1 else ''} of it, fewer than the {sound} it needs")
            elif epochs < ENOUGH_EPOCHS and not kind[name].solved:
                cut = SHORT_PENALTY * (1 - epochs / ENOUGH_EPOCHS)
                cands[i] = (name, score - cut, f"{why}; but the budget left affords only {epochs} epoch"
                            f"{'s' if epochs != 1 else ''} of it, few to adapt (-{cut:.2f})")
    ranked = sorted(cands, key=lambda c: (c[0] in unsound, -c[1]))
    chosen, score, why = ranked[0]
    sound_ranked = [c for c in ranked if c[0] not in unsound]
    ambiguous = len(sound_ranked) > 1 and sound_ranked[0][1] - sound_ranked[1][1] < margin
    reasons = [why,
               f"feature quality: best probe accuracy {measures.layers[s.best_index].probe_accuracy:.3f} at "
               f"{best_name}, last layer {measures.layers[s.last_index].probe_accuracy:.3f}",
               f"distance from the source: {s.distance_source}",
               f"data: {s.per_class:.0f} samples per class (the smallest class), {len(measures.label_names)} classes"]
    options = {"lr": lr} if lr is not None else {}
    rule = kind[chosen].unfreeze
    unfreeze = tuple(above) if rule == "above" else tuple(names) if rule == "all" else ()
    return Advice(chosen, options, best_name if kind[chosen].tap_layer else None, unfreeze, _scenario(s), tuple(reasons),
                  tuple({"strategy": n, "score": round(v, 3), "why": w, **({"left_out": True} if n in unsound else {})}
                        for n, v, w in ranked), ambiguous,
                  {"train_samples": measures.num_train, "classes": len(measures.label_names),
                   "samples_per_class_min": s.per_class, "best_layer": best_name,
                   "best_probe_accuracy": measures.layers[s.best_index].probe_accuracy,
                   "last_probe_accuracy": measures.layers[s.last_index].probe_accuracy,
                   "quality": round(s.quality, 3), "top_drop": round(s.drop, 3), "distance": round(s.distance, 3),
                   "size": round(s.size, 3),
                   **({"multilayer_accuracy": measures.multilayer["accuracy"],
                       "multilayer_quality": round(s.multilayer_quality, 3)} if s.multilayer_quality is not None else {}),
                   **({"epochs_in_budget": affordable} if affordable else {})})


def unmeasured_advice(why: str) -> Advice:
    """The advice when there is no time to measure: a solved linear head, the cheapest fit that is sound (one pass
    over the data and a head solved to convergence), with ``why``."""
    reason = f"no measurement: {why}; a solved linear head is the cheapest sound fit (one pass over the data)"
    return Advice("linear", {}, None, (), "not measured", (reason,),
                  ({"strategy": "linear", "score": 0.0, "why": reason},), False, {"measured": False})
