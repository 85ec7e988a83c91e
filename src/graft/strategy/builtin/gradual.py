"""``gradual``: the head first, then one block more at a time from the top (ULMFiT's gradual unfreezing)."""

from __future__ import annotations

import math

from graft.strategy.registry import StrategyDefinition, register_strategy
from graft.strategy.spec import Phase, decayed


def compile_gradual(strategy, num_blocks: int, epochs: int, has_adapter: bool = False) -> tuple[Phase, ...]:
    low, every = strategy.lr / strategy.second_lr_factor, list(range(num_blocks))
    per = max(1, math.ceil(epochs / (num_blocks + 1)))
    return (Phase("head, then one block more at a time", epochs, (-2, *every, -1),
                  (low, *decayed(strategy, every, low, num_blocks), strategy.lr), unfreeze_every=per),)


GRADUAL = register_strategy(StrategyDefinition(
    "gradual", "unfreeze one block at a time from the top (ULMFiT's gradual unfreezing)", compile_gradual,
    least_epochs=2, unfreeze="all"))
