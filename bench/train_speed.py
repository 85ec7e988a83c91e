"""The trainer's speed: its overhead against a bare PyTorch loop, and what caching a frozen prefix saves.

1. Trainer overhead. CIFAR ResNet-20 (akamaster weights, new 10-class head by the surgery plan) on 2000
   CIFAR-10 JPEG-subset training images (32 px), batch 64. graft's ``full`` strategy for one epoch (the
   ``Trainer`` epoch alone: no evaluation, no checkpoint) against the loop a user writes with the same model,
   batches, AdamW and per-group learning rates::

       for x, y in loader: opt.zero_grad(); loss = F.cross_entropy(model(normalize(x)), y); loss.backward(); opt.step()

   The ratio is bare time / graft time per epoch (>= 0.95 is the goal).
2. ``partial:1`` with the frozen prefix computed once vs recomputed every epoch (what fastai and Keras do).
   ImageNet MobileNetV2 1.0 (Coral weights) on 512 CIFAR-10 images upsampled to 128 px, batch 32, 4 epochs.
   Reported: the mean time of epochs 2-4 (after the cache is built) and the whole run including the one pass
   that builds the cache (goal: >= 3x faster per epoch).

``torch.set_num_threads(2)``; each measurement is the median of ``--repeats`` (default 3) runs, interleaved.

    python bench/train_speed.py [--shared /work/shared] [--out results.json] [--repeats 3]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CIFAR_RESNETS, MOBILENETV2_FILE, environment, markdown_table, parse_args, write_json  # noqa: E402

import graft  # noqa: E402
from graft.data import load_data  # noqa: E402
from graft.strategy import parse_strategy  # noqa: E402
from graft.training import Trainer  # noqa: E402


def _extra(p):
    p.add_argument("--repeats", type=int, default=3)


def _cifar(shared: Path, n: int, size: int | None = None):
    arrays = np.load(shared / "data" / "cifar10" / "cifar10_jpg_subset.npz")
    x, y = arrays["x_train"], arrays["y_train"]
    index = np.concatenate([np.flatnonzero(y == c)[: n // 10] for c in range(10)])
    x = torch.from_numpy(x[index]).permute(0, 3, 1, 2).float() / 255
    if size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return load_data((x.numpy(), y[index]), layout="NCHW")


def _grafted(path, data, **kw):
    backbone = graft.load_model(path, **kw)
    return graft.plan_surgery(backbone, data=data, keep_rows="never").apply(backbone)


def overhead(shared: Path, repeats: int) -> tuple[dict, list]:
    data = _cifar(shared, 2000)
    times = {"bare": [], "graft": []}
    for _ in range(repeats + 1):  # the first round is a warm-up
        for kind in ("bare", "graft"):
            torch.manual_seed(0)
            net = _grafted(shared / "weights" / CIFAR_RESNETS[20], data)
            with tempfile.TemporaryDirectory() as tmp:
                trainer = Trainer(net, data, parse_strategy("full", warmup_epochs=0), tmp, epochs=1, batch_size=64,
                                  eval_split=None, cache_prefix=False)
                _, phase, _ = trainer._phase_at(0)
                trainer._set_trainable(phase, phase.trainable)
                if kind == "graft":
                    t0 = time.perf_counter()
                    trainer._epoch(0, time.perf_counter())
                else:
                    module, opt, prep = trainer.module, trainer.optimizer, trainer.prep
                    module.train()
                    t0 = time.perf_counter()
                    for x, y in data.loader("train", 64, shuffle=True, seed=0):
                        opt.zero_grad(set_to_none=True)
                        loss = F.cross_entropy(module(prep.batch(x)), y)
                        loss.backward()
                        opt.step()
                times[kind].append(time.perf_counter() - t0)
    bare, mine = statistics.median(times["bare"][1:]), statistics.median(times["graft"][1:])
    entry = {"case": "full strategy, ResNet-20, 2000 images, batch 64", "bare_s": bare, "graft_s": mine,
             "ratio": bare / mine, "times_s": times}
    row = [entry["case"], f"{bare:.2f} s", f"{mine:.2f} s", f"{bare / mine:.3f}"]
    return entry, row


def prefix(shared: Path, repeats: int) -> tuple[dict, list]:
    data = _cifar(shared, 512, size=128)
    coral = {"arch": "mobilenetv2_100", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    runs = {True: [], False: []}
    for _ in range(repeats):
        for cached in (True, False):
            torch.manual_seed(0)
            net = _grafted(shared / "weights" / MOBILENETV2_FILE, data, **coral)
            with tempfile.TemporaryDirectory() as tmp:
                trainer = Trainer(net, data, parse_strategy("partial:1"), tmp, epochs=4, batch_size=32,
                                  eval_split=None, cache_prefix=cached)
                t0 = time.perf_counter()
                trainer.run()
                total = time.perf_counter() - t0
            epochs = [h["seconds"] for h in trainer.state.history]
            assert all(h["cached_prefix"] == cached for h in trainer.state.history)
            runs[cached].append({"total_s": total, "epoch_s": epochs, "later_epochs_s": statistics.mean(epochs[1:])})
    later = {k: statistics.median(r["later_epochs_s"] for r in v) for k, v in runs.items()}
    total = {k: statistics.median(r["total_s"] for r in v) for k, v in runs.items()}
    entry = {"case": "partial:1, MobileNetV2 at 128 px, 512 images, 4 epochs", "runs": {str(k): v for k, v in runs.items()},
             "epoch_speedup": later[False] / later[True], "total_speedup": total[False] / total[True],
             "later_epoch_s": {"cached": later[True], "recomputed": later[False]},
             "total_s": {"cached": total[True], "recomputed": total[False]}}
    row = [entry["case"], f"{later[False]:.2f} s / epoch, {total[False]:.1f} s in all",
           f"{later[True]:.3f} s / epoch, {total[True]:.1f} s in all",
           f"{later[False] / later[True]:.1f}x per epoch, {total[False] / total[True]:.1f}x in all"]
    return entry, row


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], _extra)
    torch.set_num_threads(2)
    shared = Path(args.shared)
    if not (shared / "data" / "cifar10" / "cifar10_jpg_subset.npz").is_file():
        print("skipped: the CIFAR-10 subset is absent")
        return
    first, row1 = overhead(shared, args.repeats)
    print(markdown_table(["case", "bare loop", "graft", "ratio bare / graft"], [row1]), flush=True)
    second, row2 = prefix(shared, args.repeats)
    print(markdown_table(["case", "recomputed prefix", "cached prefix", "speedup"], [row2]))
    write_json(args.out, {"environment": environment(), "repeats": args.repeats, "overhead": first, "prefix": second})


if __name__ == "__main__":
    main()
