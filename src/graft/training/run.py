"""A fine-tuning run from end to end: plan the surgery, train with a strategy, evaluate, save the run folder.

Run folder (``runs/NAME``): ``config.json`` (what was asked: strategy, epochs, budget, seed, the starting
weights' digest, the data's fingerprint), ``plan.json``, ``history.jsonl`` (one line per epoch), ``checkpoints/``
(``last`` and ``best``: safetensors + JSON state; ``start.safetensors`` for L2-SP), ``metrics.json`` and
``confusion.png`` (the final evaluation; confusion.png is drawn by graft.report from metrics.json), ``model.safetensors`` (the adapted network with its plan and label
names: :func:`load_run` rebuilds it from this file alone) and ``run.json`` (:class:`RunRecord`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from torch import nn

import graft.distributed as distributed
from graft.data import Data
from graft.devices import CPU, Runtime
from graft.data.transforms import BatchPreprocess, Preprocess
from graft.errors import GraftError
from graft.files import write_json
from graft.fingerprint import graft_version, weights_digest
from graft.jsonable import JsonSerializable
from graft.models import Backbone
from graft.strategy.spec import Strategy, parse_strategy
from graft.surgery.plan import SurgeryPlan, run_size
from graft.surgery.saving import load_model, save_model
from graft.training.budget import (StepTimes, epochs_for_budget, measure_step_times, require_budget, require_sound,
                                   sound_epochs, strategy_seconds)
from graft.training.checkpoints import load_tensors, read_checkpoint_state
from graft.training.engine import Trainer

OPTIMISTIC = "optimistic, no test split"  # the note of a run whose final figure is on the split that chose it
COMPARED = ("strategy", "epochs", "batch_size", "seed", "start_weights", "data", "label_names", "eval_split")


@dataclass(frozen=True)
class RunRecord(JsonSerializable):
    """What a run did and reached (``run.json``)."""

    run_dir: str
    strategy: str
    epochs: int
    epochs_run: int
    stopped: str
    seconds: float
    best_epoch: int
    best_accuracy: float | None
    final_split: str | None
    final_accuracy: float | None
    final_macro_f1: float | None
    trainable_params: int
    total_params: int
    label_names: tuple[str, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)
    warnings: tuple[str, ...] = field(default_factory=tuple)  # a result that is not sound: the CLI exits 3 on one

    def with_warning(self, warning: str) -> RunRecord:
        """This record with ``warning`` added, written again as run.json."""
        record = replace(self, warnings=(*self.warnings, warning))
        write_json(Path(self.run_dir) / "run.json", record.to_dict())
        return record

    def with_note(self, note: str) -> RunRecord:
        """This record with ``note`` added (something said about the run, not about its result), written again."""
        record = replace(self, notes=(*self.notes, note))
        write_json(Path(self.run_dir) / "run.json", record.to_dict())
        return record


def parse_budget(value: str | float | int | None) -> float | None:
    """``"90s"``, ``"10m"``, ``"1.5h"`` or a number of seconds -> seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        units = {"s": 1, "m": 60, "h": 3600}
        try:
            seconds = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
        except ValueError:
            raise GraftError("a time budget such as 90s, 10m or 1.5h", repr(value), "for example --budget 10m") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise GraftError("a positive time budget", repr(value), "for example --budget 10m")
    return seconds


def fine_tune(backbone: Backbone, data: Data, out: str | Path, *, strategy: str | Strategy = "full",
              epochs: int | None = None, budget=None, batch_size: int = 32, seed: int = 0, resume: bool = False,
              patience: int | None = None, plateau: int | None = None, plan: SurgeryPlan | None = None,
              log=None, progress=True, times: StepTimes | None = None, keep_going: bool = False,
              runtime: Runtime | None = None, **strategy_options) -> RunRecord:
    """Train ``backbone`` (already grafted to ``data``; ``plan`` is the surgery that did it) with ``strategy``.

    ``epochs`` and/or ``budget`` ("10m", seconds): with a budget alone, the epochs are what fits in it
    (priced per strategy from a few timed steps, at most 100); with both, the budget stops the run early. ``resume=True``
    continues the interrupted run in ``out`` and refuses when the model, data or settings differ. ``progress``:
    a live per-batch bar on a terminal (False: none). ``times``: step times measured already on this network
    (:func:`~graft.training.budget.measure_step_times`), so a budget does not time them again. A budget alone that
    affords fewer epochs than the strategy needs to adapt soundly (its registered ``sound``) is refused, unless
    ``keep_going`` (then it fits what fits, and the record carries a warning). ``runtime``: the device, precision
    and, under torchrun, the ranks (graft.devices.Runtime; default the CPU in fp32); rank 0 alone writes ``out``.
    """
    strategy = parse_strategy(strategy, **{k: v for k, v in strategy_options.items() if v is not None})
    runtime = runtime or CPU
    out = Path(out)
    seconds = distributed.broadcast_object(runtime, parse_budget(budget), "the budget")  # one decision for all ranks
    if strategy.definition.fit is not None:  # a strategy that fits itself (multilayer: one pass, a solved head)
        if runtime.distributed:
            raise GraftError("a strategy that trains in epochs under torchrun",
                             f"{strategy.label}, which fits in one pass of its own",
                             f"fit {strategy.label} in one process (graft fit, without torchrun)")
        return _fit_own(strategy, backbone, data, out, seed=seed, resume=resume, plan=plan, progress=progress,
                        budget=seconds)
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise GraftError("epochs as a positive integer", repr(epochs), "for example epochs=10")
    config_path = out / "config.json"
    notes: list[str] = []
    short = ""
    if resume:
        if not config_path.is_file():
            raise GraftError(f"a run to resume in {out}", "no config.json there", "start it without --resume")
        saved = json.loads(config_path.read_text())
        epochs = saved["epochs"] if epochs is None else epochs
    elif (out / "checkpoints" / "last.json").exists():
        raise GraftError(f"an empty or new run folder for {out}", "a folder that already holds a run",
                         f"continue it with resume=True (--resume {out}), or pass another out=")
    if epochs is None:
        if seconds is None:
            epochs = 10
        else:
            times = distributed.broadcast_object(
                runtime, times or measure_step_times(backbone, data, batch_size, seed, runtime=runtime), "the step times")
            adapter = any(name.startswith("input_layer.") for name, _ in backbone.module.named_parameters())
            require_budget(strategy, times, seconds, adapter)
            # every rank trains the same epochs: rank 0's estimate
            epochs = distributed.broadcast_object(runtime, epochs_for_budget(strategy, times, seconds, max_epochs=100,
                                                                               has_adapter=adapter), "the epochs")
            if not keep_going:
                require_sound(strategy, times, seconds, epochs, adapter)
            elif epochs < sound_epochs(strategy):
                short = (f"the {seconds:.0f} s budget affords {epochs} epoch{'s' if epochs != 1 else ''} of "
                         f"{strategy.label}, fewer than the {sound_epochs(strategy)} that adapt it soundly")
            notes.append(f"budget {seconds:.0f} s: {epochs} epochs of {strategy.label} fit (estimated "
                         f"{strategy_seconds(strategy, times, epochs, adapter):.0f} s from a few timed steps)")
    config = _run_config(strategy, backbone, data, epochs=epochs, seed=seed,
                         eval_split=next((s for s in ("val", "test") if s in data.splits), None),
                         budget_seconds=seconds, batch_size=batch_size, patience=patience, plateau=plateau,
                         runtime=runtime.to_dict())
    if resume:
        differ = [k for k in COMPARED if saved.get(k) != config.get(k)]
        if differ:
            names = {"start_weights": "starting weights", "data": "training data"}
            raise GraftError(f"the same model, data and settings as the run in {out}",
                             "different " + ", ".join(names.get(k, k) for k in differ),
                             "resume with the original model, data and options, or start a new run (another out=)")
    elif runtime.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(config_path, config)
        if plan is not None:
            write_json(out / "plan.json", plan.to_dict())
    distributed.barrier(runtime, "the run folder")
    trainer = Trainer(backbone, data, strategy, out, epochs=epochs, batch_size=batch_size, seed=seed,
                      budget=seconds, patience=patience, plateau=plateau, log=log, progress=progress if runtime.is_main else False,
                      runtime=runtime)
    state = trainer.run(resume=resume)
    notes.append(f"trained on {runtime.describe()}" + (f" ({runtime.world_size} processes, DistributedDataParallel)"
                                                        if runtime.distributed else ""))
    if not runtime.is_main:  # rank 0 evaluates and writes the model; the others are done
        return _rank_record(out, strategy, data, state, epochs)
    record = _finish(trainer, state, backbone, data, out, strategy, epochs, notes + trainer.notes)
    return record.with_warning(short) if short else record


class _OwnFit:
    """The :class:`~graft.strategy.registry.FitContext` of a strategy with a ``fit`` of its own: it writes the
    same run folder as a Trainer run (config, plan, metrics, model.safetensors, run.json)."""

    def __init__(self, strategy: Strategy, backbone: Backbone, data: Data, out: Path, seed: int, plan, progress,
                 budget: float | None = None):
        self.strategy, self.backbone, self.data, self.out, self.seed = strategy, backbone, data, out, seed
        self.plan, self.progress = plan, progress
        self.budget, self.started = budget, time.perf_counter()  # seconds for the whole fit, evaluation included
        self.log = lambda message: None
        self.eval_split = "val" if "val" in data.splits else None

    def write_json(self, name: str, obj) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.out / name, obj)

    def evaluate(self, model: Backbone):
        split = "test" if "test" in self.data.splits else self.eval_split
        return (split, evaluate(model, self.data, split, self.out)) if split else (None, None)

    def finish(self, model: Backbone, *, seconds: float, epochs: int, epochs_run: int, best_epoch: int,
               best_accuracy: float | None, trainable_params: int, total_params: int, notes=(), config=None,
               stopped: str = "") -> RunRecord:
        self.write_json("config.json", _run_config(self.strategy, self.backbone, self.data, epochs=epochs,
                                                   seed=self.seed, eval_split=self.eval_split, budget_seconds=None,
                                                   **(config or {})))
        if self.plan is not None:
            self.write_json("plan.json", self.plan.to_dict())
        save_model(model, self.out / "model.safetensors")  # first: what follows cannot lose the model
        final_split, metrics = self.evaluate(model)
        return _record(self.out, self.strategy, self.data, final_split, metrics, epochs=epochs, epochs_run=epochs_run,
                       stopped=stopped, seconds=seconds, best_epoch=best_epoch, best_accuracy=best_accuracy,
                       trainable_params=trainable_params, total_params=total_params, notes=notes)


def _fit_own(strategy: Strategy, backbone: Backbone, data: Data, out: Path, *, seed: int, resume: bool, plan,
             progress, budget: float | None = None) -> RunRecord:
    """A strategy that fits itself, in one go: a finished run is read back on resume; nothing half-done resumes."""
    if resume and (out / "run.json").is_file():
        return RunRecord.from_dict(json.loads((out / "run.json").read_text()))
    if (out / "run.json").exists() or (out / "checkpoints" / "last.json").exists():
        raise GraftError(f"an empty or new run folder for {out}", "a folder that already holds a run",
                         f"pass another out= ({strategy.label} fits in one go: there is nothing to resume)")
    return strategy.definition.fit(_OwnFit(strategy, backbone, data, out, seed, plan, progress, budget))


def _rank_record(out: Path, strategy: Strategy, data: Data, state, epochs: int) -> RunRecord:
    """What a rank other than 0 returns under torchrun (it writes nothing; run.json is rank 0's)."""
    return RunRecord(run_dir=str(out), strategy=strategy.label, epochs=epochs, epochs_run=state.epoch,
                     stopped=state.stopped, seconds=round(state.seconds, 3), best_epoch=state.best_epoch,
                     best_accuracy=state.best, final_split=None, final_accuracy=None, final_macro_f1=None,
                     trainable_params=0, total_params=0, label_names=tuple(data.spec.label_names))


def _finish(trainer: Trainer, state, backbone: Backbone, data: Data, out: Path, strategy: Strategy, epochs: int,
            notes: list[str]) -> RunRecord:
    best = read_checkpoint_state(out / "checkpoints", "best")
    if best is not None and trainer.eval_split:
        backbone.module.load_state_dict(load_tensors(out / "checkpoints" / best["weights"]), strict=True)
        notes.append(f"the saved model is the best epoch on {trainer.eval_split} ({state.best_epoch})")
    spec = replace(backbone.spec, label_names=tuple(data.spec.label_names))
    save_model(_with_spec(backbone, spec), out / "model.safetensors")  # first: what follows cannot lose the model
    final_split = "test" if "test" in data.splits else trainer.eval_split
    metrics = evaluate(backbone, data, final_split, out, trainer.runtime) if final_split else None
    total = sum(p.numel() for p in backbone.module.parameters())
    trainable = sum(p.numel() for n, p in backbone.module.named_parameters()
                    if trainer.groups[n] in trainer.trainable)
    return _record(out, strategy, data, final_split, metrics, epochs=epochs, epochs_run=state.epoch,
                   stopped=state.stopped, seconds=state.seconds, best_epoch=state.best_epoch, best_accuracy=state.best,
                   trainable_params=trainable, total_params=total, notes=notes)


def _run_config(strategy: Strategy, backbone: Backbone, data: Data, *, epochs: int, seed: int,
                eval_split: str | None, **settings) -> dict:
    """``config.json`` of a run: what was asked, the starting weights' digest and the data's fingerprint (what
    resume compares), and ``settings`` of the way it fits."""
    return {"strategy": strategy.to_dict(), "epochs": epochs, "seed": seed,
            "start_weights": weights_digest(backbone.module), "model": backbone.spec.name,
            "data": data.fingerprint("train"), "data_name": data.spec.name,
            "label_names": list(data.spec.label_names), "eval_split": eval_split, "graft": graft_version(),
            **settings}


def _record(out: Path, strategy: Strategy, data: Data, final_split: str | None, metrics, *, seconds: float,
            notes, **fields) -> RunRecord:
    """The RunRecord of a finished run, written as ``run.json``."""
    if final_split is not None and final_split != "test":
        notes = (*notes, f"{OPTIMISTIC}: the final accuracy is measured on {final_split}, the split that chose the "
                         "best epoch (or the head's strength); hold out a test split (--test 0.2, or "
                         "data_options={'test_fraction': 0.2}) for an unbiased figure")
    record = RunRecord(run_dir=str(out), strategy=strategy.label, seconds=round(seconds, 3), final_split=final_split,
                       final_accuracy=None if metrics is None else metrics.accuracy,
                       final_macro_f1=None if metrics is None else metrics.macro_f1,
                       label_names=tuple(data.spec.label_names), notes=tuple(notes), **fields)
    write_json(out / "run.json", record.to_dict())
    return record


def evaluate(backbone: Backbone, data: Data, split: str, out: Path, runtime: Runtime | str | None = None):
    """The final evaluation of a run on ``data[split]`` on ``runtime``'s device (a Runtime or a device string;
    default the CPU): ``out/metrics.json`` (graft.report.plots.plot_run draws ``confusion.png`` from it); the
    :class:`~graft.training.metrics.Metrics`."""
    from graft.training.metrics import classification_report, predict_classes

    runtime = runtime if isinstance(runtime, Runtime) else (Runtime.resolve(runtime, "fp32") if runtime else CPU)
    inp = backbone.spec.input
    device = runtime.torch_device
    loader = data.loader(split, data.inference_batch_size(split, device, run_size(backbone)), shuffle=False,
                         pin_memory=runtime.pin_memory)
    module = nn.Sequential(BatchPreprocess(Preprocess(inp.mean, inp.std, None)), runtime.place(backbone.module))
    y_true, y_pred = predict_classes(module, loader, device, autocast=runtime.autocast)
    metrics = classification_report(y_true, y_pred, data.spec.label_names)
    write_json(out / "metrics.json", {"split": split, **metrics.to_dict()})
    return metrics


def _with_spec(backbone: Backbone, spec) -> Backbone:
    copy = Backbone(backbone.module, spec)
    for attr in ("plan", "plans"):
        if getattr(backbone, attr, None) is not None:
            setattr(copy, attr, getattr(backbone, attr))
    return copy


def load_run(run_dir: str | Path, module: nn.Module | None = None) -> Backbone:
    """The adapted network of a finished run (``run_dir/model.safetensors``), with its plan, preprocessing
    (``spec.input.mean/std``) and label names (``spec.label_names``).

    Networks that graft can build (timm, zoo, and anything grafted from them) rebuild from the file alone; a
    network of your own class needs ``module``, a fresh instance of it, into which the weights are loaded.
    """
    path = Path(run_dir) / "model.safetensors"
    if not path.is_file():
        last = Path(run_dir) / "checkpoints" / "last.json"
        hint = (f"the run did not finish: resume it (graft fit ... --resume {run_dir})" if last.is_file()
                else "pass the folder a graft fit run wrote")
        raise GraftError("a finished run folder with model.safetensors", str(run_dir), hint)
    if module is not None:
        from graft.models.checkpoint import graft_metadata
        from graft.models import read_checkpoint

        meta = graft_metadata(read_checkpoint(path))
        spec = meta.get("spec", {})
        inp = spec.get("input", {})
        loaded = load_model(module, weights=str(path), label_names=spec.get("label_names"),
                            mean=inp.get("mean"), std=inp.get("std"))
        return loaded
    return load_model(path)
