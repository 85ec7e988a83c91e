"""Showing it: plots and reports built from run artifacts (measures.json, history.jsonl); never runs a model."""

from graft.report.plots import plot_layer_measures

__all__ = ["plot_layer_measures"]
