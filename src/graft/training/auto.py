"""``--strategy auto``: settle an ambiguous advice with short trials (successive halving), then fit the winner.

The candidates are the advisor's top strategies within its margin (up to ``max_candidates``). Round 1 gives each
an equal share of the trial budget and the epochs that fit in it; the better half by validation accuracy go on
to the next round with twice the share, until one is left. Each trial is a run folder under
``out/trials/``, so the evidence stays, and an interrupted search resumes.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from graft.data import Data
from graft.models import Backbone
from graft.strategy.advisor import Advice
from graft.strategy.spec import parse_strategy
from graft.surgery.plan import SurgeryPlan
from graft.training.budget import StepTimes, epochs_for_budget
from graft.training.compare import _run


def trial_candidates(advice: Advice, margin: float = 0.05, max_candidates: int = 3) -> list[str]:
    """The strategies close enough to the advice's score to deserve a trial (the advice itself first); never one
    the advisor left out (the budget affords fewer epochs of it than it needs)."""
    top = advice.candidates[0]["score"]
    return [c["strategy"] for c in advice.candidates
            if top - c["score"] < margin and not c.get("left_out")][:max_candidates]


def successive_halving(backbone: Backbone, data: Data, plan: SurgeryPlan, out: str | Path, candidates: list[str],
                       budget: float, times: StepTimes, *, batch_size: int = 32, seed: int = 0, max_epochs: int = 30,
                       has_adapter: bool = False, log=None, runtime=None) -> tuple[str, list[dict]]:
    """The best of ``candidates`` by validation accuracy after short runs; and every trial's rounds."""
    say = log or (lambda message: None)
    out = Path(out)
    alive = list(dict.fromkeys(candidates))
    rounds = max(1, math.ceil(math.log2(len(alive)))) if len(alive) > 1 else 0
    trials = {name: {"strategy": name, "rounds": []} for name in alive}
    for r in range(rounds):
        share = budget / rounds / len(alive)
        scores = {}
        for name in alive:
            strategy = parse_strategy(name)
            once = strategy.definition.one_pass
            if once and trials[name]["rounds"]:
                # one pass whatever the epochs: a longer share would fit the same head again; its first score stands
                scores[name] = trials[name]["rounds"][-1]["val_accuracy"]
                continue
            epochs = epochs_for_budget(strategy, times, share, max_epochs=max_epochs, has_adapter=has_adapter)
            if once:
                epochs = min(epochs, 1)
            if epochs == 0:
                say(f"trial {name}: not even the shortest run fits in {share:.0f} s: left out")
                scores[name] = -1.0
                continue
            run_dir = out / "trials" / f"round{r + 1}-{name.replace(':', '')}"
            record = _run(backbone, plan, data, run_dir, strategy, epochs, share, seed, batch_size, False, runtime)
            accuracy = record.best_accuracy if record.best_accuracy is not None else -1.0
            scores[name] = accuracy
            trials[name]["rounds"].append({"round": r + 1, "budget_seconds": round(share, 1), "epochs": epochs,
                                           "val_accuracy": accuracy, "seconds": round(record.seconds, 1),
                                           "run_dir": str(run_dir)})
            say(f"trial {name} (round {r + 1}): {epochs} epochs, val {accuracy:.3f} in {record.seconds:.0f} s")
        keep = max(1, math.ceil(len(alive) / 2))
        alive = sorted(alive, key=lambda n: -scores[n])[:keep]
    return alive[0], [trials[n] for n in trials]


def with_trials(advice: Advice, winner: str, trials: list[dict]) -> Advice:
    reasons = list(advice.reasons)
    if trials and winner != advice.strategy:
        reasons.insert(0, f"short trials chose {winner} over the prior's {advice.strategy} (validation accuracy)")
    elif trials:
        reasons.insert(0, f"short trials confirmed {winner}")
    unfreeze = advice.unfreeze if winner == advice.strategy else ()
    return replace(advice, strategy=winner, trials=tuple(trials), reasons=tuple(reasons), unfreeze=unfreeze)
