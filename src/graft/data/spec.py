"""What the user has: a description of a dataset (shape, classes, counts, problems) without a model.

``DatasetSpec`` is what every later stage reads about the data; ``graft.data.load_data`` and
``graft.data.describe_data`` make it from any source.
"""

from __future__ import annotations

from dataclasses import dataclass

from graft.data.problems import Problem
from graft.jsonable import JsonSerializable


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
