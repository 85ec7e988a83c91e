"""Probing only the layers that can hold the best (``measure_layers(refine=...)``, issue 16): what it saves and
whether it finds the same best layer.

The rule (graft.measures.summary.bounded) leaves out a layer when the probes nearest it on either side both lie
below the best probe's 95 % interval, taking probe accuracy to rise and fall once over the depth. It has no
constant fitted to any task, so every figure here is out of sample. Each full profile (every layer probed, C by
5-fold cross-validation on the training features, evaluated on held-out ones) is replayed in the order graft probes
(the last layer, then bisection of the depth): since each layer's probe depends only on its own features, the
replay gives exactly the layers ``refine`` probes, and the recorded per-layer seconds what it saves.

Profiles: the three of bench/results/probe_real.json (ResNet-56 -> MNIST, MobileNetV2 -> CIFAR-10 subset at
128 px, MobileNetV2 -> FSDD log-mel; 1000 training samples), and fresh ones taken here (each skipped with the
reason when its files are absent).

    python bench/probe_refine.py [--shared /work/shared] [--out results.json] [--max-samples 600]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CIFAR_RESNETS, environment, parse_args, write_json  # noqa: E402

import graft  # noqa: E402
from graft.measures.summary import LayerMeasures, bounded, priority_order  # noqa: E402

CORAL_V1 = {"arch": "mobilenetv1_025", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
RECORDED = Path(__file__).resolve().parent / "results" / "probe_real.json"


def _extra(p):
    p.add_argument("--max-samples", type=int, default=600)


def _fresh(shared: Path):
    w, d = shared / "weights", shared / "data"
    yield ("CIFAR ResNet-20 -> MNIST", w / CIFAR_RESNETS[20], {}, d / "mnist" / "mnist.npz", None)
    yield ("CIFAR ResNet-32 -> CIFAR-10 subset", w / CIFAR_RESNETS[32], {}, d / "cifar10" / "cifar10_jpg_subset.npz",
           None)
    yield ("CIFAR ResNet-20 -> FSDD log-mel", w / CIFAR_RESNETS[20], {}, d / "fsdd" / "recordings", (32, 32))
    yield ("ImageNet MobileNetV1-0.25 -> CIFAR-10 subset, 64 px", w / "mobilenetv1_025_128_imagenet.timm.safetensors",
           CORAL_V1, d / "cifar10" / "cifar10_jpg_subset.npz", (64, 64))


def replay(layers: list[dict]) -> dict:
    """The layers ``refine`` probes on this full profile, in graft's order, and what that saves."""
    entries = [LayerMeasures(**{k: v for k, v in e.items() if k in LayerMeasures.__dataclass_fields__})
               for e in layers]
    found, pruned = {}, []
    for index in priority_order(len(entries)):
        if found and bounded(index, found) is not None:
            pruned.append(entries[index].name)
            continue
        found[index] = entries[index]
    best_all = max(entries, key=lambda e: e.probe_accuracy)
    best_refined = max(found.values(), key=lambda e: e.probe_accuracy)
    total = sum(e.seconds for e in entries)
    saved = sum(e.seconds for e in entries if e.name in pruned)
    return {"layers": len(entries), "probed": len(found), "pruned": pruned,
            "probe_seconds_all": round(total, 2), "probe_seconds_refined": round(total - saved, 2),
            "time_saved_fraction": round(saved / total, 3) if total else 0.0,
            "best_all": best_all.name, "best_all_accuracy": best_all.probe_accuracy,
            "best_refined": best_refined.name, "best_refined_accuracy": best_refined.probe_accuracy,
            "same_best": best_all.name == best_refined.name,
            "best_within_interval": best_refined.probe_high >= best_all.probe_accuracy,
            "profile": [round(e.probe_accuracy, 3) for e in entries]}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], _extra)
    torch.set_num_threads(2)
    rows = []
    if RECORDED.is_file():
        for pair in json.loads(RECORDED.read_text())["pairs"]:
            rows.append({"pair": pair["pair"], "source": "bench/results/probe_real.json",
                         **replay(pair["measures"]["layers"])})
    for name, weights, load_options, data_path, size in _fresh(Path(args.shared)):
        if not weights.exists() or not data_path.exists():
            print(f"skipped {name}: {weights if not weights.exists() else data_path} is absent")
            continue
        data = graft.load_data(data_path, test_fraction=0.3, seed=0)
        with tempfile.TemporaryDirectory() as cache:
            t0 = time.perf_counter()
            m = graft.probe(weights, data, load_options=load_options, input_size=size, max_samples=args.max_samples,
                            cache_dir=cache, multilayer=False)
            total = time.perf_counter() - t0
        rows.append({"pair": name, "source": f"measured here, {args.max_samples} samples per split, "
                     f"{total:.0f} s", **replay([e.to_dict() if hasattr(e, "to_dict") else vars(e)
                                                 for e in m.layers])})
        print(rows[-1], flush=True)
    for r in rows:
        saved = 100 * r["time_saved_fraction"]
        print(f"{r['pair']:55s} probed {r['probed']:2d}/{r['layers']:2d}, time saved {saved:4.0f} %, best {r['best_all']} -> {r['best_refined']} ({'same' if r['same_best'] else 'differs'})")
    summary = {"tasks": len(rows), "same_best": sum(r["same_best"] for r in rows),
               "best_within_interval": sum(r["best_within_interval"] for r in rows),
               "mean_time_saved_fraction": round(sum(r["time_saved_fraction"] for r in rows) / max(1, len(rows)), 3),
               "mean_layers_probed_fraction": round(sum(r["probed"] / r["layers"] for r in rows) / max(1, len(rows)),
                                                    3)}
    print(summary)
    write_json(args.out, {"environment": environment(), "max_samples": args.max_samples, "summary": summary,
                          "tasks": rows})


if __name__ == "__main__":
    main()
