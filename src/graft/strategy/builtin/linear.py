"""``linear``: only the head, the body frozen: a logistic regression on the features, solved in one pass."""

from __future__ import annotations

from graft.strategy.registry import StrategyDefinition, register_strategy
from graft.strategy.spec import Phase


def compile_linear(strategy, num_blocks: int, epochs: int, has_adapter: bool = False) -> tuple[Phase, ...]:
    # fit to convergence in one pass (L-BFGS); SGD epochs when the head is not a Linear layer (the Trainer falls
    # back and keeps the epochs)
    return (Phase("head (solved, body frozen)", epochs, (-1,), (strategy.lr,), solve_head=True),)


def prior_linear(s, e):
    # a linear head only when the features already separate the classes nearly perfectly (refit in November
    # 2026 on bench/advisor_regret.py's tasks: BENCHMARKS.md)
    why = (f"features separate the classes ({e.pct(s.quality)} of the way from chance to perfect) and "
           f"{s.per_class:.0f} samples per class is little to fine-tune on" if s.size < 0.5 and s.quality > 0.9
           else f"a linear head on frozen features is cheapest, but these features are only {e.pct(s.quality)} "
                "of the way from chance to perfect: fine-tuning has room to gain")
    return "linear", 0.75 - 1.5 * (1 - s.quality) - 0.20 * s.size, why


LINEAR = register_strategy(StrategyDefinition(
    "linear", "only the head, the body frozen: a logistic regression on the features, solved by L-BFGS",
    compile_linear, solved=True, tap_layer=True, prior=prior_linear, compared=("linear",)))
