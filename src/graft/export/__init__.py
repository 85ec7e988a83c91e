"""Taking a trained network out of graft: ONNX or TorchScript files, each verified by running it against the
network (``export_model``), and a finished run's network with its input normalization built in (``export_run``)."""

from graft.export.model import ExportError, ExportReport, ExportedModel, export_model, load_exported
from graft.export.run import export_run

__all__ = ["ExportError", "ExportReport", "ExportedModel", "export_model", "export_run", "load_exported"]
