"""graft's zoo: CIFAR ResNets as in He et al. 2016, loading the real checkpoints strictly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from graft.models import load_network as load_model
from graft.models.zoo.cifar_resnet import CifarResNet
from tests.conftest import shared_file


# Parameter counts of the paper's Table 6: 0.27M, 0.46M, 0.66M, 0.85M.
@pytest.mark.parametrize("depth, millions", [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85)])
def test_architecture_matches_the_paper(depth, millions):
    net = CifarResNet(depth)
    assert round(sum(p.numel() for p in net.parameters()) / 1e6, 2) == millions
    assert len(net.block_names()) == 1 + 3 * ((depth - 2) // 6)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_depth_must_be_6n_plus_2():
    with pytest.raises(ValueError, match="6n \\+ 2"):
        CifarResNet(21)


def test_option_a_shortcut_has_no_parameters():
    net = CifarResNet(20)
    assert not any(True for _ in net.layer2[0].shortcut.parameters())
    out = net.layer2[0].shortcut(torch.ones(1, 16, 32, 32))
    assert out.shape == (1, 32, 16, 16) and out[:, 8:24].eq(1).all() and out[:, :8].eq(0).all()


@pytest.mark.shared
@pytest.mark.parametrize("depth, file", [(20, "resnet20-12fca82f.th"),
                                         pytest.param(32, "resnet32-d509ac18.th", marks=pytest.mark.slow),
                                         pytest.param(44, "resnet44-014dd654.th", marks=pytest.mark.slow),
                                         pytest.param(56, "resnet56-4bfd9763.th", marks=pytest.mark.slow)])
def test_real_checkpoints_load_strictly_and_classify_cifar(depth, file):
    backbone = load_model(shared_file("weights", file))
    assert backbone.spec.name == f"cifar_resnet{depth}"
    assert backbone.load_report.complete, backbone.load_report.summary()
    assert len(backbone.spec.blocks) == 1 + 3 * ((depth - 2) // 6)
    data = np.load(shared_file("data", "cifar10", "cifar10_jpg_subset.npz"))
    x = torch.from_numpy(data["x_test"]).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(backbone.spec.input.mean).view(1, 3, 1, 1)
    std = torch.tensor(backbone.spec.input.std).view(1, 3, 1, 1)
    with torch.inference_mode():
        pred = backbone.module.eval()((x - mean) / std).argmax(1).numpy()
    accuracy = (pred == data["y_test"]).mean()
    assert 0.80 <= accuracy <= 0.85, f"accuracy {accuracy:.3f} on the JPEG subset (expected about 0.81-0.83)"
