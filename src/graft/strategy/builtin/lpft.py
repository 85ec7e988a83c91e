"""``lp-ft``: a linear probe solved to convergence, then everything fine-tuned from that head (Kumar et al. 2022)."""

from __future__ import annotations

from graft.strategy.registry import StrategyDefinition, register_strategy
from graft.strategy.spec import Phase, decayed


def compile_lpft(strategy, num_blocks: int, epochs: int, has_adapter: bool = False) -> tuple[Phase, ...]:
    # a converged linear probe (not a few SGD epochs of it), then fine-tune everything from that head with full's
    # recipe (layer-wise decay, warm-up, cosine): the head no longer starts random. Before the solve, the
    # BatchNorm statistics of the blocks that train next are re-estimated (AdaBN)
    lr, every = strategy.lr, list(range(num_blocks))
    return (Phase("linear probe (solved, body frozen)", 1, (-1,), (lr,), solve_head=True, adapt_batchnorm=True),
            Phase("everything", epochs - 1, (-2, *every, -1), (lr, *decayed(strategy, every, lr, num_blocks), lr)))


def prior_lpft(s, e):
    return "lp-ft", 0.50 + 0.15 * s.quality + 0.10 * s.size, \
        "a solved linear head first keeps fine-tuning from distorting good features"


LPFT = register_strategy(StrategyDefinition(
    "lp-ft", "a linear probe fit to convergence (L-BFGS) first, then fine-tune everything from that head as "
    "'full' does (Kumar et al. 2022)", compile_lpft, least_epochs=2, unfreeze="all", prior=prior_lpft,
    compared=("lp-ft",)))
