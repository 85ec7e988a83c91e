"""Numbers from arrays: transferability scores, model ranking, linear probes, similarity, class statistics.

Pure numpy / scipy / scikit-learn: every function takes arrays (features, labels, statistics) and returns
numbers; nothing here sees a model. Inputs are validated at the boundary (``graft.errors`` subclasses
with what was expected, what arrived and how to fix it); labels that are not 0..C-1 are mapped by
``np.unique``.
"""

from graft.measures.classes import ClassStatistics, class_statistics
from graft.measures.probe import ProbeResult, linear_probe, wilson_interval
from graft.measures.ranking import rank_models, weighted_kendall_tau
from graft.measures.similarity import (
    batchnorm_shift,
    batchnorm_shift_per_channel,
    batchnorm_statistics_usable,
    frechet_distance,
    linear_cka,
)
from graft.measures.transferability import (
    h_score,
    log_expected_empirical_prediction,
    log_maximum_evidence,
    negative_conditional_entropy,
    regularized_h_score,
    transrate,
)

__all__ = [
    "ClassStatistics",
    "ProbeResult",
    "batchnorm_shift",
    "batchnorm_shift_per_channel",
    "batchnorm_statistics_usable",
    "class_statistics",
    "frechet_distance",
    "h_score",
    "linear_cka",
    "linear_probe",
    "log_expected_empirical_prediction",
    "log_maximum_evidence",
    "negative_conditional_entropy",
    "rank_models",
    "regularized_h_score",
    "transrate",
    "weighted_kendall_tau",
    "wilson_interval",
]
