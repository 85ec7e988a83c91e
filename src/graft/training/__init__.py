"""Doing it: training loops (a small supervised trainer for now; the full engine builds on it)."""

from graft.training.fit import FitResult, fit

__all__ = ["FitResult", "fit"]
