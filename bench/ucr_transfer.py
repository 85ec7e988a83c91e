"""Pretrain a 1-D CNN on one UCR dataset, transfer it to another, and compare with training from scratch.

This is the time-series transfer the literature measures (Fawaz et al., "Transfer learning for time series
classification", 2018): an FCN trained on a source UCR set, its head replaced, fine-tuned on a target set.
Everything goes through graft's public path:

1. ``graft.pretrain(arch, source, out)`` trains a fresh network on the source's train split (z-normalized
   series) and writes ``model.safetensors``;
2. ``graft.plan_surgery(checkpoint, data=target, keep_rows="never")`` plans the new head (and a length
   change when the target's series are longer or shorter; the FCN pools globally so takes any length),
   ``plan.apply`` executes it;
3. the grafted network is fine-tuned on the target's train split with the same trainer, epochs and
   learning rate as
4. the control: the same architecture, randomly initialized (``scratch``);
5. also ``head only``: the pretrained body frozen, only the new head trained (a linear probe by SGD).

Accuracy is on the target's official UCR test split, which is never seen during training (no model
selection on it: the last epoch is reported). Each arm runs with ``--seeds`` seeds; mean and spread.
The source is pretrained once per pair (seed 0).

    python bench/ucr_transfer.py [--shared /work/shared] [--out results.json] [--epochs 40] [--seeds 3]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, markdown_table, parse_args, write_json  # noqa: E402

import graft  # noqa: E402

# source -> target: same sensor, different task; same recordings, different axis; different domain
PAIRS = [
    ("GunPointAgeSpan", "GunPoint"),
    ("GunPointAgeSpan", "GunPointMaleVersusFemale"),
    ("CricketX", "CricketY"),
    ("CricketX", "UMD"),
]
WIDTH = 64  # ts_fcn width (the paper's 128 halved: 2 CPU cores)


def _extra(p):
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--arch", default="ts_fcn")


def _load(shared: Path, name: str):
    return graft.load_data(shared / "data" / "ucr" / name, normalize="zscore")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], _extra)
    torch.set_num_threads(2)
    shared = Path(args.shared)
    from graft.training.fit import accuracy
    from graft.training.fit import fit as train

    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        sources: dict[str, Path] = {}
        for src_name, tgt_name in PAIRS:
            if src_name not in sources:
                src = _load(shared, src_name)
                t0 = time.perf_counter()
                graft.pretrain(args.arch, src, Path(tmp) / src_name, epochs=args.epochs, lr=args.lr, seed=0, width=WIDTH)
                ckpt = Path(tmp) / src_name / "model.safetensors"
                src_acc = accuracy(graft.load_model(ckpt).module, src.loader("test", 256, shuffle=False))
                print(f"pretrained {args.arch} on {src_name}: test accuracy {src_acc:.3f} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
                sources[src_name] = ckpt
            ckpt = sources[src_name]
            tgt = _load(shared, tgt_name)
            train_loader = tgt.loader("train", 16, seed=0)
            test_loader = tgt.loader("test", 256, shuffle=False)
            plan = graft.plan_surgery(ckpt, data=tgt, keep_rows="never")
            arms: dict[str, list[float]] = {"scratch": [], "transfer (fine-tune all)": [], "transfer (head only)": []}
            seconds: dict[str, list[float]] = {k: [] for k in arms}
            for seed in range(args.seeds):
                for arm in arms:
                    torch.manual_seed(seed)
                    if arm == "scratch":
                        net = graft.load_model(args.arch, pretrained=False, num_classes=len(tgt.spec.label_names),
                                               in_chans=tgt.spec.channels, width=WIDTH).module
                    else:
                        grafted = graft.plan_surgery(ckpt, data=tgt, keep_rows="never", seed=seed).apply(
                            graft.load_model(ckpt))
                        net = grafted.module
                        if arm == "transfer (head only)":
                            head = grafted.spec.head.name + "."
                            for n, p in net.named_parameters():
                                p.requires_grad = n.startswith(head)
                            assert any(p.requires_grad for p in net.parameters()), "no head parameters found"
                    t0 = time.perf_counter()
                    train(net, tgt.loader("train", 16, seed=seed), None, epochs=args.epochs, lr=args.lr, seed=seed)
                    seconds[arm].append(time.perf_counter() - t0)
                    arms[arm].append(accuracy(net, test_loader))
                print(f"  {src_name} -> {tgt_name} seed {seed}: "
                      + ", ".join(f"{k} {v[-1]:.3f}" for k, v in arms.items()), flush=True)
            del train_loader
            n_train = len(tgt.splits["train"])
            entry = {"source": src_name, "target": tgt_name, "target_train": n_train,
                     "target_test": len(tgt.splits["test"]), "classes": len(tgt.spec.label_names),
                     "plan": [s.summary for s in plan.steps],
                     "arms": {k: {"test_accuracy": v, "mean": statistics.mean(v),
                                  "stdev": statistics.stdev(v) if len(v) > 1 else 0.0,
                                  "seconds_mean": statistics.mean(seconds[k])} for k, v in arms.items()}}
            results.append(entry)
            a = entry["arms"]
            rows.append([f"{src_name} -> {tgt_name}", n_train, entry["classes"],
                         *(f"{a[k]['mean']:.3f} ± {a[k]['stdev']:.3f}" for k in arms),
                         f"{a['transfer (fine-tune all)']['mean'] - a['scratch']['mean']:+.3f}"])
    print()
    print(markdown_table(["pair", "target train", "classes", *arms, "fine-tune - scratch"], rows))
    write_json(args.out, {"environment": environment(), "arch": args.arch, "width": WIDTH, "epochs": args.epochs,
                          "lr": args.lr, "seeds": args.seeds, "pairs": results})


if __name__ == "__main__":
    main()
