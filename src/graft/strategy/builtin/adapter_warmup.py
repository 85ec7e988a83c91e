"""``adapter-warmup``: the surgery's new input layers and the head first (body frozen), then everything."""

from __future__ import annotations

from graft.errors import GraftError
from graft.strategy.registry import StrategyDefinition, register_strategy
from graft.strategy.spec import Phase, decayed, split_epochs


def compile_adapter_warmup(strategy, num_blocks: int, epochs: int, has_adapter: bool = False) -> tuple[Phase, ...]:
    if not has_adapter:
        raise GraftError("adapter-warmup on a network with new input layers from the surgery plan",
                         "a network without them", "use 'two-phase' instead, or plan with size_mode='adapter'")
    first, second = split_epochs(epochs, strategy.first_fraction)
    low, every = strategy.lr / strategy.second_lr_factor, list(range(num_blocks))
    return (Phase("input adapter + head (body frozen)", first, (-2, -1), (strategy.lr, strategy.lr)),
            Phase("everything", second, (-2, *every, -1), (low, *decayed(strategy, every, low, num_blocks), low)))


ADAPTER_WARMUP = register_strategy(StrategyDefinition(
    "adapter-warmup", "the surgery's new input layers and the head first (body frozen), then everything",
    compile_adapter_warmup, least_epochs=2, unfreeze="all"))
