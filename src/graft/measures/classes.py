"""Class statistics of a target dataset: how many classes, how balanced, how spread out in feature space."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial.distance import pdist

from graft.measures._inputs import as_labels, features_and_labels


@dataclass(frozen=True)
class ClassStatistics:
    """What :func:`class_statistics` found (JSON-ready through :meth:`to_dict`).

    ``samples_per_class`` maps each class (as a string, in ``np.unique`` order) to its count.
    ``imbalance_ratio`` = largest / smallest class. The spread fields are None without features:
    ``intra_class_spread`` is the mean over classes of the mean distance of a class's samples to their
    centroid, ``between_centroid_distance`` the mean distance between two class centroids (over all pairs),
    both on standardized features, and ``relative_spread`` their ratio (inf when all centroids coincide).
    """

    num_classes: int
    num_samples: int
    samples_per_class: dict[str, int]
    min_per_class: int
    median_per_class: float
    max_per_class: int
    imbalance_ratio: float
    intra_class_spread: float | None = None
    between_centroid_distance: float | None = None
    relative_spread: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return dataclasses.asdict(self)


def class_statistics(features: object, labels: object) -> ClassStatistics:
    """Counts per class, class imbalance and, with features, the spread of each class relative to the others.

    The spread is the classic within/between scatter ratio of Fisher's discriminant (Fisher, "The use of
    multiple measurements in taxonomic problems", Annals of Eugenics 1936), in distances rather than
    variances so that it reads in units of the feature space: features are standardized (each feature to
    mean 0 and std 1 over all samples; constant features are only centered), then
    ``relative_spread = mean_c mean_{i in c} ||z_i - mu_c|| / mean_{c < c'} ||mu_c - mu_c'||``.
    Below 1: classes are compact relative to the distances between them (easy for a linear probe); well
    above 1: classes overlap along most directions. Each class counts once in the mean, whatever its size.
    Labels are mapped to 0..C-1 by ``np.unique``; pass ``features=None`` for counts only.

    Shape:
        - features: (N, D) or None
        - labels: (N,), at least 2 classes
        - returns: :class:`ClassStatistics`
    """
    if features is None:
        mapped = as_labels(labels)
        array = None
    else:
        array, mapped = features_and_labels(features, labels)
    counts = mapped.counts
    base = dict(num_classes=mapped.num_classes, num_samples=int(counts.sum()),
                samples_per_class={str(c): int(n) for c, n in zip(mapped.classes.tolist(), counts.tolist())},
                min_per_class=int(counts.min()), median_per_class=float(np.median(counts)),
                max_per_class=int(counts.max()), imbalance_ratio=float(counts.max() / counts.min()))
    if array is None:
        return ClassStatistics(**base)
    scale = array.std(axis=0)
    scale[scale == 0] = 1.0
    standardized = (array - array.mean(axis=0)) / scale
    centroids = np.zeros((mapped.num_classes, array.shape[1]))
    np.add.at(centroids, mapped.codes, standardized)
    centroids /= counts[:, None]
    distances = np.linalg.norm(standardized - centroids[mapped.codes], axis=1)
    intra = float(np.mean(np.bincount(mapped.codes, weights=distances) / counts))
    between = float(np.mean(pdist(centroids)))
    relative = intra / between if between > 0 else math.inf
    return ClassStatistics(**base, intra_class_spread=intra, between_centroid_distance=between,
                           relative_spread=relative)
