"""Time series from the UCR/UEA archive formats (``.ts``, ``.tsv``, ``.arff``) through aeon's loaders.

A UCR folder (``NAME/NAME_TRAIN.tsv`` + ``NAME_TEST.tsv``) gives the official train/test split; aeon's
bundled datasets load offline as ``aeon:NAME``. Unequal lengths (lists in ``.ts`` files, trailing NaN in
UCR ``.tsv`` files) are padded at the end and masked.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from graft.errors import DataError
from graft.validation import suggest

TS_SUFFIXES = {".ts", ".tsv", ".arff"}


def require_aeon():
    try:
        import aeon.datasets
    except ImportError:
        raise DataError("aeon, to read UCR/UEA time-series files", "it is not installed",
                        'pip install "graft-ml[timeseries]"') from None
    return aeon.datasets


def aeon_bundled_dir() -> Path:
    import aeon

    return Path(os.path.dirname(aeon.__file__)) / "datasets" / "data"


def read_series_file(path: str | Path) -> tuple[list[np.ndarray] | np.ndarray, np.ndarray]:
    """Series (N, C, L) or a list of (C, L_i) arrays, and labels as given in the file."""
    ds = require_aeon()
    p = Path(path)
    loaders = {".ts": ds.load_from_ts_file, ".tsv": ds.load_from_tsv_file, ".arff": ds.load_from_arff_file}
    try:
        X, y = loaders[p.suffix.lower()](str(p))
        if isinstance(X, np.ndarray):
            X = X.astype(np.float32)
        else:
            X = [np.asarray(s, dtype=np.float32) for s in X]
        y = np.asarray(y)
    except Exception as exc:  # aeon raises IOError, ValueError, IndexError... on malformed files
        raise DataError(f"a readable {p.suffix} time-series file (UCR/UEA format)", f"{p} ({type(exc).__name__}: "
                        f"{str(exc)[:200]})", "check the file; UCR .tsv files have the label in column 0") from None
    shapes_ok = (X.ndim == 3 and X.shape[1] > 0) if isinstance(X, np.ndarray) else all(
        s.ndim == 2 and s.shape[0] > 0 for s in X)
    if not len(X) or not shapes_ok or y.ndim != 1 or len(y) != len(X):
        got = f"shape {X.shape}" if isinstance(X, np.ndarray) else f"{len(X)} series"
        raise DataError(f"a {p.suffix} time-series file with at least one labelled series (UCR/UEA format)",
                        f"{p} ({got}, {y.size} labels)", "check the file; UCR .tsv files have the label in column 0")
    return X, y


def split_files(path: Path) -> dict[str, Path] | None:
    """``{"train": ..., "test": ...}`` for a UCR/UEA folder or one of its ``_TRAIN``/``_TEST`` files."""
    folder, stem = (path, path.name) if path.is_dir() else (path.parent, path.stem.rsplit("_", 1)[0])
    for suffix in (".ts", ".tsv", ".arff"):
        found = {s: folder / f"{stem}_{s.upper()}{suffix}" for s in ("train", "test")}
        if all(f.exists() for f in found.values()):
            return found
    return None


def bundled(name: str) -> dict[str, Path]:
    """The train/test files of an aeon bundled dataset (works offline)."""
    require_aeon()
    root = aeon_bundled_dir()
    folder = root / name
    found = split_files(folder) if folder.is_dir() else None
    if found is None:
        have = sorted(d.name for d in root.iterdir() if d.is_dir() and split_files(d))
        hint = suggest(name, have)
        raise DataError("the name of a dataset bundled with aeon", repr(name),
                        (f"did you mean {hint}? " if hint else "") + f"bundled: {', '.join(have)}")
    return found
