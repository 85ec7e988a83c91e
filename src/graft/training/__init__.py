"""Doing it: the trainer every strategy runs on, runs that survive interruption, metrics and export."""

from graft.training.engine import RunState, Trainer
from graft.training.export import ExportError, ExportReport, export_model, load_exported
from graft.training.fit import FitResult, fit
from graft.training.metrics import ClassMetrics, Metrics, classification_report, plot_confusion, predict_classes
from graft.training.run import RunRecord, fine_tune, load_run, parse_budget

__all__ = ["ClassMetrics", "ExportError", "ExportReport", "FitResult", "Metrics", "RunRecord", "RunState", "Trainer",
           "classification_report", "export_model", "fine_tune", "fit", "load_exported", "load_run", "parse_budget",
           "plot_confusion", "predict_classes"]
