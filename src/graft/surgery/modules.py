"""The modules a grafted network is built from: input layers, pooled dense layers, the wrapper.

They are plain ``nn.Module`` subclasses with no reference to any particular architecture, so a grafted
network saves and loads like any other (safetensors state dict + the plan to rebuild it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PadCrop(nn.Module):
    """Pad (with a sentinel) or center-crop each spatial axis to ``size``; optionally append a mask channel.

    The mask channel is 1 where the input holds real data and 0 where it was padded, so the network can
    tell a sentinel from a real value.
    """

    def __init__(self, size: tuple[int, ...], pad_value: float = 0.0, mask_channel: bool = False,
                 mask_channels_in: int = 0):
        super().__init__()
        self.size = tuple(size)
        self.pad_value = float(pad_value)
        self.mask_channel = bool(mask_channel)
        self.mask_channels_in = int(mask_channels_in)  # the input's last channels already are a mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mask_channels_in:
            x, mask = x[:, : -self.mask_channels_in], x[:, -self.mask_channels_in:]
        else:
            mask = torch.ones_like(x[:, :1]) if self.mask_channel else None
        pads: list[int] = []
        for axis, want in zip(range(x.ndim - 1, 1, -1), reversed(self.size)):  # last axis first, as F.pad wants
            have = x.shape[axis]
            if have > want:
                start = (have - want) // 2
                x = x.narrow(axis, start, want)
                mask = mask.narrow(axis, start, want) if mask is not None else None
                pads += [0, 0]
            else:
                before = (want - have) // 2
                pads += [before, want - have - before]
        if any(pads):
            x = F.pad(x, pads, value=self.pad_value)
            mask = F.pad(mask, pads, value=0.0) if mask is not None else None
        return torch.cat([x, mask], dim=1) if mask is not None else x

    def extra_repr(self) -> str:
        return (f"size={self.size}, pad_value={self.pad_value}, mask_channel={self.mask_channel}, "
                f"mask_channels_in={self.mask_channels_in}")


class FeatureAlign(nn.Module):
    """Put the new data's named features where the network learned them, along one axis.

    ``sources[i]`` is the position in the new data of the network's feature ``i`` (None: the new data does
    not have it; it is filled with ``sentinel``). Features the network never saw (``extra``) go through a
    learned linear adapter into the network's features, initialized to zero, so the network starts exactly
    as with the sentinel and learns what they add. Non-finite values (missing cells) are replaced by the
    sentinel too. With ``mask``, a copy of the aligned input's shape is appended on the channel axis: 1 where
    a value is real, 0 where it is a sentinel.
    """

    def __init__(self, axis: int, sources: list[int | None], extra: list[int], sentinel: float = 0.0,
                 mask: bool = True, num_inputs: int | None = None):
        super().__init__()
        self.axis = int(axis)  # per-sample axis: 0 = channels, 1.. = spatial axes
        self.num_inputs = num_inputs  # features of the new data along that axis
        self.sources = list(sources)
        self.extra = list(extra)
        self.sentinel = float(sentinel)
        self.mask = bool(mask)
        self.register_buffer("present", torch.tensor([s is not None for s in sources]), persistent=False)
        self.adapter = nn.Linear(len(extra), len(sources)) if extra else None
        if self.adapter is not None:
            nn.init.zeros_(self.adapter.weight)
            nn.init.zeros_(self.adapter.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = self.axis + 1
        if self.num_inputs is not None and (x.ndim <= dim or x.shape[dim] != self.num_inputs):
            from graft.errors import ShapeError

            got = x.shape[dim] if x.ndim > dim else "none"
            raise ShapeError(f"{self.num_inputs} features on axis {self.axis} of each sample (the columns the plan "
                             f"aligned)", f"{got} in an input of shape {tuple(x.shape)}",
                             "feed the columns the plan was made for, in that order, or make a new plan")
        x = x.movedim(dim, -1)  # (..., features)
        finite = torch.isfinite(x)
        x = torch.where(finite, x, torch.full_like(x, self.sentinel))
        index = torch.tensor([s if s is not None else 0 for s in self.sources], device=x.device)
        out = x.index_select(-1, index)
        real = finite.index_select(-1, index) & self.present.to(x.device)
        out = torch.where(real, out, torch.full_like(out, self.sentinel))
        if self.adapter is not None:
            out = out + self.adapter(x.index_select(-1, torch.tensor(self.extra, device=x.device)))
        out = out.movedim(-1, dim)
        if not self.mask:
            return out
        return torch.cat([out, real.to(out.dtype).movedim(-1, dim)], dim=1)

    def extra_repr(self) -> str:
        return f"axis={self.axis}, features={len(self.sources)}, missing={self.sources.count(None)}, new={len(self.extra)}, mask={self.mask}"


class Resize(nn.Module):
    """Resize each sample to ``size`` by interpolation (linear/bilinear/trilinear by dimension)."""

    def __init__(self, size: tuple[int, ...]):
        super().__init__()
        self.size = tuple(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(self.size)]
        return F.interpolate(x, size=self.size, mode=mode, align_corners=False)

    def extra_repr(self) -> str:
        return f"size={self.size}"


class LearnedInputAdapter(nn.Module):
    """A small trainable map from the new input shape to the one the body was trained on.

    Interpolation to the body's size, then a 1x1 convolution from the new channels to the old ones, then
    a residual 3x3 convolution initialized to zero. At initialization it equals "resize + channel
    adaptation", so training starts from the pretrained behaviour and learns what resizing cannot.
    """

    def __init__(self, in_channels: int, out_channels: int, size: tuple[int, ...]):
        super().__init__()
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[len(size)]
        self.resize = Resize(size)
        self.mix = conv(in_channels, out_channels, 1)
        self.refine = conv(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.refine.weight)
        nn.init.zeros_(self.refine.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mix(self.resize(x))
        return x + self.refine(x)


class SpatialPoolLinear(nn.Module):
    """Global average pooling in front of a dense layer that used to read a flattened feature map.

    The original layer computed ``sum_{c,s} W[o, c, s] x[c, s]`` over channels c and positions s; this one
    computes ``sum_c W'[o, c] mean_s x[c, s]`` with ``W' = sum_s W``, which equals the original whenever the
    map is constant over positions, and works for any number of positions.
    """

    def __init__(self, channels: int, linear: nn.Linear):
        super().__init__()
        self.channels = channels
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.reshape(x.shape[0], self.channels, -1).mean(-1))


class _Stop(Exception):
    def __init__(self, output):
        self.output = output


def forward_until(module: nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
    """Run ``module(x)`` and return the output of submodule ``name``, stopping there (nothing after runs)."""
    sub = module.get_submodule(name)

    def hook(mod, args, out):
        raise _Stop(out)

    handle = sub.register_forward_hook(hook)
    try:
        module(x)
    except _Stop as stop:
        return stop.output
    finally:
        handle.remove()
    raise RuntimeError(f"block {name!r} did not run in the forward pass")


class GraftedNet(nn.Module):
    """A network after surgery: an optional input layer, the body, and, when truncated, a new head.

    With ``stop_at`` the body runs only up to that block; its output is average-pooled over the spatial
    axes and fed to ``head``.
    """

    def __init__(self, body: nn.Module, input_layer: nn.Module | None = None, stop_at: str | None = None,
                 head: nn.Module | None = None):
        super().__init__()
        self.input_layer = input_layer if input_layer is not None else nn.Identity()
        self.body = body
        self.stop_at = stop_at
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_layer(x)
        if self.stop_at is None:
            return self.body(x)
        feats = forward_until(self.body, self.stop_at, x)
        if feats.ndim > 2:
            feats = feats.flatten(2).mean(-1)
        return self.head(feats)
