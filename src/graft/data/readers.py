"""``load_data``: any source -> :class:`~graft.data.dataset.Data`, with every problem found up front.

Sources: image folders (one sub-folder per class, optionally under train/val/test), CSV/Parquet lists of
(path, label), feature tables, numpy arrays and ``.npz`` archives, UCR/UEA time series (``.ts``, ``.tsv``,
``.arff``, or ``aeon:NAME`` for aeon's bundled sets), audio folders, and ``torch.utils.data.Dataset``.
Each reader returns the samples of the splits the source gives; this module maps labels to indices,
checks values, classes and duplicates, makes the splits that were asked for, and describes the result.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graft.data import images as img
from graft.data.arrays import channels_first, normalize_series, pad_sequences, trailing_nan_lengths
from graft.data.audio import AUDIO_SUFFIXES, FSDD_PATTERN, AudioFeatures, audio_features
from graft.data.checks import fingerprint
from graft.data.problems import ProblemLog
from graft.data.timeseries import TS_SUFFIXES, bundled, read_series_file, split_files
from graft.errors import DataError
from graft.memory import bytes_text
from graft.validation import is_dir, is_file
from graft.validation import label_names as check_label_names

SPLITS = ("train", "val", "test")


@dataclass
class Part:
    """One split as a reader found it: arrays (N, C, ...) or image paths, raw labels, sample ids."""

    labels: list
    ids: list[str]
    x: np.ndarray | None = None
    paths: list[str] | None = None
    fingerprints: list[str] | None = None
    mask: np.ndarray | None = None  # (N, L): True on real steps, False on padding


@dataclass
class Raw:
    name: str
    modality: str
    source: str
    parts: dict[str, Part]
    feature_names: tuple[str, ...] | None = None
    feature_axis: int | None = None
    lengths: tuple[int, int] | None = None
    notes: list[str] = field(default_factory=list)
    image_mode: str = "RGB"
    image_size: tuple[int, int] | None = None
    applied: set[str] = field(default_factory=set)  # series options this reader honoured: normalize, length
    label_order: tuple[str, ...] | None = None  # class names in index order, when the source stores them


@dataclass(frozen=True)
class Options:
    labels: str | None = None  # which named group of label_pattern (or which column) holds the label
    label_names: tuple[str, ...] | None = None
    classes: tuple[str, ...] | None = None  # keep only these classes, in this order
    layout: str = "auto"
    normalize: str = "none"  # time series: none, zscore, minmax (per series and channel)
    length: int | None = None  # time series: pad or cut to this length
    image_size: tuple[int, int] | None = None
    image_mode: str | None = None
    audio: AudioFeatures = AudioFeatures()
    label_pattern: str | None = None
    split_of: Callable[[dict], str] | None = None  # file-name groups -> "train"/"val"/"test"
    label_column: str = "label"
    path_column: str = "path"
    feature_columns: tuple[str, ...] | None = None
    feature_names: tuple[str, ...] | None = None
    feature_axis: int | None = None


def _natural(values) -> list[str]:
    names = sorted({str(v) for v in values})
    try:
        return sorted(names, key=float)
    except ValueError:
        return names


# ---------------------------------------------------------------- readers: source -> Raw

def _from_arrays(x, y, name: str, source: str, opt: Options, split: str = "train") -> Raw:
    try:
        x, y = np.asarray(x), np.asarray(y)
    except ValueError as exc:  # ragged nested lists: "inhomogeneous shape"
        raise DataError("samples of one shape and one label each, as arrays", f"ValueError: {str(exc)[:200]}",
                        "pad or resize the samples to one shape, then np.stack them") from None
    if x.dtype.kind not in "biuf":  # object, strings, complex, dates, timedeltas...
        raise DataError("a numeric array of samples", f"dtype {x.dtype}", "convert it with np.asarray(x, dtype=float)")
    if x.ndim == 0:
        raise DataError("an array of samples, shape (N, ...)", f"a single value of dtype {x.dtype}",
                        "stack the samples along the first axis")
    if x.ndim > 1 and 0 in x.shape[1:]:
        raise DataError("samples with at least one value along every axis", f"samples of shape {x.shape[1:]} "
                        f"(array {x.shape}): empty along axis {x.shape.index(0, 1)}",
                        "check how the array was built (a slice or a reshape may have emptied an axis)")
    if y.ndim != 1:
        raise DataError("one label per sample, shape (N,)", f"labels of shape {y.shape}",
                        "for one-hot labels pass y.argmax(1)")
    if len(x) != len(y):
        raise DataError("as many labels as samples", f"{len(x)} samples and {len(y)} labels",
                        "check that x and y come from the same split")
    layout = "NF" if opt.layout == "auto" and x.ndim == 2 and opt.feature_names and opt.feature_axis in (0, None) else opt.layout
    x = channels_first(x, layout)
    modality = "table" if layout == "NF" else ("image" if x.ndim == 4 else "array")
    ids = [f"{split}[{i}]" for i in range(len(x))]
    raw = Raw(name, modality, source, {split: Part(list(y), ids, x=x)})
    if x.ndim == 3 and opt.normalize != "none":  # (N, C, L): series
        raw.parts[split].x = normalize_series(x, opt.normalize)
        raw.applied.add("normalize")
        raw.notes.append(f"series normalization: {opt.normalize}")
    return raw


def _npz(p: Path, opt: Options) -> Raw:
    with open(p, "rb") as f:
        head = f.read(8)
    if not head.startswith(b"PK"):  # every .npz is a zip archive
        text = all(32 <= c < 127 or c in (9, 10, 13) for c in head)
        shown = f"text starting {head.decode('ascii')!r}" if text and head else \
            ("an empty file" if not head else f"bytes {head.hex(' ')}")
        raise DataError("an .npz archive (a zip file of .npy arrays, as np.savez writes)", f"{p}: {shown}, not a zip",
                        "write it with np.savez(path, x=x, y=y); a CSV or other file needs its own extension")
    try:
        arrays, how = _npz_arrays(p)
    except DataError:
        raise
    except MemoryError as exc:
        raise DataError(f"memory to read {p.name}", f"MemoryError: {exc}", "write the archive with np.savez "
                        "(uncompressed): graft then memory-maps its large arrays instead of reading them") from None
    except Exception as exc:  # OSError, ValueError, BadZipFile, EOFError: a damaged archive
        raise DataError("a readable .npz archive", f"{p} ({type(exc).__name__}: {exc})",
                        "the file may be truncated; write it again with np.savez") from None
    pairs = {"train": ("x", "y")}
    for s in SPLITS:
        for xk, yk in ((f"x_{s}", f"y_{s}"), (f"{s}_images", f"{s}_labels"), (f"{s}_x", f"{s}_y")):
            if xk in arrays and yk in arrays:
                pairs[s] = (xk, yk)
    pairs = {s: kv for s, kv in pairs.items() if kv[0] in arrays and kv[1] in arrays}
    if not pairs:
        raise DataError("an .npz archive with arrays x and y (or x_train/y_train, x_test/y_test)",
                        f"arrays {sorted(arrays)} in {p}", "save it with np.savez(path, x=x, y=y)")
    parts = {}
    for s, (xk, yk) in pairs.items():
        y = arrays[yk]
        with np.errstate(invalid="ignore"):  # NaN and inf: not integral
            integral = np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and bool(
                np.all(np.mod(y, 1) == 0) and np.all(np.abs(y) < 2**31)))
        if y.ndim != 1 or not (integral or y.dtype.kind in "US"):
            raise DataError(f"{yk} as one class per sample (shape (N,), integers or names)",
                            f"shape {y.shape}, dtype {y.dtype}", "for one-hot labels store y.argmax(1)")
        raw = _from_arrays(arrays[xk], y.astype(np.int64) if integral else y, p.stem, str(p), opt, s)
        parts[s] = raw.parts[s]
    shapes = {part.x.shape[1:] for part in parts.values()}
    if len(shapes) > 1:
        raise DataError("samples of one shape in every split", f"shapes {sorted(shapes)} in {p}",
                        "resize or pad the splits to the same shape")
    names = opt.label_names
    if names is None and "label_names" in arrays:
        if arrays["label_names"].ndim != 1:
            raise DataError("label_names as one name per class (shape (K,))",
                            f"shape {arrays['label_names'].shape} in {p}", "store np.array(['cat', 'dog', ...])")
        names = tuple(str(n) for n in arrays["label_names"])
    raw.parts, raw.modality = parts, raw.modality
    raw.notes += [f"{k} {how[k]}" for k in sorted(how)]
    return raw if names is None else _with_names(raw, names)


MAP_BYTES = 16 * 2**20  # archive members from this size on are memory-mapped (stored) or spilled (compressed)


def _npz_arrays(p: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The arrays of an .npz archive by name, and how the large ones are held. Members of at least ``MAP_BYTES``
    are never read into memory whole: stored ones (``np.savez``) are memory-mapped from the archive itself,
    compressed ones (``np.savez_compressed``) larger than :func:`graft.memory.in_memory_limit` are decompressed
    to a spill file on disk. Smaller members are read as usual."""
    import zipfile

    from graft.memory import in_memory_limit

    arrays, how = {}, {}
    with zipfile.ZipFile(p) as zf, np.load(p, allow_pickle=False) as z:
        infos = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
        for k in z.files:
            info = infos.get(k)
            if info is not None and info.file_size >= MAP_BYTES:
                if info.compress_type == zipfile.ZIP_STORED:
                    mapped = _mapped_member(p, info)
                    if mapped is not None:
                        arrays[k], how[k] = mapped, f"memory-mapped from {p.name} ({bytes_text(mapped.nbytes)}): " \
                                                    "read as needed, never loaded whole"
                        continue
                elif info.file_size > in_memory_limit():
                    spilled = _spilled_member(zf, info)
                    if spilled is not None:
                        arrays[k], how[k] = spilled, f"decompressed to a spill file on disk " \
                                                     f"({bytes_text(spilled.nbytes)}, more than memory allows)"
                        continue
            try:
                arrays[k] = z[k]
            except ValueError as exc:
                if "allow_pickle" not in str(exc):
                    raise
                raise DataError("arrays of numbers or strings in the .npz archive",
                                f"array {k!r} of Python objects (dtype object) in {p}, which graft does not "
                                "unpickle", f"store {k} as numbers (np.asarray({k}, dtype=np.float32)) or "
                                f"strings (np.asarray({k}, dtype=str))") from None
    return arrays, how


def _npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype] | None:
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        return fmt.read_array_header_1_0(f)
    if version == (2, 0):
        return fmt.read_array_header_2_0(f)
    return None  # version 3 (UTF-8 field names): read the usual way


def _mapped_member(p: Path, info) -> np.ndarray | None:
    """A stored member of an archive as a read-only memory map of the archive's own bytes, or None when it cannot
    be (encrypted, object dtype, an unknown header): then it is read the usual way."""
    import struct

    if info.flag_bits & 0x1:
        return None
    with open(p, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            return None
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        f.seek(start)
        header = _npy_header(f)
        if header is None:
            return None
        shape, fortran, dtype = header
        offset = f.tell()
    if dtype.hasobject or not shape or 0 in shape:
        return None
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if offset - start + nbytes > info.file_size:
        raise DataError("a complete .npz archive", f"{p}: member {info.filename} holds fewer bytes than its shape "
                        f"{shape} needs", "the file may be truncated; write it again with np.savez")
    return np.memmap(p, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def _spilled_member(zf, info) -> np.ndarray | None:
    """A compressed member decompressed, in pieces, to a spill file (:func:`graft.memory.spill_array`)."""
    from graft.memory import spill_array

    with zf.open(info) as f:
        header = _npy_header(f)
        if header is None:
            return None
        shape, fortran, dtype = header
        if dtype.hasobject or fortran or not shape:
            return None
        out = spill_array(shape, dtype)
        flat = out.reshape(-1).view(np.uint8)
        done, piece = 0, 64 * 2**20
        while done < len(flat):
            got = f.readinto(memoryview(flat[done:done + piece]))
            if not got:
                raise DataError("a complete .npz archive", f"member {info.filename} ends after {done} of "
                                f"{len(flat)} bytes", "the file may be truncated; write it again with np.savez")
            done += got
    return out


def _with_names(raw: Raw, names: Sequence[str]) -> Raw:
    """Integer labels -> the given names (checked against the label range)."""
    names = check_label_names(tuple(names), "label names")
    for s, part in raw.parts.items():
        lab = np.asarray(part.labels)
        if lab.size and np.issubdtype(lab.dtype, np.integer):
            if lab.min() < 0 or lab.max() >= len(names):
                raise DataError(f"labels between 0 and {len(names) - 1} (one per name in label_names)",
                                f"{s} labels from {int(lab.min())} to {int(lab.max())}",
                                "add the missing names to label_names, or fix the labels")
            part.labels = [names[i] for i in lab]
    raw.label_order = names
    raw.notes.append("class names: " + ", ".join(names[:10]) + (" ..." if len(names) > 10 else ""))
    return raw


def _class_folders(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _files_in_classes(root: Path) -> tuple[list[str], list[str]]:
    paths, labels = [], []
    for d in _class_folders(root):
        for f in sorted(d.rglob("*")):
            if f.is_file() and not f.name.startswith("."):
                paths.append(str(f))
                labels.append(d.name)
    return paths, labels


def _file_parts(root: Path, opt: Options) -> tuple[dict[str, tuple[list[str], list[str]]], str]:
    """Files and labels per split: class folders (under train/val/test when present) or names + pattern."""
    subs = {d.name.lower(): d for d in _class_folders(root)}
    if "train" in subs and set(subs) <= set(SPLITS):
        return {s: _files_in_classes(subs[s]) for s in SPLITS if s in subs}, "class folders per split"
    if subs and set(subs) <= set(SPLITS) and len(subs) > 1:
        raise DataError("split folders that include train/ (root/train/CLASS/file, optionally val/ and test/)",
                        f"{root} with only {sorted(subs)}",
                        "add the train/ folder, or point graft at one split folder to read it alone")
    if subs and not opt.label_pattern:
        return {"train": _files_in_classes(root)}, "class folders"
    files = sorted(str(f) for f in root.iterdir() if f.is_file() and not f.name.startswith("."))
    fsdd = not opt.label_pattern and files and all(re.match(FSDD_PATTERN, Path(f).name) for f in files)
    pattern = FSDD_PATTERN if fsdd else opt.label_pattern
    split_of = opt.split_of or (fsdd_split if fsdd else None)
    if pattern is None:
        raise DataError("a folder with one sub-folder per class, or files named so that label_pattern finds the label",
                        f"{root} ({len(files)} files, no class sub-folders)",
                        "lay it out as root/CLASS/file, or pass label_pattern=r'(?P<label>[a-z]+)_\\d+'")
    try:
        rx = re.compile(pattern)
    except (re.error, TypeError) as exc:
        raise DataError("label_pattern as a regular expression with a named group", f"{pattern!r} ({exc})",
                        "for example r'(?P<label>[a-z]+)_\\d+'") from None
    group = opt.labels or ("label" if "label" in rx.groupindex else next(iter(rx.groupindex), None))
    if group not in rx.groupindex:
        raise DataError(f"a label group among {sorted(rx.groupindex)} of the file-name pattern", repr(group),
                        f"pass labels= one of {sorted(rx.groupindex)}")
    parts: dict[str, tuple[list[str], list[str]]] = {}
    unmatched = []
    for f in files:
        m = rx.match(Path(f).name)
        if not m:
            unmatched.append(f)
            continue
        s = split_of(m.groupdict()) if split_of else "train"
        if s not in SPLITS:
            raise DataError(f"split_of returning one of {SPLITS}", f"{s!r} for {Path(f).name}", "fix split_of")
        parts.setdefault(s, ([], []))
        parts[s][0].append(f)
        parts[s][1].append(m.group(group))
    if unmatched:
        raise DataError(f"file names that match {pattern!r}", f"{len(unmatched)} that do not: {unmatched[:3]}",
                        "move them out of the folder or fix the pattern")
    how = f"labels from file names ({group!r} of {pattern!r})"
    return parts, how + ("; FSDD's official split (takes 0-4 test)" if fsdd and not opt.split_of else "")


def fsdd_split(groups: dict) -> str:
    """The Free Spoken Digit Dataset's official split: takes 0-4 of each digit and speaker are the test set."""
    return "test" if int(groups["take"]) < 5 else "train"


def _media(root: Path, parts: dict, how: str, opt: Options, log: ProblemLog) -> Raw:
    every = [f for paths, _ in parts.values() for f in paths]
    audio = sum(Path(f).suffix.lower() in AUDIO_SUFFIXES for f in every)
    images = sum(img.is_image(f) for f in every)
    if not every or max(audio, images) == 0:
        raise DataError("image or audio files", f"{len(every)} files in {root}, none with a known suffix",
                        f"images: {sorted(img.IMAGE_SUFFIXES)}; audio: {sorted(AUDIO_SUFFIXES)}")
    is_audio = audio >= images
    ok = (lambda f: Path(f).suffix.lower() in AUDIO_SUFFIXES) if is_audio else img.is_image
    other = [f for f in every if not ok(f)]
    if other:
        log.add("other_files", "warning", f"{len(other)} files are not {'audio' if is_audio else 'images'} and are "
                "ignored", "move them out of the dataset folder", other)
    parts = {s: ([f for f in p if ok(f)], [lab for f, lab in zip(p, labs) if ok(f)]) for s, (p, labs) in parts.items()}
    raw = Raw(root.name, "audio" if is_audio else "image", str(root), {}, notes=[how])
    if is_audio:
        feats = opt.audio
        # all splits at once: one number of frames for every split (duration=None pads to the longest of all)
        kept, x, lengths = audio_features([f for p, _ in parts.values() for f in p], feats, log)
        row = {f: i for i, f in enumerate(kept)}
        mask = np.arange(x.shape[-1])[None] < lengths[:, None]
        for s, (paths, labels) in parts.items():
            index = [row[f] for f in paths if f in row]
            mine = [kept[i] for i in index]
            lab = dict(zip(paths, labels))
            raw.parts[s] = Part([lab[f] for f in mine], mine, x=x[index], mask=mask[index] if index else None,
                                fingerprints=[fingerprint(Path(f).read_bytes()) for f in mine])
        raw.notes.append(feats.describe())
        if len(lengths):
            raw.lengths = (int(lengths.min()), int(lengths.max()))
        return raw
    paths = [f for p, _ in parts.values() for f in p]
    good, mode, size, fps = img.scan_images(paths, log, opt.image_size, opt.image_mode)
    good_set = set(good)
    for s, (p, labels) in parts.items():
        keep = [(f, lab) for f, lab in zip(p, labels) if f in good_set]
        raw.parts[s] = Part([lab for _, lab in keep], [f for f, _ in keep], paths=[f for f, _ in keep],
                            fingerprints=[fps[f] for f, _ in keep])
    raw.image_mode, raw.image_size = mode, size
    raw.notes.append(f"images read as {mode}, {size[0]}x{size[1]}, scaled to [0, 1]")
    return raw


def _is_file(f: str) -> bool:
    try:
        return Path(f).is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte...
        return False


def _delimiter(p: Path) -> str:
    """The column separator of a text table: sniffed among , ; tab |, else tab for .tsv and comma otherwise."""
    import csv

    with open(p, encoding="utf-8", errors="replace", newline="") as f:
        sample = f.read(65536)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:  # one column, or nothing to tell from: pandas' own sniffer would pick any letter
        return "\t" if p.suffix.lower() == ".tsv" else ","


def _table(p: Path, opt: Options, log: ProblemLog) -> Raw:
    import pandas as pd

    try:
        df = (pd.read_parquet(p) if p.suffix.lower() in (".parquet", ".pq")
              else pd.read_csv(p, sep=_delimiter(p), engine="python"))
    except ImportError:
        raise DataError("pyarrow, to read Parquet", "it is not installed", 'pip install "graft-ml[parquet]"') from None
    except Exception as exc:
        raise DataError(f"a readable {p.suffix} table", f"{p} ({type(exc).__name__}: {str(exc)[:200]})",
                        "check the file (a header row, one sample per row)") from None
    label = opt.labels or opt.label_column
    if label not in df.columns:
        from graft.validation import suggest

        hint = suggest(label, map(str, df.columns))
        raise DataError(f"a label column {label!r}", f"columns {list(map(str, df.columns))[:12]}",
                        (f"did you mean {hint}? " if hint else "") + "name it with label_column=")
    row_numbers = np.arange(len(df)) + 2  # as a spreadsheet shows them: 1-based, after the header
    missing_label = (df[label].isna() | (df[label].astype(str).str.strip() == "")).to_numpy()
    if missing_label.any():
        rows = [f"{p.name}:row {r}" for r in row_numbers[missing_label]]
        if log.skip_or_keep("missing_label", rows, f"{len(rows)} rows have an empty label (would become a class "
                            "named 'nan')", f"fill in the {label!r} column or delete those rows"):
            df, row_numbers = df[~missing_label].reset_index(drop=True), row_numbers[~missing_label]
    if opt.path_column in df.columns:  # a list of files
        base = p.parent
        files = [str(f if Path(f).is_absolute() else base / f) for f in df[opt.path_column].fillna("").astype(str)]
        missing = [f for f in files if not _is_file(f)]
        if missing:
            log.skip_or_keep("missing_file", missing, f"{len(missing)} files named in {p.name} do not exist",
                             "fix the paths (relative paths start from the list's folder)")
        keep = [(f, lab) for f, lab in zip(files, df[label]) if _is_file(f)]
        split_col = "split" if "split" in df.columns else None
        parts: dict[str, tuple[list[str], list[str]]] = {}
        splits = df["split"].fillna("").astype(str).str.lower().tolist() if split_col else ["train"] * len(df)
        exists = [_is_file(f) for f in files]
        for (f, lab), s in zip(keep, [s for s, e in zip(splits, exists) if e]):
            if s not in SPLITS:
                raise DataError(f"split values among {SPLITS}", repr(s), "fix the split column")
            parts.setdefault(s, ([], []))
            parts[s][0].append(f)
            parts[s][1].append(str(lab))
        if not parts:
            raise DataError("at least one existing file in the list", f"none of {len(files)} in {p}", "fix the paths")
        raw = _media(p.parent, parts, f"file list {p.name}", opt, log)
        raw.name, raw.source = p.stem, str(p)
        return raw
    cols = list(opt.feature_columns or [c for c in df.columns if c != label and c != "split"])
    absent = [c for c in cols if c not in df.columns]
    if absent:
        raise DataError("feature columns present in the table", f"missing {absent}", "fix feature_columns")
    if not cols:
        raise DataError(f"a table with feature columns besides the label column {label!r}",
                        f"columns {list(map(str, df.columns))[:12]} in {p.name}",
                        f"add the features, or name the files in a {opt.path_column!r} column")
    if not len(df):
        raise DataError("a table with one sample per row", f"no rows in {p.name}", "check the file")
    text = [str(c) for c in cols if not pd.api.types.is_numeric_dtype(df[c])]
    if text:
        raise DataError("numeric feature columns", f"non-numeric columns {text[:8]}",
                        "encode them first (pandas.get_dummies) or leave them out with feature_columns=")
    x = df[cols].to_numpy(np.float32, na_value=np.nan)  # empty cells: NaN, reported as non_finite
    ids = [f"{p.name}:row {r}" for r in row_numbers]
    labels = df[label].tolist()
    splits = df["split"].fillna("").astype(str).str.lower().tolist() if "split" in df.columns else ["train"] * len(df)
    odd = sorted(set(splits) - set(SPLITS))
    if odd:
        raise DataError(f"split values among {SPLITS}", repr(odd[0]), "fix the split column")
    rows = {s: [i for i, r in enumerate(splits) if r == s] for s in SPLITS}
    parts = {s: Part([labels[i] for i in index], [ids[i] for i in index], x=x[index])
             for s, index in rows.items() if index}
    raw = Raw(p.stem, "table", str(p), parts, feature_names=tuple(map(str, cols)), feature_axis=0)
    raw.notes.append(f"table: {len(cols)} numeric feature columns, label column {label!r}")
    return raw


def _series(files: dict[str, Path], name: str, source: str, opt: Options) -> Raw:
    raw = Raw(name, "timeseries", source, {})
    if opt.length is not None and (isinstance(opt.length, bool) or not isinstance(opt.length, (int, np.integer))
                                   or opt.length < 1):
        raise DataError("length as a positive number of steps", repr(opt.length),
                        "for example length=128, or leave it out to pad to the longest series")
    read = {s: read_series_file(f) for s, f in files.items()}
    channels = {x.shape[0] for X, _ in read.values() for x in X}
    if len(channels) > 1:
        raise DataError("series with the same number of channels in every split", f"channels {sorted(channels)}",
                        "drop the odd series or select common channels")
    longest = opt.length or max(max((s.shape[-1] for s in X), default=0) if isinstance(X, list) else X.shape[-1]
                                for X, _ in read.values())
    if longest < 1:
        raise DataError("series with at least one step", f"series of length 0 in {source}",
                        "check the file; UCR .tsv files have the label in column 0 and the series after it")
    all_lengths: list[int] = []
    for s, (X, y) in read.items():
        if isinstance(X, np.ndarray):
            lengths = trailing_nan_lengths(X)
            if lengths is not None:  # UCR tsv convention: shorter series end in NaN
                X = [x[:, :n] for x, n in zip(X, lengths)]
        if isinstance(X, list):
            x, mask, lengths = pad_sequences(X, 0.0, longest)
        else:
            x = X[..., :longest] if X.shape[-1] >= longest else pad_sequences(list(X), 0.0, longest)[0]
            lengths = np.full(len(X), X.shape[-1])
            mask = None if X.shape[-1] == longest else np.arange(longest)[None] < lengths[:, None]
        x = normalize_series(x, opt.normalize, mask)
        all_lengths += np.minimum(lengths, longest).tolist()
        ids = [f"{files[s].name}:{i + 1}" for i in range(len(x))]
        raw.parts[s] = Part(list(y), ids, x=x, mask=mask)
    lo, hi = min(all_lengths), max(all_lengths)
    if lo != hi:
        raw.lengths = (int(lo), int(hi))
    raw.applied.update({"normalize", "length"})
    raw.notes.append(f"series normalization: {opt.normalize}" + ("" if lo == hi else
                     f"; unequal lengths padded at the end with 0 to {longest} (mask kept)"))
    return raw


def _torch_dataset(ds, opt: Options) -> Raw:
    """Every item read once into one array; one larger than :func:`graft.memory.in_memory_limit` goes to a spill
    file on disk (memory-mapped), so a lazily loading Dataset larger than memory is read in bounded memory."""
    from graft.memory import in_memory_limit, spill_array
    from graft.progress import track

    xs: list[np.ndarray] = []
    out: np.ndarray | None = None
    ys, shapes, spilled = [], Counter(), False
    try:
        for i in track(range(len(ds)), "reading the dataset", total=len(ds)):
            x, y = ds[i][:2]
            x = np.asarray(x)
            shapes[x.shape] += 1
            if i == 0 and x.dtype.kind in "biuf" and x.nbytes * len(ds) > in_memory_limit():
                out, spilled = spill_array((len(ds), *x.shape), x.dtype), True
            if out is not None:
                if x.shape != out.shape[1:]:
                    break  # refused below, with every shape seen
                out[i] = x
            else:
                xs.append(x)
            label = y.item() if hasattr(y, "item") else y
            if isinstance(label, float) and not label.is_integer():
                raise ValueError(f"label {label!r} of item {i} is not a class index")
            ys.append(int(label))
    except (TypeError, ValueError, RuntimeError) as exc:  # RuntimeError: Tensor.item() of several values
        raise DataError("a Dataset whose items are (sample, integer label)", f"{type(exc).__name__}: {exc}",
                        "return (tensor, int) from __getitem__") from None
    if len(shapes) > 1:
        raise DataError("samples of one shape", f"{len(shapes)} shapes: {list(shapes)[:4]}", "resize or pad them")
    x = out if out is not None else (np.stack(xs) if xs else np.zeros((0, 1)))
    layout = opt.layout if opt.layout != "auto" else {2: "NF", 3: "NCL", 4: "NCHW"}.get(x.ndim, "auto")
    raw = _from_arrays(x, np.asarray(ys), type(ds).__name__, f"{type(ds).__name__} ({len(ds)} items)",
                       Options(**{**opt.__dict__, "layout": layout}))
    if spilled:
        raw.notes.append(f"read into a spill file on disk ({bytes_text(x.nbytes)}, more than memory allows)")
    return raw


def read_source(source, opt: Options, log: ProblemLog) -> Raw:
    from torch.utils.data import Dataset

    if isinstance(source, tuple) and len(source) == 2:
        return _from_arrays(source[0], source[1], "arrays", "arrays in memory", opt)
    if isinstance(source, Dataset):
        return _torch_dataset(source, opt)
    if not isinstance(source, (str, Path)):
        raise DataError("a path, 'aeon:NAME', an (x, y) tuple of arrays or a torch Dataset",
                        type(source).__name__, "pass one of these")
    text = str(source)
    if text.startswith("aeon:"):
        name = text.split(":", 1)[1]
        return _series(bundled(name), name, f"aeon bundled dataset {name}", opt)
    p = Path(text).expanduser()
    if not is_file(p) and not is_dir(p):
        from graft.validation import suggest

        near = suggest(p.name, [c.name for c in p.parent.iterdir()] if is_dir(p.parent) else [])
        shown = text if len(text) <= 200 else text[:200] + " ..."
        raise DataError("a dataset path", f"a path that does not exist: {shown}",
                        f"did you mean {near}?" if near else "check the path")
    if p.is_dir():
        found = split_files(p)
        if found:
            return _series(found, p.name, str(p), opt)
        parts, how = _file_parts(p, opt)
        return _media(p, parts, how, opt, log)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        return _npz(p, opt)
    ucr_name = p.stem.upper().endswith(("_TRAIN", "_TEST"))  # a UCR file alone, without its pair
    if suffix in TS_SUFFIXES and (suffix != ".tsv" or ucr_name or split_files(p)):
        found = split_files(p) or {"train": p}
        return _series(found, p.stem.rsplit("_", 1)[0], str(p), opt)
    if suffix in (".csv", ".tsv", ".parquet", ".pq", ".txt"):
        return _table(p, opt, log)
    if img.is_image(p) or suffix in AUDIO_SUFFIXES:
        raise DataError("a dataset (a folder of files, a list, or an archive)", f"a single file {p.name}",
                        "pass the folder that holds it")
    raise DataError("a dataset: a folder, .npz, .csv/.parquet, .ts/.tsv/.arff, or 'aeon:NAME'", p.name,
                    "convert it to one of these")
