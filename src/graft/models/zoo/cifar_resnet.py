"""CIFAR ResNets (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, section 4.2).

The network described there for 32x32 inputs: a 3x3 convolution with 16 filters, then three stages of
``n`` basic blocks on feature maps of 32, 16 and 8 pixels with 16, 32 and 64 filters (so 6n + 2 layers:
20, 32, 44, 56 for n = 3, 5, 7, 9), the first convolution of stages 2 and 3 with stride 2, global average
pooling and a 10-way fully connected layer. Shortcuts are identities; where the shape changes, "option A":
the input is subsampled by 2 and the extra channels are zeros, so shortcuts have no parameters.

The module names (``conv1``, ``bn1``, ``layer{1,2,3}.{i}.conv{1,2}``, ``bn{1,2}``, ``linear``) follow the
widely used checkpoints of these models, so that they load strictly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: subsample by ``stride`` and zero-pad the channels up to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.extra = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        before = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, before, self.extra - before))


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with a ReLU between them, added to the shortcut, then a ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = ZeroPadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for CIFAR. ``depth`` must be 6n + 2 (20, 32, 44, 56, 110...)."""

    def __init__(self, depth: int = 20, num_classes: int = 10, in_chans: int = 3):
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"depth must be 6n + 2 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.depth = depth
        self.conv1 = nn.Conv2d(in_chans, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, n, stride=1)
        self.layer2 = self._stage(16, 32, n, stride=2)
        self.layer3 = self._stage(32, 64, n, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():  # He initialization, as in the paper
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    @staticmethod
    def _stage(in_channels: int, out_channels: int, n: int, stride: int) -> nn.Sequential:
        blocks = [BasicBlock(in_channels, out_channels, stride)]
        blocks += [BasicBlock(out_channels, out_channels, 1) for _ in range(n - 1)]
        return nn.Sequential(*blocks)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.flatten(self.pool(self.forward_features(x)), 1))

    def block_names(self) -> list[str]:
        """The stem and every residual block, in order (1 + 3n blocks)."""
        names = ["conv1"]
        for stage in ("layer1", "layer2", "layer3"):
            names += [f"{stage}.{i}" for i in range(len(getattr(self, stage)))]
        return names
