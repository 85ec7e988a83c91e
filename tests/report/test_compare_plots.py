"""Comparison plots from a comparison.json dict: real PNG files, means over seeds, nulls left out, bad input."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from matplotlib.image import imread

from graft.errors import GraftError
from graft.report import (
    plot_accuracy_vs_time,
    plot_history,
    plot_learning_curves,
    plot_per_class,
    render_comparison_plots,
    render_history_plot,
    write_comparison_plots,
)
from graft.report.compare_plots import _accuracy_vs_time_figure, _learning_curves_figure, _per_class_figure
from tests.report.test_html import PNG_SIGNATURE, comparison_example


@pytest.fixture(autouse=True)
def close_figures():
    """The figure builders leave their figures open for inspection: close them after each test."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def check_png(path, min_width: int = 300) -> None:
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    height, width = imread(path).shape[:2]
    assert width >= min_width and height >= 200


def texts(fig) -> str:
    """Every piece of text drawn on the figure: titles, labels, legends, annotations."""
    return " | ".join(t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")) if t.get_text())


def test_write_comparison_plots_writes_three_pngs(tmp_path):
    paths = write_comparison_plots(tmp_path / "cmp", comparison_example())
    assert [p.name for p in paths] == ["learning_curves.png", "accuracy_vs_time.png", "per_class.png"]
    for path in paths:
        check_png(path)
    assert sorted(p.name for p in (tmp_path / "cmp").iterdir()) == sorted(p.name for p in paths)  # no temp file


@pytest.mark.parametrize("plot", [plot_learning_curves, plot_accuracy_vs_time, plot_per_class])
def test_each_plot_returns_its_path(tmp_path, plot):
    path = tmp_path / "one.png"
    assert plot(comparison_example(), path) == path
    check_png(path)


def test_learning_curves_average_the_seeds_and_skip_missing_accuracies():
    fig = _learning_curves_figure(comparison_example())
    axis = fig.axes[0]
    lines = {line.get_label(): line for line in axis.get_lines()}
    assert set(lines) == {"linear (mean of 2 seeds)", "full"}  # scratch has no validation accuracy
    linear = lines["linear (mean of 2 seeds)"]
    assert np.allclose(linear.get_ydata(), [0.45, 0.65, 0.75])
    assert np.allclose(linear.get_xdata(), [2.25, 4.5, 6.75])  # elapsed seconds, averaged over the seeds
    assert axis.get_xlabel() == "training time (s)"
    by_epoch = _learning_curves_figure(comparison_example(), x="epoch")
    assert by_epoch.axes[0].get_xlabel() == "epoch"


def test_learning_curves_fall_back_to_epochs_without_elapsed_times():
    comparison = comparison_example()
    del comparison["strategies"][1]["runs"][0]["history"][0]["elapsed"]
    assert _learning_curves_figure(comparison).axes[0].get_xlabel() == "epoch"


def test_accuracy_vs_time_uses_test_else_validation_accuracy():
    fig = _accuracy_vs_time_figure(comparison_example())
    drawn = texts(fig)
    assert fig.axes[0].get_ylabel() == "test accuracy"
    assert "full (val) (best)" in drawn and "scratch" in drawn and "linear" in drawn
    no_test = copy.deepcopy(comparison_example())
    for strategy in no_test["strategies"]:
        for run in strategy["runs"]:
            run["test_accuracy"] = None
    fig = _accuracy_vs_time_figure(no_test)
    assert fig.axes[0].get_ylabel() == "validation accuracy" and "scratch" not in texts(fig)


def test_per_class_bars_follow_the_label_names():
    fig = _per_class_figure(comparison_example(["a$b", "$x$", "c"]))  # '$' is drawn literally, not as math
    axis = fig.axes[0]
    assert [t.get_text() for t in axis.get_xticklabels()] == [r"a\$b", r"\$x\$", "c"]
    assert len(axis.patches) == 9  # 3 classes x 3 strategies
    heights = sorted(round(p.get_height(), 3) for p in axis.patches)
    assert heights[:2] == [0.3, 0.4] and 0.85 in heights  # linear's first class: mean of 0.9 and 0.8


def test_plots_without_any_score_still_write_a_png(tmp_path):
    empty = {"model": "m", "data": "d", "strategies": [{"strategy": "linear", "runs": [
        {"seed": 0, "val_accuracy": None, "test_accuracy": None, "train_seconds": None, "history": [{"epoch": 1}]}]}]}
    for path in write_comparison_plots(tmp_path, empty):
        check_png(path, min_width=200)
    assert "no validation accuracy" in texts(_learning_curves_figure(empty))
    assert "no per-class recall" in texts(_per_class_figure(empty))


def test_render_comparison_plots_gives_png_bytes():
    rendered = render_comparison_plots(comparison_example())
    assert set(rendered) == {"learning_curves.png", "accuracy_vs_time.png", "per_class.png"}
    assert all(png.startswith(PNG_SIGNATURE) for png in rendered.values())


def test_history_plot(tmp_path):
    history = [{"epoch": 1, "phase": "head", "loss": 1.2, "train_accuracy": 0.4, "val_accuracy": 0.5, "val_loss": 1.1},
               {"epoch": 2, "phase": "everything", "loss": 0.9, "train_accuracy": 0.6, "val_accuracy": None}]
    check_png(plot_history(history, tmp_path / "history.png"))
    assert render_history_plot(history).startswith(PNG_SIGNATURE)
    assert render_history_plot([]).startswith(PNG_SIGNATURE)


@pytest.mark.parametrize("bad, got", [
    ([1, 2], "list"),
    ({"model": "m"}, "without a 'strategies' list"),
    ({"strategies": "linear"}, "without a 'strategies' list"),
])
def test_a_malformed_comparison_is_refused(tmp_path, bad, got):
    with pytest.raises(GraftError, match="expected a comparison") as caught:
        write_comparison_plots(tmp_path, bad)
    assert got in str(caught.value) and "comparison.json" in str(caught.value)
    assert not list(tmp_path.iterdir())


def test_an_unknown_x_axis_is_refused(tmp_path):
    with pytest.raises(GraftError, match="x in 'auto', 'elapsed', 'epoch'"):
        plot_learning_curves(comparison_example(), tmp_path / "x.png", x="seconds")
