"""``scratch``: the same architecture, randomly initialized, trained with the same budget (the control)."""

from __future__ import annotations

from graft.strategy.registry import StrategyDefinition, register_strategy
from graft.strategy.spec import Phase


def compile_scratch(strategy, num_blocks: int, epochs: int, has_adapter: bool = False) -> tuple[Phase, ...]:
    every = list(range(num_blocks))
    return (Phase("everything from random weights", epochs, (-2, *every, -1), (strategy.lr,) * (num_blocks + 2),
                  reinitialize=True),)


def prior_scratch(s, e):
    return ("scratch", -0.20 + 0.50 * s.size + 0.60 * (1 - s.quality),
            "pretrained features help little here and there is data enough to learn its own"
            if s.quality < 0.3 and s.size > 0.8 else "the control: pretrained features usually win")


SCRATCH = register_strategy(StrategyDefinition(
    "scratch", "the same architecture, randomly initialized, trained with the same budget (the control)",
    compile_scratch, unfreeze="all", sound_epochs=10, prior=prior_scratch, compared=("scratch",)))
