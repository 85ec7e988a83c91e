"""Every measure for every tapped layer, in one object: what ``graft probe`` prints and writes as measures.json.

:func:`measure_layers` takes the arrays the features stage produced (pooled features per layer, labels, the
source head's logits, the BatchNorm input statistics) and returns :class:`Measures`; it never sees a model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from io import StringIO

import numpy as np

from graft.errors import GraftError
from graft.jsonable import JsonSerializable
from graft.measures.classes import class_statistics
from graft.measures.probe import linear_probe
from graft.measures.similarity import batchnorm_shift, batchnorm_statistics_usable, frechet_distance
from graft.measures.transferability import (
    h_score,
    log_expected_empirical_prediction,
    log_maximum_evidence,
    negative_conditional_entropy,
)

IDENTITY_TOLERANCE = 1e-3  # running_var within this of 1 and running_mean of 0: an identity BN (folded weights)
PROBE_RATE = 6e-7  # seconds per sample, feature (+64) and class of one layer's probe, LogME and H-score included
MULTILAYER_FACTOR = 1.6  # the multilayer probe costs this many single probes of its (narrowed) total width
MULTILAYER_CV_FACTOR = 10  # and this many times more when it chooses C and the fraction by cross-validation
# (measured: ts_fcn on UCR MedicalImages, 381 samples, 3 layers: 66 s, against 6.7 s at the first factor alone)


@dataclass(frozen=True)
class LayerMeasures(JsonSerializable):
    """The measures of one tapped layer. ``similarity`` is a distance: 0 = the target looks like the source.

    ``probe_accuracy`` (with its 95 % Wilson interval ``probe_low``/``probe_high``) is a logistic regression
    on the layer's standardized pooled features; ``logme`` and ``h_score`` score the same features without
    training; ``similarity`` is the mean BatchNorm shift of the BN layers inside this layer (``batchnorms``
    of them), or the relative Fréchet distance to a sample of source data, or None.
    """

    name: str
    dim: int
    probe_accuracy: float | None = None
    probe_low: float | None = None
    probe_high: float | None = None
    probe_c: float | None = None
    logme: float | None = None
    h_score: float | None = None
    similarity: float | None = None
    batchnorms: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class Measures(JsonSerializable):
    """Per-layer measures of one network on one dataset, the layer that transfers best, and why."""

    model: str
    data: str
    train_split: str
    eval_split: str  # a split name, or "cross-validation" (out-of-fold predictions on the train split)
    num_train: int
    num_eval: int
    label_names: tuple[str, ...]
    layers: tuple[LayerMeasures, ...]
    best_layer: str
    best_reason: str
    similarity_method: str  # "batchnorm", "frechet" or "none"
    similarity_note: str = ""
    leep: float | None = None
    nce: float | None = None
    classes: dict = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    multilayer: dict | None = None  # graft.measures.multilayer.MultilayerResult.to_dict(): every layer, selected

    def layer(self, name: str) -> LayerMeasures:
        for entry in self.layers:
            if entry.name == name:
                return entry
        raise GraftError("a measured layer", repr(name), f"layers are: {', '.join(e.name for e in self.layers)}")

    def render(self, width: int = 110) -> str:
        """The per-layer table, the best layer marked, and the whole-network scores."""
        from graft.text import console as text_console
        from rich.table import Table

        buf = StringIO()
        console = text_console(buf, width=width, plain=True)
        evaluated = ("cross-validated on " + self.train_split if self.eval_split == "cross-validation"
                     else f"trained on {self.train_split}, evaluated on {self.eval_split}")
        console.print(f"{self.model} on {self.data}: {self.num_train} training samples, {len(self.label_names)} "
                      f"classes; probe {evaluated}", highlight=False)
        sim = {"batchnorm": "BN shift", "frechet": "Fréchet (rel.)"}.get(self.similarity_method, "similarity")
        table = Table(show_edge=False, pad_edge=False, box=None)
        for col, justify in (("layer", "left"), ("dim", "right"), ("probe accuracy (95% CI)", "right"),
                             ("LogME", "right"), (sim, "right"), ("", "left")):
            table.add_column(col, justify=justify)
        for e in self.layers:
            acc = "-" if e.probe_accuracy is None else f"{e.probe_accuracy:.3f} ({e.probe_low:.3f}-{e.probe_high:.3f})"
            table.add_row(e.name, str(e.dim), acc, _num(e.logme), _num(e.similarity),
                          "<- best" if e.name == self.best_layer else "")
        console.print(table)
        console.print(f"best layer: {self.best_layer}: {self.best_reason}", highlight=False)
        if self.multilayer:
            console.print(multilayer_line(self.multilayer), highlight=False)
        if self.leep is not None:
            console.print(f"source head: LEEP {self.leep:.3f}, NCE {self.nce:.3f} (closer to 0 = the source's "
                          "classes predict the new ones better)", highlight=False)
        if self.similarity_note:
            console.print(self.similarity_note, highlight=False)
        for note in self.notes:
            console.print(f"note: {note}", highlight=False)
        return buf.getvalue().rstrip()


def multilayer_line(m: dict) -> str:
    """One line for the multilayer probe: accuracy, how many features were kept, the layers that carry it."""
    shares = sorted(((v, k) for k, v in m["contributions"].items() if v >= 0.05), reverse=True)
    carried = ", ".join(f"{k} {100 * v:.0f} %" for v, k in shares[:5]) or "no layer above 5 %"
    return (f"all layers, selected (multilayer): {m['accuracy']:.3f} ({m['ci_low']:.3f}-{m['ci_high']:.3f}); "
            f"{m['kept']} of {m['total']} features ({100 * m['fraction']:g} %) from "
            f"{sum(1 for v in m['selected'].values() if v)} layers; the head's weight: {carried}")


def probe_seconds(samples: int, dim: int, classes: int, rate: float = PROBE_RATE) -> float:
    """The estimated time of one layer's measures on ``samples`` x ``dim`` features: the probe's lbfgs fits over
    its C grid, LogME and H-score (``rate`` measured on a 2-core CPU: MobileNetV2's 11 layers on 1800 samples of
    10 classes, BENCHMARKS.md issue 16; :func:`measure_layers` replaces it with the rate it observes)."""
    return rate * samples * (dim + 64) * max(2, classes)


def priority_order(count: int) -> list[int]:
    """The order in which layers are probed when the time may not suffice for all: the last (what a linear head
    reads, and the top-block drop), then by bisection of the depth (the middle, the quarters...), the first last."""
    order, seen, spans = [count - 1], {count - 1}, [(0, count - 1)]
    while spans:
        low, high = spans.pop(0)
        middle = (low + high) // 2
        if middle not in seen and middle != 0:
            order.append(middle)
            seen.add(middle)
        if high - low > 1:
            spans += [(low, middle), (middle, high)]
    return order + [i for i in range(count) if i not in seen]


def bounded(index: int, found: Mapping[int, LayerMeasures]) -> str | None:
    """Why the layer at depth ``index`` need not be probed, or None. Probe accuracy over the depth is taken to rise
    and then fall (once): then a layer whose nearest probed layers on either side (or on its one side, at the ends)
    all have intervals below the best probed layer's interval cannot be the best, for the peak is not between them.
    ``found``: the layers probed so far, by depth."""
    probed = {i: e for i, e in found.items() if e.probe_accuracy is not None and e.probe_high is not None}
    if not probed:
        return None
    best = max(probed.values(), key=lambda e: e.probe_accuracy)
    below, above = [i for i in probed if i < index], [i for i in probed if i > index]
    sides = ([probed[max(below)]] if below else []) + ([probed[min(above)]] if above else [])
    if sides and all(e.probe_high < best.probe_low for e in sides):
        return f"between {' and '.join(e.name for e in sides)}, whose intervals lie below {best.name}'s"
    return None


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(1, keepdims=True)


def _layer_of(bn_name: str, block: str, layers: Sequence[str]) -> str | None:
    """The tapped layer a BN belongs to: the one that contains it, else the block it ran in."""
    inside = [layer for layer in layers if bn_name == layer or bn_name.startswith(layer + ".")]
    if inside:
        return max(inside, key=len)
    return block if block in layers else None


def _similarity(layers: Sequence[str], batchnorm: Mapping[str, Mapping] | None,
                train: Mapping[str, np.ndarray], source: Mapping[str, np.ndarray] | None):
    """(per-layer distance or None, per-layer BN count, method, note)."""
    values: dict[str, float | None] = {name: None for name in layers}
    counts = {name: 0 for name in layers}
    if source is not None:
        for name in layers:
            if name in source:
                a, b = np.asarray(source[name], np.float64), np.asarray(train[name], np.float64)
                scale = float(a.var(0).sum() + b.var(0).sum())
                values[name] = frechet_distance(a, b) / scale if scale > 0 else 0.0
        return values, counts, "frechet", ("similarity: Fréchet distance between Gaussian fits of the source sample's "
                                           "and the target's features, divided by the sum of their total variances "
                                           "(0 = same distribution)")
    if not batchnorm:
        return values, counts, "none", ("similarity: not measured: the network has no BatchNorm layer with source "
                                        "statistics; pass a sample of the source data (source_data=, "
                                        "--source-data) to compare feature distributions instead")
    usable, identity = {}, 0
    for bn, stats in batchnorm.items():
        mean, var = np.asarray(stats["source_mean"]), np.asarray(stats["source_var"])
        if (batchnorm_statistics_usable(mean, var) and not (np.abs(mean).max() <= IDENTITY_TOLERANCE
                                                            and np.abs(var - 1).max() <= IDENTITY_TOLERANCE)):
            usable[bn] = stats
        else:
            identity += 1
    if not usable:
        return values, counts, "none", (
            f"similarity: not measured: all {len(batchnorm)} BatchNorm layers hold identity statistics (running "
            "mean 0, variance 1: BN folded into the convolutions, as in quantized models), so they say nothing "
            "about the source data; pass a sample of the source data (source_data=, --source-data) to compare "
            "feature distributions instead")
    shifts: dict[str, list[float]] = {}
    for bn, stats in usable.items():
        layer = _layer_of(bn, str(stats.get("block", "")), layers)
        if layer is not None:
            shifts.setdefault(layer, []).append(batchnorm_shift(stats["source_mean"], stats["source_var"],
                                                                stats["target_mean"], stats["target_var"]))
    for name, found in shifts.items():
        values[name], counts[name] = float(np.mean(found)), len(found)
    note = ("similarity: BN shift, the mean over a layer's BatchNorm layers and channels of the symmetric KL "
            "divergence between the source statistics they store and the target's (0 = same statistics; "
            "1 = means one source standard deviation apart)")
    if identity:
        note += f"; {identity} BN layers with identity statistics were left out"
    return values, counts, "batchnorm", note


def measure_layers(layers: Sequence[str], train_features: Mapping[str, np.ndarray], train_labels,
                   eval_features: Mapping[str, np.ndarray] | None = None, eval_labels=None, *,
                   batchnorm: Mapping[str, Mapping] | None = None, logits: np.ndarray | None = None,
                   source_features: Mapping[str, np.ndarray] | None = None, label_names: Sequence[str] = (),
                   model: str = "", data: str = "", train_split: str = "train", eval_split: str | None = None,
                   probe: bool = True, folds: int = 5, seed: int = 0, choose_c: str = "cv",
                   multilayer: bool | Callable[[Measures], str | None] = True,
                   progress: Callable[[str], None] | None = None, deadline: float | None = None,
                   refine: bool | None = None) -> Measures:
    """Probe accuracy, LogME, H-score and similarity for each layer; LEEP and NCE of the source head.

    ``train_features[layer]`` is (N, D_layer); ``eval_features`` (optional) the same for held-out samples on
    which the probe is evaluated (otherwise it is cross-validated; ``choose_c="eval"`` picks the probe's C on
    them too, see :func:`linear_probe`); ``batchnorm`` maps BN layer names to
    ``source_mean``, ``source_var``, ``target_mean``, ``target_var`` and ``block``; ``logits`` are the
    source head's outputs on the training samples; ``source_features`` (optional) pooled features of a
    sample of the source data, per layer, used for similarity instead of the BN statistics. ``multilayer``: also
    probe every layer at once; a callable is shown the per-layer measures first and returns ``None`` to run it or
    the reason to skip it (kept in the notes). ``deadline`` (a ``time.perf_counter()`` value): probe the layers
    best-first (:func:`priority_order`) and leave out each one whose estimated time (:func:`probe_seconds`, at the
    rate observed so far) no longer fits before it, and the multilayer probe likewise; the notes name what was left
    out. The last layer is always probed. ``refine`` (default: with a ``deadline``): probe best-first and leave out
    the layers that cannot hold the best (:func:`bounded`), named in the notes.
    """
    layers = list(layers)
    if not layers:
        raise GraftError("at least one layer to measure", "none", "tap at least one layer")
    if not (isinstance(multilayer, bool) or callable(multilayer)):
        raise GraftError("multilayer=True, False or a callable that decides from the per-layer measures",
                         repr(multilayer), "pass one of them (graft.advise takes \"auto\")")
    missing = [name for name in layers if name not in train_features]
    if missing:
        raise GraftError("features for every layer", f"none for {missing}", "extract them first")
    y = np.asarray(train_labels)
    if eval_features is not None and eval_labels is None:
        raise GraftError("eval_labels with eval_features", "features without labels", "pass both or neither")
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    sim, bn_counts, method, sim_note = _similarity(layers, batchnorm, train_features, source_features)
    seconds["similarity"] = time.perf_counter() - start
    classes = len(np.unique(y))
    found: dict[int, LayerMeasures] = {}
    spent = work = 0.0  # probe seconds, and samples x (features + 64) x classes behind them: the observed rate
    skipped: list[str] = []
    pruned: list[str] = []  # left out because the probes around them bound them below the best (``refine``)
    short_grid: list[str] = []  # probed with part of the C grid: the deadline came first
    refine = probe and (deadline is not None if refine is None else refine)
    for index in priority_order(len(layers)) if deadline is not None or refine else range(len(layers)):
        name = layers[index]
        x = np.asarray(train_features[name])
        if refine and bounded(index, found) is not None:
            pruned.append(name)
            continue
        rate = spent / work if work else PROBE_RATE
        if deadline is not None and found and time.perf_counter() + probe_seconds(len(y), x.shape[1], classes,
                                                                                  rate) > deadline:
            skipped.append(name)
            continue
        t0 = time.perf_counter()
        if progress is not None:
            progress(name)
        result = None
        if probe:
            result = (linear_probe(x, y, np.asarray(eval_features[name]), np.asarray(eval_labels), folds=folds,
                                   seed=seed, choose_c=choose_c, deadline=deadline) if eval_features is not None
                      else linear_probe(x, y, folds=folds, seed=seed, deadline=deadline))
        if result is not None and any(n.startswith("C searched over") for n in result.notes):
            short_grid.append(name)
        found[index] = LayerMeasures(
            name=name, dim=int(x.shape[1]),
            probe_accuracy=None if result is None else result.accuracy,
            probe_low=None if result is None else result.ci_low, probe_high=None if result is None else result.ci_high,
            probe_c=None if result is None else result.c, logme=log_maximum_evidence(x, y), h_score=h_score(x, y),
            similarity=sim[name], batchnorms=bn_counts[name], seconds=round(time.perf_counter() - t0, 3))
        spent += time.perf_counter() - t0
        work += len(y) * (x.shape[1] + 64) * max(2, classes)
    entries = [found.get(i) or LayerMeasures(name=n, dim=int(np.asarray(train_features[n]).shape[1]),
                                             similarity=sim[n], batchnorms=bn_counts[n])
               for i, n in enumerate(layers)]
    seconds["layers"] = time.perf_counter() - start - seconds["similarity"]
    best, reason = _best(entries, len(y))
    leep = nce = None
    notes: list[str] = []
    if short_grid:
        notes.append(f"the probe of {', '.join(short_grid[:6])} searched only part of its C grid: the time for "
                     "measuring ran out (its accuracy may be a little low)")
    if pruned:
        notes.append(f"{len(pruned)} of {len(layers)} layers not probed, as they cannot hold the best: "
                     f"{', '.join(pruned[:6])}{' ...' if len(pruned) > 6 else ''} (probe accuracy is taken to rise and "
                     "fall once over the depth, and the probes on either side of each lie below the best's interval)")
    if skipped:
        notes.append(f"{len(skipped)} of {len(layers)} layers not probed, to stay within the time for measuring: "
                     f"{', '.join(skipped[:6])}{' ...' if len(skipped) > 6 else ''} (the layers are probed best-first: "
                     "the last, then by bisection of the depth)")
    if logits is not None:
        logits = np.asarray(logits)
        if logits.ndim == 2 and logits.shape[1] > 1 and len(logits) == len(y):
            leep = log_expected_empirical_prediction(_softmax(logits), y)
            nce = negative_conditional_entropy(logits.argmax(1), y)
        else:
            notes.append(f"LEEP/NCE not computed: the network's output {logits.shape} is not one score per source "
                         "class and sample")
    wide = [e.name for e in entries if e.dim >= len(y)]
    if wide and len(wide) < len(entries):
        notes.append(f"LogME is not comparable across layers here: {', '.join(wide[:4])}"
                     f"{' ...' if len(wide) > 4 else ''} ha{'s' if len(wide) == 1 else 've'} at least as many features "
                     f"as there are samples ({len(y)}), where LogME's evidence grows with the width; compare the "
                     "probe accuracies, or measure with more samples")
    stats = class_statistics(np.asarray(train_features[best]), y).to_dict()
    measures = Measures(model=model, data=data, train_split=train_split,
                        eval_split=eval_split if eval_features is not None and eval_split else
                        ("held-out" if eval_features is not None else "cross-validation"),
                        num_train=int(len(y)),
                        num_eval=int(len(eval_labels)) if eval_labels is not None else int(len(y)),
                        label_names=tuple(label_names), layers=tuple(entries), best_layer=best, best_reason=reason,
                        similarity_method=method, similarity_note=sim_note, leep=leep, nce=nce, classes=stats,
                        seconds={k: round(v, 3) for k, v in seconds.items()}, notes=tuple(notes))
    if not (probe and multilayer and len(layers) > 1):
        return measures
    skip = multilayer(measures) if callable(multilayer) else None
    if not skip and deadline is not None:
        from graft.measures.multilayer import MAX_WIDTH

        width = sum(min(e.dim, MAX_WIDTH) for e in entries)
        factor = MULTILAYER_FACTOR * (1 if choose_c == "eval" and eval_features is not None else MULTILAYER_CV_FACTOR)
        need = factor * probe_seconds(len(y), width, classes, spent / work if work else PROBE_RATE)
        if time.perf_counter() + need > deadline:
            skip = (f"it would take about {need:.0f} s, more than the {max(0.0, deadline - time.perf_counter()):.0f} s "
                    "left of the time for measuring")
    if skip:
        return replace(measures, notes=(*measures.notes, f"multilayer probe skipped: {skip}"))
    from graft.measures.multilayer import multilayer_probe

    if progress is not None:
        progress("every layer at once (multilayer probe)")
    t0 = time.perf_counter()
    every = multilayer_probe({n: train_features[n] for n in layers}, y,
                             None if eval_features is None else {n: eval_features[n] for n in layers},
                             eval_labels, choose="eval" if choose_c == "eval" else "cv", seed=seed,
                             deadline=deadline).to_dict()
    return replace(measures, multilayer=every,
                   seconds={**measures.seconds, "multilayer": round(time.perf_counter() - t0, 3)})


def _best(entries: Sequence[LayerMeasures], num_samples: int | None = None) -> tuple[str, str]:
    """The layer with the highest probe accuracy (ties: higher LogME); without probes, the highest LogME."""
    def logme(e: LayerMeasures) -> float:
        return e.logme if e.logme is not None and math.isfinite(e.logme) else -math.inf

    probed = [e for e in entries if e.probe_accuracy is not None]
    if probed:
        best = max(probed, key=lambda e: (e.probe_accuracy, logme(e)))
        close = [e.name for e in probed if e is not best and e.probe_high is not None
                 and e.probe_high >= best.probe_accuracy]
        top_logme = max(entries, key=logme)
        reason = (f"highest linear-probe accuracy, {best.probe_accuracy:.3f} (95% CI {best.probe_low:.3f}-"
                  f"{best.probe_high:.3f})")
        if close:
            reason += (f"; {', '.join(close[:4])}{' ...' if len(close) > 4 else ''} "
                       f"{'is' if len(close) == 1 else 'are'} within that interval")
        reason += ("; LogME agrees" if top_logme is best else f"; LogME ranks {top_logme.name} first")
        if num_samples is not None and any(e.dim >= num_samples for e in entries) and top_logme is not best:
            reason += " (see the note on LogME below)"
        return best.name, reason
    best = max(entries, key=logme)
    return best.name, f"highest LogME ({_num(best.logme)}); no probe was trained"
