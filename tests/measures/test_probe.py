"""Linear probe: known accuracies on synthetic data, fold reduction, errors, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from graft.errors import GraftError, LabelError, ShapeError
from graft.measures import ProbeResult, linear_probe, wilson_interval


def blobs(n: int, d: int = 5, classes: int = 3, separation: float = 8.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    centres = rng.normal(size=(classes, d)) * separation
    return centres[labels] + rng.normal(size=(n, d)), labels


def test_separable_classes_are_classified_perfectly_on_a_test_set():
    features, labels = blobs(180)
    names = np.array(["ant", "bee", "cow"])[labels]
    result = linear_probe(features[:120], names[:120], features[120:], names[120:])
    assert isinstance(result, ProbeResult)
    assert result.evaluated_on == "test" and result.n_test == 60
    assert result.accuracy == 1.0 and result.balanced_accuracy == 1.0
    assert result.per_class_accuracy == {"ant": 1.0, "bee": 1.0, "cow": 1.0}
    assert result.ci_high == 1.0 and 0.93 < result.ci_low < 1.0
    assert result.c in (1e-4, 1e-3, 1e-2, 1e-1, 1.0) and set(result.cv_accuracy) == {"0.0001", "0.001", "0.01",
                                                                                      "0.1", "1"}


def test_cross_validated_accuracy_without_a_test_set():
    features, labels = blobs(150, separation=8.0)
    result = linear_probe(features, labels, cs=[0.01, 1.0])
    assert result.evaluated_on == "cross-validation" and result.n_test == 150 and result.folds == 5
    assert result.accuracy > 0.95
    noise = np.random.default_rng(3).normal(size=(150, 5))
    chance = linear_probe(noise, labels, cs=[0.01, 1.0])
    assert chance.accuracy < 0.6  # three balanced classes: chance is 1/3
    assert chance.ci_low < 1 / 3 + 0.15


def test_the_accuracy_on_a_test_set_uses_training_statistics_only():
    features, labels = blobs(120)
    shifted_test = features[60:] * 1000.0 + 1e6  # standardizing the test set by itself would hide this
    result = linear_probe(features[:60], labels[:60], shifted_test, labels[60:], cs=[1.0])
    assert result.accuracy < 0.8


def test_folds_are_reduced_for_a_small_class():
    features, labels = blobs(40, classes=2)
    labels = labels.copy()
    labels[np.flatnonzero(labels == 1)[3:]] = 0  # class 1 keeps 3 samples
    result = linear_probe(features, labels, cs=[1.0])
    assert result.folds == 3
    assert any("folds reduced from 5 to 3" in note for note in result.notes)


def test_a_class_with_a_single_sample_is_an_error():
    features, labels = blobs(30, classes=2)
    labels = labels.copy()
    labels[np.flatnonzero(labels == 1)[1:]] = 0
    with pytest.raises(LabelError, match="single sample") as caught:
        linear_probe(features, labels)
    assert "fix:" in str(caught.value)


def test_test_set_errors():
    features, labels = blobs(60)
    with pytest.raises(GraftError, match="together"):
        linear_probe(features, labels, features)
    with pytest.raises(ShapeError, match="as many features"):
        linear_probe(features, labels, features[:, :2], labels, cs=[1.0])
    with pytest.raises(LabelError, match="absent from training"):
        linear_probe(features, labels, features[:4], [0, 1, 7, 7], cs=[1.0])
    with pytest.raises(ShapeError, match="test_labels"):
        linear_probe(features, labels, features[:4], [0, 1], cs=[1.0])


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"cs": []}, "cs as a non-empty list"),
    ({"cs": [0.1, -1]}, "cs as a non-empty list"),
    ({"folds": 1}, "folds of 2 or more"),
    ({"folds": 2.5}, "positive integer"),
    ({"max_iter": 0}, "positive integer"),
    ({"seed": "zero"}, "seed as an integer"),
])
def test_bad_options(kwargs, words):
    features, labels = blobs(30)
    with pytest.raises(GraftError, match=words):
        linear_probe(features, labels, **kwargs)


def test_unconverged_fits_are_noted():
    features, labels = blobs(90, separation=0.5)
    result = linear_probe(features, labels, cs=[100.0], max_iter=1, folds=2)
    assert any("did not converge" in note for note in result.notes)


def test_result_round_trips_through_json():
    features, labels = blobs(60)
    result = linear_probe(features, labels, cs=[0.1, 1.0], folds=3)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["accuracy"] == result.accuracy and data["per_class_accuracy"] == result.per_class_accuracy
    assert ProbeResult(**{**data, "notes": tuple(data["notes"])}) == result


def test_wilson_interval_known_values():
    low, high = wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0


def test_same_seed_same_result():
    features, labels = blobs(90, separation=1.0)
    assert linear_probe(features, labels, cs=[0.1, 1.0]) == linear_probe(features, labels, cs=[0.1, 1.0])


def test_choosing_c_on_the_evaluation_split_matches_sklearn_fits_on_the_training_set():
    from sklearn.linear_model import LogisticRegression

    features, labels = blobs(300, d=20, separation=0.6, seed=4)
    train, val = slice(0, 200), slice(200, 300)
    grid = [1e-3, 1e-2, 1.0]
    result = linear_probe(features[train], labels[train], features[val], labels[val], cs=grid, choose_c="eval")
    mean, scale = features[train].mean(0), features[train].std(0)
    expected = {}
    for c in grid:  # each C fitted on all training samples, scored on the evaluation split
        model = LogisticRegression(C=c, max_iter=1000).fit((features[train] - mean) / scale, labels[train])
        expected[f"{c:g}"] = float((model.predict((features[val] - mean) / scale) == labels[val]).mean())
    assert result.evaluated_on == "eval" and result.n_test == 100
    assert result.cv_accuracy == pytest.approx(expected, abs=0.011)  # warm starts may move one sample
    assert result.accuracy == max(result.cv_accuracy.values()) and result.c == grid[
        list(result.cv_accuracy.values()).index(result.accuracy)]
    assert any("chosen on the evaluation split" in n for n in result.notes)
    assert len(set(expected.values())) > 1  # the choice is not trivial


def test_choose_c_needs_an_evaluation_split():
    features, labels = blobs(60)
    with pytest.raises(GraftError, match="choose_c='eval'"):
        linear_probe(features, labels, choose_c="eval")
    with pytest.raises(GraftError, match="choose_c as 'cv'"):
        linear_probe(features, labels, choose_c="test")


def test_a_deadline_that_has_passed_stops_the_search_of_c_after_the_first_value():
    import time

    features, labels = blobs(150)
    for test in ((), (features[100:], labels[100:])):
        train = (features[:100], labels[:100]) if test else (features, labels)
        result = linear_probe(*train, *test, deadline=time.perf_counter() - 1.0)
        assert result.c == 1e-4 and list(result.cv_accuracy) == ["0.0001"]
        assert any(n.startswith("C searched over 0.0001 of 5 values") for n in result.notes)
        assert not any("end of the grid" in n for n in result.notes)  # a cut grid has no "end" to speak of
        whole = linear_probe(*train, *test, deadline=time.perf_counter() + 60.0)
        assert list(whole.cv_accuracy) == ["0.0001", "0.001", "0.01", "0.1", "1"]
        assert whole == linear_probe(*train, *test)  # a deadline that is not reached changes nothing
