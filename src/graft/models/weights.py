"""Loading any state dict into any model by name and shape, with a report instead of a crash.

``torch.nn.Module.load_state_dict`` either fails on the first shape mismatch (strict) or silently skips
what does not match (``strict=False`` still raises on shapes). :func:`load_weights` loads every tensor whose
name and shape match, and returns a :class:`LoadReport` that lists the rest: shape mismatches, tensors the
model expects but the file lacks, tensors the file has but the model does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from graft.errors import ShapeError
from graft.models.checkpoint import read_checkpoint

#: Buffers that count, not weights: a file without them loads fine (old PyTorch checkpoints lack them).
BENIGN_MISSING = ("num_batches_tracked",)


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_weights` did with each tensor."""

    loaded: tuple[str, ...] = ()
    shape_mismatch: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = ()  # name, file, model
    missing: tuple[str, ...] = ()  # in the model, not in the file
    unexpected: tuple[str, ...] = ()  # in the file, not in the model
    ignored_missing: tuple[str, ...] = ()  # counters like BatchNorm's num_batches_tracked
    key_mapping: str = ""  # how file names were mapped onto model names, e.g. "removed 'model.'"
    dtype_cast: tuple[str, ...] = ()
    source: str = ""
    head_missing: tuple[str, ...] = ()  # the classifier's tensors, all absent: a backbone file (include_top=False)

    @property
    def complete(self) -> bool:
        """True when every model tensor was loaded and every file tensor was used."""
        return not (self.shape_mismatch or self.missing or self.unexpected)

    def summary(self, limit: int = 6) -> str:
        lines = [f"loaded {len(self.loaded)} tensors" + (f" from {self.source}" if self.source else "")
                 + (f" ({self.key_mapping})" if self.key_mapping else "")]

        def names(items):
            shown = ", ".join(items[:limit])
            return shown + (f" ... (+{len(items) - limit})" if len(items) > limit else "")

        if self.shape_mismatch:
            rows = [f"{n} file {tuple(a)} vs model {tuple(b)}" for n, a, b in self.shape_mismatch]
            lines.append(f"shape mismatch ({len(rows)}, left at the model's values): {names(rows)}")
        if self.missing:
            lines.append(f"missing from the file ({len(self.missing)}, left at the model's values): {names(list(self.missing))}")
        if self.unexpected:
            lines.append(f"in the file but not in the model ({len(self.unexpected)}, ignored): {names(list(self.unexpected))}")
        if self.ignored_missing:
            lines.append(f"counters not in the file ({len(self.ignored_missing)}, harmless): BatchNorm num_batches_tracked")
        if self.dtype_cast:
            lines.append(f"converted to the model's dtype: {names(list(self.dtype_cast))}")
        if self.head_missing:
            lines.append(f"no classifier in the file ({names(list(self.head_missing))}): a backbone without its "
                         "head; the head starts from random weights, and the surgery gives it rows for your classes")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _first_components(keys) -> set[str]:
    return {k.split(".", 1)[0] + "." for k in keys if "." in k}


def _best_mapping(file_keys: list[str], model_keys: set[str]) -> tuple[dict[str, str], str]:
    """Map file names onto model names: as they are, or with one leading prefix removed or added."""
    candidates: list[tuple[str, dict[str, str]]] = [("", {k: k for k in file_keys})]
    for p in _first_components(file_keys):
        candidates.append((f"removed {p!r}", {k: k[len(p):] for k in file_keys if k.startswith(p)}))
    for p in _first_components(model_keys):
        candidates.append((f"added {p!r}", {k: p + k for k in file_keys}))
    best = max(candidates, key=lambda c: (sum(v in model_keys for v in c[1].values()), c[0] == ""))
    return best[1], best[0]


def load_weights(model: nn.Module, weights: dict[str, torch.Tensor] | str | Path, *, strict: bool = False,
                 head: str | None = None) -> LoadReport:
    """Copy every tensor of ``weights`` whose name and shape match into ``model``; report the rest.

    ``weights`` is a state dict or a checkpoint path (read safely). Names are matched as they are, or
    with one leading prefix removed or added when that matches more (``model.``, ``backbone.``, ``body.``).
    With ``strict=True`` anything left over (a mismatch, a missing or an unexpected tensor) raises a
    :class:`ShapeError` whose message is the report; nothing is loaded in that case. ``head``: the classifier's
    module name; when every one of its tensors is absent from the file (a backbone saved without its head), they
    are reported as ``head_missing`` and do not fail strict loading: the surgery replaces the head anyway.
    """
    source = ""
    if isinstance(weights, (str, Path)):
        ckpt = read_checkpoint(weights)
        source, weights = ckpt.path, ckpt.state_dict
    own = model.state_dict()
    mapping, how = _best_mapping(list(weights), set(own))
    loaded, mismatch, casts, to_load = [], [], [], {}
    used = set()
    for src, dst in mapping.items():
        if dst not in own:
            continue
        used.add(src)
        tensor = weights[src]
        if tuple(tensor.shape) != tuple(own[dst].shape):
            mismatch.append((dst, tuple(tensor.shape), tuple(own[dst].shape)))
            continue
        if tensor.dtype != own[dst].dtype:
            casts.append(dst)
        to_load[dst] = tensor
        loaded.append(dst)
    got = set(to_load) | {m[0] for m in mismatch}
    missing_all = [k for k in own if k not in got]
    ignored = [k for k in missing_all if k.rsplit(".", 1)[-1] in BENIGN_MISSING]
    missing = [k for k in missing_all if k not in ignored]
    head_keys = [k for k in own if head and k.startswith(head + ".")]
    head_missing = head_keys if head_keys and all(k in missing for k in head_keys) else []
    missing = [k for k in missing if k not in head_missing]
    unexpected = [k for k in weights if k not in used]
    report = LoadReport(tuple(loaded), tuple(mismatch), tuple(missing), tuple(unexpected), tuple(ignored),
                        how, tuple(casts), source, tuple(head_missing))
    if not loaded and own and weights:
        raise ShapeError(
            "weights whose names match the model's",
            f"none of the {len(weights)} tensors matched (file: {', '.join(list(weights)[:3])} ...; "
            f"model: {', '.join(list(own)[:3])} ...)",
            "check that the file belongs to this architecture (pass arch=...), or rename the keys",
        )
    if strict and not report.complete:
        raise ShapeError("weights that fit the model exactly (strict loading)", "\n" + report.summary(),
                         "pass strict=False (--partial-weights) to load what fits and keep the rest, or pick the "
                         "matching architecture")
    with torch.no_grad():
        model.load_state_dict(to_load, strict=False)
    return report
