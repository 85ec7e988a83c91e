"""What to do: a transfer strategy as data (``Strategy``), parsed from a short name such as ``partial:2``.

A strategy compiles into phases (:func:`phases`): which blocks train, at which learning rates, for how many
epochs, with BatchNorm frozen or adapting. The trainer (training/engine.py) runs phases and knows nothing
about strategies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from graft.errors import GraftError
from graft.jsonable import JsonSerializable

STRATEGIES = ("linear", "partial", "lp-ft", "full", "two-phase", "gradual", "scratch", "adapter-warmup", "multilayer")
DESCRIPTIONS = {
    "linear": "only the head, the body frozen: a logistic regression on the features, solved by L-BFGS",
    "partial": "fine-tune the top K blocks and the head, the rest frozen",
    "lp-ft": "a linear probe fit to convergence (L-BFGS) first, then fine-tune everything from that head as "
             "'full' does (Kumar et al. 2022)",
    "full": "fine-tune everything, lower learning rates for lower blocks (layer-wise decay), warm-up",
    "two-phase": "frozen body + head for a few epochs, then everything at a 10x smaller learning rate",
    "gradual": "unfreeze one block at a time from the top (ULMFiT's gradual unfreezing)",
    "scratch": "the same architecture, randomly initialized, trained with the same budget (the control)",
    "adapter-warmup": "the surgery's new input layers and the head first (body frozen), then everything",
    "multilayer": "a linear head on selected features of every layer, solved; the network runs only up to the "
                  "deepest layer kept (Head2Toe, Evci et al. 2022)",
}


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
        if self.name not in STRATEGIES:
            raise GraftError(f"a strategy among {', '.join(STRATEGIES)}", repr(self.name),
                             "for example 'full', 'partial:2', 'lp-ft'")
        if self.name == "partial" and (self.k is None or self.k < 1):
            raise GraftError("partial:K with K >= 1 blocks to fine-tune", repr(self.k), "for example partial:2")
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
        return f"partial:{self.k}" if self.name == "partial" else self.name

    def describe(self) -> str:
        return f"{self.label}: {DESCRIPTIONS[self.name]}"


def parse_strategy(text: str | Strategy, **overrides) -> Strategy:
    """``"full"``, ``"partial:2"``, ``"lp-ft"``... -> :class:`Strategy` (keyword arguments override defaults)."""
    if isinstance(text, Strategy):
        return Strategy(**{**text.to_dict(), **overrides}) if overrides else text
    if not isinstance(text, str) or not text.strip():
        raise GraftError(f"a strategy name among {', '.join(STRATEGIES)}", repr(text), "for example 'full'")
    name, _, arg = text.strip().lower().partition(":")
    k = None
    if name == "partial":
        if not arg.strip().isdigit():
            raise GraftError("partial:K with K a number of top blocks", repr(text), "for example partial:2")
        k = int(arg)
    elif arg:
        raise GraftError(f"{name} without a ':' argument (only partial:K takes one)", repr(text), f"use {name!r}")
    if name not in STRATEGIES:
        from graft.validation import suggest

        near = suggest(name, STRATEGIES)
        raise GraftError(f"a strategy among {', '.join(STRATEGIES)}", repr(text),
                         f"did you mean {near}?" if near else "for example 'full'")
    return Strategy(name=name, k=k, **overrides)


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


def _split(epochs: int, fraction: float) -> tuple[int, int]:
    first = max(1, min(epochs - 1, round(epochs * fraction)))
    return first, epochs - first


def phases(strategy: Strategy, num_blocks: int, epochs: int, has_adapter: bool = False) -> tuple[Phase, ...]:
    """The phases ``strategy`` runs on a backbone of ``num_blocks`` blocks for ``epochs`` epochs in all."""
    if epochs < 1:
        raise GraftError("epochs >= 1", repr(epochs), "pass epochs=1 or more")
    s, lr, top = strategy, strategy.lr, num_blocks - 1
    head = (-1,)

    def decayed(blocks: list[int], base: float) -> tuple[float, ...]:
        return tuple(base * s.layer_decay ** (top - b) for b in blocks)

    every = list(range(num_blocks))
    if s.name == "linear":
        # a linear head on the frozen features, fit to convergence in one pass (L-BFGS; SGD epochs when the head
        # is not a Linear layer: the Trainer falls back and keeps the epochs)
        return (Phase("head (solved, body frozen)", epochs, head, (lr,), solve_head=True),)
    if s.name == "multilayer":  # priced as one pass over each split; graft.training.multilayer fits it
        return (Phase("every layer, selected (solved, body frozen)", 1, head, (lr,), solve_head=True),)
    if s.name == "partial":
        if s.k > num_blocks:
            raise GraftError(f"partial:K with K at most the {num_blocks} blocks of this network", f"partial:{s.k}",
                             f"use partial:{num_blocks} (every block) or 'full'")
        blocks = every[num_blocks - s.k:]
        return (Phase(f"top {s.k} blocks + head", epochs, (*blocks, -1), (*decayed(blocks, lr), lr)),)
    if s.name in ("full", "scratch"):
        if s.name == "scratch":
            return (Phase("everything from random weights", epochs, (-2, *every, -1), (lr,) * (num_blocks + 2),
                          reinitialize=True),)
        return (Phase("everything", epochs, (-2, *every, -1), (lr, *decayed(every, lr), lr)),)
    if epochs < 2:
        raise GraftError(f"at least 2 epochs for {s.label} (two phases)", f"{epochs}", "pass epochs=2 or more")
    first, second = _split(epochs, s.first_fraction)
    low = lr / s.second_lr_factor
    if s.name == "lp-ft":
        # Kumar et al. 2022: a converged linear probe (not a few SGD epochs of it), then fine-tune everything from
        # that head, here with full's recipe (layer-wise decay, warm-up, cosine): the head no longer starts random
        return (Phase("linear probe (solved, body frozen)", 1, head, (lr,), solve_head=True, adapt_batchnorm=True),
                Phase("everything", epochs - 1, (-2, *every, -1), (lr, *decayed(every, lr), lr)))
    if s.name == "two-phase":
        return (Phase("head (body frozen)", first, head, (lr,)),
                Phase("everything", second, (-2, *every, -1), (low, *decayed(every, low), low)))
    if s.name == "adapter-warmup":
        if not has_adapter:
            raise GraftError("adapter-warmup on a network with new input layers from the surgery plan",
                             "a network without them", "use 'two-phase' instead, or plan with size_mode='adapter'")
        return (Phase("input adapter + head (body frozen)", first, (-2, -1), (lr, lr)),
                Phase("everything", second, (-2, *every, -1), (low, *decayed(every, low), low)))
    # gradual: the head first, then one more block from the top every few epochs, all at the low rate
    per = max(1, math.ceil(epochs / (num_blocks + 1)))
    return (Phase("head, then one block more at a time", epochs, (-2, *every, -1), (low, *decayed(every, low), lr),
                  unfreeze_every=per),)
