"""Per-sample transforms: the source model's preprocessing, and augmentation presets.

``Preprocess`` applies the normalization (and, when asked, the input size) the source network was trained
with; graft builds it from the network's contract (timm's ``pretrained_cfg`` or the preprocessing stored
in a graft checkpoint). Augmentations are off by default: a random transform changes the bytes fed to
the network at every epoch, so features cannot be cached (``cacheable`` is False on every augmentation,
and the feature stage says so instead of caching).

Image presets use torchvision's transforms v2; time-series presets follow Um et al. 2017 (jitter,
scaling) and Le Guennec et al. 2016 (window slicing).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from graft.errors import DataError

IMAGE_AUGMENTATIONS = ("flip", "crop", "color")
SERIES_AUGMENTATIONS = ("jitter", "scaling", "window_slice")


class Preprocess(nn.Module):
    """Scale to ``size`` (bilinear / linear) and normalize per channel with ``mean`` and ``std``."""

    cacheable = True

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 size: Sequence[int] | None = None):
        super().__init__()
        if (mean is None) != (std is None):
            raise DataError("both mean and std, or neither", f"mean={mean}, std={std}", "pass both")
        if std is not None and any(s <= 0 for s in std):
            raise DataError("positive std values", f"std={list(std)}", "check the preprocessing config")
        self.mean = None if mean is None else torch.tensor(list(mean), dtype=torch.float32)
        self.std = None if std is None else torch.tensor(list(std), dtype=torch.float32)
        self.size = tuple(size) if size else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is not None and tuple(x.shape[1:]) != self.size:
            mode = {1: "linear", 2: "bilinear"}.get(len(self.size))
            if mode is None:
                raise DataError("a 1-D or 2-D input size to resize to", f"{self.size}", "drop size=")
            x = F.interpolate(x[None], size=self.size, mode=mode, align_corners=False)[0]
        if self.mean is not None:
            c = x.shape[0]
            if len(self.mean) not in (1, c):
                raise DataError(f"normalization for {c} channels", f"{len(self.mean)} means",
                                "adapt the channels first (graft plan) or pass matching mean/std")
            shape = (-1,) + (1,) * (x.ndim - 1)
            x = (x - _on(self.mean, x).reshape(shape)) / _on(self.std, x).reshape(shape)
        return x

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        """The same on a batch (N, C, ...): one interpolation and one normalization for all samples."""
        if self.size is not None and tuple(x.shape[2:]) != self.size:
            mode = {1: "linear", 2: "bilinear"}.get(len(self.size))
            if mode is None:
                raise DataError("a 1-D or 2-D input size to resize to", f"{self.size}", "drop size=")
            x = F.interpolate(x, size=self.size, mode=mode, align_corners=False)
        if self.mean is not None:
            c = x.shape[1]
            if len(self.mean) not in (1, c):
                raise DataError(f"normalization for {c} channels", f"{len(self.mean)} means",
                                "adapt the channels first (graft plan) or pass matching mean/std")
            shape = (1, -1) + (1,) * (x.ndim - 2)
            x = (x - _on(self.mean, x).reshape(shape)) / _on(self.std, x).reshape(shape)
        return x

    def extra_repr(self) -> str:
        m = None if self.mean is None else [round(v, 4) for v in self.mean.tolist()]
        s = None if self.std is None else [round(v, 4) for v in self.std.tolist()]
        return f"mean={m}, std={s}, size={self.size}"


def _on(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``t`` on ``x``'s device (itself when it is there already: nothing recorded when a CPU network is traced)."""
    return t if t.device == x.device else t.to(x.device)


class BatchPreprocess(nn.Module):
    """``prep`` applied to whole batches (N, C, ...), as a module: put in front of a network, it takes inputs as
    graft's loaders give them (evaluation, export)."""

    def __init__(self, prep: Preprocess):
        super().__init__()
        self.prep = prep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prep.batch(x)


class Jitter(nn.Module):
    """Add Gaussian noise with standard deviation ``sigma`` (Um et al. 2017)."""

    cacheable = False

    def __init__(self, sigma: float = 0.03):
        super().__init__()
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sigma * torch.randn_like(x)


class Scaling(nn.Module):
    """Multiply each channel by a factor drawn from N(1, sigma^2) (Um et al. 2017)."""

    cacheable = False

    def __init__(self, sigma: float = 0.1):
        super().__init__()
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 1 + self.sigma * torch.randn(x.shape[0], *([1] * (x.ndim - 1)))
        return x * factor


class WindowSlice(nn.Module):
    """Take a random slice of ``ratio`` of the length and stretch it back (Le Guennec et al. 2016)."""

    cacheable = False

    def __init__(self, ratio: float = 0.9):
        super().__init__()
        if not 0 < ratio <= 1:
            raise DataError("a window-slice ratio in (0, 1]", repr(ratio), "for example 0.9")
        self.ratio = ratio

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        keep = max(2, int(round(self.ratio * length)))
        start = int(torch.randint(0, length - keep + 1, ()).item())
        piece = x[..., start:start + keep]
        flat = piece.reshape(1, -1, keep)
        return F.interpolate(flat, size=length, mode="linear", align_corners=False).reshape(x.shape)


class Augment(nn.Sequential):
    """A chain of random transforms; ``cacheable`` is False (features change every epoch)."""

    cacheable = False


def augmentation(modality: str, names: str | Sequence[str] = "default", size: Sequence[int] | None = None) -> Augment:
    """An augmentation preset. Images: ``flip``, ``crop`` (random resized crop, scale 0.8-1), ``color``
    (brightness/contrast/saturation jitter). Time series and audio features: ``jitter``, ``scaling``,
    ``window_slice``. ``"default"``: flip+crop for images, jitter+scaling for series."""
    image = modality == "image"
    allowed = IMAGE_AUGMENTATIONS if image else SERIES_AUGMENTATIONS
    if isinstance(names, str):
        names = (("flip", "crop") if image else ("jitter", "scaling")) if names == "default" else names.split(",")
    names = [n.strip() for n in names if n.strip()]
    odd = [n for n in names if n not in allowed]
    if odd:
        raise DataError(f"augmentations for {modality} data among {allowed}", f"{odd}",
                        "image data takes flip/crop/color; series, audio and tables take jitter/scaling/window_slice")
    steps: list[nn.Module] = []
    if image:
        from torchvision.transforms import v2

        for n in names:
            if n == "flip":
                steps.append(v2.RandomHorizontalFlip())
            elif n == "crop":
                if not size:
                    raise DataError("the image size, for random crops", "none", "pass size=(H, W)")
                steps.append(v2.RandomResizedCrop(tuple(size), scale=(0.8, 1.0), antialias=True))
            else:
                steps.append(v2.ColorJitter(0.2, 0.2, 0.2))
    else:
        makers = {"jitter": Jitter, "scaling": Scaling, "window_slice": WindowSlice}
        steps = [makers[n]() for n in names]
    return Augment(*steps)


def is_cacheable(transform) -> bool:
    """Whether outputs depend only on the input (so features computed through it may be cached)."""
    if transform is None:
        return True
    if isinstance(transform, nn.Sequential):
        return all(is_cacheable(t) for t in transform)
    return bool(getattr(transform, "cacheable", False))
