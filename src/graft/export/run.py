"""``export_run``: a finished run's network, its normalization built in, to ONNX or TorchScript, verified."""

from __future__ import annotations

from pathlib import Path

from graft.data.transforms import BatchPreprocess, Preprocess
from graft.errors import GraftError
from graft.export.model import ExportReport, export_model
from graft.models import Backbone
from graft.training.run import load_run

FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}


def export_run(run, format: str = "onnx", out: str | Path | None = None, *,
               input_size: tuple[int, ...] | None = None) -> ExportReport:
    """Export a finished run's network (with its input normalization built in: it takes inputs as graft's
    loaders give them) to ONNX or TorchScript, and verify the written file by running it against the network.

    ``run`` is a run folder or a Backbone; ``out`` defaults to ``RUN/model.onnx`` (or ``model.pt``);
    ``input_size`` is needed only when the network does not record one. Returns the :class:`ExportReport`.
    """
    import torch

    if format not in FORMATS:
        raise GraftError("format onnx or torchscript", repr(format), "onnx is the one that lasts")
    backbone = run if isinstance(run, Backbone) else load_run(run)
    inp = backbone.spec.input
    size = tuple(input_size) if input_size else inp.size
    if inp.spatial_dims and not size:
        raise GraftError("the input size to export at", "none recorded in the network",
                         "pass input_size=(H, W) (graft export RUN --input-size H W)")
    if out is None:
        if isinstance(run, Backbone):
            raise GraftError("out= for a network that is not a run folder", "no path", "pass out='model.onnx'")
        out = Path(run) / FORMATS[format]
    example = torch.rand(2, inp.channels, *(size or ()))
    module = torch.nn.Sequential(BatchPreprocess(Preprocess(inp.mean, inp.std, None)), backbone.module).eval()
    return export_model(module, example, out, format=format)
