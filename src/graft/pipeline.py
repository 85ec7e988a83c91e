"""The verbs that chain whole stages: ``advise`` (probe, then decide), ``compare`` (every strategy on one budget),
``fit_auto`` (advise, trials where the advice is ambiguous, fit), ``write_report``. The CLI calls these."""

from __future__ import annotations

import json
import time
from functools import cached_property, partial
from pathlib import Path

import numpy as np

from graft.api import fine_tune as _fine_tune_api
from graft.api import plan_surgery, probe
from graft.data import Data, load_data
from graft.errors import GraftError
from graft.models import Backbone
from graft.strategy.advisor import Advice
from graft.strategy.advisor import advise as _advise
from graft.strategy.advisor import multilayer_skip_reason
from graft.surgery.saving import load_model
from graft.training.compare import DEFAULT_STRATEGIES, Comparison, check_splits
from graft.training.compare import compare as _compare
from graft.training.run import RunRecord, _write_json, parse_budget

PROBE_SAMPLES = 2000  # the advisor's probe draws at most this many samples per split (stratified)
MIN_TRIAL_VAL = 100  # trials need a validation split that can tell close candidates apart


def _inputs(model, data, load_kwargs, data_kwargs) -> tuple[Backbone, Data]:
    backbone = model if isinstance(model, Backbone) else load_model(model, **(load_kwargs or {}))
    data = data if isinstance(data, Data) else load_data(data, **(data_kwargs or {}))
    return backbone, data


def samples_per_class(data: Data, split: str = "train") -> list[int]:
    y = getattr(data[split], "y", None)
    if y is None:
        return []
    return np.bincount(np.asarray(y, dtype=np.int64), minlength=len(data.spec.label_names)).tolist()


def advise(model, data, *, out: str | Path | None = None, target: dict | None = None, max_samples: int = PROBE_SAMPLES,
           load_kwargs: dict | None = None, data_kwargs: dict | None = None, log=None, epochs_for=None,
           multilayer: bool | str = "auto", margin: float = 0.05) -> Advice:
    """Probe ``model`` (grafted to ``data``) layer by layer on the training data, evaluated on ``val`` (never on
    test), and advise a strategy with its reasons. With ``out``: measures.json, measures.png, advice.json.
    ``epochs_for(strategy)``: the epochs the fit's budget affords (see :func:`graft.strategy.advisor.advise`).
    ``multilayer``: also probe every layer at once, which makes ``multilayer`` a candidate; ``"auto"``: only when
    the per-layer measures leave that candidate a chance (:func:`graft.strategy.advisor.multilayer_skip_reason`).
    ``margin``: candidates scoring this close to the best are ambiguous (trials settle them in ``fit_auto``)."""
    if multilayer != "auto" and not isinstance(multilayer, bool):
        raise GraftError('multilayer=True, False or "auto"', repr(multilayer), 'pass one of them (default "auto")')
    backbone, data = _inputs(model, data, load_kwargs, data_kwargs)
    plan = plan_surgery(backbone, data=data, **(target or {}))
    grafted = plan.apply(backbone)
    has_val = "val" in data.splits
    counts, blocks = samples_per_class(data), [b.name for b in grafted.spec.blocks]
    if multilayer == "auto":
        multilayer = partial(multilayer_skip_reason, samples_per_class=counts, blocks=blocks, epochs_for=epochs_for,
                             margin=margin)
    measures = probe(grafted, data, eval_split="val" if has_val else None, max_samples=max_samples, out=out,
                     plot=out is not None, log=log, choose_c="eval" if has_val else "cv", multilayer=multilayer)
    advice = _advise(measures, samples_per_class=counts, blocks=blocks, epochs_for=epochs_for, margin=margin)
    if out is not None:
        _write_json(Path(out) / "advice.json", advice.to_dict())
    return advice


def compare(model, data, out: str | Path, *, strategies=DEFAULT_STRATEGIES, budget="15m", seeds=(0,),
            batch_size: int = 32, max_epochs: int = 30, target: dict | None = None, load_kwargs: dict | None = None,
            data_kwargs: dict | None = None, log=None, report: bool = True, **strategy_options) -> Comparison:
    """Run ``strategies`` on the same splits with equal shares of ``budget``; comparison.json, plots, report.html."""
    backbone, data = _inputs(model, data, load_kwargs, data_kwargs)
    check_splits(data)
    if isinstance(strategies, str):
        strategies = [s.strip() for s in strategies.split(",") if s.strip()]
    plan = plan_surgery(backbone, data=data, **(target or {}))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "plan.json", plan.to_dict())
    result = _compare(backbone, data, plan, out, strategies=strategies, budget=parse_budget(budget), seeds=seeds,
                      batch_size=batch_size, max_epochs=max_epochs, log=log, **strategy_options)
    from graft.report.compare_plots import write_comparison_plots

    write_comparison_plots(out, result.to_dict())
    if report:
        write_report(out)
    return result


def fit_auto(model, data, out: str | Path, *, budget=None, epochs: int | None = None, batch_size: int = 32,
             seed: int = 0, resume: bool = False, target: dict | None = None, load_kwargs: dict | None = None,
             data_kwargs: dict | None = None, log=None, epoch_log=None, progress=True, margin: float = 0.05,
             trial_share: float = 0.3, min_trial_val: int = MIN_TRIAL_VAL, **fit_options) -> tuple[RunRecord, Advice]:
    """``--strategy auto``: advise; when the advice is ambiguous, there is a budget and the validation split has at
    least ``min_trial_val`` samples, short trials of the close candidates (``trial_share`` of the budget,
    successive halving); then fit the winner with what is left.
    ``log`` receives the advisor's messages (strings), ``epoch_log`` the fit's per-epoch records."""
    from graft.training.auto import successive_halving, trial_candidates, with_trials

    say = log or (lambda message: None)
    backbone, data = _inputs(model, data, load_kwargs, data_kwargs)
    out = Path(out)
    seconds = parse_budget(budget)
    start = time.perf_counter()
    saved = out / "advice.json"
    grafted = _Grafted(backbone, data, target, batch_size, seed)  # planned and timed once, when first asked
    if resume and saved.is_file():
        advice = Advice.from_dict(json.loads(saved.read_text()))
    else:
        if (out / "checkpoints" / "last.json").exists() or (out / "run.json").exists():
            raise GraftError(f"an empty or new run folder for {out}", "a folder that already holds a run",
                             "continue it with --resume, or pass another --out")
        advice = advise(backbone, data, out=out, target=target, log=say, margin=margin,
                        epochs_for=None if seconds is None else _epochs_in(grafted, seconds, start))
        say(advice.render())
        say(f"measured and advised in {time.perf_counter() - start:.0f} s")
        candidates = trial_candidates(advice, margin)
        val_size = len(data["val"]) if "val" in data.splits else 0
        if len(candidates) > 1 and seconds is not None and val_size < min_trial_val:
            say(f"{', '.join(candidates)} score within {margin}, but the validation split has {val_size} samples, "
                f"too few to tell them apart in trials (at least {min_trial_val}; an accuracy near 0.8 on 100 "
                f"samples is known to about ±8 points); fitting {advice.strategy}")
        elif len(candidates) > 1 and seconds is not None:
            check_splits(data)
            left = seconds - (time.perf_counter() - start)
            winner, trials = successive_halving(backbone, data, grafted.plan, out, candidates, left * trial_share,
                                                grafted.times, batch_size=batch_size, seed=seed,
                                                has_adapter=grafted.has_adapter, log=say)
            advice = with_trials(advice, winner, trials)
        elif len(candidates) > 1:
            say(f"{', '.join(candidates)} score within {margin}: without --budget no trials run; fitting "
                f"{advice.strategy}")
        _write_json(saved, advice.to_dict())
    left = None if seconds is None else seconds - (time.perf_counter() - start)
    if left is not None and epochs is None:
        from graft.strategy.spec import parse_strategy
        from graft.training.budget import least_epochs, strategy_seconds

        strategy = parse_strategy(advice.strategy)
        least = least_epochs(strategy)
        need = strategy_seconds(strategy, grafted.times, least, grafted.has_adapter)
        if left < need:  # the measurements took the budget: fit the shortest run rather than nothing
            say(f"the measurements and trials took {_secs(seconds - left)} of the {_secs(seconds)} budget; fitting "
                f"{advice.strategy} for its minimum, {least} epoch{'s' if least > 1 else ''} (about {need:.0f} s)")
            epochs, left = least, None
    record = _fine_tune_api(backbone, data, out, strategy=advice.strategy, epochs=epochs, budget=left,
                            batch_size=batch_size, seed=seed, resume=resume, target=target,
                            log=epoch_log, progress=progress,
                            **{**advice.options, **fit_options})
    return record, advice


class _Grafted:
    """``backbone`` grafted to ``data`` and its measured step times, each computed once, when first asked."""

    def __init__(self, backbone: Backbone, data: Data, target: dict | None, batch_size: int, seed: int):
        self.backbone, self.data, self.target, self.batch_size, self.seed = backbone, data, target, batch_size, seed

    @cached_property
    def plan(self):
        return plan_surgery(self.backbone, data=self.data, **(self.target or {}))

    @cached_property
    def network(self) -> Backbone:
        return self.plan.apply(self.backbone)

    @cached_property
    def times(self):
        from graft.training.budget import measure_step_times

        return measure_step_times(self.network, self.data, self.batch_size, self.seed)

    @cached_property
    def has_adapter(self) -> bool:
        return any(n.startswith("input_layer.") for n, _ in self.network.module.named_parameters())


def _epochs_in(grafted: _Grafted, seconds: float, start: float):
    """``strategy -> epochs`` that fit in what is left of ``seconds`` (counted from ``start``) when it is asked."""
    from graft.strategy.spec import parse_strategy
    from graft.training.budget import epochs_for_budget

    def epochs_for(label: str) -> int:
        left = max(0.0, seconds - (time.perf_counter() - start))
        return epochs_for_budget(parse_strategy(label), grafted.times, left, max_epochs=100,
                                 has_adapter=grafted.has_adapter)

    return epochs_for


def _secs(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


def write_report(run_dir: str | Path) -> Path:
    """(Re)build ``run_dir/report.html`` from the run folder alone."""
    from graft.report.html import write_report as _write

    return _write(run_dir)
