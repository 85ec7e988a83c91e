"""What to do: transfer strategies as data (Strategy, parse_strategy) and the phases they compile to."""

from graft.strategy.spec import DESCRIPTIONS, STRATEGIES, Phase, Strategy, parse_strategy, phases

__all__ = ["DESCRIPTIONS", "STRATEGIES", "Phase", "Strategy", "parse_strategy", "phases"]
