"""Dry runs: run a network once on a dummy batch and record what each module did.

The contract and the surgery plan need facts that only a forward pass knows: the order in which blocks
run, the shape each produces, whether the network takes other input sizes, and the smallest it takes.
All runs happen in eval mode under ``torch.inference_mode`` and restore the module's mode afterwards.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class Trace:
    """What one forward pass did: module call order (by start), output shapes, and the output."""

    order: list[str] = field(default_factory=list)  # names by first call start
    starts: dict[str, int] = field(default_factory=dict)  # name -> position in call order when it started
    ends: dict[str, int] = field(default_factory=dict)  # name -> position in call order when it returned
    inputs: dict[str, tuple[int, ...]] = field(default_factory=dict)
    outputs: dict[str, tuple[int, ...]] = field(default_factory=dict)
    output_shape: tuple[int, ...] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _first_tensor(obj) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (tuple, list)):
        for o in obj:
            t = _first_tensor(o)
            if t is not None:
                return t
    if isinstance(obj, dict):
        for o in obj.values():
            t = _first_tensor(o)
            if t is not None:
                return t
    return None


@contextmanager
def eval_mode(module: nn.Module):
    """Put ``module`` in eval mode for the duration, then restore each submodule's own mode."""
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield module
    finally:
        for m, mode in modes.items():
            m.training = mode


def example_input(channels: int, size: tuple[int, ...], batch: int = 2, like: nn.Module | None = None) -> torch.Tensor:
    """A dummy batch (N, C, *size) on the module's device and dtype."""
    device, dtype = torch.device("cpu"), torch.float32
    if like is not None:
        p = next(iter(like.parameters()), None)
        if p is not None:
            device, dtype = p.device, p.dtype
    gen = torch.Generator().manual_seed(0)
    return torch.randn(batch, channels, *size, generator=gen).to(device=device, dtype=dtype)


def trace(module: nn.Module, x: torch.Tensor) -> Trace:
    """Run ``module(x)`` once with hooks on every submodule; never raises on a failing forward."""
    record = Trace()
    counter = [0]
    handles = []

    def pre_hook(name):
        def hook(mod, args):
            if name not in record.inputs:
                record.order.append(name)
                record.starts[name] = counter[0]
                t = _first_tensor(args)
                record.inputs[name] = tuple(t.shape) if t is not None else ()
            counter[0] += 1
        return hook

    def post_hook(name):
        def hook(mod, args, out):
            if name not in record.outputs:
                t = _first_tensor(out)
                record.outputs[name] = tuple(t.shape) if t is not None else ()
                record.ends[name] = counter[0]
            counter[0] += 1
        return hook

    for name, sub in module.named_modules():
        if name:
            handles.append(sub.register_forward_pre_hook(pre_hook(name)))
            handles.append(sub.register_forward_hook(post_hook(name)))
    try:
        with eval_mode(module), torch.inference_mode():
            out = module(x)
        t = _first_tensor(out)
        record.output_shape = tuple(t.shape) if t is not None else None
    except Exception as exc:  # a dry run reports failure; callers turn it into a clear message
        record.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        for h in handles:
            h.remove()
    return record


def runs_at(module: nn.Module, channels: int, size: tuple[int, ...]) -> bool:
    """Whether the network runs on inputs of this size (batch of 2, eval mode)."""
    try:
        with eval_mode(module), torch.inference_mode():
            module(example_input(channels, size, like=module))
        return True
    except Exception:
        return False


def smallest_size(module: nn.Module, channels: int, size: tuple[int, ...]) -> tuple[int, ...]:
    """The smallest square-scaled size (same aspect as ``size``) at which the network still runs.

    Binary search on a scale factor over sizes below ``size``; assumes that if a size runs, larger ones do.
    """
    lo, hi = 0.0, 1.0  # hi runs, lo does not (size 0)

    def scaled(f: float) -> tuple[int, ...]:
        return tuple(max(1, round(s * f)) for s in size)

    if runs_at(module, channels, scaled(1e-9)):
        return scaled(1e-9)
    for _ in range(20):
        mid = (lo + hi) / 2
        if scaled(mid) == scaled(hi) or runs_at(module, channels, scaled(mid)):
            hi = mid
        else:
            lo = mid
    return scaled(hi)
