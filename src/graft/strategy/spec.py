"""What to do: a transfer strategy as data (``Strategy``), parsed from a short name such as ``partial:2``.

A strategy compiles into phases (:func:`phases`): which blocks train, at which learning rates, for how many
epochs, with BatchNorm frozen or adapting. The trainer (training/engine.py) runs phases and knows nothing
about strategies. Which names exist, and what each compiles to, is the registry's (strategy/registry.py):
every strategy is one module of ``graft/strategy/builtin/``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from graft.errors import GraftError
from graft.jsonable import JsonSerializable
from graft.strategy.registry import get_strategy, registered_strategies, strategy_names


@dataclass(frozen=True)
class Strategy(JsonSerializable):
    """A transfer strategy and its hyperparameters (all have defaults; ``parse_strategy`` reads the name).

    lr: peak learning rate of the head (and of everything, for ``scratch``).
    layer_decay: each block below the top trains at ``layer_decay`` times the rate of the block above it
        (``full``, ``lp-ft``'s second phase, ``partial``); 1.0 turns it off.
    warmup_epochs: linear warm-up (in epochs, may be fractional) at the start of each phase.
    schedule: ``cosine`` (after warm-up) or ``onecycle`` (torch's OneCycleLR) or ``constant``.
    first_fraction: share of the epochs given to the first phase of two-phase strategies.
    second_lr_factor: learning rate of the second phase = lr / second_lr_factor (two-phase, lp-ft, adapter-warmup).
    batchnorm: ``frozen`` (blocks that do not train keep their BatchNorm in eval mode with the source's
        statistics; the default) or ``adapt`` (every BatchNorm updates its statistics on the new data).
    l2sp: strength of the L2-SP penalty pulling pretrained weights towards their starting values (0: off).
    weight_decay: AdamW weight decay (applied to the new layers only when ``l2sp`` > 0).
    """

    name: str
    k: int | None = None  # partial:K
    lr: float = 1e-3
    layer_decay: float = 0.7
    warmup_epochs: float = 0.5
    schedule: str = "cosine"
    first_fraction: float = 0.3
    second_lr_factor: float = 10.0
    batchnorm: str = "frozen"
    l2sp: float = 0.0
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0

    def __post_init__(self):
        definition = get_strategy(self.name)
        if definition.takes_k and (self.k is None or isinstance(self.k, bool) or self.k < 1):
            raise GraftError(f"{self.name}:K with K >= 1 blocks to fine-tune", repr(self.k), f"for example {self.name}:2")
        if not definition.takes_k and self.k is not None:
            raise GraftError(f"{self.name} without a number of blocks (k)", repr(self.k), "leave k out")
        checks = [("lr", self.lr > 0 and math.isfinite(self.lr)), ("layer_decay", 0 < self.layer_decay <= 1),
                  ("warmup_epochs", self.warmup_epochs >= 0), ("first_fraction", 0 < self.first_fraction < 1),
                  ("second_lr_factor", self.second_lr_factor >= 1), ("l2sp", self.l2sp >= 0),
                  ("weight_decay", self.weight_decay >= 0), ("label_smoothing", 0 <= self.label_smoothing < 1)]
        bad = [name for name, ok in checks if not ok]
        if bad:
            raise GraftError("strategy hyperparameters in range (lr > 0, 0 < layer_decay <= 1, 0 < first_fraction "
                             "< 1, second_lr_factor >= 1, others >= 0)", ", ".join(f"{b}={getattr(self, b)!r}" for b in bad),
                             "fix those values")
        if self.schedule not in ("cosine", "onecycle", "constant"):
            raise GraftError("schedule cosine, onecycle or constant", repr(self.schedule), "use cosine")
        if self.batchnorm not in ("frozen", "adapt"):
            raise GraftError("batchnorm 'frozen' or 'adapt'", repr(self.batchnorm), "frozen is the default")

    @property
    def label(self) -> str:
        return f"{self.name}:{self.k}" if self.k is not None else self.name

    @property
    def definition(self):
        """The registry's :class:`~graft.strategy.registry.StrategyDefinition` of this strategy."""
        return get_strategy(self.name)

    def describe(self) -> str:
        return f"{self.label}: {self.definition.description}"

    @classmethod
    def from_dict(cls, data: dict):
        """The config of the strategy ``data["name"]`` (its registered config class), from :meth:`to_dict`."""
        config = get_strategy(data.get("name", "")).config or Strategy
        return JsonSerializable.from_dict.__func__(config, data)


def describe_strategies() -> dict[str, str]:
    """``{name as written: description}`` of every registered strategy."""
    return {label: d.description for label, d in zip(strategy_names(), registered_strategies().values())}


def parse_strategy(text: str | Strategy, **overrides) -> Strategy:
    """``"full"``, ``"partial:2"``, ``"lp-ft"``... -> the strategy's config (keyword arguments override defaults)."""
    if isinstance(text, Strategy):
        _check_options(type(text), text.name, overrides)
        return type(text)(**{**text.__dict__, **overrides}) if overrides else text
    if not isinstance(text, str) or not text.strip():
        raise GraftError(f"a strategy name among {', '.join(strategy_names())}", repr(text), "for example 'full'")
    name, colon, arg = text.strip().lower().partition(":")
    definition = get_strategy(name)
    k = None
    if definition.takes_k:
        if not arg.strip().isdigit():
            raise GraftError(f"{name}:K with K a number of top blocks", repr(text), f"for example {name}:2")
        k = int(arg)
    elif colon:
        raise GraftError(f"{name} without a ':' argument (only {', '.join(n for n in strategy_names() if ':' in n)} "
                         "take one)", repr(text), f"use {name!r}")
    config = definition.config or Strategy
    _check_options(config, name, overrides)
    return config(name=name, k=k, **overrides)


RENAMED = {"load_kwargs": "load_options", "data_kwargs": "data_options"}


def _check_options(config: type, name: str, overrides: dict) -> None:
    """Refuse options that ``config`` does not have, with the closest name (or the new name of a renamed one)."""
    import dataclasses

    from graft.validation import suggest

    fields = [f.name for f in dataclasses.fields(config) if f.name not in ("name", "k")]
    unknown = [key for key in overrides if key not in fields]
    if unknown:
        hints = "; ".join(f"{key} is now {RENAMED[key]}" if key in RENAMED else
                          f"{key}: did you mean {suggest(key, fields) or 'one of ' + ', '.join(fields)}?"
                          for key in unknown)
        raise GraftError(f"options of the {name} strategy ({', '.join(fields)})", ", ".join(unknown), hints)


@dataclass(frozen=True)
class Phase(JsonSerializable):
    """One stretch of training: which blocks train (indices into the backbone's blocks; -1 = the head, -2 =
    the surgery's new input layers), the learning rate of each, for how many epochs."""

    name: str
    epochs: int
    trainable: tuple[int, ...]
    lrs: tuple[float, ...]  # one per entry of trainable
    unfreeze_every: int = 0  # gradual: one more block every this many epochs, from the top
    reinitialize: bool = False  # scratch: fresh weights before this phase
    solve_head: bool = False  # lp-ft: one pass, then the head is fit to convergence (L-BFGS), not by SGD epochs
    # lp-ft: before the solve, the BatchNorm statistics of the blocks that train next are re-estimated on the
    # training data (AdaBN), so the head is solved on the features fine-tuning will start from
    adapt_batchnorm: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)


def split_epochs(epochs: int, fraction: float) -> tuple[int, int]:
    """Epochs of a first and a second phase: ``fraction`` of them first, at least one each."""
    first = max(1, min(epochs - 1, round(epochs * fraction)))
    return first, epochs - first


def decayed(strategy: Strategy, blocks: list[int], base: float, num_blocks: int) -> tuple[float, ...]:
    """Learning rates of ``blocks``: ``base`` at the top block, ``layer_decay`` times less per block below."""
    top = num_blocks - 1
    return tuple(base * strategy.layer_decay ** (top - b) for b in blocks)


def phases(strategy: Strategy, num_blocks: int, epochs: int, has_adapter: bool = False) -> tuple[Phase, ...]:
    """The phases ``strategy`` runs on a backbone of ``num_blocks`` blocks for ``epochs`` epochs in all."""
    if epochs < 1:
        raise GraftError("epochs >= 1", repr(epochs), "pass epochs=1 or more")
    definition = strategy.definition
    if epochs < definition.least_epochs:
        raise GraftError(f"at least {definition.least_epochs} epochs for {strategy.label} (two phases)", f"{epochs}",
                         f"pass epochs={definition.least_epochs} or more")
    return tuple(definition.compile(strategy, num_blocks, epochs, has_adapter))
