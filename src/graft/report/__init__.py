"""Showing it: plots and reports built from run artifacts (measures.json, history.jsonl, comparison.json...);
never runs a model."""

from graft.report.compare_plots import (
    plot_accuracy_vs_time,
    plot_history,
    plot_learning_curves,
    plot_per_class,
    render_comparison_plots,
    render_history_plot,
    write_comparison_plots,
)
from graft.report.html import render_report, report_sections, write_report
from graft.report.plots import plot_confusion, plot_layer_measures, plot_run

__all__ = ["plot_accuracy_vs_time", "plot_confusion", "plot_history", "plot_layer_measures", "plot_learning_curves", "plot_per_class",
           "plot_run", "render_comparison_plots", "render_history_plot", "render_report", "report_sections",
           "write_comparison_plots", "write_report"]
