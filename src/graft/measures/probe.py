"""Linear probe: the accuracy of a logistic regression on frozen features, the most direct transfer measure.

The probe standardizes the features with statistics of the data it trains on (never of the data it is
evaluated on), chooses the inverse regularization ``C`` by stratified cross-validation on the training
set, and reports the accuracy with a 95 % Wilson interval, the balanced accuracy and the accuracy of each
class. Without test arrays the accuracy is that of the out-of-fold predictions of the same
cross-validation (at the chosen ``C``): slightly optimistic, since ``C`` was chosen on those folds.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graft.errors import GraftError, LabelError, ShapeError
from graft.measures._inputs import as_features, features_and_labels
from graft.validation import positive_int

DEFAULT_CS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # 5 values log-spaced; for standardized features of any width


@dataclass(frozen=True)
class ProbeResult:
    """What a linear probe measured (round-trips through JSON with :meth:`to_dict`).

    ``accuracy`` is on ``n_test`` samples: the test set, or every training sample through its out-of-fold
    prediction (``evaluated_on`` says which). ``ci_low``/``ci_high``: 95 % Wilson score interval of the
    accuracy. ``per_class_accuracy`` maps each class (as a string) present in the evaluated samples to its
    recall; ``balanced_accuracy`` is their mean. ``cv_accuracy`` maps each tried ``C`` to its
    cross-validated accuracy (with ``evaluated_on="eval"``: its accuracy on the evaluation split). ``notes``
    says what was adapted (fewer folds, C at the edge of the grid...).
    """

    accuracy: float
    ci_low: float
    ci_high: float
    n_test: int
    c: float
    balanced_accuracy: float
    per_class_accuracy: dict[str, float]
    evaluated_on: str
    folds: int
    cv_accuracy: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        out = dataclasses.asdict(self)
        out["notes"] = list(self.notes)
        return out


def wilson_interval(correct: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion ``correct / total``.

    Wilson, "Probable Inference, the Law of Succession, and Statistical Inference", JASA 1927.

    Shape:
        - correct, total: ints, 0 <= correct <= total
        - returns: (low, high) in [0, 1]; (0, 1) when total is 0
    """
    if total == 0:
        return 0.0, 1.0
    proportion = correct / total
    denominator = 1 + z * z / total
    centre = (proportion + z * z / (2 * total)) / denominator
    half = z * math.sqrt(proportion * (1 - proportion) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _regularization_grid(cs: Sequence[float] | None) -> tuple[float, ...]:
    if cs is None:
        return DEFAULT_CS
    try:
        values = np.asarray(cs, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        values = np.array([np.nan])
    if values.size == 0 or not np.isfinite(values).all() or (values <= 0).any():
        raise GraftError("cs as a non-empty list of positive numbers (inverse regularization strengths)",
                         f"{cs!r}"[:200], "leave cs=None for 1e-4 ... 1, or pass e.g. cs=[0.01, 0.1, 1]")
    return tuple(sorted(set(values.tolist())))


def _standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Standardize with the mean and std of ``train`` only (constant features are centered, not scaled)."""
    mean, scale = train.mean(axis=0), train.std(axis=0)
    scale[scale == 0] = 1.0
    return [(a - mean) / scale for a in (train, *others)]


def _paths(problems: list[tuple[np.ndarray, np.ndarray, np.ndarray]], cs: tuple[float, ...], seed: int,
           max_iter: int, unconverged: set[float], deadline: float | None) -> list[np.ndarray]:
    """For each ``(train_x, train_y, eval_x)``: predictions on ``eval_x`` for each C (ascending; each problem's fits
    warm-started from its previous C). The C values are taken in turn across all problems; once ``deadline`` (a
    ``time.perf_counter()`` value) has passed, no further C is started (the first always is): the arrays then have
    fewer rows than ``cs``, and a C started with little time left gets only the lbfgs iterations that fit (the
    time of one is measured on the fits before)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    prepared = [(*_standardize(train_x, eval_x), train_y) for train_x, train_y, eval_x in problems]
    models = [LogisticRegression(C=cs[0], max_iter=max_iter, warm_start=True, random_state=seed) for _ in prepared]
    rows: list[list[np.ndarray]] = [[] for _ in prepared]
    per_iteration = 0.0  # seconds of one lbfgs iteration on these problems, the slowest seen
    for index, c in enumerate(cs):
        iterations = max_iter
        if index and deadline is not None:  # what is left of the time, in iterations of all the problems
            left = deadline - time.perf_counter()
            iterations = min(max_iter, int(left / max(1e-9, per_iteration * len(prepared))))
            if iterations < 1:
                break
        for model, (train_x, eval_x, train_y), out in zip(models, prepared, rows):
            model.set_params(C=c, max_iter=iterations)
            t0 = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                model.fit(train_x, train_y)
            per_iteration = max(per_iteration, (time.perf_counter() - t0) / max(1, int(np.max(model.n_iter_))))
            if any(issubclass(w.category, ConvergenceWarning) for w in caught):
                unconverged.add(c)
            out.append(model.predict(eval_x).astype(np.int64))
    return [np.stack(out) for out in rows]


def _fit_path(train_x: np.ndarray, train_y: np.ndarray, eval_x: np.ndarray, cs: tuple[float, ...], seed: int,
              max_iter: int, unconverged: set[float], deadline: float | None = None) -> np.ndarray:
    """Predictions on ``eval_x`` for each C (ascending, each fit warm-started from the previous one; see _paths)."""
    return _paths([(train_x, train_y, eval_x)], cs, seed, max_iter, unconverged, deadline)[0]


def _cross_validate(features: np.ndarray, codes: np.ndarray, cs: tuple[float, ...], folds: int, seed: int,
                    max_iter: int, unconverged: set[float], deadline: float | None = None) -> np.ndarray:
    """Out-of-fold predictions (C values fitted, N) of a stratified, shuffled, seeded k-fold (see _paths)."""
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    splits = list(splitter.split(features, codes))
    paths = _paths([(features[train], codes[train], features[held]) for train, held in splits], cs, seed, max_iter,
                   unconverged, deadline)
    out = np.empty((len(paths[0]), len(features)), dtype=np.int64)
    for (_, held_out), path in zip(splits, paths):
        out[:, held_out] = path
    return out


def _test_codes(test_labels: object, classes: np.ndarray, num_test: int) -> np.ndarray:
    """Test labels as codes of the training classes; a class the probe never saw is an error."""
    labels = np.asarray(test_labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or len(labels) != num_test:
        raise ShapeError("test_labels as (N_test,), one per test sample", f"shape {labels.shape} for {num_test} "
                         "test samples", "take test features and labels from the same samples")
    try:
        known = np.isin(labels, classes)
    except TypeError:
        known = np.zeros(len(labels), dtype=bool)
    if not known.all():
        unseen = sorted({str(v) for v in labels[~known].tolist()})
        raise LabelError("test labels among the training classes", f"{int((~known).sum())} test samples of "
                         f"classes absent from training: {unseen[:10]}",
                         "drop those samples, or add those classes to the training set (labels of the same type)")
    return np.searchsorted(classes, labels).astype(np.int64)


def linear_probe(train_features: object, train_labels: object, test_features: object = None,
                 test_labels: object = None, *, cs: Sequence[float] | None = None, folds: int = 5, seed: int = 0,
                 max_iter: int = 1000, choose_c: str = "cv", deadline: float | None = None) -> ProbeResult:
    """Accuracy of a multinomial logistic regression on frozen features (a "linear probe").

    Alain and Bengio, "Understanding intermediate layers using linear classifier probes", ICLR 2017
    workshop; the protocol of Kornblith, Shlens and Le, "Do Better ImageNet Models Transfer Better?",
    CVPR 2019 (L2-regularized logistic regression, C chosen by cross-validation on the training set).

    Features are standardized with the mean and std of the data each model is fitted on. C is chosen from
    ``cs`` (default 1e-4, 1e-3, 1e-2, 0.1, 1) by the accuracy of the out-of-fold predictions of a
    stratified ``folds``-fold split of the training set (shuffled with ``seed``; ties go to the smaller C);
    within a fold the fits run from the smallest C up, each warm-started from the previous one (lbfgs).
    With test arrays, the probe is refitted on the whole training set with that C and evaluated on the
    test set; without, the accuracy is that of the out-of-fold predictions at that C (slightly optimistic).
    ``folds`` is reduced to the size of the smallest class when that class has fewer samples (``notes``
    says so); a class with a single sample is an error. Labels are mapped by ``np.unique``.

    ``choose_c="eval"`` (with test arrays that are a validation split, never the final test set) fits the path
    of C once on the whole training set and keeps the C that does best on the evaluation split: one fit per C
    instead of ``folds + 1``, 5x faster with the defaults, and the accuracy is slightly optimistic (the best of
    ``len(cs)`` on the same samples). ``graft advise`` uses it; ``notes`` says so.

    ``deadline`` (a ``time.perf_counter()`` value): once it has passed, no further C of the grid is started (the
    smallest always is), so a budgeted measurement stops on time even where lbfgs converges slowly (nearly
    separable features: 45 s for one 256-wide layer of 381 samples, against 1 s for the layer above); ``notes``
    says how far the grid went.

    Time (2-core x86_64 CPU, idle, scikit-learn 1.9, lbfgs, 2 BLAS threads): N=5000, D=1280, 10 classes,
    default grid and folds: 6 to 9 s without a test set (25 warm-started fits on 4000 samples), about 6 s
    with a 4000 / 1000 train / test split (25 fits on 3200 samples, then one on 4000). Several times
    slower when other processes compete for the cores (BLAS threads then wait on each other).

    Shape:
        - train_features: (N, D); train_labels: (N,)
        - test_features: (N_test, D) and test_labels: (N_test,), both or neither; test classes must occur
          in training
        - returns: :class:`ProbeResult`
    """
    grid = _regularization_grid(cs)
    folds = positive_int(folds, "folds")
    max_iter = positive_int(max_iter, "max_iter")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise GraftError("seed as an integer", repr(seed), "pass for example seed=0")
    if folds < 2:
        raise GraftError("folds of 2 or more (cross-validation chooses C)", repr(folds), "use folds=5")
    features, mapped = features_and_labels(train_features, train_labels, features_name="train_features")
    notes: list[str] = []
    smallest = int(mapped.counts.min())
    if smallest < 2:
        single = [str(c) for c, n in zip(mapped.classes.tolist(), mapped.counts.tolist()) if n == 1]
        raise LabelError("at least 2 training samples in every class (one to fit, one to validate)",
                         f"{len(single)} classes with a single sample: {single[:10]}",
                         "collect more samples for those classes, or drop or merge them")
    if smallest < folds and choose_c == "cv":
        notes.append(f"folds reduced from {folds} to {smallest}: the smallest class has {smallest} samples")
        folds = smallest
    if (test_features is None) != (test_labels is None):
        raise GraftError("test_features and test_labels together, or neither", "only one of them",
                         "pass both to evaluate on a test set, or neither to report cross-validated accuracy")
    if choose_c not in ("cv", "eval"):
        raise GraftError("choose_c as 'cv' (cross-validation on the training set) or 'eval' (the evaluation split)",
                         repr(choose_c), "leave choose_c='cv' unless the test arrays are a validation split")
    if choose_c == "eval" and test_features is None:
        raise GraftError("test_features and test_labels with choose_c='eval'", "no evaluation split",
                         "pass a validation split's features and labels, or use choose_c='cv'")
    test = truth = None
    if test_features is not None:
        test = as_features(test_features, "test_features")
        if test.shape[1] != features.shape[1]:
            raise ShapeError("test_features with as many features as train_features",
                             f"{test.shape[1]} test features and {features.shape[1]} training features",
                             "take both from the same layer of the same model")
        truth = _test_codes(test_labels, mapped.classes, len(test))
    unconverged: set[float] = set()
    if choose_c == "eval":
        path = _fit_path(features, mapped.codes, test, grid, int(seed), max_iter, unconverged, deadline)
        grid = _searched(grid, len(path), notes)
        eval_accuracy = (path == truth[None, :]).mean(axis=1)
        best = int(np.argmax(eval_accuracy))
        notes.append(f"C chosen on the evaluation split ({len(truth)} samples): the accuracy is the best of "
                     f"{len(grid)} and slightly optimistic")
        return _result(path[best], truth, grid, best, eval_accuracy, "eval", folds, unconverged, max_iter, notes,
                       mapped.classes)
    out_of_fold = _cross_validate(features, mapped.codes, grid, folds, int(seed), max_iter, unconverged, deadline)
    full_grid, grid = grid, _searched(grid, len(out_of_fold), notes)
    cv_accuracy = (out_of_fold == mapped.codes[None, :]).mean(axis=1)
    best = int(np.argmax(cv_accuracy))  # the first maximum: the smallest C among ties
    chosen = grid[best]
    if len(grid) > 1 and best in (0, len(grid) - 1) and len(grid) == len(full_grid):
        notes.append(f"the chosen C={chosen:g} is at the {'low' if best == 0 else 'high'} end of the grid: "
                     "a wider cs may do better")
    if test_features is None:
        predictions, truth, evaluated_on = out_of_fold[best], mapped.codes, "cross-validation"
    else:
        predictions = _fit_path(features, mapped.codes, test, (chosen,), int(seed), max_iter, unconverged)[0]
        evaluated_on = "test"
    return _result(predictions, truth, grid, best, cv_accuracy, evaluated_on, folds, unconverged, max_iter, notes,
                   mapped.classes)


def _searched(grid: tuple[float, ...], fitted: int, notes: list[str]) -> tuple[float, ...]:
    """The part of ``grid`` that was fitted before the deadline, with a note when it is not all of it."""
    if fitted < len(grid):
        notes.append(f"C searched over {', '.join(f'{c:g}' for c in grid[:fitted])} of {len(grid)} values: the time "
                     "for measuring ran out (lbfgs converged slowly)")
    return grid[:fitted]


def _result(predictions: np.ndarray, truth: np.ndarray, grid: tuple[float, ...], best: int, accuracy_per_c,
            evaluated_on: str, folds: int, unconverged: set[float], max_iter: int, notes: list[str],
            classes: np.ndarray) -> ProbeResult:
    if unconverged:
        notes.append(f"lbfgs did not converge within max_iter={max_iter} for C in {sorted(unconverged)}: "
                     "raise max_iter for exact figures")
    correct = predictions == truth
    low, high = wilson_interval(int(correct.sum()), len(truth))
    per_class = {str(classes[c]): float(correct[truth == c].mean()) for c in np.unique(truth)}
    return ProbeResult(accuracy=float(correct.mean()), ci_low=low, ci_high=high, n_test=len(truth),
                       c=float(grid[best]), balanced_accuracy=float(np.mean(list(per_class.values()))),
                       per_class_accuracy=per_class, evaluated_on=evaluated_on, folds=folds,
                       cv_accuracy={f"{c:g}": float(a) for c, a in zip(grid, accuracy_per_c)}, notes=tuple(notes))
