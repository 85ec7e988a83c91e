"""One orchestration object for a run through the stages: ``Workflow``.

A workflow holds what every stage of one run shares, each computed once, when first asked: the loaded network,
the data, the surgery plan (planned once) and the grafted network, the measured step times, and the budget
(parsed once) with the time left of it. Its stages are the whole-stage verbs: :meth:`Workflow.probe`,
:meth:`~Workflow.advise`, :meth:`~Workflow.compare`, :meth:`~Workflow.fit` (``strategy="auto"``: advise, short
trials where the advice is ambiguous, then fit the winner) and :meth:`~Workflow.report`. ``graft.api``'s verbs
and the CLI are thin layers over it::

    wf = graft.Workflow("cifar_resnet20", "digits.npz", data_options={"val_fraction": 0.2}, budget="2m")
    advice = wf.advise("runs/x")
    record = wf.fit("runs/x", strategy=advice.strategy)

Nothing here names a strategy: what a strategy needs is asked of the registry (graft.strategy.registry).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from functools import cached_property, partial, wraps
from pathlib import Path

import numpy as np

from graft.data import Data, DatasetSpec, load_data
import graft.distributed as distributed
from graft.data.options import DataOptions
from graft.devices import Runtime
from graft.errors import GraftError
from graft.features import extract_features as _extract_features
from graft.files import folder_lock, write_json
from graft.measures.summary import Measures, measure_layers, probe_seconds
from graft.models import Backbone
from graft.models.options import LoadOptions
from graft.strategy.advisor import Advice, measure_skip_reason, unmeasured_advice
from graft.strategy.advisor import advise as _advise
from graft.strategy.spec import parse_strategy
from graft.surgery import SurgeryPlan, Target
from graft.surgery import plan_surgery as _plan_surgery
from graft.surgery.plan import run_size
from graft.surgery.saving import load_model
from graft.training.budget import (MEASURE_SHARE, MeasurePlan, epochs_for_budget, finish_seconds,
                                   forward_seconds, measure_step_times, pass_seconds, plan_measuring, seconds_text,
                                   sound_epochs, strategy_seconds)
from graft.training.compare import Comparison, check_splits
from graft.training.compare import compare as _compare
from graft.training.run import RunRecord, parse_budget
from graft.training.run import fine_tune as _fine_tune

PROBE_SAMPLES = 2000  # the advisor's probe draws at most this many samples per split (stratified)
RESIZE_BELOW = 0.5  # data below this fraction of the source's input size: auto weighs running the network larger
RESIZE_FACTOR = 3  # at most this many times the data's size (the forward pass costs about its square)
SIZE_SAMPLES = 200  # samples per split of the probe that compares the two sizes
CONTRACT_MARGIN = 0.05  # of the budget, kept back from training (measured: a 60 s auto fit ended at 67 s without it)
RUN_FINISH_SECONDS = 0.5  # a compared run, after training: its model saved, run.json, metrics.json, confusion.png
MIN_TRIAL_VAL = 100  # trials need a validation split that can tell close candidates apart
AUTO = "auto"


def as_backbone(model, options: LoadOptions | dict | None = None) -> Backbone:
    """``model`` as a Backbone: one already, or anything :func:`graft.load_model` takes (with ``options``)."""
    if isinstance(model, Backbone):
        return model
    return load_model(model, options)


def as_data(data, options: DataOptions | dict | None = None) -> Data:
    """``data`` as Data: loaded already, or anything :func:`graft.load_data` takes (with ``options``)."""
    if isinstance(data, Data):
        return data
    return load_data(data, DataOptions.coerce(options))


def target_from_data(data: Data | DatasetSpec | str | Path, **overrides) -> Target:
    """A surgery Target from a dataset (loaded, described, or anything :func:`graft.load_data` reads): its
    channels, input size, class names and feature names; ``overrides`` replace fields."""
    spec = data if isinstance(data, DatasetSpec) else as_data(data).spec
    fields = dict(label_names=spec.label_names, in_chans=spec.channels, input_size=spec.size or None,
                  feature_names=spec.feature_names)
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return Target(**fields)


def samples_per_class(data: Data, split: str = "train") -> list[int]:
    y = getattr(data[split], "y", None)
    if y is None:
        return []
    return np.bincount(np.asarray(y, dtype=np.int64), minlength=len(data.spec.label_names)).tolist()


def is_auto(strategy) -> bool:
    """Whether ``strategy`` asks the advisor to decide (the one place this is decided)."""
    return isinstance(strategy, str) and strategy.strip().lower() == AUTO



def _holding_out(method):
    """Run ``method`` holding its ``out`` folder (graft.files.folder_lock): a second process that would write the
    same run folder is refused with the pid that holds it, instead of both writing it. Under torchrun rank 0 holds
    it for all the ranks (they write nothing)."""
    @wraps(method)
    def locked(self, *args, **kwargs):
        out = kwargs.get("out", args[0] if args else None)
        if out is None or not self.runtime.is_main:
            return method(self, *args, **kwargs)
        with folder_lock(out):
            return method(self, *args, **kwargs)

    return locked


class Workflow:
    """A run through the stages on one network and one dataset (see the module docstring).

    ``model``: a Backbone or anything :func:`graft.load_model` takes, with ``load_options``; ``data``: a Data or
    anything :func:`graft.load_data` takes, with ``data_options``; ``target``: overrides of the surgery target
    (``keep_rows``, ``size_mode``...); ``budget``: the time for every stage ("10m", seconds), counted from
    ``started`` (a ``time.perf_counter()`` value: the CLI passes when the command began) or else from when the
    workflow is made, loading included: a contract, each stage plans its work to what is left of it;
    ``log``: receives the stages' messages (strings). ``device`` (``auto``: CUDA, then MPS, then the CPU) and
    ``precision`` (``auto``: bf16 on a GPU that has it, else fp32) are resolved once into :attr:`runtime`
    (graft.devices.Runtime), where every stage computes; under torchrun it carries the ranks, and rank 0 writes.
    """

    def __init__(self, model, data, *, load_options: LoadOptions | dict | None = None,
                 data_options: DataOptions | dict | None = None, target: dict | None = None, budget=None,
                 batch_size: int = 32, seed: int = 0, log=None, started: float | None = None,
                 device: str | Runtime | None = "auto", precision: str | None = "auto"):
        self.start = time.perf_counter() if started is None else float(started)
        import torch

        self.seconds = parse_budget(budget)  # the budget, parsed once
        self.runtime = Runtime.resolve(device, precision)  # where every stage computes, resolved once
        distributed.initialize(self.runtime)
        self.batch_size, self.seed = batch_size, seed
        say = log or (lambda message: None)
        self.say = say if self.runtime.is_main else (lambda message: None)  # under torchrun rank 0 speaks
        self.target = dict(target or {})
        torch.manual_seed(seed)  # a randomly initialized network (pretrained=False) is the same on every call
        self.backbone = as_backbone(model, load_options)
        self.runtime.place(self.backbone.module)
        self.data = as_data(data, data_options)

    # --- what the stages share, each computed once --------------------------------------------------------------
    @cached_property
    def plan(self) -> SurgeryPlan:
        """The surgery that takes the network to the data (planned once per workflow)."""
        return _plan_surgery(self.backbone, target_from_data(self.data, **self.target))

    @cached_property
    def grafted(self) -> Backbone:
        """The network grafted to the data (for measuring; every training run gets a :meth:`fresh` copy)."""
        return self.plan.apply(self.backbone)

    def fresh(self) -> Backbone:
        """A new copy of the grafted network, for a run that trains it."""
        return self.plan.apply(self.backbone)

    @cached_property
    def step_times(self):
        """Seconds per training step and per forward pass, timed once on a copy (graft.training.budget)."""
        times = measure_step_times(self.grafted, self.data, self.batch_size, self.seed, runtime=self.runtime)
        return distributed.broadcast_object(self.runtime, times, "the step times")  # one plan for every rank

    @cached_property
    def has_adapter(self) -> bool:
        return any(n.startswith("input_layer.") for n, _ in self.grafted.module.named_parameters())

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float | None:
        """Seconds left of the budget (None without one)."""
        return None if self.seconds is None else max(0.0, self.seconds - self.elapsed())

    def finish(self) -> float:
        """The seconds a fit needs after its last epoch (held-out evaluation, the model saved, plots, report)."""
        test = len(self.data["test"]) if "test" in self.data.splits else 0
        return finish_seconds(self.step_times, test, self.batch_size)

    def for_training(self) -> float | None:
        """What is left of the budget for training, once what follows the training is set aside, and
        ``CONTRACT_MARGIN`` of the budget: a run stopped by its budget still ends the epoch it is in (its evaluation,
        its checkpoint) and estimates run a few percent short (None: no budget)."""
        left = self.left()
        return None if left is None else max(0.0, left - self.finish() - CONTRACT_MARGIN * self.seconds)

    def epochs_for(self, label: str) -> int:
        """The epochs of strategy ``label`` that fit in what is left of the budget for training (at most 100). A
        strategy whose prior needs a measure of the probe (multilayer) fits by taking that measure on all the
        training data: its time, scaled from what the probe's took on its sample, is set aside first."""
        strategy = parse_strategy(label)
        seconds = max(0.0, (self.for_training() or 0.0) - self._extra(strategy))
        return epochs_for_budget(strategy, self.step_times, seconds, max_epochs=100, has_adapter=self.has_adapter)

    def _extra(self, strategy) -> float:
        """The seconds a fit of ``strategy`` spends before its epochs: its prior's measure on all the training data,
        scaled from what the probe's took on its sample (0 for a strategy without one, or before measuring)."""
        measured, measure = self.__dict__.get("_measured"), strategy.definition.measure
        if measure and measured is not None and measure in measured.seconds:
            return measured.seconds[measure] * len(self.data["train"]) / max(1, measured.num_train)
        return 0.0

    def reserve(self, label: str) -> float:
        """The seconds of the budget a fit of strategy ``label`` needs from when it starts: its sound epochs, what
        precedes them (:meth:`_extra`), what follows them (:meth:`finish`) and the ``CONTRACT_MARGIN``. A stage run
        before such a fit (the demo's comparison) leaves this much."""
        strategy = parse_strategy(label)
        train = strategy_seconds(strategy, self.step_times, sound_epochs(strategy), has_adapter=self.has_adapter)
        return train + self._extra(strategy) + self.finish() + CONTRACT_MARGIN * (self.seconds or 0.0)

    def measure_plan(self, seconds: float, max_samples: int | None, per_sample: float | None = None, *,
                     network: Backbone | None = None, eval_split: str | None = "val", folds: int = 5,
                     choose_c: str = "eval") -> MeasurePlan:
        """The samples a probe of ``network`` (default: the grafted one) can afford in ``seconds``
        (graft.training.budget.plan_measuring), evaluated on ``eval_split``; ``choose_c="cv"`` chooses its C by
        ``folds``-fold cross-validation (about ``folds + 1`` times the fits); ``per_sample``: its forward seconds
        per sample (default: from the step times)."""
        splits, network = self.data.splits, network or self.grafted
        if per_sample is None:
            per_sample = pass_seconds(self.step_times, 1, self.batch_size)
        held_out = eval_split in splits
        return plan_measuring(per_sample, seconds, train=len(splits["train"]),
                              val=len(splits[eval_split]) if held_out else 0,
                              classes=len(self.data.spec.label_names), max_samples=max_samples or 10**9,
                              last_dim=network.spec.head.in_features,
                              fits=1.0 if choose_c == "eval" and held_out else float(folds + held_out))

    def one_process(self, what: str) -> None:
        """Refuse ``what`` under torchrun: only training in epochs (graft fit with a strategy) runs data-parallel."""
        if self.runtime.distributed:
            raise GraftError(f"{what} in one process (under torchrun graft runs fit with a named strategy, compare "
                             "and pretrain)",
                             f"a torchrun launch of {self.runtime.world_size} processes",
                             f"run {what} without torchrun (--device cuda takes one GPU); for --strategy auto, run "
                             "graft advise first, then torchrun ... graft fit --strategy THE_ADVICE")

    # --- the stages -----------------------------------------------------------------------------------------------
    @_holding_out
    def probe(self, out: str | Path | None = None, *, network: Backbone | None = None, split: str = "train",
              eval_split: str | None = "auto", layers=None, plot: bool = False, source_data=None,
              source_split: str = "train", input_size: tuple[int, ...] | None = None, batch_size: int | None = None,
              folds: int = 5, max_samples: int | None = None, cache_dir: str | Path | None = None,
              choose_c: str = "cv", multilayer=True, seed: int | None = None,
              deadline: float | None = None, refine: bool | None = None) -> Measures:
        """Measure each layer of ``network`` (default: the network as loaded) on the data; see :func:`graft.probe`.
        ``seed`` (default: the workflow's) seeds the subsample and the probe's folds. ``deadline`` (a
        ``time.perf_counter()`` value; default with a budget: the budget's end, less writing the measures): the
        layers are probed best-first until then (graft.measures.summary.measure_layers); with a budget the samples
        are drawn so the extraction fits too."""
        self.one_process("graft probe")
        backbone = network if network is not None else self.backbone
        seed = self.seed if seed is None else seed
        if eval_split == "auto":
            eval_split = next((s for s in ("test", "val") if s in self.data.splits and s != split), None)
        if deadline is None and self.seconds is not None:  # graft probe --budget: the whole budget is measuring's
            per_sample = forward_seconds(backbone, self.data, batch_size or 32)
            seconds = max(0.0, (self.left() or 0.0) - 1.5)
            plan = self.measure_plan(seconds, max_samples, per_sample, network=backbone, folds=folds,
                                     eval_split=eval_split, choose_c=choose_c)
            if not plan.samples:
                raise GraftError("a budget that affords a probe", f"{seconds_text(self.seconds)}: {plan.why}",
                                 "raise --budget, or measure fewer samples (--max-samples) or layers (--layers)")
            max_samples, deadline = plan.samples, time.perf_counter() + seconds
            self.say(plan.describe())
        data = self.data if max_samples is None else self.data.subsample(max_samples, seed=seed)
        options = dict(layers=layers, input_size=input_size, batch_size=batch_size, cache_dir=cache_dir)
        say = self.say
        say(f"extracting features of {split} ({len(data[split])} samples)")
        train = _extract_features(backbone, data, split=split, batchnorm=True, **options)
        evaluated = None
        if eval_split is not None:
            say(f"extracting features of {eval_split} ({len(data[eval_split])} samples)")
            evaluated = _extract_features(backbone, data, split=eval_split, **options)
        source = None
        if source_data is not None:
            source_data = as_data(source_data)
            say(f"extracting features of the source sample ({len(source_data[source_split])} samples)")
            source = _extract_features(backbone, source_data, split=source_split, **options)
        names = list(train.layers)
        measures = measure_layers(
            names, {n: train.features(n) for n in names}, train.labels(),
            {n: evaluated.features(n) for n in names} if evaluated else None,
            evaluated.labels() if evaluated else None, batchnorm=train.batchnorm_statistics(), logits=train.logits(),
            source_features={n: source.features(n) for n in names} if source else None,
            label_names=data.spec.label_names, model=backbone.spec.name, data=data.spec.name, train_split=split,
            eval_split=eval_split, folds=folds, seed=seed, choose_c=choose_c, multilayer=multilayer,
            progress=lambda name: say(f"measuring {name}"), deadline=deadline, refine=refine)
        extraction = {"extract_" + fs.split: round(fs.seconds, 3) for fs in (train, evaluated) if fs is not None}
        notes = list(dict.fromkeys(n for fs in (train, evaluated, source) if fs is not None for n in fs.notes))
        small = self._small_input_note(backbone, input_size)
        notes += [small] if small else []
        measures = replace(measures, seconds={**extraction, **measures.seconds}, notes=(*measures.notes, *notes))
        if out is not None:
            write_json(Path(out) / "measures.json", measures)
            if plot:
                from graft.report import plot_layer_measures

                plot_layer_measures(measures, Path(out) / "measures.png")
        elif plot:
            raise GraftError("a run folder for the plot (out=...)", "plot=True without out", "pass out='runs/NAME'")
        return measures

    @_holding_out
    def advise(self, out: str | Path | None = None, *, max_samples: int = PROBE_SAMPLES, multilayer: bool | str = "auto",
               margin: float = 0.05, budgeted: bool = False) -> Advice:
        """Probe the grafted network layer by layer on the training data, evaluated on ``val`` (never on test), and
        advise a strategy with its reasons; see :func:`graft.advise`. With a budget the measuring is planned to fit:
        the samples drawn so the extraction fits, the layers probed best-first until the time is spent
        (graft.training.budget.plan_measuring); ``budgeted``: the advice is for a fit in the same budget, so the
        measuring takes at most ``MEASURE_SHARE`` of it and the advisor weighs how many epochs of each candidate the
        budget left affords (without: all of the budget is the measuring's)."""
        if multilayer != "auto" and not isinstance(multilayer, bool):
            raise GraftError('multilayer=True, False or "auto"', repr(multilayer), 'pass one of them (default "auto")')
        has_val = "val" in self.data.splits
        counts, blocks = samples_per_class(self.data), [b.name for b in self.grafted.spec.blocks]
        budgeted = budgeted and self.seconds is not None
        deadline = None
        if self.seconds is not None:  # before a fit: at most MEASURE_SHARE of the budget (loading and timing
            # included), or a tenth of it from when the timing ends; alone (graft advise --budget): all of it, less
            # writing the advice
            _ = self.step_times  # timed first: the plan and every later stage price their work from them
            deadline = (max(self.start + MEASURE_SHARE * self.seconds, time.perf_counter() + 0.1 * self.seconds)
                        if budgeted else self.start + self.seconds - 1.0)
            sized = self.weigh_input_size(deadline - time.perf_counter()) if budgeted else None
            if sized is not None:
                self.size_reason = sized
                blocks = [b.name for b in self.grafted.spec.blocks]
            plan = self.measure_plan(deadline - time.perf_counter(), max_samples,
                                     eval_split="val" if has_val else None, choose_c="eval" if has_val else "cv")
            self.say(f"loaded, grafted and timed in {seconds_text(self.elapsed())}; {plan.describe()}")
            if not plan.samples:
                advice = unmeasured_advice(plan.why)
                if out is not None:
                    write_json(Path(out) / "advice.json", advice)
                return advice
            max_samples = plan.samples
        epochs_for = self.epochs_for if budgeted else None
        if multilayer == "auto":  # take the optional measure only where a strategy that needs it could still win
            multilayer = partial(measure_skip_reason, "multilayer", samples_per_class=counts, blocks=blocks,
                                 epochs_for=epochs_for, margin=margin)
        # the advice's probe is seeded 0 whatever the run's seed: the same data gets the same advice
        measures = self.probe(out, network=self.grafted, eval_split="val" if has_val else None, seed=0,
                              max_samples=max_samples, plot=out is not None, choose_c="eval" if has_val else "cv",
                              multilayer=multilayer, deadline=deadline)
        self._measured = measures
        advice = _advise(measures, samples_per_class=counts, blocks=blocks, epochs_for=epochs_for, margin=margin)
        if self.__dict__.get("size_reason"):
            advice = replace(advice, reasons=(*advice.reasons, self.size_reason),
                             measurements={**advice.measurements, "run_size": list(self.target.get("run_size", ()))
                                           or None})
        if out is not None:
            write_json(Path(out) / "advice.json", advice)
        return advice

    def _small_input_note(self, backbone: Backbone, input_size=None) -> str | None:
        """A note when the network runs far below the input size it was trained at (32 px through a network trained
        at 224 px): its top layers then see a few positions, so their probes and LEEP/NCE understate it, and the
        cause is the size, not the data."""
        inp = backbone.spec.input
        size = tuple(input_size or run_size(backbone) or self.data.spec.size or ())
        if not inp.size or inp.spatial_dims != 2 or len(size) != 2 or len(inp.size) != 2:
            return None
        if any(d >= RESIZE_BELOW * s for d, s in zip(size, inp.size)):
            return None
        up = " ".join(str(int(min(s, RESIZE_FACTOR * d))) for d, s in zip(size, inp.size))
        return (f"the network runs at {'x'.join(map(str, size))}, far below the {'x'.join(map(str, inp.size))} it was "
                "trained at: its top layers see a few positions only, so their probe accuracy and LEEP/NCE understate "
                "what it can do here; before concluding the data is unlike the source, measure at a larger size "
                f"(--input-size {up}); fit --strategy auto weighs that itself")

    def weigh_input_size(self, seconds: float) -> str | None:
        """``--strategy auto`` on data far below the source's input size (32 px images through a network trained at
        224 px): probe the last layer at the data's size and at up to ``RESIZE_FACTOR`` times it, on the same small
        sample, and run the network larger when that probe is better beyond its interval. Done only when both
        extractions fit in ``seconds``; returns the reason (also when it keeps the size), or None when not weighed.
        A larger size re-plans the surgery and re-times the steps: every later stage prices the larger inputs."""
        inp, size = self.backbone.spec.input, self.data.spec.size
        if ("run_size" in self.target or self.target.get("size_mode", "auto") != "auto" or not inp.size or not size
                or inp.spatial_dims != 2 or len(size) != 2 or not inp.flexible_size or "val" not in self.data.splits
                or any(d >= RESIZE_BELOW * s for d, s in zip(size, inp.size))):
            return None
        up = tuple(int(min(s, RESIZE_FACTOR * d)) for d, s in zip(size, inp.size))
        ratio = (up[0] * up[1]) / (size[0] * size[1])
        per_sample = pass_seconds(self.step_times, 1, self.batch_size)
        drawn = min(SIZE_SAMPLES, len(self.data["train"])) + min(SIZE_SAMPLES, len(self.data["val"]))
        classes = len(self.data.spec.label_names)
        need = (per_sample * drawn * (1 + ratio) * 1.3  # both extractions, and two probes of the last layer
                + 2 * probe_seconds(min(SIZE_SAMPLES, len(self.data["train"])), self.grafted.spec.head.in_features,
                                    classes))
        here, there = "x".join(map(str, size)), "x".join(map(str, up))
        if need > seconds:
            return None
        larger = self.plan_for(run_size=up).apply(self.backbone)
        scores, deadline = {}, time.perf_counter() + seconds
        for label, network in ((here, self.grafted), (there, larger)):
            measures = self.probe(network=network, layers="last", eval_split="val", seed=0, max_samples=SIZE_SAMPLES,
                                  choose_c="eval", multilayer=False, deadline=deadline)
            scores[label] = measures.layers[-1]
        native, resized = scores[here], scores[there]
        if resized.probe_accuracy > native.probe_high:
            self.run_at(up)
            self.say(f"running the network at {there}: its last layer's probe reached {resized.probe_accuracy:.3f} "
                     f"there against {native.probe_accuracy:.3f} at {here} (the source was trained at "
                     f"{'x'.join(map(str, inp.size))})")
            return (f"inputs resized {here} -> {there}: the last layer's probe {resized.probe_accuracy:.3f} against "
                    f"{native.probe_accuracy:.3f} at the data's size (95 % CI up to {native.probe_high:.3f}); the "
                    f"source was trained at {'x'.join(map(str, inp.size))}")
        return (f"inputs kept at {here}: at {there} the last layer's probe reached {resized.probe_accuracy:.3f}, "
                f"not beyond {native.probe_accuracy:.3f} (95 % CI up to {native.probe_high:.3f}), for "
                f"{ratio:.0f}x the compute")

    def run_at(self, size: tuple[int, ...]) -> None:
        """Run the network at ``size`` from now on: the plan, the grafted network and the step times are redone."""
        self.target["run_size"] = tuple(size)
        for name in ("plan", "grafted", "step_times", "has_adapter"):
            self.__dict__.pop(name, None)

    def plan_for(self, **overrides) -> SurgeryPlan:
        """The surgery to the data with ``overrides`` of the target (``run_size=(96, 96)``)."""
        return _plan_surgery(self.backbone, target_from_data(self.data, **{**self.target, **overrides}))

    @_holding_out
    def compare(self, out: str | Path, *, strategies=None, seeds=(0,), max_epochs: int = 30,
                report: bool = True, budget: float | None = None, **strategy_options) -> Comparison:
        """Run ``strategies`` on the same splits with equal shares of the budget (default 15 minutes; ``budget``:
        at most these seconds of it, each run's evaluation and model included); comparison.json, plots, report.html.
        See :func:`graft.compare`."""
        cap = budget
        check_splits(self.data)
        if isinstance(strategies, str):
            strategies = [s.strip() for s in strategies.split(",") if s.strip()]
        out = Path(out)
        if self.runtime.is_main:
            write_json(out / "plan.json", self.plan)
        if "step_times" not in self.__dict__:
            self.say(f"timing a few steps of {self.grafted.spec.name} to split the {self.seconds or 900.0:.0f} s budget")
        budget = 900.0
        if self.seconds is not None or cap is not None:  # less each run's evaluation and model (and the report)
            from graft.strategy import default_comparison

            runs = len(strategies or default_comparison()) * max(1, len(tuple(seeds)))
            test = len(self.data["test"]) if "test" in self.data.splits else 0
            finishing = runs * (pass_seconds(self.step_times, test, self.batch_size) + RUN_FINISH_SECONDS)
            if self.seconds is not None:  # what is left of the workflow's budget
                budget = max(0.0, (self.left() or 0.0) - self.finish() - finishing)
            if cap is not None:  # the comparison's own cap, its finishing included
                budget = min(budget, max(0.0, float(cap) - finishing - (self.finish() if report else 0.0)))
        budget = distributed.broadcast_object(self.runtime, budget, "the comparison's budget")  # rank 0's clock
        result = _compare(self.backbone, self.data, self.plan, out, strategies=strategies, budget=budget, seeds=seeds,
                          batch_size=self.batch_size, max_epochs=max_epochs, log=self.say, grafted=self.grafted,
                          times=self.step_times, runtime=self.runtime, **strategy_options)
        from graft.report.compare_plots import write_comparison_plots
        from graft.report.plots import plot_run

        if not self.runtime.is_main:  # rank 0 draws
            return result
        for entry in result.strategies:  # each run's confusion.png, from its metrics.json
            for run in entry["runs"]:
                self._draw("confusion.png", Path(run["run_dir"]), plot_run, run["run_dir"])
        self._draw("the comparison plots", out, write_comparison_plots, out, result.to_dict())
        if report:
            self._draw("report.html", out, self.report, out)
        return result

    @_holding_out
    def fit(self, out: str | Path, *, strategy="full", epochs: int | None = None, resume: bool = False,
            patience: int | None = None, plateau: int | None = None, epoch_log=None, progress=True,
            report: bool = True, margin: float = 0.05, trial_share: float = 0.3, min_trial_val: int = MIN_TRIAL_VAL,
            keep_going: bool = False, **strategy_options) -> RunRecord:
        """Train the grafted network with ``strategy`` into the run folder ``out`` (``"auto"``: the advisor decides,
        short trials settle an ambiguous advice); see :func:`graft.fine_tune`. ``epoch_log`` receives the per-epoch
        records (dicts). With a budget, the training gets what is left of it once the finishing (evaluation, model,
        plots, report) is set aside; a budget that affords fewer epochs than the strategy needs is refused unless
        ``keep_going``. ``"auto"`` never returns silently a model below a linear head on the same features: the
        record carries a warning (the CLI exits 3) unless ``keep_going``."""
        out = Path(out)
        # rank 0's clock decides for every rank of a torchrun launch (one refusal, or none)
        left, budget = distributed.broadcast_object(self.runtime, (self.left(), self.for_training()), "the budget")
        if self.seconds is not None and not left and not is_auto(strategy):
            raise GraftError(f"time left of the {seconds_text(self.seconds)} budget to fit in",
                             f"none: the earlier stages of this workflow took {seconds_text(self.elapsed())}",
                             "make the fit a workflow of its own, or give this one a larger budget")
        advice = None
        if is_auto(strategy):
            self.one_process("graft fit --strategy auto")
            advice, options, epochs, budget = self._decide(out, epochs=epochs, resume=resume, margin=margin,
                                                           trial_share=trial_share, min_trial_val=min_trial_val,
                                                           keep_going=keep_going)
            strategy, strategy_options = advice.strategy, {**options, **strategy_options}
        if budget is not None and budget <= 0:
            raise GraftError(f"time left of the {seconds_text(self.seconds)} budget to train in",
                             f"none: loading{', measuring' if advice is not None else ''} and what follows the "
                             f"training take {seconds_text(self.elapsed() + self.finish())} here",
                             f"raise --budget above {seconds_text(1.5 * (self.elapsed() + self.finish()))}")
        record = _fine_tune(self.fresh(), self.data, out, strategy=strategy, epochs=epochs, budget=budget,
                            batch_size=self.batch_size, seed=self.seed, resume=resume, patience=patience,
                            plateau=plateau, plan=self.plan, log=epoch_log, progress=progress,
                            times=self.step_times if self._needs_times(strategy, epochs, resume) else None,
                            keep_going=keep_going or advice is not None, runtime=self.runtime, **strategy_options)
        if not self.runtime.is_main:  # the other ranks of a torchrun launch: rank 0 draws and reports
            return record
        if advice is not None:
            record = self._against_linear(record, out, keep_going)
        from graft.report.plots import plot_run

        for what, draw in (("confusion.png", plot_run), ("report.html", self.report)):
            if what == "confusion.png" or report:  # confusion.png from metrics.json; the report from the folder
                note = self._draw(what, out, draw, out)
                record = record if note is None else record.with_note(note)
        return record

    def _draw(self, what: str, out: Path, draw, *args) -> str | None:
        """Draw an artifact of a run whose model is saved already (a plot, the report). A failure is said and
        returned as a note, never raised: nothing drawn after the training may take the trained model with it."""
        try:
            draw(*args)
        except Exception as exc:  # noqa: BLE001 - any failure of a plot or the report; the model is on disk
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "no message"
            note = (f"{what} was not written ({type(exc).__name__}: {reason}); the model is saved in {out} "
                    f"(graft report {out} draws the report again)")
            self.say(f"warning: {note}")
            return note
        return None

    def _against_linear(self, record: RunRecord, out: Path, keep_going: bool) -> RunRecord:
        """``auto``'s check: a fit whose best validation accuracy is below the lower end of the 95 % interval of the
        linear probe on the last layer (the features a linear head reads, measured on the same validation split)
        is said plainly, in the log and as a warning on the record."""
        path = out / "measures.json"
        if record.best_accuracy is None or not path.is_file() or record.strategy == "linear":
            return record
        measures = Measures.from_json(path.read_text())
        last = next((e for e in reversed(measures.layers) if e.probe_accuracy is not None), None)
        if last is None or measures.eval_split != "val" or record.best_accuracy >= (last.probe_low or 0.0):
            return record
        warning = (f"{record.strategy} reached {record.best_accuracy:.3f} on val, below a linear head on the same "
                   f"features ({last.name}: the probe measured {last.probe_accuracy:.3f}, 95 % CI "
                   f"{last.probe_low:.3f}-{last.probe_high:.3f}): fit --strategy linear, or give it a larger budget")
        self.say(f"warning: {warning}")
        return record.with_warning(warning)

    def _needs_times(self, strategy, epochs, resume: bool) -> bool:
        """Whether the fit prices epochs from step times: a budget, no epochs given, a fresh run of phases."""
        return (self.seconds is not None and epochs is None and not resume
                and parse_strategy(strategy).definition.fit is None)

    def _decide(self, out: Path, *, epochs, resume: bool, margin: float, trial_share: float,
                min_trial_val: int, keep_going: bool = False) -> tuple[Advice, dict, int | None, float | None]:
        """``--strategy auto``: the advice (read back on resume), settled by trials where it is ambiguous, there is a
        budget and the validation split can tell close candidates apart, then checked against the time left (see
        :meth:`affordable`); the advice, its options, the epochs and the budget left for the training."""
        from graft.training.auto import successive_halving, trial_candidates, with_trials

        say, seconds = self.say, self.seconds
        saved = out / "advice.json"
        if resume and saved.is_file():
            advice = Advice.from_dict(json.loads(saved.read_text()))
            if advice.measurements.get("run_size"):  # the size auto chose: the same surgery as the run it resumes
                self.run_at(tuple(advice.measurements["run_size"]))
        else:
            if (out / "checkpoints" / "last.json").exists() or (out / "run.json").exists():
                raise GraftError(f"an empty or new run folder for {out}", "a folder that already holds a run",
                                 "continue it with --resume, or pass another --out")
            advice = self.advise(out, margin=margin, budgeted=True)
            say(advice.render())
            say(f"measured and advised in {self.elapsed():.0f} s")
            candidates = trial_candidates(advice, margin)
            val_size = len(self.data["val"]) if "val" in self.data.splits else 0
            if len(candidates) > 1 and seconds is not None and val_size < min_trial_val:
                say(f"{', '.join(candidates)} score within {margin}, but the validation split has {val_size} samples, "
                    f"too few to tell them apart in trials (at least {min_trial_val}; an accuracy near 0.8 on 100 "
                    f"samples is known to about ±8 points); fitting {advice.strategy}")
            elif len(candidates) > 1 and seconds is not None:
                check_splits(self.data)
                winner, trials = successive_halving(self.backbone, self.data, self.plan, out, candidates,
                                                    self.for_training() * trial_share, self.step_times,
                                                    batch_size=self.batch_size, seed=self.seed,
                                                    has_adapter=self.has_adapter, log=say, runtime=self.runtime)
                advice = with_trials(advice, winner, trials)
                from graft.report.plots import plot_run

                for trial in trials:  # each trial's confusion.png, from its metrics.json
                    for entry in trial["rounds"]:
                        self._draw("confusion.png", Path(entry["run_dir"]), plot_run, entry["run_dir"])
            elif len(candidates) > 1:
                say(f"{', '.join(candidates)} score within {margin}: without --budget no trials run; fitting "
                    f"{advice.strategy}")
            write_json(saved, advice)
        left = self.for_training()
        if left is not None and epochs is None:
            advice = self.affordable(advice, left, keep_going)
            if (out / "advice.json").is_file():
                write_json(saved, advice)
        return advice, dict(advice.options), epochs, left

    def affordable(self, advice: Advice, left: float, keep_going: bool = False) -> Advice:
        """The advice, or the best candidate that is sound in the ``left`` seconds when the advised one is not
        (measuring and trials took their share): never a strategy fitted for a fraction of what it needs. When none
        is, a clear error, unless ``keep_going`` (then the advice, for what fits of it)."""
        def affords(label: str) -> tuple[int, int]:
            return self.epochs_for(label), sound_epochs(parse_strategy(label))

        epochs, sound = affords(advice.strategy)
        if epochs >= sound:
            return advice
        spent = (f"what ran before the fit (loading, measuring{', trials' if advice.trials else ''}) took "
                 f"{seconds_text(self.elapsed())} of the {seconds_text(self.seconds)} budget; what is left for "
                 f"training ({seconds_text(left)}) affords {epochs} epoch{'s' if epochs != 1 else ''} of "
                 f"{advice.strategy}, fewer than the {sound} it needs")
        for candidate in advice.candidates:
            name = candidate["strategy"]
            if name != advice.strategy and affords(name)[0] >= affords(name)[1]:
                self.say(f"{spent}: fitting {name}, the best candidate that is sound in that time")
                reasons = (f"{spent}; {name} is the best candidate that is sound in that time", *advice.reasons)
                return replace(advice, strategy=name, options={}, unfreeze=(), reasons=reasons)
        if keep_going:  # the best candidate that fits at all, for what fits of it
            for candidate in advice.candidates:
                if affords(candidate["strategy"])[0] >= 1:
                    name = candidate["strategy"]
                    self.say(f"{spent}, and no candidate is sound in that time; fitting {name}, the best that fits "
                             "at all, anyway (keep going)")
                    if name == advice.strategy:
                        return advice
                    return replace(advice, strategy=name, options={}, unfreeze=(),
                                   reasons=(f"{spent}; keep going: {name} is the best candidate that fits at all",
                                            *advice.reasons))
        if keep_going:
            raise GraftError("a budget that leaves time for the shortest run of a candidate after measuring",
                             spent + ", and not one epoch of any candidate fits in that time",
                             f"raise --budget (more than {seconds_text(self.seconds)})")
        raise GraftError("a budget that leaves time for a sound fit after measuring", spent + ", and no other "
                         "candidate is sound in that time",
                         f"raise --budget (more than {seconds_text(self.seconds)}), or pass --keep-going to fit what "
                         "fits anyway")

    def report(self, out: str | Path) -> Path:
        """(Re)build ``out/report.html`` from the run folder alone."""
        from graft.report.html import write_report

        return write_report(out)


__all__ = ["AUTO", "Workflow", "as_backbone", "as_data", "is_auto", "samples_per_class",
           "target_from_data"]
