"""``full``: fine-tune everything, lower learning rates for lower blocks (layer-wise decay), warm-up."""

from __future__ import annotations

from graft.strategy.registry import StrategyDefinition, register_strategy
from graft.strategy.spec import Phase, decayed


def compile_full(strategy, num_blocks: int, epochs: int, has_adapter: bool = False) -> tuple[Phase, ...]:
    lr, every = strategy.lr, list(range(num_blocks))
    return (Phase("everything", epochs, (-2, *every, -1), (lr, *decayed(strategy, every, lr, num_blocks), lr)),)


def prior_full(s, e):
    # on the benchmark tasks full fine-tuning was best or within a point on most tasks, even at 8 per class
    return ("full", 0.60 + 0.20 * s.size + 0.10 * s.distance,
            f"{s.per_class:.0f} samples per class and a {'far' if s.distance > 0.5 else 'near'} domain: every "
            "block can adapt (on the benchmark tasks, fine-tuning everything won even with little data)")


FULL = register_strategy(StrategyDefinition(
    "full", "fine-tune everything, lower learning rates for lower blocks (layer-wise decay), warm-up", compile_full,
    unfreeze="all", prior=prior_full, compared=("full",)))
