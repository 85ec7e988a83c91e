"""``graft.probe`` on the real pairs of ../shared: what each layer of a pretrained network offers a new dataset.

Pairs (each skipped with the reason when its files are absent):
 1. CIFAR ResNet-56 (akamaster CIFAR-10 weights) -> MNIST digits: 1000 training images (stratified draw from
    the 60,000), probe evaluated on 1000 test images; grey digits repeated on the 3 input channels, 28 px.
 2. ImageNet MobileNetV2 1.0 (Coral weights, inputs scaled to [-1, 1]) -> the CIFAR-10 JPEG subset: 1000
    training images, 1000 test images, resized to 128 px.
 3. The same MobileNetV2 -> FSDD spoken digits as log-mel spectrograms (1 x 40 x 101, repeated on 3
    channels, resized to 128 x 128): 1000 training recordings, the 300 official test takes.

For each pair: every block is tapped in one extraction per split; per layer, the linear-probe accuracy
(logistic regression, C by 5-fold CV on the training features, evaluated on the test features, 95 % Wilson
interval), LogME and the BN shift; LEEP and NCE of the source head; the best layer and the wall time of each
stage. The cache is a fresh temporary folder, so the times include extraction.

    python bench/probe_real.py [--shared /work/shared] [--out results.json] [--max-samples 1000]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CIFAR_RESNETS, MOBILENETV2_FILE, environment, parse_args, write_json  # noqa: E402

import graft  # noqa: E402

CORAL = {"arch": "mobilenetv2_100", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}


def _extra(p):
    p.add_argument("--max-samples", type=int, default=1000)


def _pairs(shared: Path):
    w, d = shared / "weights", shared / "data"
    yield ("CIFAR ResNet-56 -> MNIST", w / CIFAR_RESNETS[56], {}, d / "mnist" / "mnist.npz", {}, None)
    yield ("ImageNet MobileNetV2 -> CIFAR-10 subset", w / MOBILENETV2_FILE, CORAL,
           d / "cifar10" / "cifar10_jpg_subset.npz", {}, (128, 128))
    yield ("ImageNet MobileNetV2 -> FSDD log-mel", w / MOBILENETV2_FILE, CORAL, d / "fsdd" / "recordings", {},
           (128, 128))


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], _extra)
    torch.set_num_threads(2)
    results = []
    for name, weights, load_options, data_path, data_options, size in _pairs(Path(args.shared)):
        if not weights.exists() or not data_path.exists():
            print(f"skipped {name}: {weights if not weights.exists() else data_path} is absent")
            continue
        t0 = time.perf_counter()
        data = graft.load_data(data_path, **data_options)
        t_load = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as cache:
            t0 = time.perf_counter()
            m = graft.probe(weights, data, load_options=load_options, input_size=size, max_samples=args.max_samples,
                            cache_dir=cache)
            total = time.perf_counter() - t0
        print(f"\n## {name}  (load {t_load:.1f} s, probe {total:.1f} s: {m.seconds})")
        print(m.render(width=120), flush=True)
        results.append({"pair": name, "weights": weights.name, "data": str(data_path.relative_to(args.shared)),
                        "input_size": size, "load_seconds": t_load, "probe_seconds": total,
                        "measures": m.to_dict()})
    write_json(args.out, {"environment": environment(), "max_samples": args.max_samples, "pairs": results})


if __name__ == "__main__":
    main()
