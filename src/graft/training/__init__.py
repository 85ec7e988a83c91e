"""Doing it: the trainer every strategy runs on, runs that survive interruption, metrics."""

from graft.training.engine import RunState, Trainer
from graft.training.fit import FitResult, fit
from graft.training.metrics import ClassMetrics, Metrics, classification_report, predict_classes
from graft.training.run import RunRecord, fine_tune, load_run, parse_budget

__all__ = ["ClassMetrics", "FitResult", "Metrics", "RunRecord", "RunState", "Trainer",
           "classification_report", "fine_tune", "fit", "load_run", "parse_budget",
           "predict_classes"]
