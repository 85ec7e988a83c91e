"""The datasets every later stage reads: samples as float tensors, channels first, with integer labels.

``ArrayDataset`` holds samples in memory (arrays, tables, time series, audio features); ``ImageFileDataset``
decodes image files when an item is read, so that loader workers can share the work. ``Data`` bundles the
splits with their :class:`~graft.data.spec.DatasetSpec` and makes the ``DataLoader``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from graft.data.spec import DatasetSpec
from graft.errors import DataError
from graft.files import write_json


def to_float(x: np.ndarray) -> np.ndarray:
    """uint8 images -> float32 in [0, 1]; anything else -> float32 as it is."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    return x.astype(np.float32, copy=False)


class ArrayDataset(Dataset):
    """Samples held in one array ``x`` (N, C, ...) with labels ``y`` (N,); an optional per-item transform.

    ``rows`` picks this dataset's samples out of a larger array without copying them (a split or a subsample of
    a memory-mapped dataset stays on disk); ``x`` then gives those rows as one array, in memory."""

    def __init__(self, x: np.ndarray, y: np.ndarray, ids: Sequence[str] | None = None,
                 transform: Callable | None = None, rows: np.ndarray | None = None):
        self.source = x
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.y = np.asarray(y, dtype=np.int64)
        if len(self) != len(self.y):
            raise DataError("as many labels as samples", f"{len(self)} samples and {len(self.y)} labels",
                            "check that x and y come from the same split")
        self.ids = list(ids) if ids is not None else [f"#{i}" for i in range(len(self))]
        self.transform = transform

    @property
    def x(self) -> np.ndarray:
        """The samples, (N, C, ...): the array itself when no rows are picked, else a copy of those rows."""
        return self.source if self.rows is None else self.source[self.rows]

    def __len__(self) -> int:
        return len(self.source) if self.rows is None else len(self.rows)

    def sample(self, i: int) -> np.ndarray:
        return np.asarray(self.source[i if self.rows is None else self.rows[i]])

    def __getitem__(self, i: int):
        x = torch.from_numpy(to_float(self.sample(i)))
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.y[i])

    def chunks(self, max_bytes: int = 64 * 2**20):
        """The samples in order, as arrays of consecutive rows of at most about ``max_bytes``: a whole pass over a
        memory-mapped dataset in bounded memory."""
        per = max(1, self.source[:1].nbytes)
        step = max(1, max_bytes // per)
        for i in range(0, len(self), step):
            yield np.asarray(self.source[i:i + step] if self.rows is None else self.source[self.rows[i:i + step]])

    def subset(self, index: np.ndarray) -> ArrayDataset:
        index = np.asarray(index, dtype=np.int64)
        rows = index if self.rows is None else self.rows[index]
        return ArrayDataset(self.source, self.y[index], [self.ids[i] for i in index], self.transform, rows)

    def with_transform(self, transform: Callable | None) -> ArrayDataset:
        return ArrayDataset(self.source, self.y, self.ids, transform, self.rows)


def high_depth_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """16/32-bit integer or float grey pixels to 8 bits, keeping their scale (not clipping at 255).

    Integer modes ("I;16*", "I") are read as 16-bit (0..65535, the depth of 16-bit PNG and TIFF) and keep
    their top 8 bits; float ("F") is read as 0..1 when every value lies there, else as 0..255.
    """
    a = np.asarray(a)
    if mode == "F":
        a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if a.size and a.min() >= 0 and a.max() <= 1 else 1.0
        return np.clip(np.rint(a * scale), 0, 255).astype(np.uint8)
    return (np.clip(a.astype(np.int64), 0, 65535) >> 8).astype(np.uint8)


class ImageFileDataset(Dataset):
    """Image files decoded on access with PIL, converted to ``mode`` and (optionally) resized to ``size``."""

    def __init__(self, paths: Sequence[str], y: np.ndarray, mode: str, size: tuple[int, int] | None = None,
                 transform: Callable | None = None):
        self.paths, self.y = list(paths), np.asarray(y, dtype=np.int64)
        self.mode, self.size, self.transform = mode, size, transform
        self.ids = self.paths

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, i: int) -> np.ndarray:
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            if im.mode.startswith("I") or im.mode == "F":  # PIL's convert would clip these at 255
                im = Image.fromarray(high_depth_to_uint8(np.asarray(im), im.mode), "L")
            im = im.convert(self.mode)
            if self.size is not None and im.size != (self.size[1], self.size[0]):
                im = im.resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR)
            a = np.asarray(im)
        return a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0)

    def __getitem__(self, i: int):
        x = torch.from_numpy(to_float(self.read(i)))
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.y[i])

    def subset(self, index: np.ndarray) -> ImageFileDataset:
        return ImageFileDataset([self.paths[i] for i in index], self.y[index], self.mode, self.size, self.transform)

    def with_transform(self, transform: Callable | None) -> ImageFileDataset:
        return ImageFileDataset(self.paths, self.y, self.mode, self.size, transform)


def inference_batch_size(device: torch.device | str = "cpu", sample_shape: tuple[int, ...] | None = None) -> int:
    """The batch for passes without gradients. On an accelerator, 256. On the CPU, small batches of large inputs:
    their activations then stay in the caches (MobileNetV2 at 128 px runs 3x faster at 8 than at 64 on 2 cores,
    at 224 px 2x faster at 8 than at 32), while small inputs (32 px) gain up to 128. The rule: about 2**19 input
    values per batch, between 8 and 256 samples."""
    if torch.device(device).type != "cpu":
        return 256
    if not sample_shape:
        return 64
    values = max(1, math.prod(sample_shape))
    return int(min(256, max(8, 2 ** math.floor(math.log2(max(1.0, 2**19 / values))))))


def default_workers(dataset: Dataset) -> int:
    """Worker processes for a loader: none for in-memory arrays (a worker only adds IPC); for files, the cores
    left after torch's own threads, up to 4 (on 2 cores that is none: measured faster, see BENCHMARKS.md)."""
    if isinstance(dataset, torch.utils.data.Subset):
        return default_workers(dataset.dataset)
    if isinstance(dataset, ArrayDataset) and dataset.transform is None:
        return 0
    return max(0, min(4, (os.cpu_count() or 1) - torch.get_num_threads()))


@dataclass
class Data:
    """A loaded dataset: its description, its splits (``train`` and, when given or made, ``val``/``test``)."""

    spec: DatasetSpec
    splits: dict[str, Dataset]
    split_record: dict = field(default_factory=dict)  # how the splits were made: seed, fractions, sample ids
    sample_fingerprints: dict[str, list[str]] = field(default_factory=dict, repr=False)  # per split, per sample

    def subsample(self, max_samples: int, seed: int = 0, splits: Sequence[str] | None = None) -> Data:
        """A copy whose splits (all, or ``splits``) hold at most ``max_samples`` samples each, drawn stratified
        by class (seeded); smaller splits are kept whole. For quick measures on a large dataset."""
        if isinstance(max_samples, bool) or not isinstance(max_samples, (int, np.integer)) or max_samples < 1:
            raise DataError("max_samples as a positive integer", repr(max_samples), "for example max_samples=2000")
        from sklearn.model_selection import train_test_split

        new, fps = {}, {}
        for name, ds in self.splits.items():
            if (splits is not None and name not in splits) or len(ds) <= max_samples:
                new[name], fps[name] = ds, self.sample_fingerprints.get(name, [])
                continue
            index = np.arange(len(ds))
            y = np.asarray(ds.y)
            try:
                keep, _ = train_test_split(index, train_size=int(max_samples), stratify=y, random_state=seed)
            except ValueError:  # a class too small to stratify: a plain random draw
                keep = np.random.default_rng(seed).choice(index, int(max_samples), replace=False)
            keep = np.sort(keep)
            new[name] = ds.subset(keep)
            known = self.sample_fingerprints.get(name) or []
            fps[name] = [known[i] for i in keep] if len(known) == len(ds) else []
        record = {**self.split_record, "subsampled": {"max_samples": int(max_samples), "seed": seed}}
        counts = Counter(int(v) for d in new.values() for v in np.asarray(d.y))
        spec = replace(self.spec, num_samples=sum(len(d) for d in new.values()),
                       class_counts=tuple(counts.get(i, 0) for i in range(len(self.spec.label_names))),
                       splits=tuple((k, len(v)) for k, v in new.items()),
                       notes=(*self.spec.notes, f"subsampled to at most {max_samples} samples per split "
                                                f"(stratified, seed {seed})"))
        return Data(spec, new, record, fps)

    def fingerprint(self, split: str = "train") -> str:
        """A digest of everything in ``split`` that reaches a model: the samples' bytes (or, for image files,
        their content fingerprints and how they are decoded), the labels, and the class names. Feature caches
        are keyed by it."""
        import hashlib

        ds = self[split]
        h = hashlib.blake2b(digest_size=16)
        h.update(json.dumps([type(ds).__name__, list(self.spec.label_names), list(self.spec.input_shape)]).encode())
        fps = self.sample_fingerprints.get(split)
        if isinstance(ds, ImageFileDataset):
            h.update(json.dumps([ds.mode, list(ds.size) if ds.size else None]).encode())
        if fps and len(fps) == len(ds):
            h.update("\n".join(fps).encode())
        elif isinstance(ds, ArrayDataset):
            h.update(str((ds.source.dtype.str, (len(ds), *ds.source.shape[1:]))).encode())
            for part in ds.chunks():
                h.update(memoryview(np.ascontiguousarray(part).reshape(-1).view(np.uint8)))
        elif isinstance(ds, ImageFileDataset):  # no content fingerprints: path, size and modification time
            for path in ds.paths:
                st = os.stat(path)
                h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        else:
            h.update("\n".join(map(str, getattr(ds, "ids", range(len(ds))))).encode())
        h.update(np.ascontiguousarray(np.asarray(ds.y, np.int64)).tobytes())
        return h.hexdigest()

    def __getitem__(self, split: str) -> Dataset:
        if split not in self.splits:
            raise DataError(f"a split among {sorted(self.splits)}", repr(split),
                            "make one with val_fraction=/test_fraction= when loading")
        return self.splits[split]

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())
        return f"Data({self.spec.name!r}, {self.spec.modality}, shape={self.spec.input_shape}, {sizes})"

    def arrays(self, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """The split as float32 arrays (N, C, ...) and int64 labels (decodes files when needed)."""
        ds = self[split]
        if isinstance(ds, ArrayDataset) and ds.transform is None:  # in memory: for small data (a plot, a test)
            return to_float(ds.x), ds.y
        xs = [ds[i][0].numpy() for i in range(len(ds))]
        return np.stack(xs) if xs else np.zeros((0, *self.spec.input_shape), np.float32), np.asarray(ds.y)

    def inference_batch_size(self, split: str = "train", device: torch.device | str = "cpu",
                             input_size: tuple[int, ...] | None = None) -> int:
        """The batch for a pass without gradients over ``split`` (see :func:`inference_batch_size`); ``input_size``:
        the size the samples are resized to first."""
        part = self[split] if split in self.splits else None
        loaded = tuple(part[0][0].shape) if part is not None and len(part) else None
        shape = loaded
        if shape and input_size:
            shape = (*shape[: len(shape) - len(input_size)], *input_size)
        size = inference_batch_size(device, shape)
        if loaded and torch.device(device).type == "cpu":  # a batch as loaded, before any resize: at most 64 MiB
            size = min(size, max(8, 2 ** math.floor(math.log2(max(1.0, 2**24 / math.prod(loaded))))))
        return size

    def loader(self, split: str = "train", batch_size: int = 64, shuffle: bool | None = None,
               workers: int | None = None, transform: Callable | None = None, seed: int = 0, *,
               rows: Sequence[int] | None = None, batches: Sequence[Sequence[int]] | None = None,
               pin_memory: bool = False) -> DataLoader:
        """A ``DataLoader`` over ``split``: shuffled for train, workers for file-backed data (see ``default_workers``).
        ``rows``: only these samples, in this order (a rank's shard); ``batches``: exactly these batches of sample
        indices (a rank's part of each global batch); ``pin_memory``: page-locked batches for a GPU."""
        ds = self[split]
        if transform is not None:
            ds = ds.with_transform(transform)
        if rows is not None:
            ds = torch.utils.data.Subset(ds, [int(i) for i in rows])
        workers = default_workers(ds) if workers is None else workers
        gen = torch.Generator().manual_seed(seed)
        if batches is not None:
            return DataLoader(ds, batch_sampler=[[int(i) for i in b] for b in batches], num_workers=workers,
                              persistent_workers=workers > 0, pin_memory=pin_memory)
        return DataLoader(ds, batch_size=batch_size, shuffle=(split == "train") if shuffle is None else shuffle,
                          num_workers=workers, persistent_workers=workers > 0, generator=gen,
                          pin_memory=pin_memory)

    def write_splits(self, run_dir: str | Path) -> Path:
        """Record how the splits were made (seed, fractions, the ids in each) as ``splits.json``, atomically."""
        record = dict(self.split_record)
        record["ids"] = {k: list(getattr(v, "ids", [])) for k, v in self.splits.items()}
        return write_json(Path(run_dir) / "splits.json", record)
