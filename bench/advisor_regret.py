"""The advisor, measured: ``--strategy auto`` against the oracle (every strategy run) and fixed recipes.

Eight transfer tasks built from ../shared (images, audio spectrograms, time series; 40 to 8000 training
samples; the last two are bench/multilayer.py's smallest size), and three more (9-11, issue 16) on which no
constant of the advisor was ever set, for out-of-sample figures (bench/advisor_loto.py). On each, ``graft.compare`` runs every
strategy (linear, partial:1, partial:2, lp-ft, two-phase, full, scratch, multilayer) with ``--per-strategy``
seconds each (3x that on the 10000-image CIFAR-10 task, where one epoch of ``full`` takes longer than 30 s) on the
same splits: the oracle is the best test accuracy among them, and the fixed recipes are its ``linear``,
``two-phase``, ``full`` and ``multilayer`` rows. Then
``graft.fine_tune(strategy="auto")`` (probe, advise, trials when ambiguous, fit) runs on the same splits with a budget of
``--auto-share`` of the comparison's wall time (what running every strategy took, which is less than its budget
when strategies stop early or hit ``max_epochs``). Reported per task: the test accuracy of each, the regret of
auto against the oracle (points), and auto's wall time as a fraction of the comparison's.

    python bench/advisor_regret.py [--shared /work/shared] [--out results.json] [--per-strategy 30]
        [--auto-share 0.25] [--tasks 1,2,...] [--reuse-oracle earlier-results.json]
"""

from __future__ import annotations

import json
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
from graft.data import Data, load_data  # noqa: E402
from graft import compare, fine_tune  # noqa: E402
from graft.strategy.advisor import Advice  # noqa: E402

STRATEGIES = ("linear", "partial:1", "partial:2", "lp-ft", "two-phase", "full", "scratch", "multilayer")
FIXED = ("linear", "two-phase", "full", "multilayer")
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CORAL_V1 = {"arch": "mobilenetv1_025", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
CORAL_V2 = {"arch": "mobilenetv2_100", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}


def _extra(p):
    p.add_argument("--per-strategy", type=float, default=30.0, help="seconds per strategy in the oracle")
    p.add_argument("--auto-share", type=float, default=0.25, help="auto's budget / the comparison's total")
    p.add_argument("--tasks", help="which tasks (1-based, comma-separated); default all")
    p.add_argument("--reuse-oracle", help="a results file of an earlier run: take each task's comparison (the "
                   "oracle's test accuracies and wall time) from it when it ran the same strategies, and run only auto")


def _pick(y: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]))


def _with_test(train: Data, x_test, y_test, layout: str) -> Data:
    test = load_data((x_test, y_test), layout=layout, label_names=list(train.spec.label_names))["train"]
    return Data(train.spec, {**train.splits, "test": test}, train.split_record)


def _images(path: Path, per_class: int, test_per_class: int, size: int | None = None) -> Data:
    arrays = np.load(path)
    keys = ("x_train", "y_train", "x_test", "y_test") if "x_train" in arrays.files else (
        "train_images", "train_labels", "test_images", "test_labels")
    x, y, xt, yt = (arrays[k] for k in keys)
    i, j = _pick(y, per_class), _pick(yt, test_per_class)
    x, y, xt, yt = x[i], y[i], xt[j], yt[j]
    names = CIFAR10 if "cifar" in path.name else None  # CIFAR's own class names: the source head's rows match
    if size is not None:  # NHWC uint8 -> NCHW float upsampled
        def up(a):
            t = torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255
            return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False).numpy()
        x, xt, layout = up(x), up(xt), "NCHW"
    else:
        layout = "NHWC" if x.ndim == 4 else "auto"
    data = load_data((x, y), layout=layout, val_fraction=0.2, seed=0, label_names=names)
    return _with_test(data, xt, yt, layout)


def _series(path: Path, per_class: int, test_per_class: int = 100) -> Data:
    """A UCR set, z-scored, ``per_class`` training series per class (a fifth of them for val)."""
    full = load_data(path, normalize="zscore")
    (x, y), (xt, yt) = full.arrays("train"), full.arrays("test")
    x, y, xt, yt = (np.asarray(a) for a in (x, y, xt, yt))
    i, j = _pick(y, per_class), _pick(yt, test_per_class)
    names = list(full.spec.label_names)
    data = load_data((x[i], y[i]), layout="NCL", val_fraction=0.2, seed=0, label_names=names)
    return _with_test(data, xt[j], yt[j], "NCL")


def _tasks(shared: Path, tmp: Path):
    w, d = shared / "weights", shared / "data"
    r20 = w / CIFAR_RESNETS[20]
    yield "ResNet-20 (CIFAR-10) -> MNIST, 10 per class", r20, {}, lambda: _images(d / "mnist" / "mnist.npz", 10, 100)
    yield "ResNet-20 (CIFAR-10) -> MNIST, 100 per class", r20, {}, lambda: _images(d / "mnist" / "mnist.npz", 100, 100)
    yield ("ResNet-20 (CIFAR-10) -> CIFAR-10 subset, 1000 per class", r20, {},
           lambda: _images(d / "cifar10" / "cifar10_jpg_subset.npz", 1000, 200))
    yield ("MobileNetV1-0.25 (ImageNet) -> CIFAR-10, 200 per class, 64 px", w / "mobilenetv1_025_128_imagenet.timm.safetensors",
           CORAL_V1, lambda: _images(d / "cifar10" / "cifar10_jpg_subset.npz", 200, 100, size=64))
    yield ("ResNet-20 (CIFAR-10) -> FSDD spoken digits, log-mel", r20, {},
           lambda: load_data(d / "fsdd" / "recordings", val_fraction=0.2, seed=0))

    def gunpoint():
        return load_data(d / "ucr" / "GunPoint", normalize="zscore", val_fraction=0.2, seed=0)

    source = tmp / "GunPointAgeSpan"

    def pretrained():
        if not (source / "model.safetensors").is_file():
            src = load_data(d / "ucr" / "GunPointAgeSpan", normalize="zscore")
            graft.pretrain("ts_fcn", src, source, epochs=40, lr=1e-3, seed=0, width=64)
        return source / "model.safetensors"

    yield "ts_fcn (UCR GunPointAgeSpan) -> GunPoint, 50 train", pretrained, {}, gunpoint
    # two tasks of bench/multilayer.py's smallest size, where every layer at once beat 60 s of full fine-tuning
    yield ("MobileNetV2 (ImageNet) -> CIFAR-10, 10 per class, 64 px", w / MOBILENETV2_FILE, CORAL_V2,
           lambda: _images(d / "cifar10" / "cifar10_jpg_subset.npz", 10, 100, size=64))
    cricket = tmp / "CricketX"

    def cricket_source():
        if not (cricket / "model.safetensors").is_file():
            graft.pretrain("ts_fcn", load_data(d / "ucr" / "CricketX", normalize="zscore"), cricket, epochs=40,
                           lr=1e-3, seed=0, width=64)
        return cricket / "model.safetensors"

    yield ("ts_fcn (UCR CricketX) -> CricketY, 10 per class", cricket_source, {},
           lambda: _series(d / "ucr" / "CricketY", 10))
    # tasks 9-11 (issue 16): never used to set a constant of the advisor, for its out-of-sample figures
    yield from _untuned(d, w, tmp)


def _pretrained(d: Path, tmp: Path, source: str):
    def make():
        folder = tmp / source
        if not (folder / "model.safetensors").is_file():
            graft.pretrain("ts_fcn", load_data(d / "ucr" / source, normalize="zscore"), folder, epochs=40, lr=1e-3,
                           seed=0, width=64)
        return folder / "model.safetensors"
    return make


def _untuned(d: Path, w: Path, tmp: Path):
    yield ("ts_fcn (UCR GunPointMaleVersusFemale) -> GunPointOldVersusYoung, untuned",
           _pretrained(d, tmp, "GunPointMaleVersusFemale"), {},
           lambda: load_data(d / "ucr" / "GunPointOldVersusYoung", normalize="zscore", val_fraction=0.2, seed=0))
    yield ("ResNet-32 (CIFAR-10) -> MNIST, 30 per class, untuned", w / CIFAR_RESNETS[32], {},
           lambda: _images(d / "mnist" / "mnist.npz", 30, 100))
    yield ("ts_fcn (UCR MiddlePhalanxOutlineAgeGroup) -> ProximalPhalanxOutlineAgeGroup, untuned",
           _pretrained(d, tmp, "MiddlePhalanxOutlineAgeGroup"), {},
           lambda: _series(d / "ucr" / "ProximalPhalanxOutlineAgeGroup", 40))


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], _extra)
    torch.set_num_threads(2)
    shared = Path(args.shared)
    chosen = {int(t) for t in args.tasks.split(",")} if args.tasks else None
    reused = {}
    if args.reuse_oracle:  # the same tasks, splits and strategies: only auto runs again
        reused = {t["task"]: t for t in json.loads(Path(args.reuse_oracle).read_text())["tasks"]
                  if set(t["test_accuracy"]) == set(STRATEGIES)}
    results, rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for number, (name, model, load_options, make_data) in enumerate(_tasks(shared, tmp), 1):
            if chosen and number not in chosen:
                continue
            model = model() if callable(model) else model
            data = make_data()
            keep = {"keep_rows": "never"} if "ts_fcn" in name else {}  # UCR classes are "1", "2"...: not the same
            # 8000 training images at 32 px: an epoch of full takes about 36 s on 2 cores, so that task gets 3x
            budget = args.per_strategy * len(STRATEGIES) * (3 if "1000 per class" in name else 1)
            earlier = reused.get(name)
            if earlier is not None:
                test, all_seconds = earlier["test_accuracy"], earlier["all_seconds"]
                oracle_by_val, dropped = earlier["oracle_by_val"], earlier["dropped"]
            else:
                t0 = time.perf_counter()
                oracle = compare(model, data, tmp / f"cmp{number}", strategies=STRATEGIES, budget=budget,
                                 max_epochs=100, target=keep, load_options=load_options, report=False)
                all_seconds = time.perf_counter() - t0
                test = {e["strategy"]: e["mean"]["test_accuracy"] for e in oracle.strategies}
                oracle_by_val, dropped = oracle.best, oracle.dropped
            t0 = time.perf_counter()
            # auto's budget: a share of what running every strategy actually took (some finish under their shares)
            record = fine_tune(model, data, tmp / f"auto{number}", strategy="auto",
                               budget=all_seconds * args.auto_share, target=keep, load_options=load_options,
                               progress=False)
            advice = Advice.from_json((tmp / f"auto{number}" / "advice.json").read_text())
            auto_seconds = time.perf_counter() - t0
            best = max((k for k in test if test[k] is not None), key=lambda k: test[k])
            entry = {"task": name, "train": len(data["train"]), "val": len(data["val"]), "test": len(data["test"]),
                     "test_accuracy": test, "oracle": best, "oracle_by_val": oracle_by_val,
                     "dropped": dropped, "oracle_reused": earlier is not None, "auto": advice.strategy,
                     "auto_accuracy": record.final_accuracy,
                     "auto_trials": [t["strategy"] for t in advice.trials], "regret_points":
                     100 * (test[best] - record.final_accuracy), "auto_seconds": auto_seconds,
                     "all_seconds": all_seconds, "compute_fraction": auto_seconds / all_seconds,
                     "advice_scores": {c["strategy"]: c["score"] for c in advice.candidates},
                     "advice_measurements": advice.measurements}
            results.append(entry)
            fixed_now = ", ".join(f"{k} {test[k]:.3f}" if test.get(k) is not None else f"{k} dropped" for k in FIXED)
            print(f"{name}: oracle {best} {test[best]:.3f}; auto {advice.strategy} {record.final_accuracy:.3f} "
                  f"(regret {entry['regret_points']:.1f} points, {100 * entry['compute_fraction']:.0f} % of the "
                  f"compute); fixed: {fixed_now}", flush=True)
            rows.append([name, len(data["train"]), f"{best} {test[best]:.3f}",
                         f"{advice.strategy} {record.final_accuracy:.3f}", f"{entry['regret_points']:.1f}",
                         f"{100 * entry['compute_fraction']:.0f} %",
                         *(f"{test[k]:.3f}" if test.get(k) is not None else "-" for k in FIXED)])
            write_json(args.out, {"environment": environment(), "per_strategy_seconds": args.per_strategy,
                                  "auto_share": args.auto_share, "tasks": results, "complete": False})
    if results:
        regret = statistics.mean(r["regret_points"] for r in results)
        fraction = statistics.mean(r["compute_fraction"] for r in results)
        fixed = {k: statistics.mean(100 * (max(v for v in r["test_accuracy"].values() if v is not None)
                                           - (r["test_accuracy"].get(k) or 0)) for r in results) for k in FIXED}
        rows.append(["mean", "", "", "", f"{regret:.1f}", f"{100 * fraction:.0f} %",
                     *(f"regret {fixed[k]:.1f}" for k in FIXED)])
        print()
        print(markdown_table(["task", "train", "oracle (test)", "auto (test)", "regret (points)", "auto compute",
                              *FIXED], rows))
        write_json(args.out, {"environment": environment(), "per_strategy_seconds": args.per_strategy,
                              "auto_share": args.auto_share, "tasks": results, "mean_regret_points": regret,
                              "mean_compute_fraction": fraction, "fixed_regret_points": fixed, "complete": True})


if __name__ == "__main__":
    main()
