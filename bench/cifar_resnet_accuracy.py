"""Top-1 accuracy of the four CIFAR-10 ResNets (akamaster checkpoints) loaded with graft.load_model.

Each checkpoint is loaded twice in the same process:
  * graft: ``graft.load_model(path)`` (architecture detected from the key layout, strict loading),
    inputs normalized with the backbone's ``spec.input.mean`` / ``spec.input.std``;
  * bare: ``torch.load(weights_only=True, map_location='cpu')['state_dict']``, ``module.`` stripped,
    ``CifarResNet(depth).load_state_dict(strict=False)``, inputs normalized with the ImageNet constants
    the checkpoint's README gives.
Both are evaluated in eval mode under ``torch.inference_mode`` on the 2000-image CIFAR-10 JPEG test subset
(<shared>/data/cifar10/cifar10_jpg_subset.npz), batches of 250. Their predictions must be identical.

    python bench/cifar_resnet_accuracy.py [--shared /work/shared] [--out results.json]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    CIFAR_RESNETS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    bare_cifar_resnet,
    environment,
    markdown_table,
    parse_args,
    wilson_interval,
    write_json,
)

import graft  # noqa: E402

#: Test accuracy on the full, clean CIFAR-10 test set (10k PNG images), as published by akamaster
#: (pytorch_resnet_cifar10 README) and He et al. 2016 (Table 6: 91.25 / 92.49 / 92.83 / 93.03).
AKAMASTER_FULL_CLEAN = {20: 91.7, 32: 92.6, 44: 93.1, 56: 93.4}
BATCH = 250


def normalize(x_uint8_nhwc: np.ndarray, mean, std) -> torch.Tensor:
    x = torch.from_numpy(x_uint8_nhwc).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x - m) / s


def predict(model: torch.nn.Module, x: torch.Tensor, batch: int = BATCH) -> torch.Tensor:
    """Logits of ``model`` on ``x`` (already normalized), eval mode, inference_mode, fixed batches."""
    model.eval()
    outs = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            outs.append(model(x[i:i + batch]))
    return torch.cat(outs)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    shared = Path(args.shared)
    data = np.load(shared / "data" / "cifar10" / "cifar10_jpg_subset.npz")
    x_test, y_test = data["x_test"], torch.from_numpy(data["y_test"].astype(np.int64))
    n = len(y_test)
    env = environment()
    print(f"CIFAR-10 JPEG test subset: {n} images {x_test.shape[1:]} {x_test.dtype}; torch {env['torch']}, "
          f"{env['torch_threads']} threads, CUDA {'yes' if env['cuda_available'] else 'no'}\n")

    x_bare = normalize(x_test, IMAGENET_MEAN, IMAGENET_STD)
    results = []
    for depth, file in CIFAR_RESNETS.items():
        path = shared / "weights" / file
        t0 = time.perf_counter()
        backbone = graft.load_model(str(path))  # strict=True is load_model's default
        spec = backbone.spec
        x_graft = normalize(x_test, spec.input.mean, spec.input.std)
        logits_graft = predict(backbone.module, x_graft)
        t_graft = time.perf_counter() - t0

        t0 = time.perf_counter()
        bare = bare_cifar_resnet(path, depth)
        logits_bare = predict(bare, x_bare)
        t_bare = time.perf_counter() - t0

        pred_graft, pred_bare = logits_graft.argmax(1), logits_bare.argmax(1)
        correct_graft = int((pred_graft == y_test).sum())
        correct_bare = int((pred_bare == y_test).sum())
        acc_graft, acc_bare = correct_graft / n, correct_bare / n
        lo, hi = wilson_interval(correct_graft, n)
        params = sum(p.numel() for p in backbone.module.parameters())
        row = {
            "model": f"resnet{depth}",
            "file": file,
            "detected_arch": spec.name,
            "load_report": backbone.load_report.summary() if backbone.load_report else None,
            "load_complete": bool(backbone.load_report and backbone.load_report.complete),
            "params": params,
            "spec_num_params": spec.num_params,
            "spec_mean": list(spec.input.mean) if spec.input.mean else None,
            "spec_std": list(spec.input.std) if spec.input.std else None,
            "n": n,
            "correct_graft": correct_graft,
            "correct_bare": correct_bare,
            "acc_graft": acc_graft,
            "acc_bare": acc_bare,
            "ratio_graft_over_bare": acc_graft / acc_bare if acc_bare else None,
            "wilson95": [lo, hi],
            "predictions_identical": bool(torch.equal(pred_graft, pred_bare)),
            "max_abs_logit_diff": float((logits_graft - logits_bare).abs().max()),
            "paper_full_clean_acc": AKAMASTER_FULL_CLEAN[depth],
            "seconds_load_and_eval_graft": t_graft,
            "seconds_load_and_eval_bare": t_bare,
        }
        results.append(row)
        print(f"resnet{depth}: graft {acc_graft:.2%} bare {acc_bare:.2%} "
              f"identical={row['predictions_identical']} max|dlogit|={row['max_abs_logit_diff']:.2e}", flush=True)

    headers = ["model", "params", "graft top-1 (95% Wilson CI)", "bare top-1", "graft/bare",
               "same predictions", "max abs logit diff", "akamaster, full clean CIFAR-10"]
    rows = [[r["model"], f"{r['params']:,}",
             f"{r['acc_graft']:.2%} ({r['wilson95'][0]:.1%} - {r['wilson95'][1]:.1%})",
             f"{r['acc_bare']:.2%}", f"{r['ratio_graft_over_bare']:.3f}",
             "yes" if r["predictions_identical"] else "NO", f"{r['max_abs_logit_diff']:.1e}",
             f"{r['paper_full_clean_acc']:.1f}%"] for r in results]
    print()
    print(markdown_table(headers, rows))
    print(f"\n{n} test images (200 per class), JPEG quality ~75; normalization from spec.input: "
          f"mean {results[0]['spec_mean']}, std {results[0]['spec_std']}")
    write_json(args.out, {"benchmark": "cifar_resnet_accuracy", "environment": env, "batch": BATCH,
                          "data": str(shared / "data" / "cifar10" / "cifar10_jpg_subset.npz"), "results": results})
    if not all(r["predictions_identical"] for r in results):
        sys.exit("graft and the bare loader disagree on at least one model")


if __name__ == "__main__":
    main()
