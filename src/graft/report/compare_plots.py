"""Plots of a strategy comparison (``comparison.json``): learning curves, accuracy vs time, per-class recall;
and the learning curves of one run (``history.jsonl``).

Each plot is drawn with matplotlib's Agg backend (no display needed) from the artifact's contents alone and
written atomically as a PNG (or returned as PNG bytes, to embed). The comparison holds one entry per strategy,
each with one run per seed::

    {"label_names": [...], "best": "full",
     "strategies": [{"strategy": "linear",
                     "runs": [{"seed": 0, "val_accuracy": 0.8, "test_accuracy": 0.78, "train_seconds": 12.3,
                               "per_class_recall": [...], "history": [{"epoch": 1, "val_accuracy": 0.5,
                                                                       "elapsed": 2.1}, ...]}],
                     "mean": {...}, "std": {...}}]}

Accuracies may be null (no test split, no validation split); such values are left out, never drawn as zero.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from graft.errors import GraftError
from graft.report.plots import plain_text

PLOT_FILES = ("learning_curves.png", "accuracy_vs_time.png", "per_class.png")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _number(value) -> float | None:
    """A finite float, or None for null, NaN, booleans and anything that is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _strategies(comparison) -> list[dict]:
    """The strategy entries, checked to be a list of objects with a name."""
    if not isinstance(comparison, dict) or not isinstance(comparison.get("strategies"), list):
        got = type(comparison).__name__ if not isinstance(comparison, dict) else "a dict without a 'strategies' list"
        raise GraftError("a comparison (the contents of comparison.json) with a 'strategies' list", got,
                         "pass json.load(open('comparison.json')) as written by graft compare")
    entries = [s for s in comparison["strategies"] if isinstance(s, dict)]
    return [{**s, "strategy": str(s.get("strategy", f"strategy {i + 1}"))} for i, s in enumerate(entries)]


def _runs(strategy: dict) -> list[dict]:
    return [r for r in strategy.get("runs") or [] if isinstance(r, dict)]


def _mean_std(values: list[float | None]) -> tuple[float | None, float, int]:
    """Mean, standard deviation and count of the values that are numbers."""
    found = [v for v in (_number(v) for v in values) if v is not None]
    if not found:
        return None, 0.0, 0
    return float(np.mean(found)), float(np.std(found)), len(found)


def _summary(strategy: dict, key: str) -> tuple[float | None, float, int]:
    """A strategy's mean and std of ``key`` over its runs; the stored ``mean``/``std`` when it has no runs."""
    runs = _runs(strategy)
    if runs:
        return _mean_std([r.get(key) for r in runs])
    mean = _number((strategy.get("mean") or {}).get(key))
    std = _number((strategy.get("std") or {}).get(key)) or 0.0
    return mean, std, int(mean is not None)


def _curve(runs: list[dict], x_key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validation accuracy per epoch, averaged over the runs that reached that epoch: (x, mean, std)."""
    by_epoch: dict[int, list[tuple[float, float]]] = {}
    for run in runs:
        for position, entry in enumerate(e for e in run.get("history") or [] if isinstance(e, dict)):
            accuracy = _number(entry.get("val_accuracy"))
            epoch = _number(entry.get("epoch"))
            epoch = int(epoch) if epoch is not None else position + 1
            x = epoch if x_key == "epoch" else _number(entry.get("elapsed"))
            if accuracy is not None and x is not None:
                by_epoch.setdefault(epoch, []).append((x, accuracy))
    epochs = sorted(by_epoch)
    xs = np.array([np.mean([p[0] for p in by_epoch[e]]) for e in epochs])
    means = np.array([np.mean([p[1] for p in by_epoch[e]]) for e in epochs])
    stds = np.array([np.std([p[1] for p in by_epoch[e]]) for e in epochs])
    return xs, means, stds


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=10, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _title(comparison: dict, what: str) -> str:
    model, data = comparison.get("model"), comparison.get("data")
    where = f": {model} on {data}" if model and data else ""
    return plain_text(what + where)


def _learning_curves_figure(comparison: dict, x: str = "auto"):
    if x not in ("auto", "elapsed", "epoch"):
        raise GraftError("x in 'auto', 'elapsed', 'epoch'", repr(x), "use x='elapsed' for seconds of training")
    plt = _pyplot()
    strategies = _strategies(comparison)
    if x == "auto":
        entries = [e for s in strategies for r in _runs(s) for e in r.get("history") or []
                   if isinstance(e, dict) and _number(e.get("val_accuracy")) is not None]
        x = "elapsed" if entries and all(_number(e.get("elapsed")) is not None for e in entries) else "epoch"
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    drawn = 0
    for index, strategy in enumerate(strategies):
        xs, means, stds = _curve(_runs(strategy), x)
        if not len(xs):
            continue
        seeds = len(_runs(strategy))
        label = plain_text(strategy["strategy"] + (f" (mean of {seeds} seeds)" if seeds > 1 else ""))
        width = 2.4 if strategy["strategy"] == comparison.get("best") else 1.5
        ax.plot(xs, means, "o-", color=f"C{index % 10}", linewidth=width, markersize=4, label=label)
        if seeds > 1:
            ax.fill_between(xs, means - stds, means + stds, color=f"C{index % 10}", alpha=0.15)
        drawn += 1
    if drawn:
        ax.set_xlabel("training time (s)" if x == "elapsed" else "epoch")
        ax.set_ylabel("validation accuracy")
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(alpha=0.3)
    else:
        _note(ax, "no validation accuracy was recorded\n(the data has no validation split)")
    ax.set_title(_title(comparison, "validation accuracy during training"))
    fig.tight_layout()
    return fig


def _accuracy_vs_time_figure(comparison: dict):
    plt = _pyplot()
    strategies = _strategies(comparison)
    has_test = any(_summary(s, "test_accuracy")[0] is not None for s in strategies)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    drawn = 0
    for index, strategy in enumerate(strategies):
        split = "test" if has_test else "val"
        accuracy, accuracy_std, count = _summary(strategy, f"{split}_accuracy")
        if accuracy is None and has_test:
            split = "val"
            accuracy, accuracy_std, count = _summary(strategy, "val_accuracy")
        seconds, seconds_std, _ = _summary(strategy, "train_seconds")
        if accuracy is None or seconds is None:
            continue
        best = strategy["strategy"] == comparison.get("best")
        several = count > 1
        ax.errorbar([seconds], [accuracy], xerr=[seconds_std] if several else None,
                    yerr=[accuracy_std] if several else None, fmt="*" if best else "o", markersize=13 if best else 7,
                    color=f"C{index % 10}", capsize=3)
        label = strategy["strategy"] + (" (val)" if has_test and split == "val" else "") + (" (best)" if best else "")
        ax.annotate(plain_text(label), (seconds, accuracy), textcoords="offset points", xytext=(6, 6), fontsize=8)
        drawn += 1
    if drawn:
        ax.set_xlabel("training time (s)")
        ax.set_ylabel(f"{'test' if has_test else 'validation'} accuracy")
        ax.grid(alpha=0.3)
        ax.margins(0.15)
    else:
        _note(ax, "no accuracy and training time to show")
    seeds = comparison.get("seeds")
    extra = f" (error bars: std over {len(seeds)} seeds)" if isinstance(seeds, list) and len(seeds) > 1 else ""
    ax.set_title(_title(comparison, "accuracy vs training time") + plain_text(extra), fontsize=10)
    fig.tight_layout()
    return fig


def _per_class_recall(strategy: dict, classes: int) -> np.ndarray | None:
    rows = []
    for run in _runs(strategy):
        recall = run.get("per_class_recall")
        if isinstance(recall, list) and len(recall) == classes:
            values = [_number(v) for v in recall]
            rows.append([np.nan if v is None else v for v in values])
    values = np.array(rows, dtype=float).reshape(-1, classes)
    counts = (~np.isnan(values)).sum(0)
    if not counts.any():
        return None
    return np.where(counts > 0, np.nansum(values, 0) / np.maximum(counts, 1), np.nan)


def _per_class_figure(comparison: dict):
    plt = _pyplot()
    strategies = _strategies(comparison)
    names = comparison.get("label_names")
    lengths = [len(r["per_class_recall"]) for s in strategies for r in _runs(s)
               if isinstance(r.get("per_class_recall"), list)]
    classes = len(names) if isinstance(names, list) and names else (max(lengths) if lengths else 0)
    names = [str(n) for n in names] if isinstance(names, list) and len(names) == classes else \
        [f"class {i}" for i in range(classes)]
    bars = [(s["strategy"], _per_class_recall(s, classes), i) for i, s in enumerate(strategies)] if classes else []
    bars = [b for b in bars if b[1] is not None]
    fig, ax = plt.subplots(figsize=(min(max(6.0, 0.35 * classes * max(len(bars), 1) + 2), 30.0), 4.5))
    if bars:
        width = 0.8 / len(bars)
        positions = np.arange(classes)
        for offset, (name, recall, index) in enumerate(bars):
            ax.bar(positions + (offset - (len(bars) - 1) / 2) * width, np.nan_to_num(recall), width,
                   color=f"C{index % 10}", label=plain_text(name))
        ax.set_xticks(positions)
        ax.set_xticklabels([plain_text(n) for n in names], rotation=45 if classes > 6 else 0,
                           ha="right" if classes > 6 else "center", fontsize=8 if classes > 10 else 9)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(f"recall on {plain_text(comparison.get('split') or 'the evaluation split')}")
        ax.legend(fontsize=8, ncols=min(len(bars), 4), loc="upper center", bbox_to_anchor=(0.5, -0.18 if
                  classes > 6 else -0.1))
        ax.grid(axis="y", alpha=0.3)
    else:
        _note(ax, "no per-class recall was recorded")
    ax.set_title(_title(comparison, "per-class accuracy (recall)"))
    fig.tight_layout()
    return fig


def _png(make: Callable, path: str | Path | io.BytesIO):
    """Draw ``make()``'s figure into ``path`` (atomically) or into a buffer, and close it."""
    plt = _pyplot()
    fig = make()
    try:
        if isinstance(path, io.BytesIO):
            fig.savefig(path, format="png", dpi=110, bbox_inches="tight")
            return path
        from graft.report.plots import _save

        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def _history_figure(history: list[dict]):
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    entries = [e for e in history if isinstance(e, dict)]
    epochs = [_number(e.get("epoch")) or i + 1 for i, e in enumerate(entries)]
    eval_keys = list(dict.fromkeys(k for e in entries for k in e if k.endswith("_accuracy") and k != "train_accuracy"))
    fig, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    for axis, keys in ((loss_axis, ["loss"] + [k.replace("accuracy", "loss") for k in eval_keys]),
                       (accuracy_axis, ["train_accuracy", *eval_keys])):
        for key in keys:
            points = [(x, _number(e.get(key))) for x, e in zip(epochs, entries) if _number(e.get(key)) is not None]
            if points:
                axis.plot(*zip(*points), "o-", markersize=4,
                          label=plain_text("train loss" if key == "loss" else key.replace("_", " ")))
        for x, before, after in zip(epochs[1:], entries, entries[1:]):
            if before.get("phase") != after.get("phase"):
                axis.axvline(x - 0.5, color="0.5", linestyle=":", linewidth=1)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    loss_axis.set_title("loss")
    accuracy_axis.set_title("accuracy (dotted: a new phase)")
    fig.tight_layout()
    return fig


def plot_history(history: list[dict], path: str | Path) -> Path:
    """One run's learning curves from its ``history.jsonl`` entries: train and evaluation loss (left), train and
    evaluation accuracy (right) per epoch, a dotted line where a new training phase starts."""
    return _png(lambda: _history_figure(history), path)


def render_history_plot(history: list[dict]) -> bytes:
    """:func:`plot_history` as PNG bytes (nothing is written)."""
    return _png(lambda: _history_figure(history), io.BytesIO()).getvalue()


def plot_learning_curves(comparison: dict, path: str | Path, *, x: str = "auto") -> Path:
    """Validation accuracy per epoch of every strategy on one figure, the mean over seeds (shaded: +- std).

    ``x``: ``"elapsed"`` (seconds of training), ``"epoch"``, or ``"auto"`` (seconds when every entry records
    them). Entries without a validation accuracy are left out. Returns the PNG's path.
    """
    return _png(lambda: _learning_curves_figure(comparison, x), path)


def plot_accuracy_vs_time(comparison: dict, path: str | Path) -> Path:
    """Test accuracy (validation accuracy when there is no test split) against training seconds: one labelled
    point per strategy, error bars of one std when several seeds ran, the best strategy drawn as a star."""
    return _png(lambda: _accuracy_vs_time_figure(comparison), path)


def plot_per_class(comparison: dict, path: str | Path) -> Path:
    """Per-class recall (the accuracy on each class's samples) as grouped bars, one bar per strategy (mean over
    seeds), classes in ``label_names`` order."""
    return _png(lambda: _per_class_figure(comparison), path)


def render_comparison_plots(comparison: dict) -> dict[str, bytes]:
    """The three comparison plots as PNG bytes, keyed by their file names (nothing is written)."""
    figures = dict(zip(PLOT_FILES, (_learning_curves_figure, _accuracy_vs_time_figure, _per_class_figure)))
    return {name: _png(lambda make=make: make(comparison), io.BytesIO()).getvalue() for name, make in figures.items()}


def write_comparison_plots(folder: str | Path, comparison: dict) -> list[Path]:
    """Write ``learning_curves.png``, ``accuracy_vs_time.png`` and ``per_class.png`` into ``folder``."""
    folder = Path(folder)
    _strategies(comparison)
    return [plot_learning_curves(comparison, folder / PLOT_FILES[0]),
            plot_accuracy_vs_time(comparison, folder / PLOT_FILES[1]),
            plot_per_class(comparison, folder / PLOT_FILES[2])]
