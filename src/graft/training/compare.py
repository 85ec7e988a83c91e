"""Strategies side by side: the same splits, the same time budget (split fairly), one table and its evidence.

``compare`` prices every strategy first (:mod:`graft.training.budget`), gives each run an equal share of the
budget and the epochs that fit in it, and drops (with the reason) those that cannot fit one epoch. Each run is
an ordinary run folder under ``out/runs/STRATEGY-sSEED`` (so an interrupted comparison resumes: finished runs
are read back, unfinished ones continue from their checkpoint). ``out/comparison.json`` holds the table: val
and test accuracy, macro-F1, training time, trainable parameters, inference latency per sample, per-class
recall and the learning curve of every run, and the mean and spread over seeds.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import graft.distributed as distributed
from graft.data import Data
from graft.devices import CPU
from graft.errors import GraftError
from graft.files import write_json
from graft.models import Backbone
from graft.strategy.registry import default_comparison
from graft.strategy.spec import Strategy, parse_strategy, phases
from graft.surgery.plan import SurgeryPlan
from graft.training.budget import (StepTimes, epochs_for_budget, least_epochs, measure_step_times,
                                  strategy_seconds)
from graft.training.run import RunRecord, fine_tune, load_run

METRICS = ("val_accuracy", "test_accuracy", "macro_f1", "train_seconds", "latency_ms")
MIN_PER_CLASS = 2  # a split needs this many samples of every class in train (and 1 in val)


@dataclass
class Comparison:
    """The result of :func:`compare` (``comparison.json``)."""

    model: str
    data: str
    budget_seconds: float
    seeds: list[int]
    label_names: list[str]
    split: str | None
    strategies: list[dict] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)
    best: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def table(self) -> list[list[str]]:
        """Rows for the terminal: strategy, val, test, macro-F1, epochs, seconds, trainable params, latency."""
        def cell(entry, key, digits=3):
            mean, std = entry["mean"].get(key), entry["std"].get(key)
            if mean is None:
                return "-"
            return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if len(self.seeds) > 1 else "")

        rows = []
        for entry in self.strategies:
            run = entry["runs"][0]
            rows.append([entry["strategy"] + (" *" if entry["strategy"] == self.best else ""),
                         cell(entry, "val_accuracy"), cell(entry, "test_accuracy"), cell(entry, "macro_f1"),
                         str(run["epochs"]), cell(entry, "train_seconds", 1),
                         f"{run['trainable_params']:,}", cell(entry, "latency_ms", 2)])
        return rows


def check_splits(data: Data) -> None:
    """A dataset that can be compared on: every class at least twice in train, and a val split to choose on."""
    names = list(data.spec.label_names)
    y = getattr(data["train"], "y", None)
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=len(names)) if y is not None else None
    few = [names[c] for c in range(len(names)) if counts is not None and counts[c] < MIN_PER_CLASS]
    val = len(data["val"]) if "val" in data.splits else 0
    if few or val == 0:
        need = MIN_PER_CLASS + 1
        raise GraftError(
            f"a dataset large enough for train and val splits: at least {need} samples of every class "
            f"({need * len(names)} in all for {len(names)} classes)",
            f"too few training samples of {', '.join(few[:5])}" if few else
            f"{len(data['train'])} training samples and no validation split",
            "add samples or merge rare classes; graft splits off a validation set itself (val_fraction, "
            "--val) when the data has none")


def _latency_ms(backbone: Backbone, data: Data, repeats: int = 30, warmup: int = 5) -> float:
    """Median milliseconds to classify one sample (batch of 1, no gradients) on the CPU."""
    from graft.data.transforms import Preprocess

    module = backbone.module.eval()
    inp = backbone.spec.input
    prep = Preprocess(inp.mean, inp.std, None)
    x = data["train"][0][0][None]
    times = []
    with torch.inference_mode():
        for i in range(repeats + warmup):
            t0 = time.perf_counter()
            module(prep.batch(x))
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def _history(run_dir: Path) -> list[dict]:
    path = run_dir / "history.jsonl"
    keep = ("epoch", "phase", "loss", "train_accuracy", "val_accuracy", "elapsed")
    if not path.is_file():
        return []
    return [{k: v for k, v in json.loads(line).items() if k in keep} for line in path.read_text().splitlines() if line]


def _summary(record: RunRecord, run_dir: Path, seed: int, latency: float) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    return {"seed": seed, "run_dir": str(run_dir), "epochs": record.epochs_run,
            "val_accuracy": record.best_accuracy,
            "test_accuracy": record.final_accuracy if record.final_split == "test" else None,
            "macro_f1": record.final_macro_f1, "train_seconds": record.seconds,
            "trainable_params": record.trainable_params, "total_params": record.total_params,
            "latency_ms": latency, "per_class_recall": [c["recall"] for c in metrics.get("per_class", [])],
            "history": _history(run_dir), "stopped": record.stopped}


def plan_budget(strategies: list[Strategy], times: StepTimes, budget: float, seeds: int, max_epochs: int,
                has_adapter: bool = False) -> tuple[dict[str, int], list[dict], float]:
    """Epochs per strategy for an equal share of ``budget``; the dropped ones with why; the share in seconds.

    When the share does not fit the shortest run of every strategy, the costliest of those that do not fit is
    dropped and the budget split again among the rest, until every one left fits (or none is left): a small budget
    compares the strategies it can afford, not none."""
    need = {s.label: strategy_seconds(s, times, least_epochs(s), has_adapter) for s in strategies}
    kept, dropped = list(strategies), []
    while kept:
        share = budget / (len(kept) * seeds)
        over = [s for s in kept if need[s.label] > share]
        if not over:
            break
        costliest = max(over, key=lambda s: need[s.label])
        least = least_epochs(costliest)
        epochs_text = f"{least} epochs of it take" if least > 1 else "1 epoch of it takes"
        dropped.append({"strategy": costliest.label, "why": f"{epochs_text} about {need[costliest.label]:.0f} s, over "
                        f"an equal share of the budget ({share:.0f} s of {budget:.0f} s for {len(kept)} "
                        f"strateg{'ies' if len(kept) != 1 else 'y'} x "
                        f"{seeds} seed{'s' if seeds > 1 else ''}); raise --budget or compare fewer strategies"})
        kept.remove(costliest)
    share = budget / max(1, len(kept) * seeds)
    epochs = {s.label: epochs_for_budget(s, times, share, max_epochs=max_epochs, has_adapter=has_adapter)
              for s in kept}
    return epochs, dropped, share


def compare(backbone: Backbone, data: Data, plan: SurgeryPlan, out: str | Path, *, strategies=None,
            budget: float = 900.0, seeds=(0,), batch_size: int = 32, max_epochs: int = 30, log=None,
            progress: bool = False, grafted: Backbone | None = None, times: StepTimes | None = None,
            runtime=None, **strategy_options) -> Comparison:
    """Run each of ``strategies`` on ``plan.apply(backbone)`` with an equal share of ``budget`` seconds.

    ``backbone`` is the source network and ``plan`` the surgery for ``data``: every run starts from a fresh
    copy of the grafted network. The best strategy is the one with the highest mean validation accuracy (the
    test split is reported, never used to choose). ``grafted`` (``plan.apply(backbone)``) and ``times`` (its
    step times) may be given when the caller has them already. ``runtime``: where every run trains
    (graft.devices.Runtime; default the CPU). Under torchrun every run trains data-parallel, the ranks take each
    decision rank 0 takes (what fits, what is dropped), and rank 0 writes the folder.
    """
    runtime = runtime or CPU
    out = Path(out)
    say = log or (lambda message: None)
    seeds = list(seeds)
    strategies = default_comparison() if strategies is None else strategies
    check_splits(data)
    parsed, dropped = [], []
    grafted = grafted if grafted is not None else plan.apply(backbone)
    blocks = len(grafted.spec.blocks)
    has_adapter = any(name.startswith("input_layer.") for name, _ in grafted.module.named_parameters())
    for text in strategies:
        s = parse_strategy(text, **{k: v for k, v in strategy_options.items() if v is not None})
        try:
            phases(s, blocks, 2, has_adapter)
        except GraftError as error:
            dropped.append({"strategy": s.label, "why": f"does not apply to {grafted.spec.name}: {error.expected}"})
            continue
        if runtime.distributed and s.definition.fit is not None:
            dropped.append({"strategy": s.label, "why": "it fits in one pass of its own, in one process: compare it "
                            "without torchrun"})
            continue
        if s.label not in [p.label for p in parsed]:
            parsed.append(s)
    if not parsed:
        raise GraftError("at least one strategy that applies to this network", ", ".join(map(str, strategies)),
                         "; ".join(f"{d['strategy']}: {d['why']}" for d in dropped) or "pass --strategies")
    if times is None:
        say(f"timing a few steps of {grafted.spec.name} to split the {budget:.0f} s budget")
        times = distributed.broadcast_object(runtime, measure_step_times(grafted, data, batch_size, seeds[0],
                                                                         runtime=runtime), "the step times")
    epochs, late, share = plan_budget(parsed, times, budget, len(seeds), max_epochs, has_adapter)
    dropped += late
    for d in late:
        say(f"dropped {d['strategy']}: {d['why']}")
    if not epochs:
        raise GraftError("a budget that fits at least one strategy", f"{budget:.0f} s",
                         "raise --budget; " + "; ".join(f"{d['strategy']}: {d['why']}" for d in dropped))
    result = Comparison(grafted.spec.name, data.spec.name, budget, seeds, list(data.spec.label_names),
                        "test" if "test" in data.splits else None, dropped=dropped,
                        notes=[f"each run's share of the budget: {share:.0f} s (it stops there at the latest)"])
    if runtime.is_main:
        out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for s in parsed:
        if s.label not in epochs:
            continue
        left = budget - (time.perf_counter() - started)
        need = strategy_seconds(s, times, least_epochs(s), has_adapter) * len(seeds)
        left = distributed.broadcast_object(runtime, left, "what is left of the budget")  # rank 0's clock for all
        if need > left:  # the runs before took longer than planned (a busy machine): the budget is kept
            why = (f"the runs before it took {time.perf_counter() - started:.0f} s of the {budget:.0f} s; the "
                   f"{max(0.0, left):.0f} s left are less than its shortest run (about {need:.0f} s)")
            result.dropped.append({"strategy": s.label, "why": why})
            say(f"dropped {s.label}: {why}")
            continue
        runs = []
        for seed in seeds:
            run_dir = out / "runs" / f"{s.label.replace(':', '')}-s{seed}"
            record = _run(backbone, plan, data, run_dir, s, epochs[s.label], min(share, max(left, 0.0)), seed,
                          batch_size, progress, runtime)
            distributed.barrier(runtime, f"the run {run_dir.name}")  # rank 0 has written it
            if not runtime.is_main:  # rank 0's record, written; the latency is rank 0's to measure
                runs.append(_summary(RunRecord.from_dict(json.loads((run_dir / "run.json").read_text())), run_dir,
                                     seed, 0.0))
                continue
            latency = _latency_ms(load_run(run_dir), data)
            runs.append(_summary(record, run_dir, seed, latency))
            say(f"{s.label} (seed {seed}): {record.epochs_run} epoch{'s' if record.epochs_run != 1 else ''} in {record.seconds:.0f} s, val "
                f"{_fmt(record.best_accuracy)}, {record.final_split or 'no held-out split'} "
                f"{_fmt(record.final_accuracy)}")
        result.strategies.append(_aggregate(s.label, runs))
        if runtime.is_main:
            write_json(out / "comparison.json", result.to_dict())  # after every strategy: progress survives
    scored = [e for e in result.strategies if e["mean"].get("val_accuracy") is not None]
    result.best = max(scored, key=lambda e: e["mean"]["val_accuracy"])["strategy"] if scored else None
    if runtime.is_main:
        write_json(out / "comparison.json", result.to_dict())
    return result


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _run(backbone, plan, data, run_dir: Path, strategy: Strategy, epochs: int, share: float, seed: int,
         batch_size: int, progress, runtime=None) -> RunRecord:
    """One run; a finished one is read back, an interrupted one resumed."""
    if (run_dir / "run.json").is_file():
        return RunRecord.from_dict(json.loads((run_dir / "run.json").read_text()))
    resume = (run_dir / "checkpoints" / "last.json").is_file()
    torch.manual_seed(seed)
    grafted = plan.apply(backbone)
    # the budget stops a run whose estimate was short: at 1.25x its share, so a fair split stays fair
    return fine_tune(grafted, data, run_dir, strategy=strategy, epochs=epochs, budget=share * 1.25,
                     batch_size=batch_size, seed=seed, resume=resume, plan=plan, progress=progress, runtime=runtime)


def _aggregate(label: str, runs: list[dict]) -> dict:
    mean, std = {}, {}
    for key in METRICS:
        values = [r[key] for r in runs if r.get(key) is not None]
        mean[key] = statistics.mean(values) if values else None
        std[key] = statistics.stdev(values) if len(values) > 1 else (0.0 if values else None)
    return {"strategy": label, "runs": runs, "mean": mean, "std": std}
