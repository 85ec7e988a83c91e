"""How long a strategy takes: the epochs that fit in a time budget, before anything trains.

Two timings on a copy of the network (the median of 5 steps each, after one untimed: single steps vary by
+-30 % on a 2-core CPU): a training step with every parameter
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
import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

from graft.data import Data
from graft.data.transforms import Preprocess
from graft.errors import GraftError
from graft.measures.summary import probe_seconds
from graft.models import Backbone
from graft.strategy.spec import Phase, Strategy, phases

STEPS = 5  # timed training steps and forward passes (after one untimed)


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
    shares: tuple[float, ...] = ()  # each block's share of the forward pass (timed); empty: equal shares

    def share(self, groups) -> float:
        """The share of a training step's backward that training ``groups`` (block indices; the head and adapter
        count as small) costs: the timed shares of those blocks, else ``k / blocks``."""
        body = [g for g in groups if g >= 0]
        if self.shares:
            part = sum(self.shares[g] for g in body if g < len(self.shares))
        else:
            part = len(body) / max(1, self.blocks)
        return min(1.0, max(0.02, part))

    def phase_seconds(self, phase: Phase, epochs: int, cached: bool) -> float:
        """The time of ``epochs`` epochs of ``phase``."""
        if epochs <= 0:
            return 0.0
        evaluation = epochs * self.eval_steps * self.forward
        if phase.solve_head:  # one pass and one evaluation, whatever the epochs (a Linear head; see the Trainer)
            passes = 2 if phase.adapt_batchnorm else 1  # lp-ft re-estimates the BatchNorm statistics first
            return (passes * self.train_steps + self.eval_steps) * self.forward
        share = self.share(phase.trainable)
        backward = max(0.0, self.train - self.forward) * share
        if cached:  # one pass through the frozen prefix, then the trainable part only
            trainable = backward + self.forward * share
            return self.train_steps * (self.forward + epochs * trainable) + evaluation
        return epochs * self.train_steps * (self.forward + backward) + evaluation


def measure_step_times(backbone: Backbone, data: Data, batch_size: int, seed: int = 0,
                       eval_split: str | None = "val", runtime=None) -> StepTimes:
    """Time 5 training steps and 5 forward passes (medians) of ``backbone`` on ``data`` (a copy: the network is
    untouched), on ``runtime``'s device and precision (graft.devices.Runtime; default the CPU in fp32)."""
    from graft.devices import CPU

    runtime = runtime or CPU
    sync = torch.cuda.synchronize if runtime.torch_device.type == "cuda" else (lambda: None)
    module = runtime.place(copy.deepcopy(backbone.module).train())
    for p in module.parameters():
        p.requires_grad_(True)
    names = [b.name for b in backbone.spec.blocks if b.name != "input_layer"]
    spent = [0.0] * len(names)
    timing = {"on": False}
    handles = []
    for i, name in enumerate(names):  # each block's time in the timed forward passes: what training it costs
        try:
            block = module.get_submodule(name)
        except AttributeError:
            continue

        def before(_m, _args, i=i):
            if timing["on"]:
                sync()
            timing[i] = time.perf_counter()

        def after(_m, _args, _out, i=i):
            if timing["on"] and i in timing:
                sync()
                spent[i] += time.perf_counter() - timing[i]

        handles += [block.register_forward_pre_hook(before), block.register_forward_hook(after)]
    inp = backbone.spec.input
    prep = Preprocess(inp.mean, inp.std, None)
    opt = torch.optim.AdamW(list(module.parameters()), lr=1e-6)
    loader = data.loader("train", batch_size, shuffle=True, seed=seed, pin_memory=runtime.pin_memory)
    scaler = runtime.scaler()
    train, forward = [], []
    for i, (x, y) in enumerate(loader):
        sync()
        t0 = time.perf_counter()
        x, y = runtime.to(x), runtime.to(y)
        with runtime.autocast():
            loss = nn.functional.cross_entropy(module(prep.batch(x)), y)
        opt.zero_grad()
        runtime.step(loss, opt, scaler)
        sync()
        t1 = time.perf_counter()
        with torch.inference_mode(), runtime.autocast():
            module.eval()
            timing["on"] = bool(i)
            module(prep.batch(x))
            timing["on"] = False
            module.train()
        sync()
        t2 = time.perf_counter()
        if i:
            train.append(t1 - t0)
            forward.append(t2 - t1)
        if len(train) == STEPS:
            break
    if not train:  # a single batch: its first (untimed-worthy) step is all there is
        train, forward = [t1 - t0], [t2 - t1]
    eval_steps = 0
    if eval_split and eval_split in data.splits:
        eval_steps = math.ceil(len(data[eval_split]) / batch_size)
    for handle in handles:
        handle.remove()
    blocks = max(1, len(backbone.spec.blocks))
    total = sum(forward)
    shares = tuple(min(1.0, t / total) for t in spent) if total > 0 and any(spent) else ()
    return StepTimes(statistics.median(train), statistics.median(forward), len(loader), eval_steps, blocks, shares)


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


def sound_epochs(strategy: Strategy) -> int:
    """The fewest epochs of ``strategy`` that give a sound result (its registered ``sound``)."""
    return strategy.definition.sound


def require_sound(strategy: Strategy, times: StepTimes, seconds: float, epochs: int, has_adapter: bool = False) -> None:
    """A clear error when ``seconds`` affords ``epochs`` of ``strategy``, fewer than it needs to adapt soundly: a
    strategy fitted for a fraction of what it needs returns a model below what a solved head gives in less time."""
    sound = sound_epochs(strategy)
    if epochs >= sound:
        return
    need = strategy_seconds(strategy, times, sound, has_adapter)
    raise GraftError(f"a budget for at least {sound} epochs of {strategy.label}, the fewest that adapt it soundly "
                     f"(about {need:.0f} s here)", f"{seconds:.0f} s, which affords {epochs}",
                     f"raise --budget to {math.ceil(need * 1.1)}s or more, let --strategy auto pick what fits, or pass "
                     f"--keep-going (keep_going=True) to fit {epochs} epoch{'s' if epochs != 1 else ''} anyway")


def seconds_text(value: float) -> str:
    """Seconds as a person reads them: one decimal below 10 s ("0.4 s", "3.2 s"), whole above ("42 s")."""
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


# --- what measuring costs -------------------------------------------------------------------------------------------

MEASURE_SHARE = 0.25  # of a budget, the most the measuring before a fit may take (issue 16: trials and fit get the rest)
EXTRACT_SHARE = 0.4  # of the measuring share, the most the feature extraction may take (the probes get the rest)
EXTRACT_OVERHEAD = 1.3  # an extraction pass costs this many forward passes (hooks, pooling, BatchNorm statistics)
MIN_PROBE_PER_CLASS = 5  # fewer training samples per class than this, and a probe says nothing worth its time
FINISH_SECONDS = 3.0  # after the last epoch: the model saved, metrics.json, the plots, report.html, the exit (measured)


def pass_seconds(times: StepTimes, samples: int, batch_size: int) -> float:
    """A forward pass without gradients over ``samples`` samples (the timed forward, per sample)."""
    return times.forward / max(1, batch_size) * samples


def finish_seconds(times: StepTimes, test_samples: int, batch_size: int) -> float:
    """What a fit takes after training: the held-out evaluation, the model saved, the plots and the report."""
    return FINISH_SECONDS + pass_seconds(times, test_samples, batch_size)


@dataclass(frozen=True)
class MeasurePlan:
    """How much of the data the measuring sees, within ``seconds`` (see :func:`plan_measuring`).

    ``samples``: the most samples per split the probe draws (stratified); 0: too few for a probe in the time, and
    ``why`` says so; ``extract_seconds``: the estimated extraction; ``deadline_seconds``: what is left of ``seconds``
    for the probes (they run best-first and stop there, see graft.measures.summary.measure_layers)."""

    seconds: float
    samples: int
    extract_seconds: float
    deadline_seconds: float
    why: str = ""

    def describe(self) -> str:
        if not self.samples:
            return f"measuring skipped: {self.why}"
        return (f"measuring planned to {self.seconds:.0f} s: at most {self.samples} samples per split (extraction "
                f"about {self.extract_seconds:.0f} s), the layers probed best-first until the time is spent")


def forward_seconds(backbone: Backbone, data: Data, batch_size: int = 32) -> float:
    """Seconds per sample of a forward pass without gradients (eval mode): the second of two batches, timed."""
    inp = backbone.spec.input
    prep = Preprocess(inp.mean, inp.std, None)
    module, was_training = backbone.module, backbone.module.training
    device = next((p.device for p in module.parameters()), torch.device("cpu"))  # where the network is
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    module.eval()
    timed = [(0.0, 1)]
    try:
        with torch.inference_mode():
            for i, (x, _) in enumerate(data.loader("train", batch_size, shuffle=False)):
                if x.shape[1] == 1 and inp.channels == 3 and x.ndim == 4:  # grey images, as extraction repeats them
                    x = x.expand(-1, 3, *x.shape[2:])
                t0 = time.perf_counter()
                module(prep.batch(x.to(device)))
                sync()
                timed.append((time.perf_counter() - t0, len(x)))  # the first warms up; the second is the one
                if i:
                    break
    finally:
        module.train(was_training)
    elapsed, seen = timed[-1]
    return elapsed / seen


def plan_measuring(per_sample: float, seconds: float, *, train: int, val: int, classes: int,
                   max_samples: int, last_dim: int | None = None, fits: float = 1.0) -> MeasurePlan:
    """The samples the probe can afford in ``seconds``: the extraction (one pass over the train and val samples it
    draws, ``EXTRACT_OVERHEAD`` forward passes each) within ``EXTRACT_SHARE`` of it, at most ``max_samples`` per
    split; the rest is the probes'. ``per_sample``: a forward pass's seconds per sample (``pass_seconds(times, 1,
    batch_size)``, or :func:`forward_seconds`). ``last_dim``: the width of the last layer, which is always probed
    (the head's input): its probe must fit too, ``fits`` times the cost of one path of C (5 folds of
    cross-validation cost about 5). Fewer than ``MIN_PROBE_PER_CLASS`` training samples per class: no measuring."""
    per_sample = per_sample * EXTRACT_OVERHEAD
    both = max(1, train + val)
    affordable = int(seconds * EXTRACT_SHARE / max(per_sample, 1e-9))  # samples over both splits
    # the most per split, s, with min(train, s) + min(val, s) within what is affordable
    small = min(train, val)
    samples = (max(train, val) if affordable >= train + val else affordable // 2 if affordable <= 2 * small
               else affordable - small)
    samples = min(max_samples, samples)
    while last_dim and samples > 1 and (per_sample * (min(train, samples) + min(val, samples)) + fits
                                        * probe_seconds(min(train, samples), last_dim, classes) > 0.8 * seconds):
        samples = int(samples * 0.8)  # the last layer's probe, which always runs, must fit beside the extraction
    drawn_train = min(train, samples)
    if drawn_train < MIN_PROBE_PER_CLASS * classes:
        least = MIN_PROBE_PER_CLASS * classes
        if seconds < 0.5:
            return MeasurePlan(seconds, 0, 0.0, 0.0, "no time is left for measuring (what ran before it took its "
                               "share of the budget)")
        need = least * per_sample * both / max(1, train)
        return MeasurePlan(seconds, 0, 0.0, 0.0, f"extracting features of {least} samples ({MIN_PROBE_PER_CLASS} per "
                           f"class) would take about {seconds_text(need)} of the {seconds_text(seconds)} for measuring")
    extract = per_sample * (min(train, samples) + min(val, samples))
    return MeasurePlan(seconds, samples, extract, max(0.0, seconds - extract))

