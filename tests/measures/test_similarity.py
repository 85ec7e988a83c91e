"""Similarity measures on synthetic data with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group

from graft.errors import DataError, ShapeError
from graft.measures import (
    batchnorm_shift,
    batchnorm_shift_per_channel,
    batchnorm_statistics_usable,
    frechet_distance,
    linear_cka,
)

RNG = np.random.default_rng(0)
MEAN = RNG.normal(size=16)
VAR = RNG.uniform(0.5, 3.0, size=16)


def test_identical_statistics_give_zero():
    assert batchnorm_shift(MEAN, VAR, MEAN, VAR) == 0.0


@pytest.mark.parametrize("k", [0.5, 1.0, 3.0])
def test_a_shift_of_k_source_std_gives_k_squared(k):
    shifted = MEAN + k * np.sqrt(VAR)
    assert batchnorm_shift(MEAN, VAR, shifted, VAR, eps=0) == pytest.approx(k**2)
    assert batchnorm_shift_per_channel(MEAN, VAR, shifted, VAR, eps=0) == pytest.approx(np.full(16, k**2))


def test_a_variance_ratio_r_gives_the_jeffreys_value():
    assert batchnorm_shift(MEAN, VAR, MEAN, 2 * VAR, eps=0) == pytest.approx(0.25)
    assert batchnorm_shift(MEAN, 2 * VAR, MEAN, VAR, eps=0) == pytest.approx(0.25)  # symmetric


def test_shift_is_invariant_to_a_per_channel_rescaling_of_both():
    target_mean, target_var = MEAN + RNG.normal(size=16), VAR * RNG.uniform(0.5, 2, size=16)
    scale = RNG.uniform(0.01, 100, size=16)
    base = batchnorm_shift_per_channel(MEAN, VAR, target_mean, target_var, eps=0)
    rescaled = batchnorm_shift_per_channel(MEAN * scale, VAR * scale**2, target_mean * scale, target_var * scale**2,
                                           eps=0)
    assert rescaled == pytest.approx(base, rel=1e-9)


def test_shift_refuses_bad_statistics():
    with pytest.raises(ShapeError, match="same number of channels"):
        batchnorm_shift(MEAN, VAR, MEAN[:8], VAR[:8])
    with pytest.raises(DataError, match="negative"):
        batchnorm_shift(MEAN, -VAR, MEAN, VAR)
    with pytest.raises(DataError, match="NaN"):
        batchnorm_shift(MEAN, VAR, np.full(16, np.nan), VAR)
    with pytest.raises(DataError, match="eps"):
        batchnorm_shift(MEAN, np.zeros(16), MEAN, VAR, eps=0)
    with pytest.raises(ShapeError, match="1-D"):
        batchnorm_shift(np.zeros((2, 2)), VAR, MEAN, VAR)


def test_statistics_usable():
    assert batchnorm_statistics_usable(MEAN, VAR)
    assert not batchnorm_statistics_usable(np.zeros(8), np.ones(8))  # never updated
    assert not batchnorm_statistics_usable(np.array([0.0, np.nan]), np.ones(2))
    assert not batchnorm_statistics_usable(np.zeros(2), np.array([1.0, np.inf]))
    assert not batchnorm_statistics_usable(np.zeros(2), np.array([1.0, -1.0]))
    assert not batchnorm_statistics_usable([], [])
    assert not batchnorm_statistics_usable(np.zeros(3), np.ones(2))
    assert batchnorm_statistics_usable(np.zeros(8), np.full(8, 0.9))


def test_frechet_distance_known_answers():
    a = RNG.normal(size=(400, 6)) @ RNG.normal(size=(6, 6))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    shift = RNG.normal(size=6)
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-9)
    # b = s * a (around a's mean): Tr(S + s^2 S - 2 s S) = (1 - s)^2 Tr(S)
    centre = a.mean(0)
    b = centre + 3.0 * (a - centre)
    assert frechet_distance(a, b) == pytest.approx(4.0 * np.trace(np.cov(a, rowvar=False)), rel=1e-7)


def test_frechet_distance_matches_scipy_sqrtm():
    from scipy.linalg import sqrtm

    a, b = RNG.normal(size=(300, 5)), RNG.normal(size=(200, 5)) * 2 + 1
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(sa + sb - 2 * sqrtm(sa @ sb).real)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_refuses_different_layers():
    with pytest.raises(ShapeError, match="same layer"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(DataError, match="at least 2 samples"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))


@pytest.mark.parametrize("n", [50, 300])  # sample-space and feature-space Gram forms
def test_linear_cka_known_answers_and_invariances(n):
    x = RNG.normal(size=(n, 40))
    assert linear_cka(x, x) == pytest.approx(1.0)
    rotation = ortho_group.rvs(40, random_state=1)
    assert linear_cka(x, 7.5 * x @ rotation + 3.0) == pytest.approx(1.0)
    y = RNG.normal(size=(n, 10))
    value = linear_cka(x, y)
    assert 0.0 <= value < 0.9
    assert linear_cka(x @ rotation, y * 0.1) == pytest.approx(value)
    assert linear_cka(y, x) == pytest.approx(value)


def test_linear_cka_needs_paired_rows():
    with pytest.raises(ShapeError, match="frechet_distance"):
        linear_cka(np.zeros((10, 3)), np.ones((12, 3)))
    with pytest.raises(DataError, match="vary across samples"):
        linear_cka(np.ones((10, 3)), RNG.normal(size=(10, 3)))
