"""Samples/s of graft's data loaders alone, of a model's forward alone, and of both: is loading the bottleneck?

For each case, over one split read with ``graft.data.load_data`` and batched with ``data.loader(split,
batch_size=128, shuffle=False, workers=N)`` (feature extraction: a fixed order):

- loader alone: iterate every batch of the ``DataLoader``, no model (workers are started for each pass,
  as ``data.loader`` makes them: ``persistent_workers=False``);
- forward alone (the baseline): the model in eval mode under ``torch.no_grad`` on the same batches,
  collected beforehand as tensors (so no loading at all);
- loader + forward: the loop a user writes to extract features, ``for x, _ in loader: model(x)``.

The ratio loader / forward above 1 means the loader alone outruns the network, so loading is not the
bottleneck; loader+forward / forward says how much of the forward's throughput the whole loop keeps.

Cases (each skipped, with the reason printed, when its files are absent):
 1. 2000 CIFAR-10 JPEG-subset images (200 per class, from ``x_train``) written as PNG files into a
    temporary folder with one sub-folder per class: ``ImageFileDataset``, decoded on access with PIL;
    ``cifar_resnet20`` with the akamaster weights; workers 0, 1, 2 and the default (``workers=None``).
 2. The same 2000 images in memory, ``load_data((x, y))``: ``ArrayDataset``; same model.
 3. FSDD recordings as log-mel features (1, 40, 101) in memory (computed once by ``load_data``, whose time
    is reported separately), ``audio_cnn`` with random weights.
 4. UCR CricketX, z-normalized, (1, 300) in memory, ``ts_fcn`` with random weights.

``torch.set_num_threads(2)``. Each figure is the median of ``--repeats`` timed runs (default 3) after one
untimed warm-up; a timed run makes as many full passes over the split as it takes to reach 2000 samples.
Within a case the runs are interleaved (forward, loader, loader+forward for each worker setting, then the
next round), so that a change in the machine's load hits all of them alike.

    python bench/loader_speed.py [--shared /work/shared] [--out results.json] [--repeats 3]
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CIFAR_RESNETS, environment, markdown_table, parse_args, write_json  # noqa: E402

import graft  # noqa: E402
from graft.data import load_data  # noqa: E402
from graft.data.dataset import default_workers  # noqa: E402

BATCH = 128
MIN_SAMPLES = 2000  # a timed run makes ceil(MIN_SAMPLES / n) passes over the split
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
PER_CLASS = 200


def _sps(n: int, seconds: float) -> float:
    return n / seconds


def _fmt(v: float) -> str:
    return f"{v:,.0f}"


def _cifar_subset(npz: Path) -> tuple[np.ndarray, np.ndarray]:
    """The first PER_CLASS training images of each class (uint8 NHWC) and their labels."""
    with np.load(npz) as d:
        x, y = d["x_train"], d["y_train"].astype(np.int64)
    index = np.concatenate([np.flatnonzero(y == c)[:PER_CLASS] for c in range(len(CIFAR_CLASSES))])
    return x[index], y[index]


def _write_png_folder(x: np.ndarray, y: np.ndarray, root: Path) -> None:
    from PIL import Image

    for i, (img, lab) in enumerate(zip(x, y)):
        d = root / CIFAR_CLASSES[lab]
        d.mkdir(exist_ok=True)
        Image.fromarray(img).save(d / f"{i:05d}.png")


def _interleaved(fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, list[float]]:
    """Wall times of each ``fn``: one untimed warm-up each, then ``reps`` rounds running every fn once in turn,
    so that a change in the machine's load during the case hits every measurement alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times


def _measure(name: str, data, split: str, model: torch.nn.Module, workers_list: list[int | None],
             reps: int) -> dict:
    """Forward alone, then loader alone and loader+forward for each worker setting of one case."""
    n = len(data[split])
    passes = max(1, math.ceil(MIN_SAMPLES / n))
    total = n * passes
    model.eval()
    batches = [x for x, _ in data.loader(split, BATCH, shuffle=False, workers=0)]
    assert sum(len(b) for b in batches) == n

    def forward_only():
        with torch.no_grad():
            for _ in range(passes):
                for x in batches:
                    model(x)

    def loader_only(workers):
        seen = 0
        for _ in range(passes):
            for x, _ in data.loader(split, BATCH, shuffle=False, workers=workers):
                seen += len(x)
        assert seen == total

    def loader_and_forward(workers):
        with torch.no_grad():
            for _ in range(passes):
                for x, _ in data.loader(split, BATCH, shuffle=False, workers=workers):
                    model(x)

    fns: dict[str, Callable[[], Any]] = {"forward": forward_only}
    for w in workers_list:
        fns[f"loader {w}"] = lambda w=w: loader_only(w)
        fns[f"both {w}"] = lambda w=w: loader_and_forward(w)
    times = _interleaved(fns, reps)
    fwd_sps = _sps(total, statistics.median(times["forward"]))
    print(f"{name}: {n} samples of shape {tuple(batches[0].shape[1:])}, {passes} pass(es) per run; "
          f"forward alone {_fmt(fwd_sps)} samples/s", flush=True)
    rows = []
    for w in workers_list:
        resolved = default_workers(data[split]) if w is None else w
        runs_load, runs_both = times[f"loader {w}"], times[f"both {w}"]
        row = {"workers": "default" if w is None else w, "workers_resolved": resolved,
               "loader_sps": _sps(total, statistics.median(runs_load)), "forward_sps": fwd_sps,
               "both_sps": _sps(total, statistics.median(runs_both)), "loader_runs_s": runs_load,
               "both_runs_s": runs_both}
        row["ratio_loader_forward"] = row["loader_sps"] / fwd_sps
        row["ratio_both_forward"] = row["both_sps"] / fwd_sps
        rows.append(row)
        label = f"default ({resolved})" if w is None else str(w)
        print(f"  workers {label}: loader {_fmt(row['loader_sps'])}/s, loader+forward {_fmt(row['both_sps'])}/s",
              flush=True)
    return {"case": name, "split": split, "samples": n, "sample_shape": list(batches[0].shape[1:]),
            "passes_per_run": passes, "forward_runs_s": times["forward"], "rows": rows}


def _timed_load(source, reps: int, **kwargs):
    """load_data once cold (the first call in the process) and ``reps`` times warm; returns data and times."""
    t0 = time.perf_counter()
    data = load_data(source, **kwargs)
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(reps):
        t0 = time.perf_counter()
        data = load_data(source, **kwargs)
        warm.append(time.perf_counter() - t0)
    return data, {"cold_s": cold, "warm_median_s": float(np.median(warm)), "warm_runs_s": warm}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], lambda p: p.add_argument(
        "--repeats", type=int, default=3, help="timed runs per measurement; the median is reported (default 3)"))
    torch.set_num_threads(2)
    reps = args.repeats
    shared = Path(args.shared)
    env = environment()
    print(f"torch {env['torch']}, {env['torch_threads']} threads, {env['cpu_count']} CPUs, "
          f"CUDA {'yes' if env['cuda_available'] else 'no'}; batch {BATCH}; median of {reps} runs after 1 warm-up; "
          f"load average before: {env['load_average_1_5_15min']}\n", flush=True)
    t_start = time.perf_counter()
    cases, skipped, load_times = [], [], {}

    cifar_npz = shared / "data" / "cifar10" / "cifar10_jpg_subset.npz"
    r20 = shared / "weights" / CIFAR_RESNETS[20]
    if not cifar_npz.is_file() or not r20.is_file():
        reason = f"{cifar_npz if not cifar_npz.is_file() else r20} is absent"
        skipped += [{"case": "1. CIFAR-10 PNG folder", "reason": reason},
                    {"case": "2. CIFAR-10 in memory", "reason": reason}]
        print(f"skip cases 1 and 2: {reason}", flush=True)
    else:
        resnet20 = graft.load_model("cifar_resnet20", weights=str(r20)).module
        x, y = _cifar_subset(cifar_npz)
        with tempfile.TemporaryDirectory(prefix="graft_loader_speed_") as tmp:
            t0 = time.perf_counter()
            _write_png_folder(x, y, Path(tmp))
            print(f"wrote {len(x)} PNG files in {time.perf_counter() - t0:.1f} s", flush=True)
            data, load_times["1. CIFAR-10 PNG folder"] = _timed_load(tmp, reps)
            cases.append(_measure("1. CIFAR-10 PNG folder (ImageFileDataset), cifar_resnet20", data, "train",
                                  resnet20, [0, 1, 2, None], reps))
        data, load_times["2. CIFAR-10 in memory"] = _timed_load((x, y), reps, label_names=CIFAR_CLASSES)
        cases.append(_measure("2. CIFAR-10 in memory (ArrayDataset), cifar_resnet20", data, "train", resnet20,
                              [None, 2], reps))

    fsdd = shared / "data" / "fsdd" / "recordings"
    if not fsdd.is_dir():
        skipped.append({"case": "3. FSDD log-mel", "reason": f"{fsdd} is absent"})
        print(f"skip case 3: {fsdd} is absent", flush=True)
    else:
        data, load_times["3. FSDD log-mel"] = _timed_load(str(fsdd), reps)
        model = graft.load_model("audio_cnn", pretrained=False, num_classes=10).module
        cases.append(_measure("3. FSDD log-mel in memory (ArrayDataset), audio_cnn", data, "train", model,
                              [None, 2], reps))

    ucr = shared / "data" / "ucr" / "CricketX"
    if not ucr.is_dir():
        skipped.append({"case": "4. UCR CricketX", "reason": f"{ucr} is absent"})
        print(f"skip case 4: {ucr} is absent", flush=True)
    else:
        data, load_times["4. UCR CricketX"] = _timed_load(str(ucr), reps, normalize="zscore")
        model = graft.load_model("ts_fcn", pretrained=False, num_classes=12).module
        cases.append(_measure("4. UCR CricketX z-normalized (ArrayDataset), ts_fcn", data, "train", model,
                              [None, 2], reps))

    print(f"\nSamples/s (median of {reps}; batch {BATCH}; ratio = loader / forward, > 1: loading is not the "
          "bottleneck)\n")
    table = []
    for c in cases:
        for r in c["rows"]:
            w = f"default ({r['workers_resolved']})" if r["workers"] == "default" else str(r["workers"])
            table.append([c["case"], w, _fmt(r["loader_sps"]), _fmt(r["forward_sps"]), _fmt(r["both_sps"]),
                          f"{r['ratio_loader_forward']:.2f}", f"{r['ratio_both_forward']:.2f}"])
    print(markdown_table(["case", "workers", "loader samples/s", "forward samples/s", "loader+forward samples/s",
                          "ratio loader/forward", "loader+forward / forward"], table))
    print(f"\nload_data (seconds; cold = first call in the process, warm = median of {reps} later calls)\n")
    print(markdown_table(["case", "cold", "warm"],
                         [[k, f"{v['cold_s']:.2f}", f"{v['warm_median_s']:.2f}"] for k, v in load_times.items()]))
    for s in skipped:
        print(f"skipped {s['case']}: {s['reason']}")
    total = time.perf_counter() - t_start
    load_after = [round(v, 2) for v in os.getloadavg()]
    print(f"\ntotal {total:.0f} s; load average (1, 5, 15 min) before: {env['load_average_1_5_15min']}, "
          f"after: {load_after}")
    write_json(args.out, {"benchmark": "loader_speed", "environment": env, "load_average_after": load_after,
                          "repeats": reps, "warmup": 1, "batch_size": BATCH, "min_samples_per_run": MIN_SAMPLES,
                          "total_s": total, "cases": cases, "load_data_s": load_times, "skipped": skipped})


if __name__ == "__main__":
    main()
