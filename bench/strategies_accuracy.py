"""Every strategy on a real transfer task, same data, same epochs: test accuracy and time, over seeds.

ImageNet MobileNetV2 1.0 (Coral weights, inputs scaled to [-1, 1]) -> the CIFAR-10 JPEG subset:
``--per-class`` training images per class (default 1000: the whole subset's train split), 10 % of them held
out for validation (best checkpoint), evaluated on the 2000 test images, upsampled to ``--size`` px (default
64). ``graft.fine_tune`` plans the surgery (a new 10-class head, ``keep_rows="never"``) and trains each strategy
for ``--epochs`` epochs with batch 64 and its default learning rates (head 1e-3, layer decay 0.7, cosine,
half an epoch of warm-up). ``scratch`` is the same architecture from random weights. ``--seeds`` seeds.

    python bench/strategies_accuracy.py [--shared /work/shared] [--out results.json] [--epochs 3] [--seeds 3]
        [--size 64] [--per-class 1000] [--strategies linear,partial:1,...]
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
from _common import MOBILENETV2_FILE, environment, markdown_table, parse_args, write_json  # noqa: E402

import graft  # noqa: E402
from graft.data import load_data  # noqa: E402

STRATEGIES = "linear,partial:1,partial:3,lp-ft,two-phase,gradual,full,scratch"


def _extra(p):
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--per-class", type=int, default=1000)
    p.add_argument("--strategies", default=STRATEGIES)


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    t = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False).numpy()


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], _extra)
    torch.set_num_threads(2)
    shared = Path(args.shared)
    arrays = np.load(shared / "data" / "cifar10" / "cifar10_jpg_subset.npz")
    y = arrays["y_train"]
    index = np.concatenate([np.flatnonzero(y == c)[: args.per_class] for c in range(10)])
    x_train, y_train = _resize(arrays["x_train"][index], args.size), y[index]
    x_test, y_test = _resize(arrays["x_test"], args.size), arrays["y_test"]
    coral = {"arch": "mobilenetv2_100", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    weights = shared / "weights" / MOBILENETV2_FILE
    results, rows = [], []
    for strategy in args.strategies.split(","):
        runs = []
        for seed in range(args.seeds):
            data = load_data((x_train, y_train), layout="NCHW", val_fraction=0.1, seed=seed)
            data = graft.data.Data(data.spec, {**data.splits, "test": load_data((x_test, y_test), layout="NCHW")["train"]},
                                   data.split_record)
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                record = graft.fine_tune(weights, data, Path(tmp) / "run", strategy=strategy, epochs=args.epochs,
                                         batch_size=64, seed=seed, load_options=coral, target={"keep_rows": "never"})
                seconds = time.perf_counter() - t0
            runs.append({"seed": seed, "test_accuracy": record.final_accuracy, "macro_f1": record.final_macro_f1,
                         "seconds": seconds, "trainable_params": record.trainable_params,
                         "best_epoch": record.best_epoch})
            print(f"{strategy} seed {seed}: test {record.final_accuracy:.3f} in {seconds:.0f} s", flush=True)
        acc = [r["test_accuracy"] for r in runs]
        entry = {"strategy": strategy, "runs": runs, "mean": statistics.mean(acc),
                 "stdev": statistics.stdev(acc) if len(acc) > 1 else 0.0,
                 "seconds_mean": statistics.mean(r["seconds"] for r in runs)}
        results.append(entry)
        rows.append([strategy, f"{entry['mean']:.3f} ± {entry['stdev']:.3f}", f"{entry['seconds_mean']:.0f} s",
                     f"{runs[0]['trainable_params']:,}"])
        write_json(args.out, {"environment": environment(), "epochs": args.epochs, "seeds": args.seeds,
                              "size": args.size, "per_class": args.per_class, "strategies": results,
                              "complete": False})  # after every strategy: a cut run keeps what it measured
    print()
    print(markdown_table(["strategy", "test accuracy (mean ± sd)", "time per run", "trainable parameters (end)"], rows))
    write_json(args.out, {"environment": environment(), "epochs": args.epochs, "seeds": args.seeds, "size": args.size,
                          "per_class": args.per_class, "strategies": results, "complete": True})


if __name__ == "__main__":
    main()
