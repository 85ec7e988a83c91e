"""LogME (classification) wall time: graft's batched implementation vs the per-class reference algorithm.

For each case, random Gaussian class-clustered features (seeded: class centres ~ N(0, 1), samples =
centre + N(0, 1), classes of equal size, float64):

- graft (batched): ``graft.measures.log_maximum_evidence(features, labels)`` as a user calls it, input
  checks included. For N > D it decomposes the (D, D) Gram matrix once (LAPACK tridiagonal reduction,
  the eigenvectors of the tridiagonal matrix, the reflectors applied to ``F.T Y`` only: the (D, D)
  eigenvector matrix and the (N, D) matrix of left singular vectors are never formed), projects all the
  one-hot targets at once, and runs the fixed-point iteration of every class in the same numpy arrays
  (a class stops updating once converged).
- per class (the baseline): thuml/LogME ``LogME._fit_fixed_point`` transcribed to numpy (the reference
  uses numba only for its ICML-2021 variant and for ``truncated_svd``): one decomposition as the
  reference does it (``np.linalg.svd`` of ``F.T F``, then ``U = F V / s``), then a Python loop over
  classes, each with its own fixed-point loop (at most 11 iterations, stop at 1e-3 relative change).
- naive (only for the small case): the same per-class loop, but recomputing the decomposition for every
  class, as code that calls a one-target LogME once per class would.

Reported: the median wall time of ``--repeats`` timed runs (default 3; five times as many for the small
case, whose runs take about 0.1 s and vary by 2x with the machine's jitter) after one untimed warm-up, the
ratio baseline / graft, and the relative difference of the two scores. Within a case the runs are
interleaved (graft, per class, [naive], then the next round), so that a change in the machine's load hits
all of them alike. The breakdown columns time the decomposition (with the projection of the targets
for graft) and the class loop of each implementation separately (medians of ``--repeats`` extra runs).
Nothing is set: numpy uses its BLAS's default threads (2 here).

    python bench/logme_speed.py [--out results.json] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, markdown_table, write_json  # noqa: E402

from graft.measures import log_maximum_evidence  # noqa: E402
from graft.measures.transferability import _fixed_point, _spectrum  # noqa: E402

CASES = [  # (N, D, C, run the naive variant, repeats multiplier: the small case takes a tenth of a second)
    (10_000, 2048, 100, False, 1),
    (5_000, 512, 10, True, 5),
]


def clustered_features(n: int, d: int, c: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % c
    centres = rng.normal(size=(c, d))
    return centres[labels] + rng.normal(size=(n, d)), labels


def reference_decomposition(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """thuml/LogME: ``truncated_svd`` for N > D, ``np.linalg.svd`` otherwise; returns (u, s)."""
    n, d = f.shape
    if n > d:
        _, s, vh = np.linalg.svd(f.T @ f)
        s = np.sqrt(s)
        k = int(np.sum(s > 1e-10))
        return (f @ vh.T)[:, :k] / s[:k], s[:k]
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    return u, s


def reference_one_class(u: np.ndarray, s: np.ndarray, y: np.ndarray, n: int, d: int) -> float:
    """thuml/LogME ``_fit_fixed_point``, the body of its loop over classes."""
    s = s.reshape(-1, 1)
    sigma = s**2
    y = y.reshape(-1, 1)
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
        t_ = alpha / beta
        if abs(t_ - t) / t <= 1e-3:
            break
    evidence = (d / 2.0 * np.log(alpha) + n / 2.0 * np.log(beta) - 0.5 * np.sum(np.log(alpha + beta * sigma))
                - beta / 2.0 * res2 - alpha / 2.0 * m2 - n / 2.0 * np.log(2 * np.pi))
    return float(evidence / n)


def per_class(f: np.ndarray, labels: np.ndarray, timings: dict[str, float] | None = None) -> float:
    n, d = f.shape
    t0 = time.perf_counter()
    u, s = reference_decomposition(f)
    t1 = time.perf_counter()
    evidences = [reference_one_class(u, s, (labels == i).astype(np.float64), n, d) for i in range(labels.max() + 1)]
    if timings is not None:
        timings.update(decomposition=t1 - t0, class_loop=time.perf_counter() - t1)
    return float(np.mean(evidences))


def naive(f: np.ndarray, labels: np.ndarray) -> float:
    n, d = f.shape
    evidences = []
    for i in range(labels.max() + 1):
        u, s = reference_decomposition(f)
        evidences.append(reference_one_class(u, s, (labels == i).astype(np.float64), n, d))
    return float(np.mean(evidences))


def graft_breakdown(f: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """graft's two steps timed apart: decomposition + projection of all targets, then the batched loop."""
    one_hot = np.eye(labels.max() + 1)[labels]
    t0 = time.perf_counter()
    sigma, projections = _spectrum(f, one_hot)
    t1 = time.perf_counter()
    _fixed_point(sigma, projections, (one_hot**2).sum(axis=0), *f.shape)
    return {"decomposition": t1 - t0, "class_loop": time.perf_counter() - t1}


def run_case(n: int, d: int, c: int, with_naive: bool, repeats: int) -> dict[str, Any]:
    features, labels = clustered_features(n, d, c)
    runners = {"graft": lambda: log_maximum_evidence(features, labels), "per_class": lambda: per_class(features, labels)}
    if with_naive:
        runners["naive"] = lambda: naive(features, labels)
    values = {name: fn() for name, fn in runners.items()}  # the warm-up, and the scores compared
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, fn in runners.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    parts: dict[str, list[dict[str, float]]] = {"graft": [], "per_class": []}
    for _ in range(repeats):
        parts["graft"].append(graft_breakdown(features, labels))
        reference_parts: dict[str, float] = {}
        per_class(features, labels, reference_parts)
        parts["per_class"].append(reference_parts)
    breakdown = {name: {step: statistics.median(run[step] for run in runs) for step in ("decomposition", "class_loop")}
                 for name, runs in parts.items()}
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {
        "n": n, "d": d, "classes": c, "repeats": repeats,
        "scores": values,
        "relative_difference": {name: abs(v - values["per_class"]) / abs(values["per_class"])
                                for name, v in values.items()},
        "median_s": medians,
        "times_s": times,
        "speedup_vs_per_class": medians["per_class"] / medians["graft"],
        "speedup_vs_naive": medians["naive"] / medians["graft"] if with_naive else None,
        "breakdown_s": breakdown,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="optional path of a JSON file for the results")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per implementation (default 3)")
    args = parser.parse_args()
    env = environment()
    results = [run_case(n, d, c, naive_too, args.repeats * factor) for n, d, c, naive_too, factor in CASES]
    rows = []
    for r in results:
        parts = r["breakdown_s"]
        rows.append([
            f"{r['n']:,} x {r['d']:,}, {r['classes']} classes",
            f"{r['median_s']['graft']:.2f} s",
            f"{r['median_s']['per_class']:.2f} s",
            f"{r['speedup_vs_per_class']:.1f}x",
            f"{r['median_s']['naive']:.2f} s ({r['speedup_vs_naive']:.0f}x)" if r["speedup_vs_naive"] else "not run",
            f"{r['relative_difference']['graft']:.1e}",
            f"{parts['graft']['decomposition']:.2f} + {parts['graft']['class_loop']:.2f}",
            f"{parts['per_class']['decomposition']:.2f} + {parts['per_class']['class_loop']:.2f}",
        ])
    print(markdown_table(["features", "graft (batched)", "per class (reference)", "speedup", "naive (speedup)",
                          "score rel. diff", "graft: decomp. + loop", "per class: decomp. + loop"], rows))
    print(f"\nmachine: {env}")
    write_json(args.out, {"environment": env, "cases": results})


if __name__ == "__main__":
    main()
