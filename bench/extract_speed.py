"""Throughput of ``graft.extract_features`` against a bare ``model(x)`` loop over the same batches and model.

For each case the data is one split read with ``graft.load_data`` and batched by ``data.loader(split,
batch_size=64, shuffle=False)`` (in-memory arrays, no workers). The baseline is what a user writes by hand:

    with torch.inference_mode():
        for x, _ in loader:
            model(normalize(resize(x)))       # one F.interpolate and one normalization per batch

graft's extraction runs the same loader, preprocessing and forward, plus hooks that pool each tapped
layer's output, a pre-hook per BatchNorm layer accumulating its input statistics (on by default), writing
the pooled features into memory-mapped .npy files, and hashing (weights digest and data fingerprint
before, one digest per written file after). Each timed graft run is a first call: its cache folder is
emptied before it. Variants: one tap (the last block) with and without BN statistics, a tap at every
block with and without them. Then the cached second call (reading and verifying the entry) against the
first call.

Cases (skipped with the reason when the files are absent):
 1. MobileNetV2 1.0 (coral ImageNet weights, ../shared/weights) at 224 px: 256 CIFAR-10 test images upsampled.
 2. The same network at 128 px: 512 images.
 3. CIFAR ResNet-56 (akamaster weights) at 32 px: the 2000 CIFAR-10 JPEG test images.

``torch.set_num_threads(2)``; median of ``--repeats`` timed runs (default 3) after one untimed warm-up;
within a case every round runs all variants one after the other, so a change in the machine's load hits
them alike.

    python bench/extract_speed.py [--shared /work/shared] [--out results.json] [--repeats 3]
"""

from __future__ import annotations

import shutil
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

BATCH = 64


def _extra(p):
    p.add_argument("--repeats", type=int, default=3)


def _bare(model, loader, size, mean, std):
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)

    def run():
        with torch.inference_mode():
            for x, _ in loader:
                if tuple(x.shape[2:]) != size:
                    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
                model((x - m) / s)
    return run


def _cases(shared: Path):
    cifar = shared / "data" / "cifar10" / "cifar10_jpg_subset.npz"
    mnv2 = shared / "weights" / MOBILENETV2_FILE
    r56 = shared / "weights" / CIFAR_RESNETS[56]
    if not cifar.is_file():
        print(f"skipped every case: {cifar} is absent")
        return
    arrays = np.load(cifar)
    x, y = arrays["x_test"], arrays["y_test"]
    if mnv2.is_file():
        for size, n in ((224, 256), (128, 512)):
            index = np.concatenate([np.flatnonzero(y == c)[: n // 10 + 1] for c in range(10)])[:n]
            yield (f"MobileNetV2 1.0 at {size} px, {n} images", lambda: graft.load_model(mnv2, arch="mobilenetv2_100"),
                   load_data((x[index], y[index]), layout="NHWC"), (size, size))
    else:
        print(f"skipped MobileNetV2: {mnv2} is absent")
    if r56.is_file():
        yield "CIFAR ResNet-56 at 32 px, 2000 images", lambda: graft.load_model(r56), load_data((x, y), layout="NHWC"), (32, 32)
    else:
        print(f"skipped ResNet-56: {r56} is absent")


def _measure(name: str, backbone, data, size, repeats: int) -> tuple[dict, list[list]]:
    model = backbone.module.eval()
    inp = backbone.spec.input
    loader = data.loader("train", BATCH, shuffle=False)
    n = len(data["train"])
    variants = {
        "one tap, no BN statistics": dict(layers="last", batchnorm=False),
        "one tap + BN statistics": dict(layers="last", batchnorm=True),
        "every block, no BN statistics (default)": dict(layers=None, batchnorm=False),
        "every block + BN statistics (graft probe)": dict(layers=None, batchnorm=True),
    }
    cache = Path(tempfile.mkdtemp(prefix="graft-bench-"))

    def extract(**opts):
        return graft.extract_features(backbone, data, input_size=size, batch_size=BATCH, cache_dir=cache,
                                      progress=False, **opts)

    def first_call(opts):
        def run():
            shutil.rmtree(cache, ignore_errors=True)
            assert not extract(**opts).from_cache
        return run

    runs = {"bare model(x) loop": _bare(model, loader, size, inp.mean, inp.std)}
    runs.update({k: first_call(v) for k, v in variants.items()})
    times: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():  # warm-up
        fn()
    for _ in range(repeats):
        for k, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    # the cached second call, against a first call with the default options
    shutil.rmtree(cache, ignore_errors=True)
    t0 = time.perf_counter()
    first = extract()
    t_first = time.perf_counter() - t0
    cached = []
    for _ in range(max(3, repeats)):
        t0 = time.perf_counter()
        assert extract().from_cache
        cached.append(time.perf_counter() - t0)
    shutil.rmtree(cache, ignore_errors=True)
    bare = statistics.median(times["bare model(x) loop"])
    entry = {"case": name, "samples": n, "batch_size": BATCH, "layers_every_block": len(first.layers),
             "batchnorm_layers": len(first.batchnorms), "times_s": times, "first_call_s": t_first,
             "cached_call_s": cached}
    rows = []
    for k in runs:
        med = statistics.median(times[k])
        entry[k] = {"median_s": med, "samples_per_s": n / med, "ratio_vs_bare": bare / med}
        rows.append([name, k, f"{n / med:,.1f}", f"{bare / med:.3f}"])
    t_cached = statistics.median(cached)
    entry["cached_speedup"] = t_first / t_cached
    rows.append([name, f"cached second call ({t_cached * 1000:.1f} ms vs {t_first:.2f} s)", f"{n / t_cached:,.0f}",
                 f"{t_first / t_cached:,.0f}x faster than the first call"])
    return entry, rows


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], _extra)
    torch.set_num_threads(2)
    rows, results = [], []
    for name, make, data, size in _cases(Path(args.shared)):
        entry, case_rows = _measure(name, make(), data, size, args.repeats)
        results.append(entry)
        rows += case_rows
        print(markdown_table(["case", "run", "samples/s", "ratio vs bare"], case_rows), flush=True)
    print()
    print(markdown_table(["case", "run", "samples/s", "ratio vs bare"], rows))
    write_json(args.out, {"environment": environment(), "repeats": args.repeats, "cases": results})


if __name__ == "__main__":
    main()
