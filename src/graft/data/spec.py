"""What the user has: a description of a dataset (shape, classes, counts, problems) without a model.

``DatasetSpec`` is what every later stage reads about the data. ``load_arrays`` reads ``.npz`` archives;
the loaders for every other source live next to it (``graft.data.load_data``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graft.errors import DataError
from graft.data.arrays import channels_first
from graft.data.images import IMAGE_SUFFIXES
from graft.data.problems import Problem
from graft.jsonable import JsonSerializable
from graft.validation import label_names as check_label_names



@dataclass(frozen=True)
class DatasetSpec(JsonSerializable):
    """A dataset's shape and classes: what surgery needs to know about the target."""

    name: str
    modality: str  # "image", "array", "table", "timeseries" or "audio"
    num_samples: int
    input_shape: tuple[int, ...]  # per sample, channels first: (C, H, W), (C, L) or (F,) for tables
    label_names: tuple[str, ...]
    class_counts: tuple[int, ...]
    source: str = ""
    splits: tuple[tuple[str, int], ...] = ()  # (name, size) of each split
    feature_names: tuple[str, ...] | None = None  # named columns / channels, for alignment by name
    feature_axis: int | None = None  # the axis of input_shape that feature_names label
    lengths: tuple[int, int] | None = None  # shortest and longest sequence before padding
    notes: tuple[str, ...] = ()  # how the samples were made (features, padding, normalization...)
    problems: tuple[Problem, ...] = ()
    skipped: tuple[str, ...] = ()  # samples dropped with on_error="skip"

    @property
    def channels(self) -> int:
        return self.input_shape[0]

    @property
    def size(self) -> tuple[int, ...]:
        return tuple(self.input_shape[1:])

    def render(self) -> str:
        """What graft sees, as text: modality, shapes, classes and counts, splits, and every problem."""
        shape = "x".join(map(str, self.input_shape))
        lines = [f"{self.name}: {self.modality}, {self.num_samples:,} samples of shape {shape} (channels first)"]
        if self.source:
            lines.append(f"  source: {self.source}")
        if self.splits:
            lines.append("  splits: " + ", ".join(f"{k} {n:,}" for k, n in self.splits))
        if self.lengths:
            lines.append(f"  lengths: {self.lengths[0]} to {self.lengths[1]} (padded to the longest, masked)")
        if self.feature_names:
            axis = "channels" if self.feature_axis == 0 else f"axis {self.feature_axis}"
            shown = ", ".join(self.feature_names[:12]) + (" ..." if len(self.feature_names) > 12 else "")
            lines.append(f"  features ({len(self.feature_names)}, on {axis}): {shown}")
        counts = sorted(zip(self.class_counts, self.label_names), key=lambda cn: (-cn[0], cn[1]))
        lines.append(f"  classes ({len(self.label_names)}): " + ", ".join(f"{n} {c}" for c, n in counts[:12])
                     + (" ..." if len(counts) > 12 else ""))
        if counts:
            lines.append(f"  per class: {counts[-1][0]} to {counts[0][0]} samples")
        lines += [f"  {note}" for note in self.notes]
        if self.skipped:
            lines.append(f"  skipped ({len(self.skipped)}): " + ", ".join(self.skipped[:5])
                         + (" ..." if len(self.skipped) > 5 else ""))
        if self.problems:
            lines.append(f"problems ({len(self.problems)}):")
            lines += ["  " + p.render().replace("\n", "\n  ") for p in self.problems]
        else:
            lines.append("problems: none found")
        return "\n".join(lines)


def load_arrays(path: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read ``x`` (channels first), ``y`` (class indices) and label names from an ``.npz`` archive."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            keys = set(z.files)
            if not {"x", "y"} <= keys:
                raise DataError("an .npz archive with arrays 'x' (samples) and 'y' (labels)",
                                f"arrays {sorted(keys)} in {p}", "save it with np.savez(path, x=x, y=y)")
            x, y = z["x"], z["y"]
            names = tuple(str(n) for n in z["label_names"]) if "label_names" in keys else None
    except DataError:
        raise
    except Exception as exc:  # OSError, ValueError, zipfile.BadZipFile, EOFError...: not a readable archive
        raise DataError("a readable .npz archive", f"{p} ({type(exc).__name__}: {exc})",
                        "the file may be truncated; write it again with np.savez") from None
    integral = np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.floating) and bool(np.all(np.mod(y, 1) == 0)))
    if y.ndim != 1 or not integral:
        raise DataError("y as one integer class index per sample (shape (N,))", f"y of shape {y.shape}, dtype {y.dtype}",
                        "for one-hot labels pass y.argmax(1); for names, store indices in y and the names in label_names")
    if len(x) != len(y):
        raise DataError("as many labels as samples", f"{len(x)} samples and {len(y)} labels in {p}",
                        "check that x and y come from the same split")
    if names is None:
        classes = sorted(set(y.tolist()))
        if classes != list(range(len(classes))):
            raise DataError("labels 0..K-1, or label_names in the archive", f"labels {classes[:10]}",
                            "store integer class indices in y and their names in label_names")
        names = tuple(str(c) for c in classes)
    elif len(y) and (y.min() < 0 or y.max() >= len(names)):
        raise DataError(f"labels between 0 and {len(names) - 1} (one per name in label_names)",
                        f"labels from {int(y.min())} to {int(y.max())}",
                        "add the missing names to label_names, or fix the labels")
    return channels_first(x), y.astype(np.int64), check_label_names(names, f"label names in {p}")


def _describe_folder(p: Path) -> DatasetSpec:
    from PIL import Image

    classes = sorted(d.name for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))
    counts = []
    first = None
    for c in classes:
        files = [f for f in sorted((p / c).iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
        counts.append(len(files))
        first = first or (files[0] if files else None)
    if not classes or first is None:
        raise DataError("an image folder with one sub-folder of images per class", f"{p} without such sub-folders",
                        "lay it out as root/CLASS_NAME/image.png")
    with Image.open(first) as im:
        channels = {"L": 1, "1": 1, "I": 1, "F": 1, "RGB": 3, "RGBA": 4, "CMYK": 4}.get(im.mode, 3)
        w, h = im.size
    return DatasetSpec(p.name, "image", sum(counts), (channels, h, w), tuple(classes), tuple(counts), str(p))


def describe_dataset(path: str | Path) -> DatasetSpec:
    """Describe the dataset at ``path`` (an ``.npz`` archive or an image folder)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError("a dataset: an .npz archive or an image folder", f"a path that does not exist: {p}",
                        "check the path")
    if p.is_dir():
        return _describe_folder(p)
    if p.suffix != ".npz":
        raise DataError("a dataset: an .npz archive or an image folder", f"{p.name}",
                        "pass an .npz with x and y arrays, or a folder with one sub-folder per class")
    x, y, names = load_arrays(p)
    counts = Counter(y.tolist())
    modality = "image" if x.ndim == 4 else "array"
    return DatasetSpec(p.stem, modality, len(x), tuple(int(s) for s in x.shape[1:]), names,
                       tuple(counts.get(i, 0) for i in range(len(names))), str(p))
