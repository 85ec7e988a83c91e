"""The solved linear head against scikit-learn's logistic regression on the same standardized features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from graft.training.solve import C_GRID, solve_linear_head


def _blobs(n=240, d=12, classes=3, seed=0, spread=2.0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centers = rng.normal(0, spread, (classes, d))
    scale = rng.uniform(0.1, 50, d)  # badly scaled raw features: the solve standardizes them
    x = (centers[y] + rng.normal(0, 1.5, (n, d))) * scale + rng.normal(0, 100, d)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


@pytest.mark.parametrize("c", [0.1, 1.0])
def test_it_is_sklearns_logistic_regression(c):
    x, y = _blobs()
    solved = solve_linear_head(x, y, torch.zeros(3, 12), torch.zeros(3), c=c)
    scaler = StandardScaler().fit(x.double().numpy())
    reference = LogisticRegression(C=c, max_iter=10000, tol=1e-10).fit(scaler.transform(x.double().numpy()), y.numpy())
    ours = torch.softmax(x.double() @ solved.weight.double().T + solved.bias.double(), 1).numpy()
    theirs = reference.predict_proba(scaler.transform(x.double().numpy()))
    np.testing.assert_allclose(ours, theirs, atol=2e-4)
    assert solved.c == c and solved.val_accuracy is None and solved.iterations > 1


def test_the_strength_is_chosen_on_validation_rows():
    x, y = _blobs(n=120, d=40, spread=0.6, seed=1)
    xv, yv = _blobs(n=300, d=40, spread=0.6, seed=1)
    solved = solve_linear_head(x, y, torch.zeros(3, 40), torch.zeros(3), x_val=xv, y_val=yv)
    accuracies = {}
    for c in C_GRID:
        alone = solve_linear_head(x, y, torch.zeros(3, 40), torch.zeros(3), c=c)
        accuracies[c] = float(((xv @ alone.weight.T + alone.bias).argmax(1) == yv).float().mean())
    assert solved.c in C_GRID and solved.val_accuracy == pytest.approx(max(accuracies.values()), abs=0.01)
    assert solve_linear_head(x, y, torch.zeros(3, 40), torch.zeros(3)).c == 1.0  # no validation rows: C = 1


def test_a_head_without_bias():
    x, y = _blobs()
    solved = solve_linear_head(x - x.mean(0), y, torch.zeros(3, 12), None, c=1.0)
    assert torch.equal(solved.bias, torch.zeros(3)) and solved.train_accuracy > 0.8
