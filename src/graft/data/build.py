"""``load_data`` and ``describe_data``: read a source, check it, split it, describe it."""

from __future__ import annotations

from collections import Counter
import numpy as np

from graft.data.checks import check_labels, duplicates_across, fingerprint, make_splits, non_finite
from graft.data.dataset import ArrayDataset, Data, ImageFileDataset
from graft.data.options import DataOptions
from graft.data.readers import SPLITS, Options, Raw, _natural, _with_names, read_source
from graft.data.problems import ProblemLog
from graft.data.spec import DatasetSpec
from graft.errors import DataError
from graft.validation import label_names as check_label_names
from graft.validation import suggest


def _label_names(raw: Raw, opt: Options) -> tuple[str, ...]:
    if opt.label_names is not None:
        names = check_label_names(tuple(opt.label_names), "label_names")
        if any(np.issubdtype(np.asarray(p.labels).dtype, np.integer) for p in raw.parts.values() if p.labels):
            _with_names(raw, names)
    elif raw.label_order is not None:  # names stored with integer labels (an archive's label_names): index order
        names = raw.label_order
    else:
        names = tuple(_natural(lab for p in raw.parts.values() for lab in p.labels))
    if opt.classes is not None:
        wanted = check_label_names(tuple(opt.classes), "classes")
        unknown = [c for c in wanted if c not in names]
        if unknown:
            hints = "; ".join(f"{u!r}: did you mean {suggest(u, names) or 'one of ' + ', '.join(names[:6])}?" for u in unknown)
            raise DataError("classes that the data has", f"{unknown}", hints)
        names = wanted
    return names


def _dataset(raw: Raw, part, index: np.ndarray, y: np.ndarray):
    if part.paths is not None:
        return ImageFileDataset([part.paths[i] for i in index], y[index], raw.image_mode, raw.image_size)
    whole = len(index) == len(part.x) and bool(np.all(index == np.arange(len(index))))
    return ArrayDataset(part.x, y[index], [part.ids[i] for i in index], rows=None if whole else index)


def load_data(source, options: DataOptions | dict | None = None, **fields) -> Data:
    """Read ``source``, check every sample, make the splits asked for, and describe the result.

    ``source``: an image folder (one sub-folder per class, optionally under ``train/``, ``val/``, ``test/``),
    a folder of audio files (class sub-folders, or labels in the file names: ``label_pattern``), a
    ``.csv``/``.parquet`` list of ``path,label[,split]`` or a feature table (``label_column``), an ``.npz``
    archive (``x``/``y``, or ``x_train``/``y_train``/``x_test``/``y_test``), a UCR/UEA time-series folder or
    file (``.ts``, ``.tsv``, ``.arff``), ``"aeon:NAME"`` (aeon's bundled sets, offline), an ``(x, y)`` tuple of
    arrays, or a ``torch.utils.data.Dataset``.

    How to read it: a :class:`~graft.data.options.DataOptions` (``options``), its fields by name (``fields``,
    which override it), or both: ``labels``, ``classes``, ``val_fraction``, ``normalize``, ``audio``...

    Problems (corrupt files, NaN, a single class, duplicates across splits...) are collected in
    ``data.spec.problems``; errors stop the load with one message listing them all, unless
    ``on_error="skip"`` drops the bad samples and lists them in ``data.spec.skipped``.
    Splits the source does not give are made from train: ``val_fraction``/``test_fraction``, stratified
    by class and seeded (``data.write_splits(run_dir)`` records them).
    """
    opt = DataOptions.coerce(options, **fields)
    return _load(source, _options(opt), ProblemLog.new(opt.on_error), opt.val_fraction, opt.test_fraction, opt.seed,
                 opt.name, strict=True)


def _options(opt: DataOptions) -> Options:
    return Options(labels=opt.labels, label_names=opt.label_names, classes=opt.classes, layout=opt.layout,
                   normalize=opt.normalize, length=opt.length, image_size=opt.image_size, image_mode=opt.image_mode,
                   audio=opt.audio, label_pattern=opt.label_pattern, split_of=opt.split_of,
                   label_column=opt.label_column, path_column=opt.path_column, feature_columns=opt.feature_columns,
                   feature_names=opt.feature_names, feature_axis=opt.feature_axis)


def _load(source, opt: Options, log: ProblemLog, val_fraction: float, test_fraction: float, seed: int,
          name: str | None, strict: bool) -> Data:
    raw = read_source(source, opt, log)
    raw.name = name or raw.name
    ignored = [f"{k}={v!r}" for k, v in (("normalize", opt.normalize), ("length", opt.length))
               if k not in raw.applied and v not in (None, "none")]
    if ignored:
        raise DataError("normalize= only for time series (UCR/UEA files, aeon:NAME, arrays (N, C, L)); length= only "
                        "for series files", f"{', '.join(ignored)} for a {raw.modality} source ({raw.source})",
                        "leave them out: images and tables are normalized by the model's preprocessing")
    names = _label_names(raw, opt)
    index_of = {n: i for i, n in enumerate(names)}

    datasets, fingerprints, ids = {}, {}, {}
    shape = None
    for split, part in raw.parts.items():
        labels_text = [str(v) for v in part.labels]
        keep = np.array([t in index_of for t in labels_text], bool)
        if opt.classes is None and not keep.all():
            odd = sorted({t for t in labels_text if t not in index_of})
            raise DataError("labels that are among label_names", f"{odd[:8]} in the {split} split",
                            "add them to label_names, or pick classes with classes=[...]")
        y = np.array([index_of.get(t, -1) for t in labels_text], np.int64)
        drop: set[int] = set()
        if part.x is not None:
            allowed = None
            if part.mask is not None:
                allowed = np.broadcast_to(~part.mask.reshape(len(part.x), *([1] * (part.x.ndim - 2)), part.mask.shape[-1]),
                                          part.x.shape)  # a view: never the size of x
            drop = non_finite(part.x, part.ids, log, allowed)
            shape = part.x.shape[1:]
        index = np.array([i for i in range(len(y)) if keep[i] and i not in drop], np.int64)
        datasets[split] = _dataset(raw, part, index, y)
        fps = part.fingerprints or [fingerprint(part.x[i]) for i in range(len(y))] if part.x is not None or part.fingerprints else []
        fingerprints[split] = [fps[i] for i in index] if fps else []
        ids[split] = [part.ids[i] for i in index]
    if shape is None:
        shape = (3 if raw.image_mode == "RGB" else 1, *raw.image_size) if raw.image_size else (0,)
    if opt.feature_names is not None:
        axis = opt.feature_axis if opt.feature_axis is not None else 0
        n = shape[axis] if -len(shape) <= axis < len(shape) else None
        if n != len(opt.feature_names):
            raise DataError(f"one feature name per entry of axis {axis} of the samples (shape {tuple(shape)})",
                            f"{len(opt.feature_names)} names", "give one name per feature, or the right feature_axis")
        raw.feature_names, raw.feature_axis = opt.feature_names, axis % len(shape)

    train_y = np.asarray(datasets["train"].y) if "train" in datasets else np.zeros(0, np.int64)
    check_labels(np.concatenate([np.asarray(d.y) for d in datasets.values()]), names, log)
    record: dict = {"seed": seed, "given": sorted(raw.parts)}
    want = {"val": val_fraction if "val" not in raw.parts else 0.0,
            "test": test_fraction if "test" not in raw.parts else 0.0}
    if "train" in datasets and any(want.values()) and not log.errors:
        made = make_splits(train_y, want["val"], want["test"], seed, log)
        base, base_fp, base_ids = datasets["train"], fingerprints["train"], ids["train"]
        for split, index in made.items():
            datasets[split] = base.subset(index)
            fingerprints[split] = [base_fp[i] for i in index] if base_fp else []
            ids[split] = [base_ids[i] for i in index]
        record.update(made_from="train", val_fraction=want["val"], test_fraction=want["test"], stratified=True)
    duplicates_across(fingerprints, ids, log)
    if strict:
        log.raise_if_errors(f"the dataset {raw.name}")

    order = [s for s in SPLITS if s in datasets]
    all_y = np.concatenate([np.asarray(datasets[s].y) for s in order])
    counts = Counter(all_y.tolist())
    notes = list(raw.notes)
    if opt.classes is not None:
        notes.append(f"classes kept: {', '.join(names)}")
    spec = DatasetSpec(raw.name, raw.modality, int(len(all_y)), tuple(int(s) for s in shape), names,
                       tuple(counts.get(i, 0) for i in range(len(names))), raw.source,
                       tuple((s, len(datasets[s])) for s in order), raw.feature_names, raw.feature_axis,
                       raw.lengths, tuple(notes), tuple(log.problems), tuple(log.skipped))
    return Data(spec, {s: datasets[s] for s in order}, record, {s: fingerprints.get(s) or [] for s in order})


def describe_data(source, options: DataOptions | dict | None = None, **fields) -> DatasetSpec:
    """What graft sees in ``source``: shapes, classes, splits, and every problem (see :func:`load_data` for
    the options). Unlike :func:`load_data` it never stops at a problem: they are all listed in the spec."""
    opt = DataOptions.coerce(options, **fields)
    return _load(source, _options(opt), ProblemLog.new(opt.on_error), opt.val_fraction, opt.test_fraction, opt.seed,
                 opt.name, strict=False).spec
