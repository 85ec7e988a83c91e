"""Class statistics: counts, imbalance and spread, with hand-computed answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from graft.errors import LabelError
from graft.measures import class_statistics


def test_counts_without_features():
    stats = class_statistics(None, ["b", "a", "b", "b", "c", "c"])
    assert stats.num_classes == 3 and stats.num_samples == 6
    assert stats.samples_per_class == {"a": 1, "b": 3, "c": 2}
    assert (stats.min_per_class, stats.median_per_class, stats.max_per_class) == (1, 2.0, 3)
    assert stats.imbalance_ratio == 3.0
    assert stats.intra_class_spread is None and stats.relative_spread is None
    assert json.loads(json.dumps(stats.to_dict())) == stats.to_dict()


def test_spread_by_hand():
    # 1-D: class 0 at {-3, -1}, class 1 at {1, 3}: distance to centroid 1, between centroids 4 (before
    # standardization; a ratio of distances on one feature does not change with its scale).
    features = np.array([[-3.0], [-1.0], [1.0], [3.0]])
    stats = class_statistics(features, [0, 0, 1, 1])
    assert stats.relative_spread == pytest.approx(0.25)
    assert stats.intra_class_spread == pytest.approx(1 / math.sqrt(5))
    assert stats.between_centroid_distance == pytest.approx(4 / math.sqrt(5))


def test_spread_is_invariant_to_feature_scale_and_ignores_constant_features():
    rng = np.random.default_rng(0)
    labels = np.arange(90) % 3
    features = rng.normal(size=(90, 4)) + labels[:, None]
    base = class_statistics(features, labels).relative_spread
    scaled = np.hstack([features * np.array([1.0, 100.0, 0.01, 5.0]), np.full((90, 1), 7.0)])
    assert class_statistics(scaled, labels).relative_spread == pytest.approx(base)


def test_separated_classes_spread_less_than_overlapping_ones():
    rng = np.random.default_rng(1)
    labels = np.arange(200) % 4
    centres = rng.normal(size=(4, 8))
    tight = centres[labels] * 10 + rng.normal(size=(200, 8))
    loose = centres[labels] * 0.1 + rng.normal(size=(200, 8))
    assert class_statistics(tight, labels).relative_spread < 0.5 < class_statistics(loose, labels).relative_spread


def test_coincident_centroids_give_infinite_relative_spread():
    features = np.array([[1.0], [-1.0], [1.0], [-1.0]])
    assert class_statistics(features, [0, 0, 1, 1]).relative_spread == math.inf


def test_single_class_is_an_error():
    with pytest.raises(LabelError, match="at least 2 different classes"):
        class_statistics(None, [1, 1, 1])
