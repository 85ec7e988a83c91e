"""``partial:K``: fine-tune the top K blocks and the head, the rest frozen (its prefix computed once)."""

from __future__ import annotations

from graft.errors import GraftError
from graft.strategy.registry import StrategyDefinition, register_strategy
from graft.strategy.spec import Phase, decayed


def compile_partial(strategy, num_blocks: int, epochs: int, has_adapter: bool = False) -> tuple[Phase, ...]:
    k = strategy.k
    if k > num_blocks:
        raise GraftError(f"partial:K with K at most the {num_blocks} blocks of this network", f"partial:{k}",
                         f"use partial:{num_blocks} (every block) or 'full'")
    blocks = list(range(num_blocks - k, num_blocks))
    return (Phase(f"top {k} blocks + head", epochs, (*blocks, -1),
                  (*decayed(strategy, blocks, strategy.lr, num_blocks), strategy.lr)),)


def prior_partial(s, e):
    # the blocks above the best probe layer are the ones to fine-tune (the top block alone when the top loses
    # nothing against the best layer)
    k, above = e.k, e.above
    verb = ("lose" if k > 1 else "loses") if s.drop > 0 else ("add" if k > 1 else "adds") + " little"
    return (f"partial:{k}", 0.50 + 0.30 * s.drop,
            f"the best probe layer is {e.best_name} ({s.best_index + 1} of {e.num_layers}); the {k} "
            f"block{'s' if k > 1 else ''} above it {verb} accuracy: fine-tune {', '.join(above[:4])}"
            f"{' ...' if len(above) > 4 else ''}, lower rates for lower blocks")


PARTIAL = register_strategy(StrategyDefinition(
    "partial", "fine-tune the top K blocks and the head, the rest frozen", compile_partial, takes_k=True,
    unfreeze="above", prior=prior_partial, compared=("partial:1", "partial:2")))
