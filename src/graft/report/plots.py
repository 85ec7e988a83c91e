"""Plots as PNG files, drawn with matplotlib's Agg backend (no display needed), written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from graft.measures.summary import Measures


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def plot_layer_measures(measures: Measures, path: str | Path) -> Path:
    """Per-layer curves: probe accuracy with its 95 % interval, the multilayer probe's accuracy (a horizontal line)
    and LogME (top), similarity (bottom)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    layers = measures.layers
    x = list(range(len(layers)))
    names = [e.name for e in layers]
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
    top.set_title(f"{measures.model} on {measures.data}")
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
