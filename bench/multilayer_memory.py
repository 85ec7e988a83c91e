"""Peak memory of the multilayer probe on 10000 samples: every tap of ImageNet MobileNetV2, narrowed.

The features of all 17 taps of MobileNetV2 (Coral weights) are extracted for 10000 images of the CIFAR-10 JPEG
subset at 64 px (memory-mapped ``.npy`` files from ``graft.extract_features``; 8000 to fit, 2000 to evaluate).
Then ``multilayer_probe`` runs at several ``max_width`` values, and for each the bench reports:
- the features' width before and after narrowing;
- the size of the narrowed float64 matrices (train + evaluation);
- the peak of Python-tracked allocations during the probe (``tracemalloc``: numpy and scikit-learn arrays
  are tracked), and the process's peak resident set before and after;
- accuracy and time.

    python bench/multilayer_memory.py [--shared /work/shared] [--out results.json] [--widths 64,256,1280]
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MOBILENETV2_FILE, environment, markdown_table, parse_args, write_json  # noqa: E402

import graft  # noqa: E402
from graft.data import Data, load_data  # noqa: E402
from graft.measures.multilayer import multilayer_probe  # noqa: E402

CORAL = {"arch": "mobilenetv2_100", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}


def _extra(p):
    p.add_argument("--widths", default="64,256,1280", help="max_width values to try")


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], _extra)
    torch.set_num_threads(2)
    shared = Path(args.shared)
    arrays = np.load(shared / "data" / "cifar10" / "cifar10_jpg_subset.npz")
    order = np.random.default_rng(0).permutation(len(arrays["y_train"]) + len(arrays["y_test"]))[:10000]
    x = np.concatenate([arrays["x_train"], arrays["x_test"]])[order]  # the files are sorted by class
    y = np.concatenate([arrays["y_train"], arrays["y_test"]])[order]
    images = F.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255, size=(64, 64), mode="bilinear",
                           align_corners=False).numpy()
    del x
    data = load_data((images[:8000], y[:8000]), layout="NCHW")
    test = load_data((images[8000:], y[8000:]), layout="NCHW", label_names=list(data.spec.label_names))["train"]
    data = Data(data.spec, {**data.splits, "test": test}, data.split_record)
    del images
    net = graft.load_model(shared / "weights" / MOBILENETV2_FILE, **CORAL)
    rows, results = [], []
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        train = graft.extract_features(net, data, split="train", cache_dir=cache)
        held = graft.extract_features(net, data, split="test", cache_dir=cache)
        extract = time.perf_counter() - t0
        layers = list(train.layers)
        ft = {n: train.features(n) for n in layers}  # memory-mapped: not in RAM until read
        fh = {n: held.features(n) for n in layers}
        raw = sum(ft[n].shape[1] for n in layers)
        print(f"{len(layers)} taps, {raw} features in all, extracted in {extract:.0f} s", flush=True)
        for width in (int(w) for w in args.widths.split(",")):
            before = _rss_mib()
            tracemalloc.start()
            t0 = time.perf_counter()
            result = multilayer_probe(ft, train.labels(), fh, held.labels(), max_width=width)
            seconds = time.perf_counter() - t0
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            matrix = (8000 + 2000) * result.total * 8 / 2**20
            entry = {"max_width": width, "features": raw, "narrowed": result.total, "kept": result.kept,
                     "matrix_mib": matrix, "traced_peak_mib": peak / 2**20, "rss_peak_before_mib": before,
                     "rss_peak_after_mib": _rss_mib(), "accuracy": result.accuracy, "seconds": seconds}
            results.append(entry)
            print(entry, flush=True)
            rows.append([width, f"{raw} -> {result.total}", result.kept, f"{matrix:.0f} MiB",
                         f"{peak / 2**20:.0f} MiB", f"{_rss_mib():.0f} MiB", f"{result.accuracy:.3f}",
                         f"{seconds:.0f} s"])
    print()
    print(markdown_table(["max_width", "features (raw -> narrowed)", "kept", "narrowed matrices",
                          "traced peak", "process peak RSS", "test accuracy", "time"], rows))
    write_json(args.out, {"environment": environment(), "extract_seconds": extract, "results": results})


if __name__ == "__main__":
    main()
