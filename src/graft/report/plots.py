"""Plots as PNG files, drawn with matplotlib's Agg backend (no display needed), written atomically."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from graft.errors import GraftError
from graft.files import write_atomic
from graft.measures.summary import Measures
from graft.training.metrics import Metrics

MAX_ANNOTATED_CLASSES = 20  # counts are written in the cells of a confusion matrix up to this many classes


def plain_text(value) -> str:
    """A label matplotlib draws literally: ``$`` would otherwise start mathtext (and may fail to parse: a class
    named ``$\\notacommand$`` took the run down after training)."""
    return str(value).replace("$", r"\$")


def _save(fig, path: Path) -> Path:
    """``fig`` as a PNG at ``path``, written atomically (graft.files.write_atomic)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return write_atomic(path, buffer.getvalue())


def plot_layer_measures(measures: Measures, path: str | Path) -> Path:
    """Per-layer curves: probe accuracy with its 95 % interval, the multilayer probe's accuracy (a horizontal line)
    and LogME (top), similarity (bottom)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    layers = measures.layers
    x = list(range(len(layers)))
    names = [plain_text(e.name) for e in layers]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6.0, 0.55 * len(layers) + 2), 6.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    probed = [(i, e) for i, e in zip(x, layers) if e.probe_accuracy is not None]
    if probed:
        xi = [i for i, _ in probed]
        top.fill_between(xi, [e.probe_low for _, e in probed], [e.probe_high for _, e in probed], color="C0",
                         alpha=0.2, label="95% interval")
        top.plot(xi, [e.probe_accuracy for _, e in probed], "o-", color="C0", label="linear-probe accuracy")
        top.set_ylabel("probe accuracy", color="C0")
    if measures.multilayer:
        top.axhline(measures.multilayer["accuracy"], color="C3", linestyle="-.", linewidth=1.2,
                    label=f"every layer, selected: {measures.multilayer['accuracy']:.3f}")
    scored = [(i, e.logme) for i, e in zip(x, layers) if e.logme is not None]
    handles, labels = top.get_legend_handles_labels()
    if scored:
        twin = top.twinx()
        twin.plot([i for i, _ in scored], [v for _, v in scored], "s--", color="C1", label="LogME")
        twin.set_ylabel("LogME", color="C1")
        more, more_labels = twin.get_legend_handles_labels()
        handles, labels = handles + more, labels + more_labels
    if measures.best_layer in names:
        top.axvline(names.index(measures.best_layer), color="0.4", linestyle=":", linewidth=1)
        top.annotate("best", (names.index(measures.best_layer), top.get_ylim()[1]), ha="center", va="bottom",
                     fontsize=8, color="0.3")
    top.set_title(plain_text(f"{measures.model} on {measures.data}"))
    if handles:
        top.legend(handles, labels, loc="lower right", fontsize=8)
    sims = [(i, e.similarity) for i, e in zip(x, layers) if e.similarity is not None]
    if sims:
        bottom.plot([i for i, _ in sims], [v for _, v in sims], "o-", color="C2")
        label = {"batchnorm": "BN shift (0 = like the source)",
                 "frechet": "relative Fréchet distance"}.get(measures.similarity_method, "distance")
        bottom.set_ylabel(label, fontsize=9)
    else:
        bottom.text(0.5, 0.5, "similarity not measured\n(no usable BatchNorm statistics; see measures.json)",
                    ha="center", va="center", transform=bottom.transAxes, fontsize=9, color="0.4")
        bottom.set_yticks([])
    bottom.set_xticks(x)
    bottom.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    bottom.set_xlabel("layer (input -> output)")
    fig.tight_layout()
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def plot_confusion(metrics: Metrics, path: str | Path) -> Path:
    """Draw the confusion matrix as a PNG: colors are row-normalized (recall), cells show the counts.

    Counts are written in the cells when there are at most 20 classes. The file is written atomically (a
    temporary file in the same folder, then renamed), so ``path`` never holds half a picture.
    """
    if not isinstance(metrics, Metrics):
        raise GraftError("a Metrics (from classification_report)", type(metrics).__name__,
                         "pass classification_report(y_true, y_pred, label_names)")
    path = Path(path).expanduser()
    if path.suffix.lower() != ".png":
        raise GraftError("a path ending in .png", str(path), f"write to {path.with_suffix('.png')}")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names = [plain_text(name) for name in metrics.label_names]
    counts = metrics.confusion_matrix
    rows = counts.sum(1, keepdims=True)
    fractions = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    n = len(names)
    side = min(max(4.5, 0.45 * n + 2.5), 30.0)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    try:
        image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
        ax.set_xticks(range(n), labels=names, rotation=45, ha="right", rotation_mode="anchor",
                      fontsize=8 if n > 10 else 10)
        ax.set_yticks(range(n), labels=names, fontsize=8 if n > 10 else 10)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(f"accuracy {metrics.accuracy:.3f}, balanced {metrics.balanced_accuracy:.3f} "
                     f"({metrics.num_samples} samples)")
        if n <= MAX_ANNOTATED_CLASSES:
            for i in range(n):
                for j in range(n):
                    if counts[i, j]:
                        ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8 if n > 10 else 10,
                                color="white" if fractions[i, j] > 0.5 else "black")
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_run(run_dir: str | Path) -> list[Path]:
    """Draw the plots of a run folder from its files: ``confusion.png`` from ``metrics.json``. Returns what it drew."""
    run_dir = Path(run_dir)
    drawn = []
    metrics = run_dir / "metrics.json"
    if metrics.is_file():
        saved = json.loads(metrics.read_text())
        saved.pop("split", None)
        drawn.append(plot_confusion(Metrics.from_dict(saved), run_dir / "confusion.png"))
    return drawn
