"""Shared fixtures: tiny real networks, the shared folder (skipped when absent), an offline hub."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

# Never reach the network from tests: hub calls fail at once instead of retrying for a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = Path(os.environ.get("GRAFT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
WEIGHTS = SHARED / "weights"
DATA = SHARED / "data"


def shared_file(*parts: str) -> Path:
    """A file under ../shared, or skip the test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the project's shared weights and data are not present here)")
    return path


class KerasStyleCNN(nn.Module):
    """A user's CNN with a flatten + dense head, trained on (1, 28, 9) inputs (the time-series user)."""

    def __init__(self, classes: int = 40, in_chans: int = 1, size: tuple[int, int] = (28, 9)):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * (size[0] // 2) * (size[1] // 2), 32)
        self.fc2 = nn.Linear(32, classes)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


class TinyPooledCNN(nn.Module):
    """A small conv net with global pooling: takes any input size above a minimum."""

    def __init__(self, classes: int = 10, in_chans: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.stage1 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.stage2(self.stage1(self.stem(x)))), 1))


def randomize_bn(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give BatchNorm layers non-trivial statistics, as a trained network has."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return module


def write_shades(path: Path, n: int = 90, train: int = 60, *, seed: int = 0, step: float = 60.0,
                 labels=("dark", "grey", "light")) -> Path:
    """An .npz of ``n`` grey 12x12 uint8 images whose classes differ in brightness (``step`` apart): the first
    ``train`` are the training split, the rest the test split; ``labels`` name the classes."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(labels)
    x = (rng.normal(60, 20, (n, 12, 12)) + step * y[:, None, None]).clip(0, 255).astype(np.uint8)
    np.savez(path, x_train=x[:train], y_train=y[:train], x_test=x[train:], y_test=y[train:],
             label_names=np.array(list(labels)))
    return path


@pytest.fixture
def keras_cnn() -> KerasStyleCNN:
    torch.manual_seed(0)
    return KerasStyleCNN().eval()


@pytest.fixture
def pooled_cnn() -> TinyPooledCNN:
    torch.manual_seed(0)
    return randomize_bn(TinyPooledCNN()).eval()


@pytest.fixture
def speakers40() -> list[str]:
    return [f"speaker_{i:02d}" for i in range(40)]


@pytest.fixture
def pets_npz(tmp_path) -> Path:
    """Grey 28x28 images of three classes, two of which CIFAR-10 knows ('dog' is class 5, 'cat' class 3)."""
    rng = np.random.default_rng(0)
    path = tmp_path / "pets.npz"
    np.savez(path, x=rng.integers(0, 256, (12, 28, 28), dtype=np.uint8), y=np.arange(12) % 3,
             label_names=np.array(["dog", "lizard", "cat"]))
    return path


@pytest.fixture
def shades(tmp_path):
    """150 grey 12x12 images of 3 classes told apart by brightness, with a test split (tests/conftest.py)."""
    return write_shades(tmp_path / "shades.npz", 150, 120, step=40)
