"""Build the embedded demo assets from ../shared (run once; the outputs are committed).

- cifar_resnet20.safetensors: the CIFAR-10 ResNet-20 of akamaster/pytorch_resnet_cifar10 (BSD-2-Clause),
  read from its original DataParallel pickle with weights_only=True, re-saved as safetensors with graft's
  metadata (architecture, provenance).
- mnist_2000.npz: 2000 MNIST training digits, the first 200 of each class in the original order
  (x uint8 (2000, 28, 28), y int64, label_names '0'..'9').

Usage: python scripts/make_demo_assets.py [--shared ../shared]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from safetensors.torch import save_file

from graft.models.checkpoint import read_checkpoint

OUT = Path(__file__).resolve().parents[1] / "src" / "graft" / "assets" / "demo"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    shared = Path(ap.parse_args().shared)
    OUT.mkdir(parents=True, exist_ok=True)
    ckpt = read_checkpoint(shared / "weights" / "resnet20-12fca82f.th")
    meta = {"graft": json.dumps({"arch": "cifar_resnet20", "source": "akamaster/pytorch_resnet_cifar10 resnet20-12fca82f.th",
                                 "license": "BSD-2-Clause"})}
    save_file({k: v.contiguous() for k, v in ckpt.state_dict.items()}, str(OUT / "cifar_resnet20.safetensors"), metadata=meta)
    shutil.copy(shared / "weights" / "LICENSE-cifar10-resnet.txt", OUT / "LICENSE-cifar10-resnet.txt")
    with np.load(shared / "data" / "mnist" / "mnist.npz") as z:
        x, y = z["train_images"], z["train_labels"]
    idx = np.concatenate([np.flatnonzero(y == c)[:200] for c in range(10)])
    idx.sort()
    np.savez_compressed(OUT / "mnist_2000.npz", x=x[idx].astype(np.uint8), y=y[idx].astype(np.int64),
                        label_names=np.array([str(c) for c in range(10)]), source_index=idx.astype(np.int64))
    print(f"wrote {sorted(p.name for p in OUT.iterdir())}")


if __name__ == "__main__":
    main()
