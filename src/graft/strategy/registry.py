"""The strategy registry: every transfer strategy is one module that registers a :class:`StrategyDefinition`.

A definition says everything the rest of graft needs to know about a strategy, so that nothing above the
registry names one (the way timm registers its models and PEFT its methods):

- ``config``: its frozen config dataclass (:class:`~graft.strategy.spec.Strategy` or a subclass with more fields);
- ``compile``: the phases it runs on the Trainer, for a network of ``num_blocks`` blocks and ``epochs`` epochs
  (every Trainer-based strategy shares the one Trainer; see training/engine.py);
- ``fit``: how it fits when it is not a run of phases on the Trainer (``None``: the Trainer runs the phases); it
  receives a :class:`FitContext` that the training layer provides;
- ``prior``: its score for the advisor from the measured signals, with the reason (``None``: not a candidate);
  ``ceiling``: the most that prior could give when its ``measure`` (a costly optional measurement of the probe,
  such as ``multilayer``) is not taken yet, so the probe can skip that measurement when it cannot change the advice;
- ``least_epochs`` (its shortest run), ``sound_epochs`` (the fewest that give a sound result: a budget that
  affords fewer is not fitted), ``solved`` (a head solved in one pass: the advisor does not mark it down for a short budget),
  ``one_pass`` (its result does not depend on the epochs at all: a trial runs it once; multilayer, not linear,
  whose head falls back to SGD epochs when it is not a Linear layer),
  ``unfreeze`` (which blocks the advice lists: ``all``, ``above`` the best probe layer, or ``none``), ``tap_layer``
  (the advice names the probe layer the head reads), ``compared`` (the labels it runs as in a default
  ``graft compare``).

Adding a strategy is one new module that calls :func:`register_strategy` at import, plus its import in
``graft/strategy/builtin/__init__.py`` (or, for a strategy of your own, importing your module before use;
tests/strategy/test_registry.py adds one in a few lines).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from graft.errors import GraftError

UNFREEZE = ("all", "above", "none")
SOUND_EPOCHS = 3  # a strategy that trains by epochs needs at least this many to adapt (BENCHMARKS.md, issue 16)


class FitContext(Protocol):
    """What the training layer hands a strategy whose ``fit`` is its own (see training/run.py).

    ``backbone`` is the network grafted to ``data``; ``out`` the run folder (a Path); ``plan`` the surgery plan
    (or None); ``strategy`` the parsed config; ``seed`` and ``progress`` as the caller gave them; ``log(message)``
    for what the fit has to say (the training layer passes no one to tell: a no-op); ``budget`` the seconds the
    whole fit may take, evaluation included (None: no limit), counted from ``started`` (a ``time.perf_counter()``)."""

    backbone: Any
    data: Any
    out: Any
    plan: Any
    strategy: Any
    seed: int
    progress: bool
    log: Callable[[str], None]
    budget: float | None
    started: float

    def write_json(self, name: str, obj: Any) -> None:
        """Write ``out/name`` atomically."""

    def evaluate(self, model: Any) -> Any:
        """The final evaluation of ``model`` on the held-out split (metrics.json): ``(split, metrics)``, or
        ``(None, None)`` without a held-out split."""

    def finish(self, model: Any, **record: Any) -> Any:
        """Save ``model`` as ``out/model.safetensors`` and write ``run.json``; the RunRecord."""


@dataclass(frozen=True)
class StrategyDefinition:
    """One registered strategy (see the module docstring for each field)."""

    name: str
    description: str
    compile: Callable[..., tuple]  # (strategy, num_blocks, epochs, has_adapter) -> graft.strategy.spec.Phase, ...
    config: type | None = None  # None: graft.strategy.spec.Strategy
    takes_k: bool = False  # written NAME:K (partial:2)
    least_epochs: int = 1
    sound_epochs: int | None = None  # the fewest epochs that adapt it soundly (None: 1 when solved or one-pass, else 3)
    solved: bool = False
    one_pass: bool = False  # its result does not depend on the epochs: a trial runs it once, its score carries over
    unfreeze: str = "none"
    tap_layer: bool = False  # the advice names the layer its head reads (the best probe layer)
    compared: tuple[str, ...] = ()  # how it appears in a default comparison (``graft compare``), e.g. partial:1
    fit: Callable[[FitContext], Any] | None = None
    prior: Callable[..., tuple[str, float, str] | None] | None = None
    measure: str | None = None  # an optional measurement of the probe that the prior needs
    ceiling: Callable[..., float] | None = None

    @property
    def sound(self) -> int:
        """The fewest epochs of this strategy that give a sound result: a budget that affords fewer is not fitted
        (``--strategy auto`` picks another; an explicit strategy is refused unless asked to keep going)."""
        if self.sound_epochs is not None:
            return max(self.least_epochs, self.sound_epochs)
        return self.least_epochs if self.solved or self.one_pass else max(self.least_epochs, SOUND_EPOCHS)

    def __post_init__(self):
        if not self.name or self.name != self.name.strip().lower() or ":" in self.name or "," in self.name:
            raise GraftError("a strategy name in lower case without ':' or ','", repr(self.name), "for example 'full'")
        if self.unfreeze not in UNFREEZE:
            raise GraftError(f"unfreeze among {', '.join(UNFREEZE)}", repr(self.unfreeze), "all, above or none")
        if self.least_epochs < 1:
            raise GraftError("least_epochs >= 1", repr(self.least_epochs), "1 for one phase, 2 for two")
        if self.measure is not None and self.ceiling is None:
            raise GraftError("a ceiling for a prior that needs an optional measure", f"{self.name} without one",
                             "give ceiling=lambda signals: ... (its score when the measure is perfect)")


_REGISTRY: dict[str, StrategyDefinition] = {}


def register_strategy(definition: StrategyDefinition, *, replace: bool = False) -> StrategyDefinition:
    """Add ``definition`` to the registry (``replace=True`` to redefine a name); returns it."""
    if definition.name in _REGISTRY and not replace and _REGISTRY[definition.name] is not definition:
        raise GraftError("a strategy name not registered yet", f"{definition.name!r}, already registered",
                         "choose another name, or pass replace=True")
    _REGISTRY[definition.name] = definition
    return definition


def unregister_strategy(name: str) -> None:
    """Remove ``name`` from the registry (for tests and plug-ins that clean up after themselves)."""
    _REGISTRY.pop(name, None)


def registered_strategies() -> dict[str, StrategyDefinition]:
    """Every registered strategy by name, in registration order (the built-in ones register when
    ``graft.strategy`` is imported, which any import of its modules does first)."""
    return dict(_REGISTRY)


def get_strategy(name: str) -> StrategyDefinition:
    """The definition registered as ``name``; a clear error (with the closest names) otherwise."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    from graft.validation import suggest

    near = suggest(name, list(_REGISTRY))
    raise GraftError(f"a strategy among {', '.join(strategy_names())}", repr(name),
                     f"did you mean {near}?" if near else "for example 'full'")


def strategy_names() -> list[str]:
    """Names as written on the command line (``partial:K`` for those that take a number of blocks)."""
    return [f"{d.name}:K" if d.takes_k else d.name for d in registered_strategies().values()]


def default_comparison() -> tuple[str, ...]:
    """The strategies ``compare`` runs when none are named: each definition's ``compared`` labels, in order."""
    return tuple(label for d in registered_strategies().values() for label in d.compared)
