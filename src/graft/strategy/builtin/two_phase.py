"""``two-phase``: the head with the body frozen for a few epochs, then everything at a 10x smaller rate."""

from __future__ import annotations

from graft.strategy.registry import StrategyDefinition, register_strategy
from graft.strategy.spec import Phase, decayed, split_epochs


def compile_two_phase(strategy, num_blocks: int, epochs: int, has_adapter: bool = False) -> tuple[Phase, ...]:
    first, second = split_epochs(epochs, strategy.first_fraction)
    low, every = strategy.lr / strategy.second_lr_factor, list(range(num_blocks))
    return (Phase("head (body frozen)", first, (-1,), (strategy.lr,)),
            Phase("everything", second, (-2, *every, -1), (low, *decayed(strategy, every, low, num_blocks), low)))


TWO_PHASE = register_strategy(StrategyDefinition(
    "two-phase", "frozen body + head for a few epochs, then everything at a 10x smaller learning rate",
    compile_two_phase, least_epochs=2, unfreeze="all"))
