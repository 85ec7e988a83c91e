"""One trainer for every strategy: it runs the phases a Strategy compiles to, and survives interruption.

Parameters are grouped by block (the backbone contract's blocks, in execution order; parameters outside every
block go with the first), the head and the surgery's new input layers. A phase says which groups train and
at which learning rates; frozen groups have ``requires_grad=False`` and, unless the strategy lets BatchNorm
adapt, their BatchNorm layers stay in eval mode with the source's statistics. AdamW gets one param group per
trainable group; when a block unfreezes (``gradual``) its group is added with a fresh state, and at a phase
boundary the optimizer is rebuilt. The learning rate follows a per-step schedule (linear warm-up, then cosine
/ one-cycle-shaped / constant) computed from the global step, so a resumed run continues on the same curve.

Every epoch ends with a checkpoint (training/checkpoints.py); ``resume=True`` continues from the last one
with the same weights, optimizer state, RNG state and counters, and reaches the same final weights as an
uninterrupted run (the loader of epoch ``e`` is shuffled by a generator seeded with ``seed + e``).

The trainer computes where its ``runtime`` says (graft.devices.Runtime: the device, autocast to bf16/fp16 with a
gradient scaler for fp16, channels-last); under torchrun it trains the network in a DistributedDataParallel
wrapper rebuilt whenever what trains changes, each rank on its part of every global batch
(graft.training.parallel), and rank 0 alone writes the run folder. Its passes without gradients (evaluation, the
solved head's features, AdaBN) are in graft.training.passes.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

import graft.distributed as distributed
from graft.data import Data
from graft.data.transforms import Preprocess
from graft.devices import CPU, Runtime, is_out_of_memory
from graft.errors import GraftError
from graft.progress import LiveBar, track
from graft.models import Backbone
from graft.strategy.spec import Phase, Strategy, phases
from graft.surgery.plan import run_size
from graft.training.passes import Passes
from graft.training.checkpoints import load_checkpoint, newest_intact, read_checkpoint_state, save_checkpoint
from graft.training.groups import (  # noqa: F401  (HEAD and ADAPTER are part of this module's interface)
    ADAPTER,
    HEAD,
    _folded_batchnorms,
    _load_start,
    _module_groups,
    _reinitialize,
    _save_start,
)


@dataclass
class RunState:
    """The trainer's counters, saved in every checkpoint."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps completed
    seconds: float = 0.0  # training time spent, over every session of the run
    best: float | None = None  # best validation accuracy
    best_epoch: int = 0
    stale: int = 0  # epochs since the best
    lr_factor: float = 1.0  # reduce-on-plateau multiplier
    stopped: str = ""  # why training ended early: "early stopping", "budget", ""
    history: list[dict] = field(default_factory=list)


class Trainer(Passes):
    """Runs ``strategy`` on ``backbone`` (already grafted to the data) and writes ``run_dir``."""

    def __init__(self, backbone: Backbone, data: Data, strategy: Strategy, run_dir: str | Path, *, epochs: int,
                 batch_size: int = 32, seed: int = 0, budget: float | None = None, patience: int | None = None,
                 plateau: int | None = None, eval_split: str | None = None, log=None, device: str | None = None,
                 cache_prefix: bool = True, cache_limit: float | None = None, progress=True,
                 runtime: Runtime | None = None):
        self.backbone, self.data, self.strategy = backbone, data, strategy
        self.module = backbone.module
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.epochs, self.batch_size, self.seed, self.budget = epochs, batch_size, seed, budget
        self.patience, self.plateau, self.log = patience, plateau, log
        # True: a live per-batch bar when stderr is a terminal; False: none; a rich Console: always, on it
        self.progress = progress
        # where and how it computes (graft.devices); ``device`` alone: that device in fp32
        self.runtime = runtime if runtime is not None else (Runtime.resolve(device, "fp32") if device else CPU)
        self.device = self.runtime.torch_device
        if self.runtime.distributed:  # a Trainer made outside a Workflow joins the launch's process group too
            distributed.initialize(self.runtime)
            used = {"train", *([eval_split] if eval_split else [s for s in ("val", "test") if s in data.splits][:1])}
            small = {s: len(data[s]) for s in sorted(used) if len(data[s]) < self.runtime.world_size}
            if small:
                raise GraftError(f"at least one sample per process ({self.runtime.world_size}) in every split",
                                 ", ".join(f"{s}: {n}" for s, n in small.items()),
                                 "train in fewer processes (--nproc_per_node), or on more data")
        self.runtime.place(self.module)
        self.scaler = self.runtime.scaler()
        self._wrapped: nn.Module | None = None  # the DDP wrapper of the trainable set now (torchrun)
        self.eval_split = eval_split if eval_split is not None else next(
            (s for s in ("val", "test") if s in data.splits), None)
        inp = backbone.spec.input
        self.prep = Preprocess(inp.mean, inp.std, None)
        first = data["train"][0][0] if len(data["train"]) else None
        example = self.prep.batch(first[None].to(self.device)) if first is not None else None
        self.module_groups, self.blocks = _module_groups(backbone, example)
        self.groups = {name: self.module_groups[name.rpartition(".")[0]] for name, _ in self.module.named_parameters()}
        self.has_adapter = ADAPTER in self.groups.values()
        self.phases = phases(strategy, len(self.blocks), epochs, self.has_adapter)
        # a head is solved (one pass, not epochs) when it is a Linear layer over frozen BatchNorm statistics; with
        # batchnorm="adapt" the statistics must see the data in training mode, so SGD epochs train it instead
        self.solves_head = isinstance(self._head(), nn.Linear) and strategy.batchnorm == "frozen"
        if self.solves_head:
            self.phases = tuple(replace(p, epochs=1) if p.solve_head else p for p in self.phases)
        self.epochs = sum(p.epochs for p in self.phases)
        self.start_weights = {n: p.detach().clone() for n, p in self.module.named_parameters()}
        self.state = RunState()
        self.use_cache, self.cache_limit, self.notes = cache_prefix, cache_limit, []
        self.folded_bn = set() if self.phases[0].reinitialize else _folded_batchnorms(self.module)
        if self.folded_bn:
            self.notes.append(f"{len(self.folded_bn)} BatchNorm layers hold identity statistics with a learned shift "
                              "(BatchNorm folded into the convolutions, as in quantized models): they stay in inference "
                              "mode, since normalizing with batch statistics would undo the folding; their scale and "
                              "shift still train")
        self.optimizer: torch.optim.Optimizer | None = None
        self.trainable: tuple[int, ...] = ()

    # ------------------------------------------------------------------ what trains
    def _phase_at(self, epoch: int) -> tuple[int, Phase, int]:
        """(index, phase, epoch within the phase) of the 0-based ``epoch``."""
        start = 0
        for i, ph in enumerate(self.phases):
            if epoch < start + ph.epochs:
                return i, ph, epoch - start
            start += ph.epochs
        return len(self.phases) - 1, self.phases[-1], self.phases[-1].epochs - 1

    def _trainable_now(self, phase: Phase, local_epoch: int) -> tuple[int, ...]:
        if not phase.unfreeze_every:
            return phase.trainable
        stage = local_epoch // phase.unfreeze_every  # 0: head only; then one more block from the top
        body = [g for g in phase.trainable if g >= 0]
        thawed = body[len(body) - stage:] if stage else []
        return tuple(g for g in phase.trainable if g == HEAD or g in thawed or (g == ADAPTER and stage > len(body)))

    def _lr_of(self, phase: Phase, group: int) -> float:
        return phase.lrs[phase.trainable.index(group)]

    def _set_trainable(self, phase: Phase, trainable: tuple[int, ...]) -> None:
        for name, p in self.module.named_parameters():
            p.requires_grad_(self.groups[name] in trainable)
        if not any(p.requires_grad for p in self.module.parameters()):
            raise GraftError("something to train", f"phase {phase.name!r} leaves every parameter frozen",
                             "check the strategy against the network's blocks (graft inspect)")
        new = [g for g in trainable if g not in self.trainable]
        if self.optimizer is None or not set(self.trainable) <= set(trainable):
            self.optimizer = self._optimizer(phase, trainable)
        else:
            for g in new:
                self.optimizer.add_param_group(self._param_group(phase, g))
        self.trainable = trainable
        self._wrapped = None  # DDP's reducer knows only the parameters that train now (graft.training.parallel)

    def _net(self) -> nn.Module:
        """What a training step runs: the module, or under torchrun its DDP wrapper over what trains now."""
        if not self.runtime.distributed:
            return self.module
        if self._wrapped is None:
            from graft.training.parallel import wrap

            self._wrapped = wrap(self.module, self.runtime)
        return self._wrapped

    def _param_group(self, phase: Phase, group: int) -> dict:
        params = [p for n, p in self.module.named_parameters() if self.groups[n] == group]
        new_layer = group in (HEAD, ADAPTER)
        decay = self.strategy.weight_decay if (new_layer or not self.strategy.l2sp) else 0.0
        base = self._lr_of(phase, group)
        return {"params": params, "lr": base, "base_lr": base, "weight_decay": decay, "graft_group": group}

    def _optimizer(self, phase: Phase, trainable: tuple[int, ...]) -> torch.optim.Optimizer:
        """AdamW over ``trainable`` (in that order: a resumed run rebuilds the saved order, since the optimizer's
        state is matched to its param groups by position)."""
        groups = [self._param_group(phase, g) for g in trainable]
        groups = [g for g in groups if g["params"]]
        return torch.optim.AdamW(groups, lr=groups[0]["lr"])

    def _train_mode(self) -> None:
        """Train mode, except that frozen blocks run as at inference: their BatchNorm keeps the source's
        statistics (unless the strategy lets it adapt) and their dropout is off."""
        self.module.train()
        kinds = (nn.modules.dropout._DropoutNd,) + ((nn.modules.batchnorm._BatchNorm,)
                                                      if self.strategy.batchnorm == "frozen" else ())
        for name, m in self.module.named_modules():
            if (isinstance(m, kinds) and self.module_groups[name] not in self.trainable) or name in self.folded_bn:
                m.eval()

    def _cacheable_prefix(self, phase: Phase) -> list[str] | None:
        """The frozen blocks below the first trainable one, when their outputs can be computed once."""
        if phase.unfreeze_every or self.strategy.batchnorm != "frozen" or ADAPTER in self.trainable:
            return None
        body = sorted(g for g in self.trainable if g >= 0)
        first = body[0] if body else len(self.blocks)
        if first == 0 or body != list(range(first, len(self.blocks))):
            return None
        return (["input_layer"] if self.has_adapter else []) + self.blocks[:first]

    def _prefix(self, phase_index: int, phase: Phase):
        from graft.training.prefix import PrefixCache, prefix_limit

        key = (phase_index, tuple(self.trainable))
        if getattr(self, "_cache_key", None) == key:
            return self._cache
        self._cache_key, self._cache = key, None
        frozen = self._cacheable_prefix(phase)
        if frozen is not None:
            size = self.data.inference_batch_size("train", self.device, run_size(self.backbone))
            rows = self._shard("train")
            loader = self.data.loader("train", size, shuffle=False, rows=rows, pin_memory=self.runtime.pin_memory)
            batches = track(loader, "computing the frozen prefix once", total=len(loader), min_items=20) \
                if self.progress else loader
            limit = self.cache_limit if self.cache_limit is not None else prefix_limit()
            limit /= distributed.local_world_size() if self.runtime.distributed else 1  # each rank holds all of it
            total = len(self.data["train"])
            cache = PrefixCache(self.module, frozen, batches, size, self.prep, self.device,
                                total=total if rows is None else len(rows),
                                limit=None if limit is None else limit / self.runtime.world_size)
            fits = distributed.sum_values(self.runtime, [float(cache.projected > limit / self.runtime.world_size)],
                                          "the frozen prefix")[0] == 0
            if fits and rows is not None:  # each rank computed its shard: every rank gets them all, in order
                cache.outputs = distributed.gather_shards(self.runtime, cache.outputs.to(self.device),
                                                          total, "the frozen prefix").cpu()
                cache.projected *= self.runtime.world_size
            if fits:
                self._cache = cache
            else:
                whole = cache.projected * self.runtime.world_size  # every rank would hold all of it
                self.notes.append(f"frozen prefix not cached: it would take {whole / 2**30:.2f} GiB, over "
                                  f"the {limit / 2**30:.2f} GiB limit; recomputed every epoch")
        return self._cache

    def _batches(self, epoch: int, cache):
        """(x or None, y, cached prefix output or None, loss factor) batches, in the order the shuffled loader
        gives; under torchrun, this rank's part of each global batch (graft.training.parallel), with the factor that
        makes DDP's average of the gradients the global batch's (None: the mean loss of one process)."""
        from graft.training.parallel import global_order, rank_batches

        rt = self.runtime
        if cache is None and not rt.distributed:
            for x, y in self.data.loader("train", self.batch_size, shuffle=True, seed=self.seed + epoch,
                                         pin_memory=rt.pin_memory):
                yield x, y, None, None
            return
        order = global_order(len(self.data["train"]), self.seed + epoch)
        parts = rank_batches(order, self.batch_size, rt.rank, rt.world_size) if rt.distributed else \
            [(order[i:i + self.batch_size].numpy(), 0, False) for i in range(0, len(order), self.batch_size)]
        factors = [None if not rt.distributed else (0.0 if dummy else rt.world_size / size) for _, size, dummy in parts]
        if cache is None:
            loader = self.data.loader("train", batches=[index for index, _, _ in parts], pin_memory=rt.pin_memory)
            for (x, y), factor in zip(loader, factors):
                yield x, y, None, factor
            return
        labels = torch.as_tensor(np.asarray(self.data["train"].y))
        for (index, _, _), factor in zip(parts, factors):
            index = torch.as_tensor(index)
            yield None, labels[index], cache.outputs[index], factor

    # ------------------------------------------------------------------ schedule
    def _lr_scale(self, phase: Phase, local_step: int, steps_in_phase: int, steps_per_epoch: int) -> float:
        warm = self.strategy.warmup_epochs * steps_per_epoch
        if self.strategy.schedule == "onecycle":
            warm = 0.3 * steps_in_phase
        if warm and local_step < warm:
            return (local_step + 1) / warm
        if self.strategy.schedule == "constant":
            return 1.0
        progress = (local_step - warm) / max(1.0, steps_in_phase - warm)
        floor = 1e-4 if self.strategy.schedule == "onecycle" else 0.0
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    # ------------------------------------------------------------------ one epoch
    def _epoch(self, epoch: int, session_start: float) -> dict:
        index, phase, local = self._phase_at(epoch)
        if phase.solve_head and self.solves_head:
            return self._solve_head(epoch, phase)
        steps_per_epoch = max(1, math.ceil(len(self.data["train"]) / self.batch_size))
        phase_start = sum(p.epochs for p in self.phases[:index])
        t0 = time.perf_counter()
        cache = self._prefix(index, phase) if self.use_cache else None
        self._train_mode()
        loss_fn = nn.CrossEntropyLoss(label_smoothing=self.strategy.label_smoothing)
        summed = nn.CrossEntropyLoss(label_smoothing=self.strategy.label_smoothing, reduction="sum")
        total, right, seen = 0.0, 0, 0
        rt, net = self.runtime, self._net()
        context = cache.swapped() if cache is not None else contextlib.nullcontext()
        with context, self._bar(steps_per_epoch, f"epoch {epoch + 1}/{self.epochs} [{phase.name}]") as bar:
            for i, (x, y, cached, factor) in enumerate(self._batches(epoch, cache)):
                scale = self._lr_scale(phase, (epoch - phase_start) * steps_per_epoch + i,
                                       phase.epochs * steps_per_epoch, steps_per_epoch) * self.state.lr_factor
                for group in self.optimizer.param_groups:
                    group["lr"] = group["base_lr"] * scale
                y = rt.to(y)
                try:
                    with rt.autocast():
                        if cached is not None:
                            cache.batch = rt.to(cached)
                            out = net(cache.dummy_input(len(y)))
                        else:
                            out = net(self.prep.batch(rt.to(x)))
                        # one process: the batch's mean; a rank: its share of the global batch's mean (parallel.py)
                        loss = loss_fn(out, y) if factor is None else summed(out, y) * factor
                    if self.strategy.l2sp:
                        loss = loss + self._l2sp()
                    over = self.budget is not None and \
                        self.state.seconds + (time.perf_counter() - session_start) > self.budget
                    finite = bool(torch.isfinite(loss))
                    if rt.distributed:  # every rank stops together, or none: a lone rank would wait forever
                        bad, over = (v > 0 for v in distributed.sum_values(rt, [float(not finite), float(over)],
                                                                               "a training step"))
                        finite = not bad
                    if not finite:
                        raise GraftError("a finite training loss", f"{loss.item()} at epoch {epoch + 1}",
                                         "lower the learning rate or check the inputs for extreme values")
                    self.optimizer.zero_grad(set_to_none=True)
                    rt.step(loss, self.optimizer, self.scaler)
                except Exception as exc:
                    if is_out_of_memory(exc):
                        raise self._out_of_memory("a training step", self.batch_size) from None
                    if rt.distributed and distributed.is_peer_failure(exc):  # DDP's all-reduce in backward
                        raise distributed.peer_stopped(exc, f"a training step of epoch {epoch + 1}") from None
                    raise
                self.state.step += 1
                n = 0 if factor == 0.0 else len(y)
                per_sample = float(loss_fn(out.detach().float(), y)) if factor is not None else float(loss.detach())
                total += per_sample * n
                right += int((out.argmax(1) == y).sum()) if n else 0
                seen += n
                bar.advance(loss=total / max(seen, 1), acc=right / max(seen, 1))
                if over:
                    self.state.stopped = "budget"
                    break
        if rt.distributed:
            total, right, seen = distributed.sum_values(rt, [total, right, seen], "the epoch's metrics")
        record = {"epoch": epoch + 1, "phase": phase.name, "trainable_groups": len(self.trainable),
                  "loss": total / max(seen, 1), "train_accuracy": right / max(seen, 1),
                  "lr": {str(g["graft_group"]): g["lr"] for g in self.optimizer.param_groups},
                  "seconds": round(time.perf_counter() - t0, 3), "cached_prefix": cache is not None}
        return record

    def _bar(self, total: int, description: str) -> LiveBar:
        console = None if isinstance(self.progress, bool) else self.progress
        return LiveBar(total, description, enabled=bool(self.progress), console=console)

    def _l2sp(self) -> torch.Tensor:
        penalty = torch.zeros((), device=self.device)
        for name, p in self.module.named_parameters():
            if p.requires_grad and self.groups[name] not in (HEAD, ADAPTER):
                penalty = penalty + ((p - self.start_weights[name]) ** 2).sum()
        return 0.5 * self.strategy.l2sp * penalty

    def run(self, resume: bool = False) -> RunState:
        if self.runtime.is_main:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        if resume and newest_intact(self.ckpt_dir, "last") == (None, []):  # stopped before its first checkpoint
            resume = False
            self.notes.append("no checkpoint was written before the interruption: the run started from the beginning")
        torch.manual_seed(self.seed)
        if self.phases[0].reinitialize and not resume:
            _reinitialize(self.module, self.seed)
        first_epoch = 0
        if resume:
            name, passed = newest_intact(self.ckpt_dir, "last")
            if name is None:
                raise GraftError(f"a checkpoint to resume from in {self.ckpt_dir}",
                                 "; ".join(passed) if passed else "none",
                                 f"start a new run in another folder (another --out), or remove {self.run_dir} and "
                                 "start it again")
            meta = read_checkpoint_state(self.ckpt_dir, name)
            self._check_resumable(meta)
            if passed:
                self.notes.append(f"resumed from the checkpoint before the last (epoch {meta['state']['epoch']}): "
                                  + "; ".join(passed))
            first_epoch = meta["state"]["epoch"]
            _, phase, _ = self._phase_at(max(0, first_epoch - 1))  # the phase that wrote the checkpoint
            self.optimizer = None
            self.trainable = ()
            self._set_trainable(phase, tuple(meta["optimizer_groups"]))
            self.trainable = tuple(meta["trainable"])
            load_checkpoint(self.ckpt_dir, name, self.module, self.optimizer)
            self.state = RunState(**meta["state"])
            if self.scaler is not None and meta.get("scaler"):
                self.scaler.load_state_dict(meta["scaler"])
            if self.runtime.is_main:
                with open(self.run_dir / "history.jsonl", "w") as f:  # the epochs of the checkpoint, no later ones
                    f.writelines(json.dumps(record) + "\n" for record in self.state.history)
            self.start_weights = {k: torch.as_tensor(v).to(self.device) for k, v in _load_start(self.run_dir).items()}
        elif self.runtime.is_main:  # under torchrun rank 0 alone writes the run folder
            _save_start(self.run_dir, self.start_weights)
            (self.run_dir / "history.jsonl").write_text("")
        session_start = time.perf_counter()
        for epoch in range(first_epoch, self.epochs):
            if self.state.stopped:
                break
            index, phase, local = self._phase_at(epoch)
            wanted = self._trainable_now(phase, local)
            if wanted != self.trainable or self.optimizer is None:
                if epoch > 0 and self._phase_at(epoch - 1)[0] != index:
                    self.optimizer = None  # a new phase: fresh optimizer
                    self.trainable = ()
                self._set_trainable(phase, wanted)
            if self.runtime.distributed:  # each rank its own random draws (dropout, augmentation), the same on resume
                torch.manual_seed(self.seed + 7919 * self.runtime.rank + 104729 * (epoch + 1))
            record = self._epoch(epoch, session_start)
            if self.runtime.distributed:  # BatchNorm statistics of batch-mode layers: rank 0's, what it saves
                distributed.broadcast_tensors(self.runtime, list(self.module.buffers()), "the BatchNorm statistics")
            if self.eval_split:
                metrics = self.evaluate(self.eval_split)
                record.update({f"{self.eval_split}_accuracy": metrics["accuracy"],
                               f"{self.eval_split}_loss": metrics["loss"]})
                self._track(metrics["accuracy"], epoch)
            record["elapsed"] = round(self.state.seconds + time.perf_counter() - session_start, 3)
            self.state.epoch = epoch + 1
            self.state.history.append(record)
            if self.runtime.is_main:
                with open(self.run_dir / "history.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
                state = {"state": {**self.state.__dict__,
                                   "seconds": self.state.seconds + time.perf_counter() - session_start},
                         "trainable": list(self.trainable),
                         "optimizer_groups": [g["graft_group"] for g in self.optimizer.param_groups],
                         "runtime": {"device": self.runtime.device, "precision": self.runtime.precision,
                                     "world_size": self.runtime.world_size}}
                if self.scaler is not None:
                    state["scaler"] = self.scaler.state_dict()
                save_checkpoint(self.ckpt_dir, "last", self.module, self.optimizer, state, keep_previous=True)
            distributed.barrier(self.runtime, f"the checkpoint of epoch {epoch + 1}")
            if self.log is not None and self.runtime.is_main:
                self.log(record)
        self.state.seconds += time.perf_counter() - session_start
        return self.state

    def _check_resumable(self, meta: dict) -> None:
        """Refuse a resume under another number of processes (the global batches would be split otherwise, and
        the DDP state differs); note a resume on another device or precision (exactness holds only on the same)."""
        saved = meta.get("runtime") or {"device": "cpu", "precision": "fp32", "world_size": 1}
        rt = self.runtime
        if saved.get("world_size", 1) != rt.world_size:
            n = saved.get("world_size", 1)
            how = f"torchrun --nproc_per_node={n} -m graft fit ... --resume" if n > 1 else "graft fit ... --resume"
            raise GraftError(f"the number of processes the run in {self.run_dir} started with ({n})",
                             f"{rt.world_size} process{'es' if rt.world_size != 1 else ''}",
                             f"resume it as it started: {how}")
        if (torch.device(saved["device"]).type, saved.get("precision")) != (self.device.type, rt.precision):
            self.notes.append(f"resumed on {rt.device} in {rt.precision}; the run started on {saved['device']} in "
                              f"{saved.get('precision')}: it continues from the same weights and optimizer state, but "
                              "equality with an uninterrupted run holds only on the same device and precision")

    def _track(self, accuracy: float, epoch: int) -> None:
        s = self.state
        if s.best is None or accuracy > s.best:
            s.best, s.best_epoch, s.stale = accuracy, epoch + 1, 0
            if self.runtime.is_main:
                save_checkpoint(self.ckpt_dir, "best", self.module, None, {"epoch": epoch + 1, "accuracy": accuracy})
            return
        s.stale += 1
        if self.plateau and s.stale and s.stale % self.plateau == 0:
            s.lr_factor *= 0.1
        if self.patience and s.stale >= self.patience:
            s.stopped = "early stopping"
