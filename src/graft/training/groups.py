"""What trains together: the parameter groups of a backbone (blocks, head, input adapter), the BatchNorm layers
folded into their convolutions, and the helpers that reset or keep the starting weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from graft.files import replacing
from graft.models import Backbone

ADAPTER = -2
HEAD = -1


def _module_groups(backbone: Backbone, example: torch.Tensor | None) -> tuple[dict[str, int], list[str]]:
    """Module name -> group (block index, HEAD or ADAPTER); and the body's block names.

    A module inside a block (or the head, or the surgery's input layer) belongs to it. A module outside every
    block (a stem BatchNorm after the first conv, a dropout before the head, a pooling layer) belongs to the
    last block that ran before it: the order is recorded in one forward pass on ``example``.
    """
    spec = backbone.spec
    blocks = [b.name for b in spec.blocks if b.name != "input_layer"]
    head = spec.head.name
    module = backbone.module

    def owner(name: str) -> int | None:
        if name == head or name.startswith(head + "."):
            return HEAD
        if name == "input_layer" or name.startswith("input_layer."):
            return ADAPTER
        inside = [i for i, b in enumerate(blocks) if name == b or name.startswith(b + ".")]
        return inside[-1] if inside else None

    groups = {name: owner(name) for name, _ in module.named_modules()}
    loose = [n for n, g in groups.items() if g is None and n and not any(True for _ in module.get_submodule(n).children())]
    after: dict[str, int] = {}
    if loose and example is not None:
        last = [0]
        handles = []
        for i, b in enumerate(blocks):
            handles.append(module.get_submodule(b).register_forward_pre_hook(
                lambda _m, _a, i=i: last.__setitem__(0, i)))
        def seen(name: str):
            def hook(_m, _a):  # a pre-hook must return None, or it replaces the module's input
                after.setdefault(name, last[0])
            return hook

        for n in loose:
            handles.append(module.get_submodule(n).register_forward_pre_hook(seen(n)))
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                module(example)
        except Exception:  # noqa: BLE001 - the order is a refinement; without it loose modules go to block 0
            after.clear()
        finally:
            for h in handles:
                h.remove()
            module.train(was_training)
    for n in groups:
        if groups[n] is None:
            groups[n] = after.get(n, 0)
    return groups, blocks


def _folded_batchnorms(module: nn.Module, tolerance: float = 1e-3) -> set[str]:
    """BatchNorm layers whose statistics are the identity (mean 0, variance 1) while their affine part is not
    (a scale or shift away from 1 and 0): BatchNorm folded into the preceding convolution, then restored as
    an identity that carries the folded bias (the Coral MobileNets). A freshly built BN (scale 1, shift 0) is
    not one of them: it trains normally."""
    found = set()
    for name, m in module.named_modules():
        if not isinstance(m, nn.modules.batchnorm._BatchNorm) or m.running_mean is None or not m.affine:
            continue
        identity = bool((m.running_mean.abs() <= tolerance).all() and ((m.running_var - 1).abs() <= tolerance).all())
        learned = bool(((m.weight - 1).abs() > tolerance).any() or (m.bias.abs() > tolerance).any())
        if identity and learned:
            found.add(name)
    return found


def _reinitialize(module: nn.Module, seed: int) -> None:
    """Fresh weights for every layer that knows how to reset itself (the ``scratch`` control)."""
    torch.manual_seed(seed)
    for m in module.modules():
        if hasattr(m, "reset_parameters") and callable(m.reset_parameters):
            m.reset_parameters()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            m.reset_running_stats()


def _save_start(run_dir: Path, weights: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    with replacing(run_dir / "checkpoints" / "start.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp))


def _load_start(run_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(run_dir / "checkpoints" / "start.safetensors"))
