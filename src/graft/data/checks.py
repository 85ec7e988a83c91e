"""Checks every loader runs on its samples and labels: values, classes, duplicates; and the splits.

Splits are made with scikit-learn's ``train_test_split`` (stratified by class, seeded) and recorded, so a
run folder says exactly which sample went where.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence

import numpy as np

from graft.data.problems import ProblemLog
from graft.errors import DataError


def non_finite(x: np.ndarray, ids: Sequence[str], log: ProblemLog, allowed: np.ndarray | None = None) -> set[int]:
    """Samples holding NaN or inf (outside ``allowed``, a mask of padding positions); returns those to drop."""
    if not np.issubdtype(x.dtype, np.floating) or len(x) == 0:
        return set()
    step = max(1, (16 * 2**20) // max(1, x[:1].nbytes))  # in pieces: a memory-mapped x is never read whole
    bad_rows, count = [], 0
    for i in range(0, len(x), step):
        part = np.asarray(x[i:i + step])
        bad_values = ~np.isfinite(part)
        if part.dtype.itemsize > 4:  # samples are read as float32: values beyond its range become inf there
            bad_values |= np.abs(np.where(bad_values, 0, part)) > np.finfo(np.float32).max
        if allowed is not None:
            bad_values &= ~np.asarray(allowed[i:i + step])
        bad_rows.append(i + np.flatnonzero(bad_values.reshape(len(part), -1).any(1)))
        count += int(bad_values.sum())
    bad = np.concatenate(bad_rows)
    if not len(bad):
        return set()
    names = [ids[i] for i in bad]
    drop = log.skip_or_keep("non_finite", names, f"{len(bad)} samples hold NaN or inf ({count} values)",
                            "fill or drop them (for missing values, a table's NaN cells are filled and masked "
                            "when columns are aligned)")
    return {i for i, n in zip(bad, names) if n in drop}


def check_labels(y: np.ndarray, names: Sequence[str], log: ProblemLog, what: str = "labels") -> None:
    counts = Counter(np.asarray(y).tolist())
    present = [n for i, n in enumerate(names) if counts.get(i, 0)]
    if len(present) < 2:
        log.add("single_class", "error", f"the {what} hold {len(present)} class(es): {', '.join(present) or 'none'}",
                "a classifier needs at least two classes; check the label column or the folder layout")
    ones = [names[i] for i, c in counts.items() if c == 1]
    if ones:
        log.add("singleton_class", "warning", f"{len(ones)} classes have a single sample: they cannot be in both "
                "train and validation, and their scores are noise", "collect more samples or merge these classes",
                ones)
    empty = [n for i, n in enumerate(names) if not counts.get(i, 0)]
    if empty and present:
        log.add("empty_class", "warning", f"{len(empty)} named classes have no sample", "drop them from label_names",
                empty)


def fingerprint(sample: np.ndarray | bytes) -> str:
    data = sample if isinstance(sample, bytes) else np.ascontiguousarray(sample).tobytes()
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def duplicates_across(splits: dict[str, list[str]], ids: dict[str, list[str]], log: ProblemLog) -> None:
    """Warn when the same sample (same bytes) is in train and in val/test: scores would be inflated."""
    if "train" not in splits:
        return
    seen = {h: i for h, i in zip(splits["train"], ids["train"])}
    for name in ("val", "test"):
        if name not in splits:
            continue
        dup = [f"{i} = {seen[h]}" for h, i in zip(splits[name], ids[name]) if h in seen]
        if dup:
            log.add("duplicate_across_splits", "warning",
                    f"{len(dup)} {name} samples are byte-identical to train samples: {name} scores are inflated",
                    "remove the duplicates from one side (graft keeps them so that no split changes silently)", dup)


def make_splits(y: np.ndarray, val_fraction: float = 0.0, test_fraction: float = 0.0, seed: int = 0,
                log: ProblemLog | None = None) -> dict[str, np.ndarray]:
    """Indices of train/val/test, stratified by class when every class can be split, seeded."""
    from sklearn.model_selection import train_test_split

    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(f, bool) or not isinstance(f, (int, float, np.integer, np.floating)) or not 0 <= f < 1:
            raise DataError(f"{name} between 0 and 1 (exclusive)", repr(f), "for example 0.2")
    if val_fraction + test_fraction >= 1:
        raise DataError("val_fraction + test_fraction below 1", f"{val_fraction} + {test_fraction}",
                        "leave some samples for training")
    index = np.arange(len(y))
    out: dict[str, np.ndarray] = {}
    rest = index
    for name, frac in (("test", test_fraction), ("val", val_fraction)):
        if frac == 0:
            continue
        share = frac / (1 - (test_fraction if name == "val" else 0))
        counts = Counter(y[rest].tolist())
        n_out = int(round(share * len(rest)))
        stratify = y[rest] if counts and min(counts.values()) >= 2 and len(counts) <= n_out <= len(rest) - len(counts) else None
        if stratify is None and log is not None:
            log.add("unstratified_split", "warning", f"the {name} split is not stratified: some class has fewer "
                    "than 2 samples or the split is smaller than the number of classes",
                    f"collect more samples per class or change {name}_fraction")
        if n_out < 1 or n_out >= len(rest):
            raise DataError(f"a {name} split with at least one sample and some left to train on",
                            f"{n_out} of {len(rest)} samples", f"change {name}_fraction")
        rest, taken = train_test_split(rest, test_size=n_out, random_state=seed, stratify=stratify)
        out[name] = np.sort(taken)
    out = {"train": np.sort(rest), **dict(sorted(out.items(), key=lambda kv: kv[0] != "val"))}
    return out
