"""Every bad input fails at the public boundary with a GraftError that says what, got, and how to fix."""

from __future__ import annotations

import numpy as np
import pytest

from graft.errors import DataError, GraftError, LabelError, ShapeError
from graft.measures import (
    class_statistics,
    h_score,
    linear_probe,
    log_expected_empirical_prediction,
    log_maximum_evidence,
    negative_conditional_entropy,
    regularized_h_score,
    transrate,
)
from graft.measures._inputs import as_features, as_labels, as_probabilities, features_and_labels

FEATURE_SCORES = [log_maximum_evidence, h_score, regularized_h_score, transrate, class_statistics, linear_probe]
RNG = np.random.default_rng(0)
GOOD_FEATURES = RNG.normal(size=(12, 3))
GOOD_LABELS = np.arange(12) % 2


def _message(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "expected" in text and "got" in text and "fix:" in text, text
    return text


@pytest.mark.parametrize("score", FEATURE_SCORES, ids=lambda f: f.__name__)
@pytest.mark.parametrize(("features", "labels", "error", "words"), [
    (np.zeros((0, 3)), np.zeros(0, dtype=int), DataError, "empty"),
    (np.zeros((12, 0)), GOOD_LABELS, DataError, "empty"),
    (np.arange(12.0), GOOD_LABELS, ShapeError, "reshape(-1, 1)"),
    (np.zeros((12, 3, 2)), GOOD_LABELS, ShapeError, "3-D"),
    (GOOD_FEATURES, GOOD_LABELS[:10], ShapeError, "features and 10 labels"),
    (GOOD_FEATURES, np.zeros(12, dtype=int), LabelError, "1 class"),
    (GOOD_FEATURES, np.arange(12), LabelError, "every sample is its own class"),
    (GOOD_FEATURES, np.arange(12) * 0.5, LabelError, "fractional"),
    (np.array([["a", "b"]] * 12), GOOD_LABELS, DataError, "real numbers"),
], ids=["empty", "no-features", "1-D", "3-D", "lengths", "single-class", "own-class", "fractional", "strings"])
def test_bad_features_and_labels_are_refused(score, features, labels, error, words):
    if score is log_maximum_evidence and "own class" in words:  # defined: one indicator target per class
        assert np.isfinite(score(features, labels))
        return
    with pytest.raises(error) as caught:
        score(features, labels)
    assert words in _message(caught)


@pytest.mark.parametrize("score", FEATURE_SCORES, ids=lambda f: f.__name__)
def test_non_finite_features_say_how_many_rows(score):
    features = GOOD_FEATURES.copy()
    features[3, 0], features[5, 1], features[5, 2] = np.nan, np.inf, -np.inf
    with pytest.raises(DataError) as caught:
        score(features, GOOD_LABELS)
    text = _message(caught)
    assert "2 of 12 rows" in text and "3, 5" in text


def test_labels_not_0_to_c_minus_1_are_mapped_in_order():
    for labels, classes in (([3, 7, 9, 7], [3, 7, 9]), (["dog", "cat", "dog"], ["cat", "dog"]),
                            ([2.0, 5.0, 2.0], [2.0, 5.0]), ([[1], [0], [1]], [0, 1])):
        mapped = as_labels(labels)
        assert mapped.classes.tolist() == classes
        assert (mapped.classes[mapped.codes] == np.asarray(labels).reshape(-1)).all()
        assert mapped.counts.sum() == len(mapped.codes)
    assert as_labels([3, 7, 9, 7]).codes.tolist() == [0, 1, 2, 1]
    assert as_labels(["b", "a"]).one_hot().tolist() == [[0, 1], [1, 0]]


@pytest.mark.parametrize(("labels", "error", "words"), [
    ([0, 1, np.nan], LabelError, "NaN"),
    (np.zeros((3, 2)), ShapeError, "argmax"),
    ([], DataError, "empty"),
    (np.array([1, "a"], dtype=object), LabelError, "one type"),
    ([1 + 1j, 2], LabelError, "class ids"),
])
def test_bad_labels(labels, error, words):
    with pytest.raises(error) as caught:
        as_labels(labels)
    assert words in _message(caught)


def test_features_are_cast_to_float64_and_ragged_lists_refused():
    out = as_features(np.ones((2, 3), dtype=np.float32))
    assert out.dtype == np.float64 and out.flags.c_contiguous
    assert as_features([[True, False]]).dtype == np.float64
    with pytest.raises(ShapeError):
        as_features([[1.0, 2.0], [3.0]])
    with pytest.raises(DataError, match="real numbers"):
        as_features(np.ones((2, 2), dtype=complex))
    with pytest.raises(ShapeError, match="0-D"):
        as_features(3.0)


def test_min_per_class():
    with pytest.raises(LabelError, match="at least 3 samples in every class") as caught:
        features_and_labels(np.zeros((5, 2)), [0, 0, 0, 1, 1], min_per_class=3)
    assert "1 (2)" in str(caught.value)


def test_probabilities_must_be_probabilities():
    with pytest.raises(DataError, match="logits"):
        as_probabilities(np.array([[2.0, -1.0], [0.5, 0.5]]))
    with pytest.raises(DataError, match="sum to 1"):
        as_probabilities(np.array([[0.2, 0.2], [0.5, 0.5]]))
    with pytest.raises(ShapeError, match="as many labels"):
        log_expected_empirical_prediction(np.full((4, 2), 0.5), [0, 1, 0])
    with pytest.raises(ShapeError, match="as many labels"):
        negative_conditional_entropy([0, 1, 1], [0, 1, 0, 1])


def test_logme_needs_exactly_one_of_labels_and_targets():
    with pytest.raises(GraftError, match="neither"):
        log_maximum_evidence(GOOD_FEATURES)
    with pytest.raises(GraftError, match="both"):
        log_maximum_evidence(GOOD_FEATURES, GOOD_LABELS, targets=GOOD_LABELS)
    with pytest.raises(ShapeError, match="12 feature rows and 5 targets rows"):
        log_maximum_evidence(GOOD_FEATURES, targets=np.zeros(5))
    with pytest.raises(DataError, match="finite targets"):
        log_maximum_evidence(GOOD_FEATURES, targets=np.full(12, np.nan))


def test_transrate_eps_must_be_positive():
    with pytest.raises(GraftError, match="eps"):
        transrate(GOOD_FEATURES, GOOD_LABELS, eps=0)
