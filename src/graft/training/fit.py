"""A small supervised trainer: AdamW, cosine learning rate, cross-entropy, accuracy per epoch.

It knows nothing about any particular model; it is what ``graft pretrain`` runs on a fresh network (to
make a source model, e.g. on one UCR dataset or on four FSDD speakers) before transferring it.

Why not the Trainer (engine.py): the Trainer runs a strategy's phases on a network grafted to new data, with the
source's input normalization, frozen BatchNorm, checkpoints and resume. Pretraining has none of that: one phase
on a fresh network, on the inputs as the loaders give them. Running it on the Trainer would change the inputs it
learns from, and so every source network the tests and benchmarks (bench/ucr_transfer.py, BENCHMARKS.md) pretrain; that is a change of results, not of
structure, and is left for a change that re-measures them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader

from graft.errors import GraftError


@dataclass
class FitResult:
    """Per-epoch history (loss, train and eval accuracy, seconds) and the final eval accuracy."""

    history: list[dict] = field(default_factory=list)
    eval_split: str | None = None

    @property
    def final_accuracy(self) -> float | None:
        return self.history[-1].get("eval_accuracy") if self.history else None


@torch.no_grad()
def accuracy(module: nn.Module, loader: DataLoader, runtime=None) -> float:
    from graft.devices import CPU

    runtime = runtime or CPU
    module.eval()
    right = total = 0
    for x, y in loader:
        with runtime.autocast():
            out = module(runtime.to(x))
        right += int((out.argmax(1).cpu() == y).sum())
        total += len(y)
    return right / max(total, 1)


def fit(module: nn.Module, train: DataLoader, eval_loader: DataLoader | None = None, *, epochs: int = 10,
        lr: float = 1e-3, weight_decay: float = 1e-4, seed: int = 0, eval_split: str | None = None,
        log=None, runtime=None) -> FitResult:
    """Train ``module`` in place on ``train``; evaluate on ``eval_loader`` after every epoch.

    ``log`` (optional) is called with each epoch's record (a dict), e.g. to print or append to a file.
    ``runtime``: the device and precision (graft.devices.Runtime; default the CPU in fp32); the module is moved
    there and left there. Under torchrun ``train`` is a :class:`graft.training.parallel.RankLoader` (this rank's part
    of each global batch, with its loss factor) and the module trains in a DistributedDataParallel wrapper: the
    same weights one process reaches, for networks whose normalization does not depend on the batch.
    """
    import graft.distributed as distributed
    from graft.devices import CPU

    runtime = runtime or CPU
    runtime.place(module)
    scaler = runtime.scaler()
    net = module
    if runtime.distributed:
        from graft.training.parallel import wrap

        net = wrap(module, runtime)
    summed = nn.CrossEntropyLoss(reduction="sum")
    if epochs < 1:
        raise GraftError("epochs >= 1", repr(epochs), "pass epochs=1 or more")
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise GraftError("a network with trainable parameters", "every parameter frozen", "unfreeze some layers")
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps = epochs * max(len(train), 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    loss_fn = nn.CrossEntropyLoss()
    result = FitResult(eval_split=eval_split)
    for epoch in range(1, epochs + 1):
        module.train()
        start, total_loss, right, seen = time.perf_counter(), 0.0, 0, 0
        for batch in train:
            x, y, factor = batch if len(batch) == 3 else (*batch, None)  # a factor: this rank's share (torchrun)
            opt.zero_grad(set_to_none=True)
            x, y = runtime.to(x), runtime.to(y)
            with runtime.autocast():
                out = net(x)
                loss = loss_fn(out, y) if factor is None else summed(out, y) * factor
            finite = bool(torch.isfinite(loss))
            if runtime.distributed:  # every rank stops, or none
                finite = distributed.sum_values(runtime, [float(not finite)], "a training step")[0] == 0
            if not finite:
                raise GraftError("a finite training loss", f"{loss.item()} at epoch {epoch}",
                                 "lower the learning rate (lr=) or check the inputs for extreme values")
            try:
                runtime.step(loss, opt, scaler)
            except RuntimeError as exc:
                if runtime.distributed and distributed.is_peer_failure(exc):  # DDP's all-reduce in backward
                    raise distributed.peer_stopped(exc, f"a training step of epoch {epoch}") from None
                raise
            sched.step()
            n = 0 if factor == 0.0 else len(y)
            mean = float(loss.detach()) if factor is None else float(loss_fn(out.detach().float(), y))
            total_loss += mean * n
            right += int((out.argmax(1) == y).sum()) if n else 0
            seen += n
        total_loss, right, seen = distributed.sum_values(runtime, [total_loss, right, seen], "the epoch's metrics")
        record = {"epoch": epoch, "loss": total_loss / max(seen, 1), "train_accuracy": right / max(seen, 1),
                  "lr": opt.param_groups[0]["lr"], "seconds": round(time.perf_counter() - start, 3)}
        if eval_loader is not None:
            record["eval_accuracy"] = accuracy(module, eval_loader, runtime)
        result.history.append(record)
        if log is not None:
            log(record)
    module.eval()
    return result
