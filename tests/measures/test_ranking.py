"""Weighted Kendall tau reproduces tllib's published model-selection table; rank_models orders models."""

from __future__ import annotations

import json

import pytest

from graft.errors import DataError, ShapeError
from graft.measures import rank_models, weighted_kendall_tau
from tests.conftest import shared_file

CONSISTENT_ROWS = ["CIFAR10", "StanfordCars", "SUN397"]  # see ../shared/golden/README.md
SCORE_COLUMNS = ["HScore", "LEEP", "LogME", "NCE"]


@pytest.fixture(scope="module")
def tables():
    return json.loads(shared_file("golden", "tllib_model_selection_tables.json").read_text())


@pytest.mark.shared
@pytest.mark.parametrize("column", SCORE_COLUMNS)
@pytest.mark.parametrize("dataset", CONSISTENT_ROWS)
def test_reproduces_the_published_weighted_tau(tables, dataset, column):
    row = tables[dataset]
    tau = weighted_kendall_tau(row["columns"][column], row["columns"]["Finetuned Acc"])
    assert round(tau, 3) == pytest.approx(row["published_weighted_tau"][column], abs=1e-9)


@pytest.mark.shared
def test_dicts_keyed_by_model_name_give_the_same_tau(tables):
    row = tables["CIFAR10"]
    scores = dict(zip(row["models"], row["columns"]["LogME"]))
    accuracies = dict(zip(reversed(row["models"]), reversed(row["columns"]["Finetuned Acc"])))
    assert weighted_kendall_tau(scores, accuracies) == pytest.approx(
        weighted_kendall_tau(row["columns"]["LogME"], row["columns"]["Finetuned Acc"]))


def test_tau_known_answers():
    accuracies = [90.0, 80.0, 70.0, 60.0]
    assert weighted_kendall_tau([4, 3, 2, 1], accuracies) == pytest.approx(1.0)
    assert weighted_kendall_tau([1, 2, 3, 4], accuracies) == pytest.approx(-1.0)
    # A mistake among the best models costs more than the same mistake among the worst.
    top_swapped = weighted_kendall_tau([3, 4, 2, 1], accuracies)
    bottom_swapped = weighted_kendall_tau([4, 3, 1, 2], accuracies)
    assert top_swapped < bottom_swapped < 1.0


@pytest.mark.parametrize(("scores", "accuracies", "error", "words"), [
    ([1.0, 2.0], [1.0], ShapeError, "2 scores and 1 accuracies"),
    ([1.0], [1.0], DataError, "at least two models"),
    ([1.0, float("nan")], [1.0, 2.0], DataError, "NaN"),
    ([1.0, 1.0], [1.0, 2.0], DataError, "differ between models"),
    ({"a": 1.0, "b": 2.0}, {"a": 1.0, "c": 2.0}, DataError, "['b', 'c']"),
    ({"a": 1.0, "b": 2.0}, [1.0, 2.0], DataError, "both as dicts"),
    ([[1.0, 2.0]], [[1.0, 2.0]], ShapeError, "1-D"),
])
def test_bad_rankings(scores, accuracies, error, words):
    with pytest.raises(error, match=None) as caught:
        weighted_kendall_tau(scores, accuracies)
    assert words in str(caught.value)


def test_rank_models():
    scores = {"mobilenet": 0.5, "resnet": 0.9, "vgg": 0.5, "vit": 0.7}
    assert rank_models(scores) == [("resnet", 0.9), ("vit", 0.7), ("mobilenet", 0.5), ("vgg", 0.5)]
    assert [n for n, _ in rank_models(scores, higher_is_better=False)] == ["mobilenet", "vgg", "vit", "resnet"]
    with pytest.raises(DataError, match="empty"):
        rank_models({})
    with pytest.raises(DataError, match="dict"):
        rank_models([0.1, 0.2])
