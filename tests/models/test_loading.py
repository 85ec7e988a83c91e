"""load_model from every kind of source, and the errors for each bad one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import timm
import torch
from safetensors.torch import save_file

from graft.errors import CheckpointError, GraftError, HubUnavailableError, ShapeError
from graft.models import Backbone
from graft.models import load_network as load_model
from graft.models.zoo import ZOO
from tests.conftest import TinyPooledCNN


def test_a_users_module():
    net = TinyPooledCNN()
    b = load_model(net)
    assert isinstance(b, Backbone) and b.module is net and b.spec.origin == "module"


def test_a_users_module_with_a_weights_file(tmp_path):
    torch.manual_seed(1)
    trained = TinyPooledCNN()
    torch.save({"model": {f"module.{k}": v for k, v in trained.state_dict().items()}}, tmp_path / "w.pth")
    b = load_model(TinyPooledCNN(), weights=tmp_path / "w.pth")
    assert torch.equal(b.module.fc.weight, trained.fc.weight) and b.load_report.complete


@pytest.mark.parametrize("name", ["cifar_resnet20", "test_resnet"])
def test_a_name_without_pretrained_weights(name):
    b = load_model(name, pretrained=False)
    assert b.spec.origin == ("zoo" if name in ZOO else "timm") and b.spec.weights is None


def test_a_timm_name_with_a_local_weights_file_and_another_class_count(tmp_path):
    torch.manual_seed(3)
    trained = timm.create_model("test_resnet", num_classes=37)
    save_file(trained.state_dict(), str(tmp_path / "w.safetensors"))
    b = load_model("test_resnet", weights=tmp_path / "w.safetensors")
    assert b.spec.head.num_classes == 37, "num_classes is read from the file's head"
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(b.module.eval()(x), trained.eval()(x))


def test_a_checkpoint_path_with_the_architecture_given(tmp_path):
    trained = timm.create_model("test_efficientnet")
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    b = load_model(tmp_path / "w.pt", arch="test_efficientnet")
    assert b.load_report.complete and b.spec.name == "test_efficientnet"


def test_a_plain_state_dict_without_architecture_says_how_to_name_it(tmp_path):
    torch.save(TinyPooledCNN().state_dict(), tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="(?s)architecture.*arch="):
        load_model(tmp_path / "w.pt")


def test_weights_of_another_architecture_fail_strictly_with_the_report(tmp_path):
    torch.save(load_model("cifar_resnet20", pretrained=False).module.state_dict(), tmp_path / "r20.pt")
    with pytest.raises(ShapeError, match="(?s)cifar_resnet32.*missing from the file"):
        load_model("cifar_resnet32", weights=tmp_path / "r20.pt")
    b = load_model("cifar_resnet32", weights=tmp_path / "r20.pt", strict=False)
    assert b.load_report.missing and len(b.load_report.loaded) > 50


def test_zoo_architecture_is_recognized_from_its_keys(tmp_path):
    for depth in (20, 56):
        net = load_model(f"cifar_resnet{depth}", pretrained=False).module
        torch.save({"state_dict": {"module." + k: v for k, v in net.state_dict().items()}}, tmp_path / f"r{depth}.th")
        assert load_model(tmp_path / f"r{depth}.th").spec.name == f"cifar_resnet{depth}"


def test_unknown_names_get_suggestions():
    with pytest.raises(GraftError, match="(?s)did you mean.*'cifar_resnet20'"):
        load_model("cifar_resnet21")
    with pytest.raises(GraftError, match="mobilenetv2_100"):
        load_model("mobilenetv2_10")


def test_a_missing_checkpoint_path():
    with pytest.raises(GraftError, match="does not exist"):
        load_model("weights/does_not_exist.pth")


def test_zoo_download_failure_says_how_to_use_a_local_file(monkeypatch):
    from dataclasses import replace

    monkeypatch.setitem(ZOO, "cifar_resnet20", replace(ZOO["cifar_resnet20"], url="file:///nonexistent/resnet20-12fca82f.th"))
    with pytest.raises(HubUnavailableError, match="(?s)download.*weights='resnet20-12fca82f.th'"):
        load_model("cifar_resnet20")


def test_timm_hub_failure_offline_is_clear_and_quick():
    code = ("import graft\n"
            "try:\n    graft.load_model('resnet18')\n"
            "except graft.GraftError as e:\n    print(type(e).__name__); print(e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.startswith("HubUnavailableError"), out.stdout + out.stderr
    assert "weights='path/to/weights.safetensors'" in out.stdout and "Traceback" not in out.stdout
