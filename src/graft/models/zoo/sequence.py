"""Networks for time series, audio features and sensor windows, so that they can be pretrained and transferred.

- ``FCN1d`` and ``ResNet1d``: the fully convolutional network and the residual network of Wang, Yan and
  Oates, "Time Series Classification from Scratch with Deep Neural Networks: A Strong Baseline", IJCNN
  2017 (three convolution blocks with kernels 8, 5, 3; global average pooling; a dense classifier). Both
  take series (C, L) of any length.
- ``AudioCNN``: four 3x3 convolution blocks with max pooling over a log-mel spectrogram or MFCC image
  (1, bands, frames), global average pooling and a dense classifier: the usual small keyword-spotting /
  speaker-ID network.
- ``SensorCNN``: the Keras-style CNN users train on windows of sensor data, e.g. (28, 9, 1): two 3x3
  convolutions, max pooling, flatten, two dense layers. Its flatten ties it to one input size, which is
  exactly what graft's input surgery is for.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SameConv1d(nn.Conv1d):
    """A 1-D convolution whose output has the input's length, for odd and even kernels alike (Keras
    "same": (k-1)//2 zeros before, the rest after)."""

    def __init__(self, cin: int, cout: int, k: int, bias: bool = False):
        super().__init__(cin, cout, k, bias=bias)
        self.pads = ((k - 1) // 2, k - 1 - (k - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.pads))


def _conv_bn(conv: type[nn.Module], cin: int, cout: int, k: int) -> nn.Sequential:
    if conv is nn.Conv1d:
        return nn.Sequential(SameConv1d(cin, cout, k), nn.BatchNorm1d(cout), nn.ReLU(inplace=True))
    return nn.Sequential(conv(cin, cout, k, padding="same", bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class FCN1d(nn.Module):
    """Wang et al. 2017 FCN: conv blocks 128-256-128 with kernels 8-5-3, global average pooling, dense."""

    def __init__(self, num_classes: int = 2, in_chans: int = 1, width: int = 128):
        super().__init__()
        self.block1 = _conv_bn(nn.Conv1d, in_chans, width, 8)
        self.block2 = _conv_bn(nn.Conv1d, width, 2 * width, 5)
        self.block3 = _conv_bn(nn.Conv1d, 2 * width, width, 3)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(x)))
        return self.fc(self.pool(x).flatten(1))

    def block_names(self) -> list[str]:
        return ["block1", "block2", "block3"]


class ResidualBlock1d(nn.Module):
    """Three convolutions (kernels 8, 5, 3) and a shortcut (1x1 convolution + BN when channels change)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = _conv_bn(nn.Conv1d, cin, cout, 8)
        self.conv2 = _conv_bn(nn.Conv1d, cout, cout, 5)
        self.conv3 = nn.Sequential(SameConv1d(cout, cout, 3), nn.BatchNorm1d(cout))
        self.shortcut = (nn.Sequential(nn.Conv1d(cin, cout, 1, bias=False), nn.BatchNorm1d(cout))
                         if cin != cout else nn.BatchNorm1d(cout))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


class ResNet1d(nn.Module):
    """Wang et al. 2017 ResNet: residual blocks of 64, 128, 128 filters, global average pooling, dense."""

    def __init__(self, num_classes: int = 2, in_chans: int = 1, width: int = 64):
        super().__init__()
        self.block1 = ResidualBlock1d(in_chans, width)
        self.block2 = ResidualBlock1d(width, 2 * width)
        self.block3 = ResidualBlock1d(2 * width, 2 * width)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(x)))
        return self.fc(self.pool(x).flatten(1))

    def block_names(self) -> list[str]:
        return ["block1", "block2", "block3"]


class AudioCNN(nn.Module):
    """Four blocks (3x3 conv, BN, ReLU, 2x2 max pool) of width, 2w, 4w, 8w filters; pooling; dense."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, width: int = 16):
        super().__init__()
        chans = [in_chans, width, 2 * width, 4 * width, 8 * width]
        for i in range(4):
            block = _conv_bn(nn.Conv2d, chans[i], chans[i + 1], 3)
            block.append(nn.MaxPool2d(2) if i < 3 else nn.Identity())
            setattr(self, f"block{i + 1}", block)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(chans[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(4):
            x = getattr(self, f"block{i + 1}")(x)
        return self.fc(self.pool(x).flatten(1))

    def block_names(self) -> list[str]:
        return [f"block{i + 1}" for i in range(4)]


class SensorCNN(nn.Module):
    """Keras-style CNN for (H, W) windows: conv 3x3 (32) -> conv 3x3 (64) -> max pool 2 -> flatten ->
    dense 128 -> dense classes. The flatten fixes the input size to ``input_size``."""

    def __init__(self, num_classes: int = 6, in_chans: int = 1, input_size: tuple[int, int] = (28, 9), width: int = 32):
        super().__init__()
        h, w = input_size
        self.conv1 = nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(inplace=True),
                                   nn.MaxPool2d(2))
        self.flatten = nn.Flatten()
        self.dense = nn.Sequential(nn.Linear(2 * width * (h // 2) * (w // 2), 128), nn.ReLU(inplace=True))
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dense(self.flatten(self.conv2(self.conv1(x)))))

    def block_names(self) -> list[str]:
        return ["conv1", "conv2", "dense"]
