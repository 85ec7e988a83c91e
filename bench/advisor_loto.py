"""The advisor's constants, out of sample: leave-one-task-out figures for the priors' intercepts.

Each registered prior (graft/strategy/builtin/*.py) scores its strategy linearly from the advisor's signals, and its
intercept was set by hand on the eight tasks of bench/advisor_regret.py: its regret there is in-sample. This script
reads a results file of advisor_regret.py (per task: the signals the advisor saw and every strategy's test
accuracy), recomputes the priors' choice from the signals with graft's own prior functions, and reports the mean
regret (oracle test accuracy minus that of the prior's choice, in points) of:

- **today's constants**, on every task (in-sample);
- **refitted intercepts** on every task (an offset per strategy on a grid of 0.05, by coordinate descent that
  minimizes the mean regret; in-sample, the best the priors' form can do on these tasks);
- **leave-one-task-out**: for each task, the offsets refitted on the other tasks, scored on the one left out.

The budget's rules apply as in the advisor (the epochs each candidate afforded are in the results): a candidate
that affords fewer than its sound epochs is left out, one that affords fewer than 6 is marked down.

No network runs: the signals and accuracies come from the results file (the prior's choice alone, before trials).

    python bench/advisor_loto.py [--results bench/results/advisor_regret.json ...] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from types import SimpleNamespace

from graft.strategy.advisor import ENOUGH_EPOCHS, SHORT_PENALTY, Signals
from graft.strategy.registry import registered_strategies

GRID = [round(0.05 * i, 2) for i in range(-6, 7)]  # offsets -0.30 ... +0.30
LEFT_OUT = 10.0  # a candidate the budget cannot train soundly ranks after every other (no offset lifts it back)


def _family(label: str) -> str:
    return label.split(":")[0]


def scores(task: dict) -> dict[str, float]:
    """Each prior's score on the task's stored signals (graft's prior functions, evidence rebuilt from the task)."""
    m = task["advice_measurements"]
    s = Signals(quality=m["quality"], drop=m["top_drop"], distance=m["distance"], size=m["size"], best_index=0,
                last_index=0, per_class=m["samples_per_class_min"], distance_source="",
                multilayer_quality=m.get("multilayer_quality"))
    k = next((int(c.split(":")[1]) for c in task["advice_scores"] if c.startswith("partial:")), 1)
    every = {"accuracy": m.get("multilayer_accuracy") or 0.0, "evaluated_on": "eval", "kept": 0, "selected": {}}
    evidence = SimpleNamespace(k=k, above=tuple(f"block{i}" for i in range(k)), best_name=m.get("best_layer", ""),
                               num_layers=1, measures=SimpleNamespace(multilayer=every),
                               pct=lambda v: f"{100 * v:.0f} %")
    out, epochs = {}, m.get("epochs_in_budget") or {}
    for definition in registered_strategies().values():
        proposed = definition.prior(s, evidence) if definition.prior is not None else None
        if proposed is None:
            continue
        label, score = proposed[0], proposed[1]
        affords = epochs.get(label)  # the advisor's budget rules, as graft.strategy.advisor.advise applies them
        if affords is not None and affords < definition.sound:
            score -= LEFT_OUT
        elif affords is not None and affords < ENOUGH_EPOCHS and not definition.solved:
            score -= SHORT_PENALTY * (1 - affords / ENOUGH_EPOCHS)
        out[label] = score
    return out


def regret(task: dict, offsets: dict[str, float]) -> float:
    """Points the prior's choice (with ``offsets`` added per strategy family) loses against the oracle."""
    acc = task["test_accuracy"]
    candidates = {label: score + offsets.get(_family(label), 0.0) for label, score in task["scores"].items()
                  if label in acc}
    choice = max(candidates, key=candidates.get)
    return 100 * (max(acc.values()) - acc[choice])


def fit(tasks: list[dict], families: list[str], sweeps: int = 3) -> dict[str, float]:
    offsets = {f: 0.0 for f in families}
    for _ in range(sweeps):
        for family in families:
            def loss(value, family=family):
                trial = {**offsets, family: value}
                return statistics.fmean(regret(t, trial) for t in tasks), abs(value)
            offsets[family] = min(GRID, key=loss)
    return offsets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", nargs="+", default=[str(Path(__file__).parent / "results" / name) for name in
                                                         ("advisor_regret.json", "advisor_regret_untuned.json")],
                        help="results files of advisor_regret.py (their tasks are pooled)")
    parser.add_argument("--out")
    args = parser.parse_args()
    tasks = [t for path in args.results for t in json.loads(Path(path).read_text())["tasks"]]
    for t in tasks:
        t["scores"] = scores(t)
        stored = max(t["advice_scores"], key=t["advice_scores"].get)
        recomputed = max(t["scores"], key=t["scores"].get)
        t["consistent"] = stored == recomputed
    families = sorted({_family(label) for t in tasks for label in t["scores"]})
    today = [regret(t, {}) for t in tasks]
    everything = fit(tasks, families)
    refit = [regret(t, everything) for t in tasks]
    loto, folds = [], []
    for i, t in enumerate(tasks):
        offsets = fit(tasks[:i] + tasks[i + 1:], families)
        loto.append(regret(t, offsets))
        folds.append(offsets)
    rows = [(t["task"], t["consistent"], round(a, 1), round(b, 1), round(c, 1))
            for t, a, b, c in zip(tasks, today, refit, loto)]
    print("| task | choice recomputed = stored | today's constants | refit (in-sample) | left out |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(map(str, row)) + " |")
    summary = {"today_in_sample": statistics.fmean(today), "refit_in_sample": statistics.fmean(refit),
               "leave_one_task_out": statistics.fmean(loto), "offsets_all_tasks": everything, "offsets_per_fold": folds}
    print(f"mean regret (points): today's constants {summary['today_in_sample']:.2f} (in-sample), refitted "
          f"{summary['refit_in_sample']:.2f} (in-sample), leave-one-task-out {summary['leave_one_task_out']:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"tasks": [dict(zip(("task", "consistent", "today", "refit", "loto"), r))
                                                        for r in rows], "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
