"""One vector per sample from a layer's output: how graft pools a tapped layer (features, multilayer heads)."""

from __future__ import annotations

import torch

from graft.errors import GraftError


def pool_output(out, pool: str, spatial_dims: int) -> torch.Tensor:
    """One vector per sample from a layer's output (N, C, *spatial), (N, tokens, D) or (N, D)."""
    if isinstance(out, (tuple, list)):
        out = next((o for o in out if isinstance(o, torch.Tensor)), None)
    if not isinstance(out, torch.Tensor):
        raise GraftError("a layer whose output is a tensor", type(out).__name__, "tap another layer")
    if out.ndim == 2:
        return out
    if out.ndim == 3 and spatial_dims != 1:  # tokens (N, T, D): transformers
        if pool == "token":
            return out[:, 0]
        dims = (1,)
    else:  # channels first: (N, C, L) or (N, C, H, W)
        dims = tuple(range(2, out.ndim))
    if pool == "avg" or (pool == "token" and out.ndim != 3):
        return out.mean(dims)
    if pool == "max":
        return out.amax(dims)
    return torch.cat([out.mean(dims), out.amax(dims)], 1)  # avgmax
