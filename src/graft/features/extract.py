"""One pass of a network over a dataset, tapping several layers at once; pooled features cached on disk.

``extract_features`` registers a forward hook on each tapped module (every block by default) that pools
its output to one vector per sample, and a pre-hook on every BatchNorm layer that accumulates the mean and
variance of that layer's input over the dataset (to compare with the running statistics the BN stored from
the source data). The network runs once per batch under ``torch.inference_mode`` in eval mode; the pooled
features are written batch by batch into memory-mapped ``.npy`` files, so memory stays bounded by one batch
whatever the dataset's size. The network's own output (the source head's logits) is kept too, for LEEP/NCE.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from graft.data import Data
from graft.data.transforms import Preprocess, is_cacheable
from graft.errors import GraftError
from graft.features.cache import EntryLock, EntryWriter, cache_key, default_root, read_entry, remove_entry
from graft.fingerprint import weights_digest
from graft.jsonable import JsonSerializable
from graft.models import Backbone
from graft.models.pooling import pool_output as _pool
from graft.progress import track

POOLS = ("avg", "max", "avgmax", "token")


@dataclass(frozen=True)
class FeatureSet(JsonSerializable):
    """Pooled features of one split at several layers, on disk; arrays are memory-mapped when read.

    ``layers[i]`` has ``dims[i]`` features per sample (``features(layer)`` is (num_samples, dims[i])).
    ``batchnorms`` name the BN layers whose input statistics were gathered, ``batchnorm_blocks`` the block
    each belongs to (the block running when it ran, else the last block that ran before it).
    """

    directory: str
    key: str
    model: str
    split: str
    layers: tuple[str, ...]
    dims: tuple[int, ...]
    num_samples: int
    pool: str
    label_names: tuple[str, ...]
    has_logits: bool
    batchnorms: tuple[str, ...] = ()
    batchnorm_blocks: tuple[str, ...] = ()
    cached: bool = True  # False: a temporary folder, removed when the process exits
    from_cache: bool = False  # this call read an existing entry
    seconds: float = 0.0  # time this call took (extraction, or reading and checking the cache)
    notes: tuple[str, ...] = field(default_factory=tuple)

    def _path(self, name: str) -> Path:
        return Path(self.directory) / f"{name}.npy"

    def layer_index(self, layer: str | int) -> int:
        if isinstance(layer, int) and not isinstance(layer, bool):
            if -len(self.layers) <= layer < len(self.layers):
                return layer % len(self.layers)
        elif layer in self.layers:
            return self.layers.index(layer)
        raise GraftError("a layer of this feature set (name or index)", repr(layer),
                         f"layers are: {', '.join(self.layers)}")

    def features(self, layer: str | int) -> np.ndarray:
        """(num_samples, dim) float32, memory-mapped read-only."""
        return np.load(self._path(f"layer_{self.layer_index(layer):03d}"), mmap_mode="r")

    def labels(self) -> np.ndarray:
        return np.load(self._path("labels"))

    def logits(self) -> np.ndarray | None:
        """The network's own outputs (its source head), (num_samples, source classes), or None."""
        return np.load(self._path("logits"), mmap_mode="r") if self.has_logits else None

    def batchnorm_statistics(self) -> dict[str, dict[str, np.ndarray]]:
        """Per BN layer: the source's ``running_mean``/``running_var`` and the target's input ``mean``/``var``."""
        if not self.batchnorms:
            return {}
        arrays = np.load(Path(self.directory) / "batchnorm.npz", allow_pickle=False)
        return {name: {k: arrays[k][i, :arrays["channels"][i]] for k in ("source_mean", "source_var",
                                                                          "target_mean", "target_var")}
                | {"block": self.batchnorm_blocks[i]}
                for i, name in enumerate(self.batchnorms)}


def _resolve_layers(backbone: Backbone, layers) -> list[str]:
    spec = backbone.spec
    taps = list(spec.taps) or [b.name for b in spec.blocks]
    if layers is None or layers == "all":
        chosen = taps
    elif layers == "last":
        chosen = taps[-1:]
    else:
        if isinstance(layers, (str, int)):
            layers = [layers]
        layers = list(layers)
        if not layers:
            raise GraftError("at least one layer to tap", "an empty list", "leave layers= out to tap every block")
        chosen = []
        modules = dict(backbone.module.named_modules())
        for layer in layers:
            if isinstance(layer, str) and layer in modules and layer:
                chosen.append(layer)
            else:
                chosen.append(spec.blocks[spec.block_index(layer)].name)
    if len(set(chosen)) != len(chosen):
        raise GraftError("each layer once", f"{chosen}", "remove the repeated layers")
    return chosen


class _Taps:
    """Hooks that pool tapped outputs and accumulate BN input statistics for one batch at a time."""

    def __init__(self, module: nn.Module, layers: list[str], pool: str, spatial_dims: int, batchnorm: bool,
                 blocks: list[str]):
        self.outputs: dict[str, torch.Tensor] = {}
        self.calls: dict[str, int] = {}
        self.handles = []
        modules = dict(module.named_modules())
        for name in layers:
            self.handles.append(modules[name].register_forward_hook(self._tap(name, pool, spatial_dims)))
        self.bn_names = [n for n, m in modules.items() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                         and m.track_running_stats and m.running_mean is not None] if batchnorm else []
        self.bn_stats = {n: None for n in self.bn_names}  # n -> (count, mean (C,), M2 (C,)) in float64
        # per BN: two preallocated (rows, C) buffers of per-sample statistics and how many rows are filled; written
        # in place (out=), so that nothing small and long-lived is allocated between the batches' activations
        # (such tensors kept glibc from reusing the freed activations: 330 MB of growth over 12000 samples)
        self.pending: dict[str, list] = {n: [None, None, 0, 1] for n in self.bn_names}
        self.bn_block: dict[str, str] = {}
        self.running: list[str] = []
        self.last_block = ""
        for name in blocks:  # which block each BN runs in (registered first: a BN may be a block itself)
            if name in modules:
                self.handles.append(modules[name].register_forward_pre_hook(self._enter(name)))
                self.handles.append(modules[name].register_forward_hook(self._leave(name)))
        for name in self.bn_names:
            self.handles.append(modules[name].register_forward_pre_hook(self._bn(name)))

    def _tap(self, name, pool, spatial_dims):
        def hook(_module, _inputs, out):
            self.calls[name] = self.calls.get(name, 0) + 1
            self.outputs[name] = _pool(out, pool, spatial_dims).float()
        return hook

    def _enter(self, name):
        def hook(_module, _inputs):
            self.running.append(name)
        return hook

    def _leave(self, name):
        def hook(_module, _inputs, _out):
            if self.running and self.running[-1] == name:
                self.running.pop()
            self.last_block = name
        return hook

    def _bn(self, name):
        def hook(_module, inputs):
            x = inputs[0].detach()
            if name not in self.bn_block:
                self.bn_block[name] = self.running[-1] if self.running else self.last_block
            # two fast reductions per sample and channel over positions (a var_mean over (0, 2, 3) runs 20x
            # slower on CPU, and x * x allocates a copy); combined in float64 later, a few batches at a time,
            # so that a network with many BN layers pays few small-tensor operations per batch
            dims = tuple(range(2, x.ndim))
            state = self.pending[name]
            n, c = x.shape[0], x.shape[1]
            if state[0] is None or state[0].shape[1] != c or state[0].dtype != x.dtype or n > len(state[0]):
                self._flush_one(name)
                rows = max(16 * n, 1024)
                state[:] = [torch.empty(rows, c, dtype=x.dtype, device=x.device),
                            torch.empty(rows, c, dtype=x.dtype, device=x.device), 0, 1]
            elif state[2] + n > len(state[0]):
                self._flush_one(name)
            r = state[2]
            if dims:
                torch.mean(x, dims, out=state[0][r:r + n])
                torch.linalg.vector_norm(x, dim=dims, out=state[1][r:r + n])
                state[3] = int(np.prod(x.shape[2:]))
            else:
                state[0][r:r + n] = x
                torch.abs(x, out=state[1][r:r + n])
                state[3] = 1
            state[2] = r + n
        return hook

    def flush(self) -> None:
        """Fold the pending per-sample statistics into each BN's running (count, mean, M2)."""
        for name in self.pending:
            self._flush_one(name)

    def _flush_one(self, name: str) -> None:
        means, norms, rows, positions = self.pending[name]
        if not rows:
            return
        self.pending[name][2] = 0
        mean_nc = means[:rows].cpu().double()  # float64 on the host (MPS has none)
        sumsq_nc = norms[:rows].cpu().double() ** 2
        m2_nc = (sumsq_nc - positions * mean_nc**2).clamp_min(0)
        n = mean_nc.shape[0] * positions
        mean = mean_nc.mean(0)
        m2 = m2_nc.sum(0) + positions * ((mean_nc - mean) ** 2).sum(0)
        prev = self.bn_stats[name]
        if prev is None:
            self.bn_stats[name] = (n, mean, m2)
        else:  # Chan et al.'s parallel update of the mean and the sum of squared deviations
            n0, mean0, m20 = prev
            delta = mean - mean0
            total = n0 + n
            self.bn_stats[name] = (total, mean0 + delta * (n / total), m20 + m2 + delta**2 * (n0 * n / total))

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def _material(backbone: Backbone, data: Data, split: str, layers: list[str], pool: str, prep: Preprocess,
              transform, batchnorm: bool) -> dict:
    return {"weights": weights_digest(backbone.module), "model": backbone.spec.name, "layers": layers, "pool": pool,
            "preprocess": repr(prep), "transform": repr(transform), "data": data.fingerprint(split), "split": split,
            "batchnorm": batchnorm, "dtype": "float32"}


def _feature_set(meta: dict, directory: Path, **extra) -> FeatureSet:
    fields = {k: meta[k] for k in ("model", "split", "pool")}
    return FeatureSet(directory=str(directory), key=Path(directory).name, layers=tuple(meta["layers"]), dims=tuple(meta["dims"]),
                      num_samples=meta["num_samples"], label_names=tuple(meta["label_names"]),
                      has_logits=meta["has_logits"], batchnorms=tuple(meta["batchnorms"]),
                      batchnorm_blocks=tuple(meta["batchnorm_blocks"]), **fields, **extra)


def _checked_size(input_size, data: Data) -> tuple[int, ...] | None:
    """``input_size`` with one value per spatial axis of the data: one value for images is a square (32 -> 32 x 32)."""
    if input_size is None:
        return None
    dims = max(0, len(data.spec.input_shape) - 1)
    size = (input_size,) if isinstance(input_size, int) else tuple(input_size)
    if not size or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in size):
        raise GraftError("input_size as positive integers: H W for images, L for sequences", repr(input_size),
                         "for example input_size=(32, 32)")
    if len(size) == 1 and dims > 1:
        size = size * dims
    if len(size) != dims:
        raise GraftError(f"input_size with {dims} value{'s' if dims != 1 else ''} (the samples of {data.spec.name} "
                         f"are {tuple(data.spec.input_shape)})", repr(tuple(size)),
                         "give H W for images, L for sequences" if dims else "leave it out for tables")
    return tuple(int(v) for v in size)


def extract_features(backbone: Backbone, data: Data, *, split: str = "train", layers=None, pool: str = "avg",
                     batch_size: int | None = None, input_size: tuple[int, ...] | None = None, normalize: bool = True,
                     transform=None, batchnorm: bool = False, cache: bool = True,
                     cache_dir: str | Path | None = None, device: str | torch.device | None = None,
                     workers: int | None = None, progress: bool = True) -> FeatureSet:
    """Run ``backbone`` once over ``data[split]`` and keep pooled features of several layers.

    Parameters
    ----------
    layers: ``None``/``"all"`` (every block), ``"last"``, or block names/indices (or any module path).
    pool: ``avg`` (global average over positions), ``max``, ``avgmax`` (both, concatenated), or ``token``
        (the first token of a transformer's (N, T, D) output; average elsewhere).
    batch_size: samples per forward pass; by default chosen from the input size (small batches of large inputs
        run faster on a CPU: :func:`graft.data.dataset.inference_batch_size`).
    input_size: resize every batch to this size first (bilinear/linear), e.g. (224, 224); default as is.
    normalize: apply the network's stored mean/std (timm's pretrained_cfg, the zoo entry, graft's checkpoint).
    transform: an extra per-sample transform; a random one (augmentation) disables the cache (said in notes).
    batchnorm: also gather the mean and variance of every BatchNorm layer's input (for similarity; ``graft
        probe`` turns it on). It costs 5-15 % more time (two reductions per BN layer and batch; BENCHMARKS.md).
    device: where the batches go (default: where the network's parameters are; the workflow places the network
        on its run's device). Extraction runs in fp32 whatever the run's precision: the measures compare features
        with the source's fp32 BatchNorm statistics.
    cache: read and write the disk cache (``cache_dir``, default :func:`graft.features.cache.default_root`);
        ``False`` writes to a temporary folder removed at exit.

    The cache key covers the weights (a digest of every tensor), the layers, the pooling, the preprocessing and
    transform, the data (:meth:`Data.fingerprint`), graft's version and the entry format; an entry that fails
    its check (a changed or truncated file) is recomputed, and the reason is in ``notes``.
    """
    if pool not in POOLS:
        raise GraftError(f"pool among {POOLS}", repr(pool), "avg is the usual choice")
    if not isinstance(backbone, Backbone):
        raise GraftError("a graft Backbone (graft.load_model(...))", type(backbone).__name__, "load it with graft.load_model")
    if not isinstance(data, Data):
        raise GraftError("a graft Data (graft.load_data(...))", type(data).__name__, "load it with graft.load_data")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise GraftError("batch_size >= 1", repr(batch_size), "for example batch_size=64, or None to choose")
    ds = data[split]
    if len(ds) == 0:
        raise GraftError("a split with samples", f"{split!r} is empty", "pick another split")
    chosen = _resolve_layers(backbone, layers)
    inp = backbone.spec.input
    have = data.spec.input_shape[0] if data.spec.input_shape else None
    grey_to_rgb = have == 1 and inp.channels == 3 and inp.spatial_dims == 2
    if have is not None and have != inp.channels and not grey_to_rgb:
        raise GraftError(f"data with the {inp.channels} input channels of {backbone.spec.name}",
                         f"{have} channels in {data.spec.name}",
                         "adapt the network's first layer first: graft plan MODEL --data DATA, then plan.apply(...)")
    input_size = _checked_size(input_size, data)
    prep = Preprocess(inp.mean if normalize else None, inp.std if normalize else None, input_size)
    notes: list[str] = []
    use_cache = cache and is_cacheable(transform)
    if cache and not use_cache:
        notes.append(f"not cached: the transform {transform!r} is random (augmentation), so its features differ "
                     "on every pass")
    start = time.perf_counter()
    device = torch.device(device) if device is not None else next(
        (p.device for p in backbone.module.parameters()), torch.device("cpu"))
    material = {**_material(backbone, data, split, chosen, pool, prep, transform, batchnorm), "grey_to_rgb": grey_to_rgb}
    if device.type != "cpu":  # another device's kernels round differently: its own entry (CPU keys unchanged)
        material["device"] = device.type
    if grey_to_rgb:
        notes.append("grey images are repeated on the network's 3 input channels")
    key = cache_key(material)
    root = Path(cache_dir) if cache_dir is not None else default_root()
    lock = None
    if use_cache:
        meta, why = read_entry(root, key)
        if meta is None:  # compute it, or wait for the process that is computing it and read its entry
            lock = EntryLock(root, key)
            meta, why = read_entry(root, key)
        if meta is not None:
            if lock is not None:
                lock.release()
            waited = ("another process was computing the same features: this one waited and read its cache entry",)
            return _feature_set(meta, root / key, from_cache=True, seconds=time.perf_counter() - start,
                                notes=tuple(notes) + (waited if lock is not None and lock.waited else ()))
        if why:
            notes.append(f"cache entry {key[:12]} was not used and was recomputed: {why}")
            remove_entry(root, key)
    else:
        root = Path(tempfile.mkdtemp(prefix="graft-features-"))
        atexit.register(shutil.rmtree, root, True)

    module = backbone.module
    was_training = module.training
    blocks = [b.name for b in backbone.spec.blocks]
    taps: _Taps | None = None
    arrays: dict[str, np.memmap] = {}
    logits_ok = True
    try:  # from here on, whatever fails gives back the entry's lock and the module's mode
        module.eval()
        taps = _Taps(module, chosen, pool, inp.spatial_dims, batchnorm, blocks)
        if batch_size is None:
            batch_size = data.inference_batch_size(split, device, input_size)
        loader = data.loader(split, batch_size, shuffle=False, workers=workers, transform=transform,
                             pin_memory=device.type == "cuda")
        n = len(ds)
        with EntryWriter(root, key) as writer, torch.inference_mode():
            row = batches_done = 0
            batches = track(loader, f"features of {split} ({len(chosen)} layers)", total=len(loader),
                            min_items=5) if progress else loader
            for x, _ in batches:
                taps.outputs.clear()
                taps.calls.clear()
                x = x.to(device, non_blocking=device.type == "cuda")
                if grey_to_rgb:
                    x = x.expand(-1, 3, *x.shape[2:])
                try:
                    out = module(prep.batch(x))
                except Exception as exc:
                    from graft.devices import is_out_of_memory

                    if is_out_of_memory(exc):
                        raise GraftError(f"memory on {device} for extracting a batch of {len(x)}",
                                         "out of memory", f"pass a smaller batch: batch_size={max(1, len(x) // 2)} "
                                         f"(--batch-size {max(1, len(x) // 2)})") from None
                    raise
                twice = [k for k, v in taps.calls.items() if v > 1]
                if twice:
                    raise GraftError("tapped layers that run once per forward pass", f"{twice} ran more than once",
                                     "tap the enclosing block instead")
                missing = [k for k in chosen if k not in taps.outputs]
                if missing:
                    raise GraftError("tapped layers that run in the forward pass", f"{missing} did not run",
                                     "tap layers the network uses")
                if not arrays:
                    for i, name in enumerate(chosen):
                        arrays[name] = writer.array(f"layer_{i:03d}", (n, taps.outputs[name].shape[1]))
                    logits_ok = isinstance(out, torch.Tensor) and out.ndim == 2
                    if logits_ok:
                        arrays[""] = writer.array("logits", (n, out.shape[1]))
                m = len(x)
                for name in chosen:
                    arrays[name][row:row + m] = taps.outputs[name].cpu().numpy()
                if logits_ok:
                    arrays[""][row:row + m] = out.float().cpu().numpy()
                row += m
                batches_done += 1
                if batches_done % 16 == 0:
                    taps.flush()
            taps.flush()
            for a in arrays.values():
                a.flush()
            arrays.clear()
            writer.save("labels", np.asarray(ds.y, np.int64))
            bn_names = [b for b in taps.bn_names if taps.bn_stats[b] is not None]
            if bn_names:
                width = max(int(taps.bn_stats[b][1].numel()) for b in bn_names)
                table = {k: np.full((len(bn_names), width), np.nan) for k in
                         ("source_mean", "source_var", "target_mean", "target_var")}
                mods = dict(module.named_modules())
                channels = np.zeros(len(bn_names), np.int64)
                for i, b in enumerate(bn_names):
                    count, mean, m2 = taps.bn_stats[b]
                    c = mean.numel()
                    channels[i] = c
                    table["target_mean"][i, :c] = mean.cpu().numpy()
                    table["target_var"][i, :c] = (m2 / max(count, 1)).cpu().numpy()
                    table["source_mean"][i, :c] = mods[b].running_mean.detach().double().cpu().numpy()
                    table["source_var"][i, :c] = mods[b].running_var.detach().double().cpu().numpy()
                np.savez(writer.tmp / "batchnorm.npz", channels=channels, **table)
            meta = {**material, "dims": _dims(writer.tmp, len(chosen)),
                    "num_samples": n, "label_names": list(data.spec.label_names), "has_logits": logits_ok,
                    "batchnorms": bn_names, "batchnorm_blocks": [taps.bn_block.get(b, "") for b in bn_names]}
            final = writer.commit(meta)
    finally:
        if taps is not None:
            taps.close()
        module.train(was_training)
        if lock is not None:
            lock.release()
    if not use_cache:
        notes.append("not cached (cache=False): the arrays live in a temporary folder until the process exits")
    return _feature_set(meta, final, cached=use_cache, seconds=time.perf_counter() - start, notes=tuple(notes))


def _dims(folder: Path, count: int) -> list[int]:
    return [int(np.load(folder / f"layer_{i:03d}.npy", mmap_mode="r").shape[1]) for i in range(count)]
