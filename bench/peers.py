"""The peers, side by side: ``--strategy auto`` against what a practitioner would run, at equal wall time.

On each task (bench/advisor_regret.py's eight, plus the Coral MobileNetV2 on the CIFAR-10 subset at 200 per class
at 96 px and, task 10, at the data's own 32 px, where auto weighs running the network larger), in one process and
interleaved, on the same splits (test never seen by any of them):

- **linear**: a plain linear probe: the network's penultimate features (one pass, eval mode), standardized,
  scikit-learn's ``LogisticRegression`` with its defaults;
- **plain**: the plain two-phase recipe: the head 1 epoch (body frozen), then everything 4 epochs, BatchNorm kept in
  inference mode, AdamW with a one-cycle schedule (1e-3, then 3e-4), a horizontal flip for natural images, all
  training samples, batch 32;
- **fastai**: fastai's own ``Learner.fine_tune(4, freeze_epochs=1)`` (what ``vision_learner(...).fine_tune()`` runs;
  vision_learner itself would download the weights, which this machine cannot), on the image tasks, with a
  body/head splitter and fastai's defaults (BatchNorm trains while frozen, discriminative rates);
- **auto**: ``graft.fine_tune(strategy="auto", budget=T)`` with T the wall time of the best peer (by test
  accuracy), at least ``MIN_BUDGET`` (graft's fixed cost, loading the network and timing a few steps, is a few
  seconds): loading, measuring, trials, training and report all inside T.

Every peer starts from the same network grafted to the data by graft (the surgery a user would otherwise write by
hand), and its wall time counts from loading the network to its test accuracy.

    python bench/peers.py [--shared /work/shared] [--out results.json] [--tasks 1,2,...] [--no-fastai]
"""

from __future__ import annotations

import itertools
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MOBILENETV2_FILE, environment, markdown_table, parse_args, write_json  # noqa: E402
from advisor_regret import CORAL_V2, _images, _tasks  # noqa: E402

import graft  # noqa: E402
from graft.workflow import target_from_data  # noqa: E402

BATCH = 32
MIN_BUDGET = 10.0  # seconds: below it, auto's budget is this (the table says so)


def _extra(p):
    p.add_argument("--tasks", help="which tasks (1-based, comma-separated); default all")
    p.add_argument("--no-fastai", action="store_true", help="leave the fastai peer out")


def all_tasks(shared: Path, tmp: Path):
    yield from itertools.islice(_tasks(shared, tmp), 8)  # advisor_regret.py's eight (its 9-11 are for the advisor)
    d, w = shared / "data", shared / "weights"
    yield ("Coral MobileNetV2 1.0 (ImageNet) -> CIFAR-10, 200 per class, 96 px", w / MOBILENETV2_FILE, CORAL_V2,
           lambda: _images(d / "cifar10" / "cifar10_jpg_subset.npz", 200, 100, size=96))
    # the same at the data's own 32 px: auto weighs running the network larger (issue 16, item 7); the peers do not
    yield ("Coral MobileNetV2 1.0 (ImageNet) -> CIFAR-10, 200 per class, 32 px", w / MOBILENETV2_FILE, CORAL_V2,
           lambda: _images(d / "cifar10" / "cifar10_jpg_subset.npz", 200, 100))


def _grafted(model, options, data):
    backbone = graft.load_model(model, options)
    plan = graft.plan_surgery(backbone, target_from_data(data))
    return plan.apply(backbone)


def _tensors(data, split):
    x, y = data.arrays(split)
    return torch.as_tensor(np.asarray(x), dtype=torch.float32), torch.as_tensor(np.asarray(y), dtype=torch.int64)


def _normalize(backbone, x):
    inp = backbone.spec.input
    if inp.mean is None or inp.std is None:  # a network without input statistics (ts_fcn) takes the data as it is
        return x
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - torch.tensor(inp.mean).view(shape)) / torch.tensor(inp.std).view(shape)


@torch.inference_mode()
def _accuracy(module, x, y) -> float:
    module.eval()
    right = sum(int((module(x[i:i + 256]).argmax(1) == y[i:i + 256]).sum()) for i in range(0, len(x), 256))
    return right / len(y)


def _head(backbone) -> nn.Module:
    return backbone.module.get_submodule(backbone.spec.head.name)


def plain_linear(model, options, data) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    backbone = _grafted(model, options, data)
    seen = []
    handle = _head(backbone).register_forward_hook(lambda _m, args, _o: seen.append(args[0].flatten(1).clone()))

    def features(split):
        x, y = _tensors(data, split)
        seen.clear()
        _accuracy(backbone.module, _normalize(backbone, x), y)
        return torch.cat(seen).numpy(), y.numpy()

    (xa, ya), (xt, yt) = features("train"), features("test")
    handle.remove()
    scaler = StandardScaler().fit(xa)
    clf = LogisticRegression(max_iter=1000).fit(scaler.transform(xa), ya)
    return {"test_accuracy": float((clf.predict(scaler.transform(xt)) == yt).mean()),
            "seconds": time.perf_counter() - t0}


def _bn_eval(module):
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def plain_recipe(model, options, data, *, flip: bool, seed: int = 0) -> dict:
    """Head 1 epoch, then everything 4 epochs; BatchNorm in inference mode; AdamW one-cycle; flip for images."""
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    backbone = _grafted(model, options, data)
    module = backbone.module
    x, y = _tensors(data, "train")
    x = _normalize(backbone, x)
    head = list(_head(backbone).parameters())
    steps = math.ceil(len(x) / BATCH)
    for params, lr, epochs in ((head, 1e-3, 1), (list(module.parameters()), 3e-4, 4)):
        for p in module.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps)
        for _ in range(epochs):
            module.train()
            _bn_eval(module)
            order = torch.randperm(len(x))
            for i in range(0, len(x), BATCH):
                xb, yb = x[order[i:i + BATCH]], y[order[i:i + BATCH]]
                if flip:
                    mask = torch.rand(len(xb)) < 0.5
                    xb = torch.where(mask.view(-1, *(1,) * (xb.ndim - 1)), xb.flip(-1), xb)
                loss = nn.functional.cross_entropy(module(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
    xt, yt = _tensors(data, "test")
    return {"test_accuracy": _accuracy(module, _normalize(backbone, xt), yt), "seconds": time.perf_counter() - t0}


def fastai_fine_tune(model, options, data, seed: int = 0) -> dict:
    """fastai's Learner.fine_tune(4, freeze_epochs=1) with fastai's defaults, on graft's grafted network."""
    import fastai.callback.progress  # noqa: F401  (Learner.no_bar)
    import fastai.callback.schedule  # noqa: F401  (Learner.fine_tune, fit_one_cycle)
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.learner import Learner
    from fastai.metrics import accuracy

    torch.manual_seed(seed)
    t0 = time.perf_counter()
    backbone = _grafted(model, options, data)
    module = backbone.module
    head_name = backbone.spec.head.name
    (x, y), (xv, yv) = _tensors(data, "train"), _tensors(data, "val")
    x, xv = _normalize(backbone, x), _normalize(backbone, xv)
    dls = DataLoaders(DataLoader(list(zip(x, y)), bs=BATCH, shuffle=True, drop_last=True),
                      DataLoader(list(zip(xv, yv)), bs=256))

    def splitter(m):
        head = [p for n, p in m.named_parameters() if n == head_name or n.startswith(head_name + ".")]
        ids = {id(p) for p in head}
        return [[p for p in m.parameters() if id(p) not in ids], head]

    learn = Learner(dls, module, loss_func=nn.CrossEntropyLoss(), splitter=splitter, metrics=accuracy)
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(4, freeze_epochs=1)
    xt, yt = _tensors(data, "test")
    return {"test_accuracy": _accuracy(module, _normalize(backbone, xt), yt), "seconds": time.perf_counter() - t0}


def graft_auto(model, options, data, budget: float, out: Path) -> dict:
    t0 = time.perf_counter()
    messages = []
    record = graft.fine_tune(model, data, out, strategy="auto", budget=budget, load_options=options,
                             messages=messages.append, progress=False, keep_going=True)
    wall = time.perf_counter() - t0
    advice = graft.strategy.advisor.Advice.from_json((out / "advice.json").read_text())
    return {"test_accuracy": record.final_accuracy, "seconds": wall, "budget": budget, "ratio": wall / budget,
            "strategy": record.strategy, "epochs": record.epochs_run, "warnings": list(record.warnings),
            "advice": advice.strategy, "reasons": list(advice.reasons),
            "run_size": advice.measurements.get("run_size"),
            "candidates": [c["strategy"] + (" (left out)" if c.get("left_out") else "") for c in advice.candidates]}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], _extra)
    torch.set_num_threads(2)
    shared = Path(args.shared)
    chosen = {int(t) for t in args.tasks.split(",")} if args.tasks else None
    results = {"environment": environment(), "tasks": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for index, (name, model, options, make) in enumerate(all_tasks(shared, tmp), 1):
            if chosen and index not in chosen:
                continue
            model = model() if callable(model) else model
            data = make()
            image = len(data.spec.input_shape) == 3  # (C, H, W): images and spectrograms, where fastai applies
            natural = image and data.spec.input_shape[0] == 3
            print(f"task {index}: {name}", flush=True)
            peers = {"linear": plain_linear(model, options, data),
                     "plain": plain_recipe(model, options, data, flip=natural)}
            if image and not args.no_fastai:
                peers["fastai"] = fastai_fine_tune(model, options, data)
            for peer, r in peers.items():
                print(f"  {peer}: {r['test_accuracy']:.3f} in {r['seconds']:.1f} s", flush=True)
            best = max(peers, key=lambda k: peers[k]["test_accuracy"])
            auto = graft_auto(model, options, data, max(MIN_BUDGET, peers[best]["seconds"]), tmp / f"auto{index}")
            print(f"  auto: {auto['test_accuracy']:.3f} in {auto['seconds']:.1f} s of {auto['budget']:.1f} s "
                  f"({auto['strategy']}, {auto['epochs']} epochs)", flush=True)
            results["tasks"].append({"task": name, "train": len(data["train"]), "peers": peers, "best_peer": best,
                                     "auto": auto, "gain": auto["test_accuracy"] - peers[best]["test_accuracy"]})
            if args.out:  # after every task: an interrupted run keeps what it measured
                write_json(args.out, {**results, "complete": False})
    tasks = results["tasks"]
    gains = [t["gain"] for t in tasks]
    results["summary"] = {"mean_gain_points": 100 * statistics.fmean(gains), "worst_gain_points": 100 * min(gains),
                          "budget_ratio_max": max(t["auto"]["ratio"] for t in tasks),
                          "budget_over_5s_or_10pct": [t["task"] for t in tasks
                                                      if t["auto"]["seconds"] > max(1.1 * t["auto"]["budget"],
                                                                                    t["auto"]["budget"] + 5)]}
    rows = []
    for i, t in enumerate(tasks, 1):
        p, a = t["peers"], t["auto"]
        cells = [f"{p[k]['test_accuracy']:.3f} ({p[k]['seconds']:.0f} s)" if k in p else "-"
                 for k in ("linear", "plain", "fastai")]
        rows.append([str(i), t["task"], str(t["train"]), *cells,
                     f"{a['test_accuracy']:.3f} ({a['strategy']})", f"{a['seconds']:.0f} / {a['budget']:.0f} s",
                     f"{100 * t['gain']:+.1f}"])
    print(markdown_table(["#", "task", "train", "linear", "plain", "fastai", "auto", "auto wall / budget",
                          "auto - best peer (points)"], rows))
    print(results["summary"])
    if args.out:
        write_json(args.out, {**results, "complete": True})


if __name__ == "__main__":
    main()
