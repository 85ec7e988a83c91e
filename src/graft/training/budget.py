"""How long a strategy takes: the epochs that fit in a time budget, before anything trains.

Two timings on a copy of the network (3 steps each, after one untimed): a training step with every parameter
trainable, and a forward pass without gradients, both at the training batch size. A strategy's phases are then
priced from them: a phase that trains ``k`` of ``L`` blocks costs the forward pass plus ``k / L`` of the
backward; a phase whose frozen prefix is computed once (``linear``, ``partial:K``, the head phase of
``two-phase``) pays one forward pass, then only its trainable part per epoch; ``lp-ft``'s solved probe is two
forward passes (the BatchNorm statistics, then the features). Evaluation on the validation split adds one
forward pass over it per epoch.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from graft.data import Data
from graft.data.transforms import Preprocess
from graft.errors import GraftError
from graft.models import Backbone
from graft.strategy.spec import Phase, Strategy, phases

def least_epochs(strategy: Strategy) -> int:
    """The shortest run of ``strategy`` (its registered ``least_epochs``: 2 for the two-phase ones, else 1)."""
    return strategy.definition.least_epochs


@dataclass(frozen=True)
class StepTimes:
    """Seconds per batch: a training step of the whole network, and a forward pass without gradients."""

    train: float
    forward: float
    train_steps: int  # batches per training epoch
    eval_steps: int  # batches per validation pass (0: none)
    blocks: int

    def phase_seconds(self, phase: Phase, epochs: int, cached: bool) -> float:
        """The time of ``epochs`` epochs of ``phase``."""
        if epochs <= 0:
            return 0.0
        evaluation = epochs * self.eval_steps * self.forward
        if phase.solve_head:  # one pass and one evaluation, whatever the epochs (a Linear head; see the Trainer)
            passes = 2 if phase.adapt_batchnorm else 1  # lp-ft re-estimates the BatchNorm statistics first
            return (passes * self.train_steps + self.eval_steps) * self.forward
        share = min(1.0, max(0.05, sum(1 for g in phase.trainable if g >= 0) / max(1, self.blocks)))
        backward = max(0.0, self.train - self.forward) * share
        if cached:  # one pass through the frozen prefix, then the trainable part only
            trainable = backward + self.forward * share
            return self.train_steps * (self.forward + epochs * trainable) + evaluation
        return epochs * self.train_steps * (self.forward + backward) + evaluation


def measure_step_times(backbone: Backbone, data: Data, batch_size: int, seed: int = 0,
                       eval_split: str | None = "val") -> StepTimes:
    """Time 3 training steps and 3 forward passes of ``backbone`` on ``data`` (a copy: the network is untouched)."""
    module = copy.deepcopy(backbone.module).train()
    for p in module.parameters():
        p.requires_grad_(True)
    inp = backbone.spec.input
    prep = Preprocess(inp.mean, inp.std, None)
    opt = torch.optim.AdamW(list(module.parameters()), lr=1e-6)
    loader = data.loader("train", batch_size, shuffle=True, seed=seed)
    train, forward = [], []
    for i, (x, y) in enumerate(loader):
        t0 = time.perf_counter()
        loss = nn.functional.cross_entropy(module(prep.batch(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        t1 = time.perf_counter()
        with torch.inference_mode():
            module.eval()
            module(prep.batch(x))
            module.train()
        t2 = time.perf_counter()
        if i:
            train.append(t1 - t0)
            forward.append(t2 - t1)
        if len(train) == 3:
            break
    if not train:  # a single batch: its first (untimed-worthy) step is all there is
        train, forward = [t1 - t0], [t2 - t1]
    eval_steps = 0
    if eval_split and eval_split in data.splits:
        eval_steps = math.ceil(len(data[eval_split]) / batch_size)
    blocks = max(1, len(backbone.spec.blocks))
    return StepTimes(sum(train) / len(train), sum(forward) / len(forward), len(loader), eval_steps, blocks)


def _cacheable(phase: Phase, strategy: Strategy) -> bool:
    """Whether the Trainer computes this phase's frozen prefix once (see training/prefix.py)."""
    body = sorted(g for g in phase.trainable if g >= 0)
    if strategy.batchnorm != "frozen" or phase.reinitialize or phase.unfreeze_every or -2 in phase.trainable:
        return False
    return not body or body[0] > 0


def strategy_seconds(strategy: Strategy, times: StepTimes, epochs: int, has_adapter: bool = False) -> float:
    """The estimated training time of ``strategy`` for ``epochs`` epochs."""
    return sum(times.phase_seconds(p, p.epochs, _cacheable(p, strategy))
               for p in phases(strategy, times.blocks, epochs, has_adapter))


def epochs_for_budget(strategy: Strategy, times: StepTimes, seconds: float, *, max_epochs: int = 100,
                      has_adapter: bool = False) -> int:
    """The most epochs (up to ``max_epochs``) whose estimated time fits in ``seconds``; 0 when none does."""
    least = least_epochs(strategy)
    if strategy_seconds(strategy, times, least, has_adapter) > seconds:
        return 0
    low, high = least, max(least, max_epochs)
    while low < high:  # the time grows with the epochs: the largest that fits
        middle = (low + high + 1) // 2
        if strategy_seconds(strategy, times, middle, has_adapter) <= seconds:
            low = middle
        else:
            high = middle - 1
    return low


def require_budget(strategy: Strategy, times: StepTimes, seconds: float, has_adapter: bool = False) -> None:
    """A clear error when not even the shortest run of ``strategy`` fits in ``seconds``."""
    least = least_epochs(strategy)
    need = strategy_seconds(strategy, times, least, has_adapter)
    if need > seconds:
        raise GraftError(f"a budget of at least {least} epoch{'s' if least > 1 else ''} of {strategy.label} "
                         f"(about {need:.0f} s here)", f"{seconds:.0f} s",
                         "raise --budget, train on fewer samples, or pick a cheaper strategy (linear)")
