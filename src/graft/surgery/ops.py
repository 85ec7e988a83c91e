"""Tensor operations of surgery: adapting a first layer's input channels, remapping head rows.

Pure functions on tensors; the planner decides, these compute.
"""

from __future__ import annotations

import math

import torch


def adapt_input_channels(weight: torch.Tensor, channels: int) -> tuple[torch.Tensor, str]:
    """Weight of a conv (O, I, *k) rewritten for ``channels`` inputs, and how it was done.

    - 1 input channel: the sum over the I channels (a gray image then gives the same response as the
      RGB image whose three channels equal it);
    - I channels: unchanged;
    - otherwise: the I input filters repeated cyclically to fill ``channels`` and scaled by I / channels,
      so that the expected activation keeps its scale.
    The same rule as timm's ``adapt_input_conv``, for any ConvNd, not only 3-channel ones.
    """
    in_ch = weight.shape[1]
    if channels == in_ch:
        return weight.clone(), "unchanged"
    if channels == 1:
        return weight.sum(dim=1, keepdim=True), f"summed the {in_ch} input filters into 1"
    reps = math.ceil(channels / in_ch)
    tiled = weight.repeat(1, reps, *([1] * (weight.ndim - 2)))[:, :channels]
    return tiled * (in_ch / channels), f"repeated the {in_ch} input filters to {channels} and scaled by {in_ch}/{channels}"


def to_one_channel_normalized(weight: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...],
                              new_mean: float, new_std: float) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Sum the input filters for a 1-channel input normalized with (new_mean, new_std), exactly.

    The source saw ``(x - m_c) / s_c`` on each channel c; a grey image g repeated on every channel gave
    ``sum_c W_c (g - m_c) / s_c``. The new layer sees ``(g - m') / s'``; with ``W' = sum_c W_c s' / s_c`` and a
    bias ``delta = sum_{c,k} W_c[k] (m' - m_c) / s_c`` per output channel, its response is the same at every
    position the zero padding does not reach. Returns (weight, bias delta, how).
    """
    s = torch.tensor(std, dtype=weight.dtype).view(1, -1, *([1] * (weight.ndim - 2)))
    m = torch.tensor(mean, dtype=weight.dtype).view(1, -1, *([1] * (weight.ndim - 2)))
    new_w = (weight * (new_std / s)).sum(dim=1, keepdim=True)
    delta = (weight * ((new_mean - m) / s)).flatten(1).sum(1)
    how = (f"summed the {weight.shape[1]} input filters into 1, each scaled by {new_std:.3g}/std_c, and the "
           f"normalization offset folded into the bias: exact away from the padded border")
    return new_w, delta, how


def add_zero_channels(weight: torch.Tensor, extra: int) -> torch.Tensor:
    """Append ``extra`` input channels with zero weights (the network ignores them at first)."""
    zeros = torch.zeros(weight.shape[0], extra, *weight.shape[2:], dtype=weight.dtype, device=weight.device)
    return torch.cat([weight, zeros], dim=1)


def normalize_label(name: str) -> str:
    return " ".join(name.replace("_", " ").replace("-", " ").casefold().split())


def match_rows(source: tuple[str, ...] | None, target: tuple[str, ...] | None,
               label_map: dict[str, str] | None = None) -> list[int | None]:
    """For each target class, the index of the source row with the same name (None: a new class).

    Names match case-insensitively, with ``_`` and ``-`` read as spaces. ``label_map`` maps a target
    name to a source name explicitly (for renamed classes).
    """
    if not source or not target:
        return [None] * (len(target) if target else 0)
    index = {normalize_label(s): i for i, s in enumerate(source)}
    mapped = {normalize_label(k): normalize_label(v) for k, v in (label_map or {}).items()}
    rows: list[int | None] = []
    for t in target:
        key = normalize_label(t)
        rows.append(index.get(mapped.get(key, key)))
    return rows


def remap_rows(weight: torch.Tensor, bias: torch.Tensor | None, rows: list[int | None],
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """Head weights for the target classes: kept rows copied, new rows initialized from the kept ones.

    New rows are drawn from N(0, s^2), s the standard deviation of the learned rows, and new biases are
    the mean learned bias, so that a new class starts on the same footing as the old ones rather than
    at zero (which would make it never win) or at a random scale.
    """
    kept = [r for r in rows if r is not None]
    out_shape = (len(rows), *weight.shape[1:])
    std = float(weight[kept].std()) if len(kept) > 1 else float(weight.std())
    new_w = torch.randn(out_shape, generator=generator, dtype=torch.float32).to(weight.dtype) * std
    new_b = None
    if bias is not None:
        fill = float(bias[kept].mean()) if kept else float(bias.mean())
        new_b = torch.full((len(rows),), fill, dtype=bias.dtype)
    for i, r in enumerate(rows):
        if r is not None:
            new_w[i] = weight[r]
            if new_b is not None:
                new_b[i] = bias[r]
    n_new = len(rows) - len(kept)
    how = f"kept {len(kept)} learned rows"
    if n_new:
        how += f"; {n_new} new rows ~ N(0, {std:.3g}^2) (std of the learned rows)"
        if new_b is not None:
            how += f", new biases = {new_b[[i for i, r in enumerate(rows) if r is None][0]].item():.3g} (mean learned bias)"
    return new_w, new_b, how
