"""Classification metrics from predictions: accuracy, balanced accuracy, macro F1, per-class table, confusion.

:func:`classification_report` turns class indices (true and predicted) into a :class:`Metrics`, a frozen
dataclass that round-trips through JSON and prints as a table (:meth:`Metrics.render`); graft.report.plots draws it as a PNG
(:func:`plot_confusion`). :func:`predict_classes` gets the indices from a network and a DataLoader.

Only :func:`predict_classes` needs torch; it imports it when called, so the rest works on arrays alone.

Shape
-----
y_true, y_pred: (N,) integer class indices in ``0 .. C-1`` where ``C = len(label_names)``.
confusion: (C, C), rows = true class, columns = predicted class, in ``label_names`` order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from io import StringIO
from typing import Any

import numpy as np

from graft.errors import GraftError, LabelError, ShapeError
from graft.jsonable import JsonSerializable
from graft.validation import label_names as check_label_names



@dataclass(frozen=True)
class ClassMetrics(JsonSerializable):
    """One class's precision, recall and F1 (0 where undefined) and its number of true samples."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Metrics(JsonSerializable):
    """Scores of a classifier on one set of samples.

    Attributes
    ----------
    accuracy: fraction of samples predicted right.
    balanced_accuracy: mean recall over the classes that have samples (classes absent from ``y_true``
        have no recall and are left out, as in ``sklearn.metrics.balanced_accuracy_score``).
    macro_f1: mean F1 over the classes that occur in ``y_true`` or ``y_pred``; a class absent from both has
        nothing to measure and is left out, a class only predicted counts with F1 = 0.
    num_samples: N.
    label_names: the C class names, in index order.
    per_class: one :class:`ClassMetrics` per class, in index order (classes without samples included).
    confusion: C x C counts, rows = true class, columns = predicted class.
    """

    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    num_samples: int
    label_names: tuple[str, ...]
    per_class: tuple[ClassMetrics, ...]
    confusion: tuple[tuple[int, ...], ...]

    @property
    def confusion_matrix(self) -> np.ndarray:
        """The confusion counts as a (C, C) int64 array."""
        return np.asarray(self.confusion, dtype=np.int64).reshape(len(self.label_names), len(self.label_names))

    def render(self, width: int = 100) -> str:
        """A summary line, the per-class table, and notes on classes never seen or never predicted."""
        from graft.text import console as text_console
        from rich.table import Table

        buf = StringIO()
        console = text_console(buf, width=width, plain=True)
        console.print(f"{self.num_samples} samples, {len(self.label_names)} classes: accuracy {self.accuracy:.3f}, "
                      f"balanced accuracy {self.balanced_accuracy:.3f}, macro F1 {self.macro_f1:.3f}",
                      highlight=False)
        table = Table(show_edge=False, pad_edge=False, box=None)
        for col, justify in (("class", "left"), ("precision", "right"), ("recall", "right"), ("F1", "right"),
                             ("support", "right")):
            table.add_column(col, justify=justify, overflow="fold")
        for c in self.per_class:
            table.add_row(c.name, f"{c.precision:.3f}", f"{c.recall:.3f}", f"{c.f1:.3f}", str(c.support))
        console.print(table)
        matrix = self.confusion_matrix
        absent = [n for n, c in zip(self.label_names, self.per_class) if c.support == 0]
        never = [n for n, col in zip(self.label_names, matrix.sum(0)) if col == 0]
        if absent:
            console.print(f"no samples of: {', '.join(absent)} (left out of the balanced accuracy)", highlight=False)
        if never:
            console.print(f"never predicted: {', '.join(never)}", highlight=False)
        return buf.getvalue().rstrip()


def classification_report(y_true: Any, y_pred: Any, label_names: Sequence[str]) -> Metrics:
    """Score predicted class indices ``y_pred`` against the true ones ``y_true``.

    ``y_true`` and ``y_pred`` are 1-D sequences (lists, numpy arrays, CPU tensors) of integer indices
    into ``label_names``. Every class of ``label_names`` gets a row of the table and of the confusion
    matrix, even one with no sample and no prediction.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    names = check_label_names(label_names)
    if not names:
        raise LabelError("at least one label name", "an empty list", "pass the class names, e.g. ['cat', 'dog']")
    num_classes = len(names)
    truth = _class_indices(y_true, "y_true", names)
    pred = _class_indices(y_pred, "y_pred", names)
    if len(truth) != len(pred):
        raise ShapeError("y_true and y_pred of the same length (one prediction per sample)",
                         f"{len(truth)} true labels and {len(pred)} predictions",
                         "predict every sample once, in the same order as y_true")
    if len(truth) == 0:
        raise GraftError("at least one sample to score", "empty y_true and y_pred", "pass the predictions of a "
                         "non-empty split")
    labels = list(range(num_classes))
    precision, recall, f1, support = precision_recall_fscore_support(truth, pred, labels=labels, zero_division=0)
    matrix = confusion_matrix(truth, pred, labels=labels)
    present = support > 0
    occurring = present | (matrix.sum(0) > 0)
    per_class = tuple(ClassMetrics(name, float(p), float(r), float(f), int(s))
                      for name, p, r, f, s in zip(names, precision, recall, f1, support))
    return Metrics(
        accuracy=float(np.mean(truth == pred)),
        balanced_accuracy=float(np.mean(recall[present])),
        macro_f1=float(np.mean(f1[occurring])),
        num_samples=int(len(truth)),
        label_names=names,
        per_class=per_class,
        confusion=tuple(tuple(int(v) for v in row) for row in matrix),
    )


def _class_indices(values: Any, name: str, names: tuple[str, ...]) -> np.ndarray:
    """``values`` as a 1-D int64 array of indices in 0..C-1, or a clear error naming the bad values."""
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise GraftError(f"{name} as a 1-D sequence of class indices", f"{type(values).__name__} ({exc})",
                         "pass a list or numpy array of ints") from None
    if arr.ndim == 0:
        raise ShapeError(f"{name} as a 1-D sequence of class indices", f"a single value {arr.item()!r}",
                         "pass one index per sample, e.g. [0, 2, 1]")
    if arr.ndim == 2 and arr.shape[1] == len(names) and arr.dtype.kind == "f":
        raise ShapeError(f"{name} as class indices of shape (N,)", f"scores of shape {arr.shape}",
                         f"pass {name}.argmax(1): the index of the highest score of each sample")
    if arr.ndim != 1:
        raise ShapeError(f"{name} as class indices of shape (N,)", f"an array of shape {arr.shape}",
                         "flatten it, or pass argmax over the class axis of scores")
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype.kind in "US" or arr.dtype == object and any(isinstance(v, str) for v in arr):
        sample = ", ".join(repr(v) for v in list(dict.fromkeys(arr.tolist()))[:3])
        raise LabelError(f"{name} as integer class indices", f"names like {sample}",
                         "map names to indices first: [label_names.index(n) for n in names]")
    if arr.dtype.kind == "b":
        raise LabelError(f"{name} as integer class indices", "booleans",
                         "convert to ints (0 and 1) and pass two label names")
    if arr.dtype.kind not in "iuf":
        raise LabelError(f"{name} as integer class indices", f"values of type {arr.dtype}", "pass a list of ints")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            raise LabelError(f"{name} as whole-number class indices", f"{_describe(arr, bad)}",
                             "pass the index of the predicted class (argmax), not a score or probability")
    bad = (arr < 0) | (arr >= len(names))
    if bad.any():
        shown = ", ".join(repr(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")
        raise LabelError(f"{name} in 0..{len(names) - 1} ({len(names)} classes: {shown})", _describe(arr, bad),
                         "pass one label name per class index, or check that the labels and names come from "
                         "the same dataset")
    return arr.astype(np.int64)


def _describe(arr: np.ndarray, bad: np.ndarray) -> str:
    """'values 3, 7 (at positions 4, 9)', listing at most 5 distinct values and 5 positions."""
    positions = np.flatnonzero(bad)
    values = list(dict.fromkeys(_plain(v) for v in arr[positions]))
    shown = ", ".join(str(v) for v in values[:5]) + (", ..." if len(values) > 5 else "")
    where = ", ".join(str(int(p)) for p in positions[:5]) + (", ..." if len(positions) > 5 else "")
    return f"value{'s' if len(values) > 1 else ''} {shown} (at position{'s' if len(positions) > 1 else ''} {where})"


def _plain(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    return int(value) if isinstance(value, float) and value.is_integer() else value


def predict_classes(module: Any, loader: Any, device: str = "cpu", autocast=None) -> tuple[np.ndarray, np.ndarray]:
    """Run ``module`` over ``loader``'s (x, y) batches; return (y_true, y_pred) as int64 arrays.

    The module runs in eval mode under ``torch.inference_mode`` and gets its training flag back afterwards.
    Batches are moved to ``device``; the module is expected to be there already (``module.to(device)``).
    ``autocast``: a callable giving the context each batch runs in (``Runtime.autocast``).
    """
    import contextlib

    import torch

    if not isinstance(module, torch.nn.Module):
        raise GraftError("a torch.nn.Module", type(module).__name__, "pass the network (backbone.module)")
    device = torch.device(device)
    was_training = module.training
    module.eval()
    truths: list[np.ndarray] = []
    preds: list[np.ndarray] = []
    try:
        with torch.inference_mode():
            for i, batch in enumerate(loader):
                if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                    raise GraftError("a DataLoader of (x, y) batches", f"batch {i} is {_kind(batch)}",
                                     "use a dataset whose items are (input, class index) pairs")
                x, y = batch
                with autocast() if autocast is not None else contextlib.nullcontext():
                    out = module(x.to(device, non_blocking=device.type == "cuda"))
                if not isinstance(out, torch.Tensor) or out.ndim != 2:
                    got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
                    raise ShapeError("network outputs of shape (batch, classes)", got,
                                     "pass a classifier (with its head), not a feature extractor")
                if len(out) != len(y):
                    raise ShapeError("one output per sample", f"{len(out)} outputs for {len(y)} labels",
                                     "check the network's forward")
                truths.append(np.asarray(torch.as_tensor(y).reshape(-1).cpu(), dtype=np.int64))
                preds.append(out.argmax(1).cpu().numpy().astype(np.int64))
    finally:
        module.train(was_training)
    if not truths:
        raise GraftError("a DataLoader with at least one batch", "an empty loader", "check the split is not empty")
    return np.concatenate(truths), np.concatenate(preds)


def _kind(batch: Any) -> str:
    if isinstance(batch, (tuple, list)):
        return f"a {type(batch).__name__} of {len(batch)} items"
    return f"a {type(batch).__name__}"
