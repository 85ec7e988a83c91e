"""Probes that use the whole network: last layer, best single layer, every layer concatenated, every layer with
selection (multilayer), and full fine-tuning, on the real pairs of ../shared at 10, 50 and 250 samples per class.

Pairs (each skipped with the reason when its files are absent):
 1. CIFAR ResNet-56 (CIFAR-10) -> MNIST, 28 px grey (the network's first layer takes the grey channel);
 2. ImageNet MobileNetV2 (Coral) -> the CIFAR-10 JPEG subset, upsampled to 64 px;
 3. the same MobileNetV2 -> FSDD spoken digits as log-mel spectrograms (1 x 40 x 101);
 4. a UCR pair: ts_fcn pretrained here on CricketX -> CricketY (12 classes; its train split has about 30 per
    class, so the 50 and 250 rows take all of them and say so).

For each pair the features of every block are extracted once for the largest training draw and for the test
set (the official test split, at most 100 per class); the smaller draws are nested subsets of the larger ones.
On each draw: ``linear_probe`` on the last layer (C by 5-fold CV, evaluated on test); the best single layer
(chosen by its cross-validated accuracy on the training draw, then evaluated on test); every layer concatenated
(``multilayer_probe`` with ``fractions=(1.0,)``: narrowed, standardized, no selection); every layer with
selection (``multilayer_probe``: the fraction and C by 3-fold CV); and ``graft.fine_tune(strategy="full")``
with ``--budget`` seconds (80 % of the draw to train, 20 % to pick the best epoch). Times are wall seconds of
each arm (extraction counted once per pair, apart).

    python bench/multilayer.py [--shared /work/shared] [--out results.json] [--sizes 10,50,250]
        [--pairs 1,2,3,4] [--budget 60]
"""

from __future__ import annotations

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
from graft.measures import linear_probe  # noqa: E402
from graft.measures.multilayer import multilayer_probe  # noqa: E402

CORAL = {"arch": "mobilenetv2_100", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}


def _extra(p):
    p.add_argument("--sizes", default="10,50,250", help="training samples per class")
    p.add_argument("--pairs", help="which pairs (1-based, comma-separated); default all")
    p.add_argument("--budget", type=float, default=60.0, help="seconds for each full fine-tuning run")


def _per_class(y: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """The first ``k`` of each class in a seeded permutation: draws of growing k are nested."""
    order = np.random.default_rng(seed).permutation(len(y))
    return np.sort(np.concatenate([order[y[order] == c][:k] for c in np.unique(y)]))


def _images(path: Path, size: int | None):
    """(train x, train y, a transform for train images, (test x, test y), layout, class names): NHWC uint8 files,
    upsampled to ``size`` (NCHW floats) when given; the test set at most 100 per class."""
    arrays = np.load(path)
    keys = ("x_train", "y_train", "x_test", "y_test") if "x_train" in arrays.files else (
        "train_images", "train_labels", "test_images", "test_labels")
    x, y, xt, yt = (arrays[k] for k in keys)
    j = _per_class(yt, 100)
    xt, yt = xt[j], yt[j]
    if size is None:
        return x, y, (lambda a: a), (xt, yt), "auto", None

    def up(a):
        t = torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255
        return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False).numpy()

    return x, y, up, (up(xt), yt), "NCHW", None


def _pairs(shared: Path, tmp: Path):
    w, d = shared / "weights", shared / "data"
    yield "CIFAR ResNet-56 -> MNIST", w / CIFAR_RESNETS[56], {}, lambda: _images(d / "mnist" / "mnist.npz", None)
    yield ("ImageNet MobileNetV2 -> CIFAR-10 subset, 64 px", w / MOBILENETV2_FILE, CORAL,
           lambda: _images(d / "cifar10" / "cifar10_jpg_subset.npz", 64))
    yield "ImageNet MobileNetV2 -> FSDD log-mel", w / MOBILENETV2_FILE, CORAL, lambda: _arrays_data(
        load_data(d / "fsdd" / "recordings"))

    def cricket():
        source = tmp / "CricketX"
        if not (source / "model.safetensors").is_file():
            graft.pretrain("ts_fcn", load_data(d / "ucr" / "CricketX", normalize="zscore"), source, epochs=40,
                           lr=1e-3, seed=0, width=64)
        return source / "model.safetensors"

    yield "ts_fcn (UCR CricketX) -> CricketY", cricket, {"keep_rows": "never"}, lambda: _arrays_data(
        load_data(d / "ucr" / "CricketY", normalize="zscore"))


def _arrays_data(data: Data):
    x, y = data.arrays("train")
    xt, yt = data.arrays("test") if "test" in data.splits else (None, None)
    if xt is None:
        raise SystemExit(f"{data.spec.name} has no test split")
    j = _per_class(np.asarray(yt), 100)
    layout = {4: "NCHW", 3: "NCL"}.get(np.asarray(x).ndim, "auto")  # Data.arrays gives channels first
    return (np.asarray(x), np.asarray(y), (lambda a: a), (np.asarray(xt)[j], np.asarray(yt)[j]), layout,
            list(data.spec.label_names))


def _data(x, y, xt, yt, layout, names, val_fraction=0.0) -> Data:
    kwargs = {"label_names": names} if names else {}
    data = load_data((x, y), layout=layout, val_fraction=val_fraction, seed=0, **kwargs) if val_fraction else \
        load_data((x, y), layout=layout, **kwargs)
    test = load_data((xt, yt), layout=layout, label_names=list(data.spec.label_names))["train"]
    return Data(data.spec, {**data.splits, "test": test}, data.split_record)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], _extra)
    torch.set_num_threads(2)
    sizes = [int(s) for s in args.sizes.split(",")]
    chosen = {int(p) for p in args.pairs.split(",")} if args.pairs else None
    results, rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for number, (name, weights, target, make) in enumerate(_pairs(Path(args.shared), tmp), 1):
            if chosen and number not in chosen:
                continue
            load_options = {k: v for k, v in target.items() if k != "keep_rows"}
            plan_target = {"keep_rows": target["keep_rows"]} if "keep_rows" in target else {}
            weights = weights() if callable(weights) else weights
            x_all, y_all, transform, (xt, yt), layout, names = make()
            y_all = np.asarray(y_all)
            biggest = _per_class(y_all, max(sizes))
            x_big = transform(x_all[biggest])
            y_big = y_all[biggest]
            big = _data(x_big, y_big, xt, yt, layout, names)
            backbone = graft.load_model(weights, **load_options)
            grafted = graft.plan_surgery(backbone, data=big, **plan_target).apply(backbone)
            t0 = time.perf_counter()
            train = graft.extract_features(grafted, big, split="train", cache_dir=tmp / "cache", progress=False)
            test = graft.extract_features(grafted, big, split="test", cache_dir=tmp / "cache", progress=False)
            extract_seconds = time.perf_counter() - t0
            layers = list(train.layers)
            ft, ftt = {n: np.asarray(train.features(n)) for n in layers}, {n: np.asarray(test.features(n)) for n in layers}
            for k in sizes:
                have = int(np.bincount(y_big).min())
                index = np.concatenate([np.flatnonzero(y_big == c)[:k] for c in np.unique(y_big)])
                y = y_big[index]
                entry = {"pair": name, "per_class": k, "per_class_taken": min(k, have), "train": int(len(y)),
                         "test": int(len(yt)), "layers": len(layers), "extract_seconds": extract_seconds}
                t0 = time.perf_counter()
                entry["last"] = linear_probe(ft[layers[-1]][index], y, ftt[layers[-1]], yt).accuracy
                entry["last_seconds"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                cv = {n: linear_probe(ft[n][index], y).accuracy for n in layers}
                best = max(layers, key=lambda n: cv[n])
                entry["best_layer"] = best
                entry["best"] = linear_probe(ft[best][index], y, ftt[best], yt).accuracy
                entry["best_seconds"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                entry["concat"] = multilayer_probe({n: ft[n][index] for n in layers}, y, ftt, yt,
                                                   fractions=(1.0,)).accuracy
                entry["concat_seconds"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                ml = multilayer_probe({n: ft[n][index] for n in layers}, y, ftt, yt)
                entry["multilayer"] = ml.accuracy
                entry["multilayer_seconds"] = time.perf_counter() - t0
                entry["multilayer_kept"] = f"{ml.kept} of {ml.total}"
                entry["multilayer_layers"] = {n: round(v, 3) for n, v in ml.contributions.items() if v >= 0.05}
                x_k = x_big[index]
                small = _data(x_k, y, xt, yt, layout, names, val_fraction=0.2)
                t0 = time.perf_counter()
                record = graft.fine_tune(weights, small, tmp / f"full-{number}-{k}", strategy="full",
                                         budget=args.budget, load_options=load_options, target=plan_target,
                                         progress=False, report=False)
                entry["full"] = record.final_accuracy
                entry["full_seconds"] = time.perf_counter() - t0
                entry["full_epochs"] = record.epochs_run
                results.append(entry)
                print(f"{name}, {k}/class: last {entry['last']:.3f}, best {entry['best']:.3f} ({best}), concat "
                      f"{entry['concat']:.3f}, multilayer {entry['multilayer']:.3f} ({ml.kept}/{ml.total}), "
                      f"full {entry['full']:.3f}", flush=True)
                rows.append([name, f"{k}" + (f" ({have})" if have < k else ""),
                             *(f"{entry[a]:.3f} ({entry[a + '_seconds']:.1f} s)" for a in
                               ("last", "best", "concat", "multilayer", "full"))])
                write_json(args.out, {"environment": environment(), "budget": args.budget, "results": results,
                                      "complete": False})
    print()
    print(markdown_table(["pair", "per class", "last layer", "best single layer", "all, concatenated",
                          "all, selected (multilayer)", "full fine-tuning"], rows))
    write_json(args.out, {"environment": environment(), "budget": args.budget, "results": results,
                          "complete": True})


if __name__ == "__main__":
    main()
