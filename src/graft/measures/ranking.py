"""Model selection: rank candidate models by a score, and judge a score by how well it ranks them.

A transferability score is useful when ordering models by it orders them by their accuracy after
fine-tuning, above all at the top (nobody cares which of the two worst models is worse). tllib and the
LogME papers measure this with the weighted Kendall tau of Vigna (2015), hyperbolic weights, computed by
``scipy.stats.weightedtau``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from graft.errors import DataError, ShapeError


def _finite_vector(values: object, name: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{name} as numbers, one per model", f"{values!r}"[:200],
                        "pass a list of floats or a dict {model name: float}") from None
    if array.ndim != 1:
        raise ShapeError(f"{name} as a 1-D sequence, one number per model", f"shape {array.shape}",
                         "pass one number per model")
    if not np.isfinite(array).all():
        raise DataError(f"finite {name}", f"{int((~np.isfinite(array)).sum())} NaN or inf values",
                        "drop the models whose score could not be computed")
    return array


def _paired(scores: object, accuracies: object) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(scores, Mapping) != isinstance(accuracies, Mapping):
        raise DataError("scores and accuracies both as dicts keyed by model name, or both as sequences",
                        f"a {type(scores).__name__} and a {type(accuracies).__name__}",
                        "pass two dicts with the same keys, or two lists in the same model order")
    if isinstance(scores, Mapping):
        if set(scores) != set(accuracies):
            missing = sorted(map(str, set(scores) ^ set(accuracies)))
            raise DataError("scores and accuracies for the same models", f"models in only one of them: {missing}",
                            "score and evaluate the same models")
        names = list(scores)
        scores, accuracies = [scores[n] for n in names], [accuracies[n] for n in names]
    score_array = _finite_vector(scores, "scores")
    accuracy_array = _finite_vector(accuracies, "accuracies")
    if len(score_array) != len(accuracy_array):
        raise ShapeError("one score and one accuracy per model", f"{len(score_array)} scores and "
                         f"{len(accuracy_array)} accuracies", "take both from the same models, in the same order")
    if len(score_array) < 2:
        raise DataError("at least two models to rank", f"{len(score_array)}", "score two models or more")
    return score_array, accuracy_array


def weighted_kendall_tau(scores: Sequence[float] | Mapping[str, float],
                         accuracies: Sequence[float] | Mapping[str, float]) -> float:
    """Weighted Kendall tau between the ranking of models by ``scores`` and by their ``accuracies``.

    Vigna, "A Weighted Correlation Index for Rankings with Ties", WWW 2015; used to judge transferability
    scores in You et al., "LogME", ICML 2021 and in thuml/Transfer-Learning-Library
    (examples/model_selection). Computed as tllib does: ``scipy.stats.weightedtau(accuracies, scores)``
    with hyperbolic weights 1 / (r + 1) on the rank r given by the accuracies (the accuracy comes first:
    the order matters, since the weights follow the first argument's ranking). This reproduces tllib's
    published table to its 3 decimals.

    Shape:
        - scores: (M,) one score per model, or a dict {model name: score}
        - accuracies: (M,) the same models' accuracy after fine-tuning (same order, or a dict with the same
          keys), M >= 2
        - returns: float in [-1, 1]: 1 when the score orders the models as their accuracy does
    """
    from scipy.stats import weightedtau

    score_array, accuracy_array = _paired(scores, accuracies)
    for array, name in ((score_array, "scores"), (accuracy_array, "accuracies")):
        if np.ptp(array) == 0:
            raise DataError(f"{name} that differ between models", f"the same value {array[0]!r} for every model",
                            "a ranking by a constant says nothing; check that the right column was passed")
    return float(weightedtau(accuracy_array, score_array).statistic)


def rank_models(scores: Mapping[str, float], higher_is_better: bool = True) -> list[tuple[str, float]]:
    """Models sorted from best to worst by their score (ties keep the order of ``scores``).

    Ranking candidate backbones by a transferability score, as in You et al., "LogME", ICML 2021, sec. 5.

    Shape:
        - scores: dict {model name: score} with M >= 1 finite scores
        - returns: list of M (name, score) pairs, best first
    """
    if not isinstance(scores, Mapping):
        raise DataError("scores as a dict {model name: score}", type(scores).__name__,
                        "pass for example {'resnet50': 0.93, 'mobilenet_v2': 0.88}")
    if not scores:
        raise DataError("at least one model to rank", "an empty dict", "score some models first")
    values = _finite_vector(list(scores.values()), "scores")
    order = np.argsort(-values if higher_is_better else values, kind="stable")
    names = list(scores)
    return [(names[i], float(values[i])) for i in order]
