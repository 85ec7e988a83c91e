"""A linear probe over every layer at once, with feature selection (Head2Toe: Evci et al., ICML 2022).

Far targets are often better served by earlier layers than by the last one, and best by several at once.
:func:`multilayer_probe` concatenates the pooled features of every tapped layer and keeps the most useful ones:

1. **Bounded width.** A layer wider than ``max_width`` is narrowed by averaging contiguous groups of channels
   (group size ``ceil(D / max_width)``; the last group may be smaller), so that all layers together stay at
   most ``len(layers) * max_width`` wide. :func:`narrow` is the rule, also applied at inference.
2. **Standardized per feature** with the training rows' mean and standard deviation.
3. **Ranked** by the L2 norm, over classes, of each feature's weights in a logistic regression on all of
   them (C chosen first, on the evaluation split or by cross-validation).
4. **Selected**: the top fraction of the ranking for each of ``fractions``, refit at the same C; the fraction
   with the best accuracy (on the evaluation split, or out of fold) wins, ties to the smaller one.

The result names the kept features of each layer and each layer's share of the head's squared weights.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from graft.errors import GraftError, ShapeError
from graft.jsonable import JsonSerializable
from graft.measures._inputs import as_features, features_and_labels
from graft.measures.probe import _regularization_grid, _standardize, _test_codes, wilson_interval
from graft.validation import positive_int

MAX_WIDTH = 256  # features per layer, at most (contiguous channels averaged)
FRACTIONS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
DEFAULT_CS = (1e-3, 1e-2, 1e-1, 1.0)
MEMORY_LIMIT = 4 * 2**30  # bytes of float64 features the probe may hold (train + evaluation)


@dataclass(frozen=True)
class MultilayerResult(JsonSerializable):
    """What the multilayer probe measured.

    ``selected[layer]``: indices (into the layer's narrowed features) of the kept features; ``contributions``:
    each layer's share of the final head's squared weights (sums to 1); ``widths[layer]``: (original,
    narrowed); ``fraction_accuracy``: the selection accuracy of each tried fraction; ``evaluated_on``: "test",
    "eval" (fraction and C chosen on that split: slightly optimistic) or "cross-validation".
    """

    accuracy: float
    ci_low: float
    ci_high: float
    n_test: int
    evaluated_on: str
    fraction: float
    c: float
    kept: int
    total: int
    selected: dict[str, list[int]]
    contributions: dict[str, float]
    widths: dict[str, list[int]]
    fraction_accuracy: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def layers_kept(self) -> list[str]:
        return [name for name, idx in self.selected.items() if idx]


def narrow(features: np.ndarray, max_width: int = MAX_WIDTH) -> np.ndarray:
    """(N, D) -> (N, ceil(D / g)) with g = ceil(D / max_width): the mean of each run of g contiguous columns."""
    d = features.shape[1]
    group = math.ceil(d / max_width)
    if group <= 1:
        return features
    pad = (-d) % group
    sums = np.add.reduceat(features, np.arange(0, d, group), axis=1)
    counts = np.full(sums.shape[1], group, dtype=features.dtype)
    if pad:
        counts[-1] = group - pad
    return sums / counts


def _fit(x: np.ndarray, y: np.ndarray, c: float, seed: int, max_iter: int, unconverged: set):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = LogisticRegression(C=c, max_iter=max_iter, random_state=seed).fit(x, y)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        unconverged.add(c)
    return model


class _Clock:
    """The fits of one probe against its ``deadline`` (a ``time.perf_counter()`` value, or None): each fit gets the
    lbfgs iterations that fit in the time left, shared among the fits still to come (the time of one iteration is
    the slowest seen so far), and :attr:`over` tells the loops to stop trying further values."""

    def __init__(self, deadline: float | None):
        self.deadline, self.per_iteration, self.capped = deadline, 0.0, False

    @property
    def over(self) -> bool:
        return self.deadline is not None and time.perf_counter() > self.deadline

    def fit(self, x, y, c: float, seed: int, max_iter: int, unconverged: set, still: int = 1):
        iterations = max_iter
        if self.deadline is not None and self.per_iteration:
            left = self.deadline - time.perf_counter()
            iterations = int(min(max_iter, max(1, left / (self.per_iteration * max(1, still)))))
            self.capped |= iterations < max_iter
        t0 = time.perf_counter()
        model = _fit(x, y, c, seed, iterations, unconverged)
        self.per_iteration = max(self.per_iteration, (time.perf_counter() - t0) / max(1, int(np.max(model.n_iter_))))
        return model


def _ranking(x: np.ndarray, y: np.ndarray, c: float, seed: int, max_iter: int, unconverged: set,
             clock: _Clock | None = None, still: int = 1) -> np.ndarray:
    """Feature indices, most useful first (the norm of each feature's weights over classes)."""
    clock = clock or _Clock(None)
    weights = clock.fit(x, y, c, seed, max_iter, unconverged, still).coef_
    return np.argsort(-np.linalg.norm(weights, axis=0), kind="stable")


def _splits(codes: np.ndarray, folds: int, seed: int):
    from sklearn.model_selection import StratifiedKFold

    return list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(len(codes)), codes))


def _accuracies(x: np.ndarray, y: np.ndarray, evaluation, cs: Sequence[float], fractions: Sequence[float] | None,
                c: float | None, seed: int, max_iter: int, unconverged: set, clock: _Clock | None = None) -> np.ndarray:
    """Accuracy per C (``fractions`` None: all features) or per fraction (at ``c``), on ``evaluation``:
    (x_eval, y_eval), or a list of (train_index, held_out) folds. The values are tried in turn across the folds;
    once the ``clock``'s deadline has passed no further value is tried (the first always is): the result then has
    fewer entries than the values."""
    clock = clock or _Clock(None)
    pairs = [(x, y, evaluation[0], evaluation[1])] if isinstance(evaluation, tuple) else [
        (x[tr], y[tr], x[te], y[te]) for tr, te in evaluation]
    pairs = [(*_standardize(xt, xe), yt, ye) for xt, yt, xe, ye in pairs]
    values = list(cs) if fractions is None else list(fractions)
    orders = [] if fractions is None else [
        _ranking(xt, yt, c, seed, max_iter, unconverged, clock, len(pairs) * (len(values) + 1))
        for xt, xe, yt, ye in pairs]
    right, total = [], sum(len(ye) for *_, ye in pairs)
    for i, value in enumerate(values):
        if i and clock.over:
            break
        still = len(pairs) * (len(values) - i)
        correct = 0
        for j, (xt, xe, yt, ye) in enumerate(pairs):
            if fractions is None:
                correct += (clock.fit(xt, yt, value, seed, max_iter, unconverged, still - j).predict(xe) == ye).sum()
            else:
                keep = orders[j][:max(1, math.ceil(value * xt.shape[1]))]
                model = clock.fit(xt[:, keep], yt, c, seed, max_iter, unconverged, still - j)
                correct += (model.predict(xe[:, keep]) == ye).sum()
        right.append(correct)
    return np.array(right, dtype=float) / total


def multilayer_probe(train_features: Mapping[str, object], train_labels: object,
                     test_features: Mapping[str, object] | None = None, test_labels: object = None,
                     **options) -> MultilayerResult:
    """Accuracy of a logistic regression on the selected features of every layer (see the module docstring).

    ``train_features[layer]``: (N, D_layer), layers in network order; ``test_features`` the same layers for
    held-out samples. ``choose="cv"``: C and the fraction by ``folds``-fold cross-validation on the training
    set, then refit and evaluated on the test arrays (or out of fold without them); ``choose="eval"``: both
    chosen on the test arrays, which must then be a validation split. Options: ``choose``, ``fractions``,
    ``cs``, ``max_width``, ``folds``, ``seed``, ``max_iter``, ``memory_limit`` (bytes of features held);
    ``deadline`` (a ``time.perf_counter()`` value): the search of C and of the fraction stops there, and each fit
    gets only the lbfgs iterations that fit in the time left (``notes`` says so).

    Shape:
        - train_features: {layer: (N, D_layer)}; train_labels: (N,)
        - test_features: {layer: (N_test, D_layer)}, test_labels: (N_test,)
        - returns: :class:`MultilayerResult`
    """
    return multilayer_head(train_features, train_labels, test_features, test_labels, **options)[0]


def multilayer_head(train_features: Mapping[str, object], train_labels: object,
                    test_features: Mapping[str, object] | None = None, test_labels: object = None, *,
                    choose: str = "cv", fractions: Sequence[float] = FRACTIONS, cs: Sequence[float] | None = None,
                    max_width: int = MAX_WIDTH, folds: int = 3, seed: int = 0, max_iter: int = 500,
                    memory_limit: int = MEMORY_LIMIT, deadline: float | None = None
                    ) -> tuple[MultilayerResult, dict[str, np.ndarray]]:
    """:func:`multilayer_probe`, and the head it fit: ``keep`` (indices into the concatenated narrowed features),
    ``weight`` (classes, len(keep)) and ``bias`` (classes,) acting on the raw narrowed features (the
    standardization folded in; two classes as two rows). A network applies it with
    :class:`graft.surgery.multilayer.MultilayerModel`."""
    layers = list(train_features) if isinstance(train_features, Mapping) else []
    if not layers:
        raise GraftError("train_features as a mapping from layer names to (N, D) features, at least one layer",
                         f"{type(train_features).__name__} with no layers" if isinstance(train_features, Mapping)
                         else type(train_features).__name__, "tap at least one layer (graft.extract_features)")
    if choose not in ("cv", "eval"):
        raise GraftError("choose as 'cv' or 'eval'", repr(choose), "use 'cv' unless the test arrays are validation")
    if (test_features is None) != (test_labels is None):
        raise GraftError("test_features and test_labels together, or neither", "only one of them", "pass both")
    if choose == "eval" and test_features is None:
        raise GraftError("test features and labels with choose='eval'", "none", "pass a validation split, or cv")
    max_width = positive_int(max_width, "max_width")
    fractions = tuple(sorted({float(f) for f in fractions}))
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise GraftError("fractions in (0, 1]", repr(fractions), "for example (0.05, 0.2, 1.0)")
    grid = _regularization_grid(cs if cs is not None else DEFAULT_CS)
    if test_features is not None:
        missing = [name for name in layers if name not in test_features]
        if missing:
            raise ShapeError("test features for every training layer", f"none for {missing[:5]}",
                             "extract both splits at the same layers")
    widths = {}
    for name in layers:
        shape = np.shape(train_features[name])
        if len(shape) != 2:
            raise ShapeError(f"(N, D) features for layer {name!r}", f"shape {shape}", "pool each layer to a vector")
        widths[name] = [int(shape[1]), math.ceil(shape[1] / math.ceil(shape[1] / max_width))]
    rows = np.shape(train_features[layers[0]])[0] + (np.shape(test_features[layers[0]])[0] if test_features else 0)
    need = rows * sum(w[1] for w in widths.values()) * 8
    if need > memory_limit:
        raise GraftError(f"features that fit in {memory_limit / 2**30:.1f} GiB (memory_limit)",
                         f"{need / 2**30:.1f} GiB for {rows} samples x {sum(w[1] for w in widths.values())} "
                         f"features at max_width={max_width}",
                         "lower max_width, tap fewer layers, or probe a subsample (max_samples)")
    x = np.concatenate([narrow(as_features(train_features[n], f"train_features[{n!r}]"), max_width) for n in layers], 1)
    x, mapped = features_and_labels(x, train_labels, features_name="train_features")
    codes, notes, unconverged = mapped.codes, [], set()
    test = truth = None
    if test_features is not None:
        test = np.concatenate([narrow(as_features(test_features[n], f"test_features[{n!r}]"), max_width)
                               for n in layers], 1)
        if len(layers) and test.shape[1] != x.shape[1]:
            raise ShapeError("test features as wide as the training features, layer by layer",
                             f"{test.shape[1]} and {x.shape[1]}", "extract both splits from the same model")
        truth = _test_codes(test_labels, mapped.classes, len(test))
    smallest = int(mapped.counts.min())
    if choose == "cv":
        folds = min(positive_int(folds, "folds"), smallest)
        if folds < 2:
            raise GraftError("at least 2 training samples in every class", f"{smallest}", "collect more samples")
        evaluation = _splits(codes, folds, seed)
    else:
        evaluation = (test, truth)
    clock = _Clock(deadline)
    per_c = _accuracies(x, codes, evaluation, grid, None, None, seed, max_iter, unconverged, clock)
    c = grid[int(np.argmax(per_c))]
    per_fraction = _accuracies(x, codes, evaluation, grid, fractions, c, seed, max_iter, unconverged, clock)
    if len(per_c) < len(grid) or len(per_fraction) < len(fractions) or clock.capped:
        notes.append(f"the time given ran out (its deadline): C searched over {len(per_c)} of {len(grid)} values, the "
                     f"fraction over {len(per_fraction)} of {len(fractions)}"
                     + (", some fits stopped early" if clock.capped else ""))
    fractions = fractions[:len(per_fraction)]
    best = int(np.argmax(per_fraction))  # the first maximum: the smallest fraction among ties
    fraction = fractions[best]
    xs, *rest = _standardize(x, *(() if test is None else (test,)))
    order = _ranking(xs, codes, c, seed, max_iter, unconverged, clock, 2)
    keep = np.sort(order[:max(1, math.ceil(fraction * x.shape[1]))])
    head = clock.fit(xs[:, keep], codes, c, seed, max_iter, unconverged)
    if test is not None and choose == "cv":
        predictions, evaluated_on = head.predict(rest[0][:, keep]), "test"
        accuracy = float((predictions == truth).mean())
        n = len(truth)
    elif choose == "eval":
        accuracy, evaluated_on, n = float(per_fraction[best]), "eval", len(truth)
        notes.append("C and the fraction chosen on the evaluation split: slightly optimistic")
    else:
        accuracy, evaluated_on, n = float(per_fraction[best]), "cross-validation", len(codes)
    if unconverged:
        notes.append(f"lbfgs did not converge within max_iter={max_iter} for C in {sorted(unconverged)}")
    low, high = wilson_interval(round(accuracy * n), n)
    bounds = np.cumsum([0] + [widths[name][1] for name in layers])
    squared = (head.coef_ ** 2).sum(axis=0)
    selected, contributions = {}, {}
    for i, name in enumerate(layers):
        inside = (keep >= bounds[i]) & (keep < bounds[i + 1])
        selected[name] = (keep[inside] - bounds[i]).tolist()
        contributions[name] = float(squared[inside].sum() / max(squared.sum(), 1e-300))
    result = MultilayerResult(accuracy=accuracy, ci_low=low, ci_high=high, n_test=n, evaluated_on=evaluated_on,
                              fraction=fraction, c=float(c), kept=int(len(keep)), total=int(x.shape[1]),
                              selected=selected, contributions=contributions, widths=widths,
                              fraction_accuracy={f"{f:g}": float(a) for f, a in zip(fractions, per_fraction)},
                              notes=tuple(notes))
    weight, bias = head.coef_, head.intercept_
    if weight.shape[0] == 1:  # sklearn's binary form: one logit; as two rows, the same softmax
        weight, bias = np.vstack([-weight / 2, weight / 2]), np.array([-bias[0] / 2, bias[0] / 2])
    mean, scale = x[:, keep].mean(axis=0), x[:, keep].std(axis=0)
    scale[scale == 0] = 1.0
    folded = weight / scale
    return result, {"keep": keep, "weight": folded, "bias": bias - folded @ mean}
