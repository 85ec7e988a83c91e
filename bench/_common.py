"""Helpers shared by the benchmark scripts in bench/ (not part of the graft package).

The "bare" loaders here are what a user would write by hand without graft; every benchmark compares
graft against them in the same process.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

DEFAULT_SHARED = "/work/shared"

CIFAR_RESNETS = {  # depth -> file name in <shared>/weights
    20: "resnet20-12fca82f.th",
    32: "resnet32-d509ac18.th",
    44: "resnet44-014dd654.th",
    56: "resnet56-4bfd9763.th",
}
MOBILENETV2_FILE = "mobilenetv2_100_imagenet.timm.safetensors"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def parse_args(description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--shared", default=DEFAULT_SHARED,
                        help=f"folder with weights/ and data/ (default {DEFAULT_SHARED})")
    parser.add_argument("--out", default=None, help="optional path of a JSON file for the results")
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    shared = Path(args.shared)
    if not (shared / "weights").is_dir() or not (shared / "data").is_dir():
        parser.error(f"{shared} has no weights/ and data/ folders; pass --shared PATH")
    return args


def environment() -> dict[str, Any]:
    import graft

    return {
        "torch": torch.__version__,
        "graft": graft.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "load_average_1_5_15min": [round(v, 2) for v in os.getloadavg()],
    }


def bare_cifar_resnet(path: str | Path, depth: int) -> torch.nn.Module:
    """Load an akamaster CIFAR ResNet checkpoint by hand: torch.load, ['state_dict'], strip 'module.'."""
    from graft.models.zoo.cifar_resnet import CifarResNet

    obj = torch.load(str(path), weights_only=True, map_location="cpu")
    state_dict = {k.removeprefix("module."): v for k, v in obj["state_dict"].items()}
    model = CifarResNet(depth)
    model.load_state_dict(state_dict, strict=False)
    return model


def bare_mobilenetv2(path: str | Path) -> torch.nn.Module:
    """timm.create_model('mobilenetv2_100') + safetensors.torch.load_file + load_state_dict (strict)."""
    import timm
    from safetensors.torch import load_file

    model = timm.create_model("mobilenetv2_100", pretrained=False)
    model.load_state_dict(load_file(str(path)), strict=True)
    return model


def median_time(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs (after ``warmup`` untimed runs)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def wilson_interval(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval for a binomial proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {out}")
