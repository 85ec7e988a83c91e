"""What to do: transfer strategies as data, registered by name (one module each in ``builtin/``), the phases they
compile to, and the advisor (``graft.strategy.advisor``) that chooses among them from the measures."""

from graft.strategy import builtin  # noqa: F401  (registers the built-in strategies)
from graft.strategy.registry import (
    FitContext,
    StrategyDefinition,
    default_comparison,
    get_strategy,
    register_strategy,
    registered_strategies,
    strategy_names,
    unregister_strategy,
)
from graft.strategy.spec import Phase, Strategy, describe_strategies, parse_strategy, phases

__all__ = ["FitContext", "Phase", "Strategy", "StrategyDefinition", "default_comparison", "describe_strategies", "get_strategy",
           "parse_strategy", "phases", "register_strategy", "registered_strategies", "strategy_names",
           "unregister_strategy"]
