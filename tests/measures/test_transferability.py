"""Transferability scores: the golden vectors of the reference implementations, known answers, invariances."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graft.measures import (
    h_score,
    log_expected_empirical_prediction,
    log_maximum_evidence,
    negative_conditional_entropy,
    regularized_h_score,
    transrate,
)
from tests.conftest import shared_file

CASES = ["gauss_sep", "gauss_weak", "wide", "big", "imbalanced"]
TOLERANCE = {"logme": 1e-3, "logme_regression": 1e-3, "leep": 1e-6, "nce": 1e-6, "h_score": 1e-6,
             "regularized_h_score": 1e-6, "transrate": 1e-6}
SCORES = {
    "logme": lambda d: log_maximum_evidence(d["features"], d["labels"]),
    "logme_regression": lambda d: log_maximum_evidence(d["features"], targets=d["regression_targets"]),
    "leep": lambda d: log_expected_empirical_prediction(d["source_probs"], d["labels"]),
    "nce": lambda d: negative_conditional_entropy(d["source_argmax"], d["labels"]),
    "h_score": lambda d: h_score(d["features"], d["labels"]),
    "regularized_h_score": lambda d: regularized_h_score(d["features"], d["labels"]),
    "transrate": lambda d: transrate(d["features"], d["labels"]),
}


@pytest.fixture(scope="module")
def golden():
    expected = json.loads(shared_file("golden", "expected.json").read_text())
    cases = {}
    for name in CASES:
        with np.load(shared_file("golden", f"case_{name}.npz")) as data:
            cases[name] = {k: data[k] for k in data.files}
            cases[name]["features"] = cases[name]["features"].astype(np.float64)
    return expected, cases


@pytest.mark.shared
@pytest.mark.parametrize("score", list(SCORES))
@pytest.mark.parametrize("case", CASES)
def test_reproduces_the_reference_implementations(golden, case, score):
    expected, cases = golden
    got = SCORES[score](cases[case])
    assert got == pytest.approx(expected[case][score], rel=TOLERANCE[score])


def reference_logme(features: np.ndarray, targets: np.ndarray) -> float:
    """thuml/LogME LogME._fit_fixed_point transcribed: one decomposition, then one loop per target column."""
    n, d = features.shape
    if n > d:
        _, s, vh = np.linalg.svd(features.T @ features)
        s = np.sqrt(s)
        k = int(np.sum(s > 1e-10))
        u = (features @ vh.T)[:, :k] / s[:k]
        s, vh = s[:k], vh[:k]
    else:
        u, s, vh = np.linalg.svd(features, full_matrices=False)
    s = s.reshape(-1, 1)
    sigma = s**2
    evidences = []
    for i in range(targets.shape[1]):
        y = targets[:, i : i + 1]
        x = u.T @ y
        x2 = x**2
        res_x2 = (y**2).sum() - x2.sum()
        alpha, beta = 1.0, 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = (sigma / (sigma + t)).sum()
            m2 = (sigma * x2 / ((t + sigma) ** 2)).sum()
            res2 = (x2 / ((1 + sigma / t) ** 2)).sum() + res_x2
            alpha = gamma / (m2 + 1e-5)
            beta = (n - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t) / t <= 1e-3:
                break
        evidence = (d / 2.0 * np.log(alpha) + n / 2.0 * np.log(beta) - 0.5 * np.sum(np.log(alpha + beta * sigma))
                    - beta / 2.0 * res2 - alpha / 2.0 * m2 - n / 2.0 * np.log(2 * np.pi))
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def clustered(n: int, d: int, c: int, separation: float = 1.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % c
    centers = rng.normal(size=(c, d)) * separation
    return centers[labels] + rng.normal(size=(n, d)), labels


@pytest.mark.parametrize("shape", [(300, 20, 4), (60, 100, 3), (200, 200, 5), (400, 30, 12)])
def test_logme_batched_equals_the_per_class_reference(shape):
    features, labels = clustered(*shape)
    one_hot = np.eye(shape[2])[labels]
    assert log_maximum_evidence(features, labels) == pytest.approx(reference_logme(features, one_hot), rel=1e-9)
    targets = np.random.default_rng(1).normal(size=(shape[0], 3))
    assert log_maximum_evidence(features, targets=targets) == pytest.approx(reference_logme(features, targets),
                                                                            rel=1e-9)


def test_logme_on_rank_deficient_features_matches_the_reference():
    features, labels = clustered(300, 20, 4)
    features = np.hstack([features, np.zeros((300, 5)), features[:, :3]])  # dead units and copies
    assert log_maximum_evidence(features, labels) == pytest.approx(reference_logme(features, np.eye(4)[labels]),
                                                                   rel=1e-6)


@pytest.mark.parametrize("size", [10, 200])  # np.linalg.eigh, then the tridiagonal route
def test_eigen_projection_equals_eigh(size):
    from graft.measures.transferability import _eigen_projection

    rng = np.random.default_rng(size)
    factor = rng.normal(size=(size + 5, size))
    gram, right = factor.T @ factor, rng.normal(size=(size, 3))
    values, vectors = np.linalg.eigh(gram)
    got_values, rotated = _eigen_projection(gram.copy(), right)
    assert got_values == pytest.approx(values, rel=1e-9)
    assert rotated**2 == pytest.approx((vectors.T @ right) ** 2, rel=1e-6, abs=1e-9)


def test_logme_does_not_change_when_a_dead_unit_is_appended():
    features, labels = clustered(300, 20, 4)
    with_dead = np.hstack([features, np.zeros((300, 2))])
    assert log_maximum_evidence(with_dead, labels) == pytest.approx(log_maximum_evidence(features, labels), rel=1e-9)


def test_logme_prefers_informative_features_and_a_linear_target():
    features, labels = clustered(400, 16, 4, separation=3.0)
    noise = np.random.default_rng(5).normal(size=features.shape)
    assert log_maximum_evidence(features, labels) > log_maximum_evidence(noise, labels)
    weights = np.random.default_rng(6).normal(size=(16, 1))
    linear = features @ weights
    assert log_maximum_evidence(features, targets=linear) > log_maximum_evidence(features, targets=noise[:, :1])
    assert log_maximum_evidence(features, targets=linear[:, 0]) == log_maximum_evidence(features, targets=linear)


def test_labels_that_are_not_0_to_c_minus_1_are_mapped():
    features, labels = clustered(120, 8, 3)
    names = np.array(["cat", "dog", "emu"])[labels]
    sparse = np.array([3, 7, 9])[labels]
    for score in (log_maximum_evidence, h_score, regularized_h_score, transrate):
        base = score(features, labels)
        assert score(features, sparse) == pytest.approx(base, rel=1e-12)
        assert score(features, names) == pytest.approx(base, rel=1e-12)
    probs = np.full((120, 4), 0.25)
    assert log_expected_empirical_prediction(probs, names) == pytest.approx(
        log_expected_empirical_prediction(probs, labels))
    assert negative_conditional_entropy(sparse, names) == pytest.approx(negative_conditional_entropy(labels, labels))


def test_h_score_of_class_indicator_features_is_the_number_of_classes_minus_one():
    labels = np.arange(60) % 4
    assert h_score(np.eye(4)[labels], labels) == pytest.approx(3.0, rel=1e-9)


def test_leep_and_nce_known_answers():
    labels = np.arange(90) % 3
    perfect = np.eye(3)[labels]
    assert log_expected_empirical_prediction(perfect, labels) == pytest.approx(0.0, abs=1e-12)
    assert negative_conditional_entropy(labels, labels) == pytest.approx(0.0, abs=1e-12)
    # A source model that predicts one class for everything says nothing: NCE = -H(Y), LEEP = log(1/3).
    assert negative_conditional_entropy(np.zeros(90, dtype=int), labels) == pytest.approx(-np.log(3))
    uniform = np.full((90, 5), 0.2)
    assert log_expected_empirical_prediction(uniform, labels) == pytest.approx(np.log(1 / 3))


def test_leep_ignores_a_source_class_nobody_predicts():
    labels = np.arange(40) % 2
    probs = np.zeros((40, 3))
    probs[:, 0], probs[:, 1] = 0.7 * (labels == 0) + 0.3 * (labels == 1), 0.3 * (labels == 0) + 0.7 * (labels == 1)
    assert np.isfinite(log_expected_empirical_prediction(probs, labels))


def test_transrate_gram_shortcut_equals_the_direct_formula():
    features, labels = clustered(40, 64, 2, seed=3)  # N < D: the N x N Gram matrix is used

    def rate(f):
        n, d = f.shape
        return 0.5 * np.linalg.slogdet(np.eye(d) + f.T @ f / (n * 1e-4))[1]

    centered = features - features.mean(0)
    direct = rate(centered) - (rate(centered[labels == 0]) + rate(centered[labels == 1])) / 2
    assert transrate(features, labels) == pytest.approx(direct, rel=1e-9)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), classes=st.integers(2, 5), wide=st.booleans())
def test_scores_are_finite_and_invariant_to_renaming_classes(seed, classes, wide):
    rng = np.random.default_rng(seed)
    n, d = (30, 50) if wide else (80, 6)
    labels = np.arange(n) % classes
    features = rng.normal(size=(n, d)) + labels[:, None]
    renamed = rng.permutation(classes)[labels] + 10
    probs = rng.dirichlet(np.ones(4), size=n)
    pairs = [
        (lambda y: log_maximum_evidence(features, y), 1e-9),
        (lambda y: h_score(features, y), 1e-6),
        (lambda y: regularized_h_score(features, y), 1e-9),
        (lambda y: transrate(features, y), 1e-9),
        (lambda y: log_expected_empirical_prediction(probs, y), 1e-12),
        (lambda y: negative_conditional_entropy(probs.argmax(1), y), 1e-12),
    ]
    for score, tolerance in pairs:
        value = score(labels)
        assert np.isfinite(value)
        assert score(renamed) == pytest.approx(value, rel=tolerance, abs=1e-12)
