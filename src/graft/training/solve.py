"""A linear head fit to convergence: multinomial logistic regression on frozen features, by L-BFGS.

The features are standardized (per dimension, from the training rows) for the solve and the scaling is folded
back into the weights, so the head works on the raw features it receives. The L2 strength follows
scikit-learn's ``C`` (the penalty ``||W||^2 / (2 C N)`` on the mean cross-entropy; the bias is not penalized),
and is chosen from ``C_GRID`` by accuracy on validation rows when there are any (warm-started from one ``C`` to
the next), else ``C = 1``. The test split is never used to choose.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

C_GRID = (0.01, 0.1, 1.0, 10.0)
MAX_ITER = 300  # per C; in float32 with a gradient tolerance of 1e-5 (a probe, not a certificate)


@dataclass(frozen=True)
class Solved:
    weight: torch.Tensor  # (C, D), on raw features
    bias: torch.Tensor  # (C,)
    c: float
    val_accuracy: float | None
    train_loss: float
    train_accuracy: float
    iterations: int


def _fit(z: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, c: float,
         smoothing: float, fit_bias: bool) -> tuple[torch.Tensor, torch.Tensor, int]:
    weight = weight.clone().requires_grad_(True)
    bias = bias.clone().requires_grad_(fit_bias)
    solver = torch.optim.LBFGS([weight, bias] if fit_bias else [weight], lr=1, max_iter=MAX_ITER,
                               tolerance_grad=1e-5, tolerance_change=1e-9, history_size=20,
                               line_search_fn="strong_wolfe")
    loss_fn = nn.CrossEntropyLoss(label_smoothing=smoothing)
    n = len(y)

    def closure():
        solver.zero_grad()
        loss = loss_fn(z @ weight.T + bias, y) + (weight ** 2).sum() / (2 * c * n)
        loss.backward()
        return loss

    with torch.enable_grad():
        solver.step(closure)
    return weight.detach(), bias.detach(), int(solver.state[weight].get("n_iter", 0))


def solve_linear_head(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, *,
                      x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None, c: float | None = None,
                      label_smoothing: float = 0.0) -> Solved:
    """Fit ``logits = x @ W.T + b`` to ``y``, starting from the head's ``weight``/``bias`` (kept rows warm-start).

    ``c``: a fixed strength; default: the best of ``C_GRID`` on ``(x_val, y_val)``, or 1 without them."""
    x, y = x.float(), y.long()
    fit_bias = bias is not None
    std = x.std(0, correction=0).clamp_min(1e-6)  # as StandardScaler
    # centring would add a bias of its own: a head without one is fit on scaled, uncentred features
    mean = x.mean(0) if fit_bias else torch.zeros_like(std)
    z = (x - mean) / std
    b_raw = bias.float() if fit_bias else torch.zeros(weight.shape[0], device=weight.device)
    w_z = weight.float() * std  # the head's weights seen on standardized features
    b_z = b_raw + weight.float() @ mean
    grid = (c,) if c is not None else (C_GRID if x_val is not None and len(x_val) else (1.0,))
    best, iterations = None, 0
    for strength in grid:  # most regularized first; each solve starts where the previous one ended
        w_z, b_z, n_iter = _fit(z, y, w_z, b_z, strength, label_smoothing, fit_bias)
        iterations += n_iter
        score = None
        if x_val is not None and len(x_val):
            z_val = (x_val.float() - mean) / std
            score = float(((z_val @ w_z.T + b_z).argmax(1) == y_val.long()).float().mean())
        if best is None or (score is not None and score > best[3]):
            best = (w_z.clone(), b_z.clone(), strength, score)
    w_z, b_z, strength, score = best
    weight_raw = w_z / std
    bias_raw = b_z - weight_raw @ mean
    logits = z @ w_z.T + b_z
    loss = float(nn.functional.cross_entropy(logits, y))
    accuracy = float((logits.argmax(1) == y).float().mean())
    return Solved(weight_raw.float(), bias_raw.float(), strength, score, loss, accuracy, iterations)
