"""Input checks shared by every measure: features (N, D) finite floats, labels (N,) mapped to 0..C-1.

Every public function of ``graft.measures`` passes its arrays through these helpers first, so that a bad
input fails at once with a message that says what was expected, what arrived and how to fix it, instead
of a NaN score or a cryptic numpy error three calls deeper.

Labels that are not already 0..C-1 (``{3, 7, 9}``, ``["cat", "dog"]``, ``[1.0, 2.0]``) are mapped to
0..C-1 with ``np.unique``: code ``i`` is the ``i``-th smallest label value, and :class:`Labels` keeps the
original values in that order (``classes``), so that per-class results can be named.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graft.errors import DataError, LabelError, ShapeError


@dataclass(frozen=True)
class Labels:
    """Labels mapped to 0..C-1.

    Shape:
        - codes: (N,) int64, values in 0..C-1, every code present
        - classes: (C,) the original label values, sorted (``classes[codes]`` gives back the input)
        - counts: (C,) int64, samples per class
    """

    codes: np.ndarray
    classes: np.ndarray
    counts: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def one_hot(self) -> np.ndarray:
        """(N, C) float64 indicator matrix."""
        out = np.zeros((len(self.codes), self.num_classes))
        out[np.arange(len(self.codes)), self.codes] = 1.0
        return out


def _describe(array: np.ndarray) -> str:
    return f"a {array.ndim}-D array of shape {tuple(array.shape)} and dtype {array.dtype}"


def as_features(features: object, name: str = "features") -> np.ndarray:
    """``features`` as a C-contiguous (N, D) float64 array of finite values, or a clear error.

    Shape:
        - features: (N, D), any real dtype (ints and bools are cast); N >= 1, D >= 1
        - returns: (N, D) float64
    """
    try:
        array = np.asarray(features)
    except (TypeError, ValueError) as error:  # ragged nested lists
        raise ShapeError(f"{name} as a 2-D array (N samples, D features)", f"something numpy cannot stack: {error}",
                         "give every sample the same number of features") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DataError(f"{name} made of real numbers", _describe(array),
                        "convert them first, e.g. np.asarray(features, dtype=np.float32)")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise DataError(f"{name} made of real numbers", _describe(array), "pass the real part or the magnitude")
    if array.ndim != 2:
        if array.ndim == 1:
            fix = (f"if each sample has a single feature use {name}.reshape(-1, 1); if this is one sample use "
                   f"{name}.reshape(1, -1)")
        elif array.ndim == 0:
            fix = f"pass one row per sample, e.g. {name}=np.array([[0.1, 0.2], [0.3, 0.4]])"
        else:
            fix = (f"pool or flatten the trailing dimensions, e.g. {name}.mean(axis=(2, 3)) for (N, C, H, W) "
                   f"activations or {name}.reshape(len({name}), -1)")
        raise ShapeError(f"{name} as a 2-D array (N samples, D features)", _describe(array), fix)
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(f"{name} with at least one sample and one feature", f"an empty array of shape "
                        f"{tuple(array.shape)}", "check the split or the layer the features were taken from")
    array = np.ascontiguousarray(array, dtype=np.float64)
    finite = np.isfinite(array)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        first = ", ".join(str(i) for i in bad_rows[:5]) + (", ..." if len(bad_rows) > 5 else "")
        raise DataError(f"finite {name}", f"NaN or inf in {len(bad_rows)} of {len(array)} rows "
                        f"({int((~finite).sum())} values; rows {first})",
                        "drop those samples, or fix the layer that produced them (an overflow in float16, "
                        "a division by zero in a normalization)")
    return array


def as_labels(labels: object, name: str = "labels", min_classes: int = 2) -> Labels:
    """``labels`` mapped to 0..C-1 by ``np.unique``, or a clear error.

    Integers, integral floats (``1.0``), strings and booleans are accepted; a column vector (N, 1) is read
    as (N,). Labels with a fractional part are refused (they look like regression targets).

    Shape:
        - labels: (N,) or (N, 1), N >= 1
        - returns: :class:`Labels` with codes (N,), classes (C,), counts (C,)
    """
    try:
        array = np.asarray(labels)
    except (TypeError, ValueError) as error:
        raise LabelError(f"{name} as a 1-D array, one label per sample", f"something numpy cannot stack: {error}",
                         "pass a list or an array of class labels") from None
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        hint = (f"if these are one-hot vectors or probabilities use {name}.argmax(axis=1)" if array.ndim == 2
                else f"pass one label per sample, e.g. {name}=np.array([0, 1, 1, 0])")
        raise ShapeError(f"{name} as a 1-D array (N,), one class per sample", _describe(array), hint)
    if len(array) == 0:
        raise DataError(f"{name} with at least one sample", "an empty array", "check the split the labels came from")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise LabelError(f"finite {name}", f"NaN or inf in {int((~np.isfinite(array)).sum())} labels",
                             "drop the unlabeled samples first")
        if (array != np.round(array)).any():
            raise LabelError(f"{name} that are class ids (integers or names)",
                             f"values with a fractional part, e.g. {array[array != np.round(array)][0]!r}",
                             "for a regression target use log_maximum_evidence(features, targets=...); "
                             "otherwise round or encode the labels")
    elif np.issubdtype(array.dtype, np.complexfloating) or array.dtype.kind == "V":
        raise LabelError(f"{name} that are class ids (integers or names)", _describe(array),
                         "pass integers or strings")
    try:
        classes, codes, counts = np.unique(array, return_inverse=True, return_counts=True)
    except TypeError:  # an object array mixing types that cannot be sorted (1 and "a")
        raise LabelError(f"{name} of one type (all integers or all strings)",
                         f"mixed types: {sorted({type(v).__name__ for v in array.tolist()})}",
                         "convert them, e.g. np.asarray(labels, dtype=str)") from None
    if len(classes) < min_classes:
        raise LabelError(f"{name} with at least {min_classes} different classes",
                         f"{len(classes)} class ({classes[0]!r}, {len(array)} samples)",
                         "a score of how well features separate classes needs two classes or more; "
                         "check the label column, or that the split was not taken from a single class")
    return Labels(codes=codes.reshape(-1).astype(np.int64), classes=classes, counts=counts.astype(np.int64))


def same_length(first: np.ndarray, second: np.ndarray, first_name: str, second_name: str) -> None:
    """Raise a ShapeError unless ``first`` and ``second`` have the same number of samples."""
    if len(first) != len(second):
        raise ShapeError(f"as many {second_name} as {first_name} (one per sample)",
                         f"{len(first)} {first_name} and {len(second)} {second_name}",
                         "take both from the same samples, in the same order")


def features_and_labels(features: object, labels: object, min_per_class: int = 1,
                        features_name: str = "features") -> tuple[np.ndarray, Labels]:
    """Validated (N, D) float64 features and labels mapped to 0..C-1, for the class-conditional scores.

    Besides the checks of :func:`as_features` and :func:`as_labels`: same number of samples, at least two
    classes, fewer classes than samples (some class must have two samples, or no within-class statistic
    exists), and at least ``min_per_class`` samples in every class.

    Shape:
        - features: (N, D)
        - labels: (N,)
        - returns: ((N, D) float64, :class:`Labels`)
    """
    array = as_features(features, features_name)
    mapped = as_labels(labels)
    same_length(array, mapped.codes, features_name, "labels")
    if mapped.num_classes >= len(array):
        raise LabelError("fewer classes than samples (at least one class with two samples or more)",
                         f"{mapped.num_classes} classes for {len(array)} samples: every sample is its own class",
                         "pass the class of each sample, not its index; or collect more samples per class")
    if mapped.counts.min() < min_per_class:
        few = [f"{c!r} ({n})" for c, n in zip(mapped.classes.tolist(), mapped.counts.tolist()) if n < min_per_class]
        raise LabelError(f"at least {min_per_class} samples in every class",
                         f"{len(few)} classes below that: {', '.join(few[:10])}{', ...' if len(few) > 10 else ''}",
                         "collect more samples for those classes, or drop or merge them")
    return array, mapped


def as_targets(targets: object, num_samples: int, name: str = "targets") -> np.ndarray:
    """Regression targets as an (N, K) float64 array of finite values; (N,) is read as (N, 1).

    Shape:
        - targets: (N,) or (N, K)
        - returns: (N, K) float64
    """
    array = np.asarray(targets)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise ShapeError(f"{name} as (N,) or (N, K) regression targets", _describe(array),
                         f"reshape to one row per sample: {name}.reshape(len({name}), -1)")
    array = as_features(array, name)
    if len(array) != num_samples:
        raise ShapeError(f"as many {name} as features (one row per sample)",
                         f"{num_samples} feature rows and {len(array)} {name} rows",
                         "take both from the same samples, in the same order")
    return array


def as_probabilities(probabilities: object, name: str = "source_probs", tolerance: float = 1e-3) -> np.ndarray:
    """Rows of class probabilities (N, C_s): non-negative, finite, each row summing to 1.

    Shape:
        - probabilities: (N, C_s), C_s >= 1
        - returns: (N, C_s) float64
    """
    array = as_features(probabilities, name)
    if (array < 0).any():
        raise DataError(f"{name} as probabilities (non-negative)", f"{int((array < 0).sum())} negative values",
                        "pass softmax outputs, not logits: scipy.special.softmax(logits, axis=1)")
    sums = array.sum(axis=1)
    off = np.abs(sums - 1.0) > tolerance
    if off.any():
        raise DataError(f"{name} whose rows sum to 1", f"{int(off.sum())} of {len(array)} rows that do not "
                        f"(e.g. row {int(np.flatnonzero(off)[0])} sums to {sums[off][0]:.4g})",
                        "pass softmax outputs, not logits: scipy.special.softmax(logits, axis=1)")
    return array
