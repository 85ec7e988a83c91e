"""graft.save_model / graft.load_model round trips, and plan_surgery from a dataset."""

from __future__ import annotations

import json
import time

import pytest
import torch

import graft
from graft.demo import asset
from graft.errors import CheckpointError, GraftError
from graft.models.checkpoint import graft_metadata
from tests.conftest import KerasStyleCNN, randomize_bn


@pytest.fixture(scope="module")
def resnet20():
    """The embedded, really trained CIFAR-10 ResNet-20 (never modified by the tests: plans apply to copies)."""
    return graft.load_model(asset("cifar_resnet20.safetensors"))


def _as_if_trained(backbone, seed: int = 1):
    """Move every weight and BatchNorm statistic away from its initial value, as training would.

    Without this, a reloaded network could match only because surgery initializes new tensors from a seed.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in backbone.module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    randomize_bn(backbone.module, seed)
    return backbone


def _outputs(backbone, x):
    backbone.module.eval()
    with torch.no_grad():
        return backbone.module(x)


def _input_for(backbone, n: int = 4, seed: int = 0):
    inp = backbone.spec.input
    return torch.randn(n, inp.channels, *inp.size, generator=torch.Generator().manual_seed(seed))


# -- round trips ----------------------------------------------------------------------------------------

TARGETS = {
    "mnist-like": dict(num_classes=15, in_chans=1, input_size=(28, 28)),
    "truncated": dict(truncate_at="layer2.2", num_classes=4),
    "rows-kept-by-name": dict(label_names=["cat", "dog", "zebra"], keep_rows="require"),
    "padded-with-mask": dict(in_chans=1, input_size=(20, 20), size_mode="pad"),
    "adapter": dict(in_chans=2, input_size=(16, 16), size_mode="adapter", num_classes=3),
    "resized": dict(input_size=(64, 64), size_mode="resize"),
}


@pytest.mark.parametrize("target", list(TARGETS.values()), ids=list(TARGETS))
def test_a_grafted_network_reloads_from_its_file_alone(tmp_path, resnet20, target):
    plan = graft.plan_surgery(resnet20, **target)
    grafted = _as_if_trained(plan.apply(resnet20))
    x = _input_for(grafted)
    before = _outputs(grafted, x)
    fresh = _outputs(plan.apply(resnet20), x)
    assert not torch.allclose(before, fresh), "the test needs weights that differ from a fresh application"

    path = graft.save_model(grafted, tmp_path / "model.safetensors")
    reloaded = graft.load_model(path)

    assert torch.equal(_outputs(reloaded, x), before)
    assert reloaded.load_report.complete
    assert reloaded.plan == plan, "the plan survives the file"
    assert reloaded.spec.blocks == grafted.spec.blocks
    assert reloaded.spec.head == grafted.spec.head == plan.result_head
    assert reloaded.spec.input == grafted.spec.input
    res = plan.result_input
    assert (res.channels, res.size, res.mean, res.std) == (
        grafted.spec.input.channels, grafted.spec.input.size, grafted.spec.input.mean, grafted.spec.input.std)
    assert reloaded.spec.label_names == grafted.spec.label_names
    assert reloaded.spec.weights == str(path)
    for name, tensor in grafted.module.state_dict().items():
        assert torch.equal(reloaded.module.state_dict()[name], tensor), name


def test_a_grafted_network_from_a_name_without_weights(tmp_path):
    base = graft.load_model("cifar_resnet20", pretrained=False)
    grafted = _as_if_trained(graft.plan_surgery(base, num_classes=15, in_chans=1, input_size=(28, 28)).apply(base))
    x = torch.randn(3, 1, 28, 28)
    reloaded = graft.load_model(graft.save_model(grafted, tmp_path / "m.safetensors"))
    out = _outputs(reloaded, x)
    assert out.shape == (3, 15) and torch.equal(out, _outputs(grafted, x))
    assert reloaded.spec.blocks == grafted.spec.blocks and reloaded.plan == grafted.plan


def test_a_grafted_timm_network_round_trips(tmp_path):
    base = graft.load_model("test_resnet", pretrained=False)
    grafted = _as_if_trained(graft.plan_surgery(base, num_classes=7, in_chans=1, input_size=(48, 48)).apply(base))
    reloaded = graft.load_model(graft.save_model(grafted, tmp_path / "m.safetensors"))
    x = torch.randn(2, 1, 48, 48)
    assert reloaded.spec.origin == "timm"
    assert torch.equal(_outputs(reloaded, x), _outputs(grafted, x))


def test_a_network_without_surgery_round_trips(tmp_path, resnet20):
    reloaded = graft.load_model(graft.save_model(resnet20, tmp_path / "plain.safetensors"))
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(_outputs(reloaded, x), _outputs(resnet20, x))
    assert reloaded.spec.name == "cifar_resnet20" and reloaded.spec.blocks == resnet20.spec.blocks
    assert getattr(reloaded, "plan", None) is None


def test_the_file_carries_the_spec_and_the_plan(tmp_path, resnet20):
    plan = graft.plan_surgery(resnet20, num_classes=3)
    path = graft.save_model(plan.apply(resnet20), tmp_path / "m.safetensors")
    meta = graft_metadata(graft.read_checkpoint(path))
    assert meta["arch"] == "cifar_resnet20"
    assert graft.SurgeryPlan.from_dict(meta["plan"]) == plan
    assert graft.BackboneSpec.from_dict(meta["spec"]).head.num_classes == 3


# -- how save_model writes ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["model.pt", "model.pth", "model", "model.safetensors.bak", "model.json"])
def test_save_model_refuses_other_formats(tmp_path, resnet20, name):
    with pytest.raises(GraftError, match="ending in .safetensors") as info:
        graft.save_model(resnet20, tmp_path / name)
    assert "safetensors" in info.value.fix
    assert list(tmp_path.iterdir()) == [], "nothing is written"


def test_save_model_leaves_no_temporary_file(tmp_path, resnet20):
    path = graft.save_model(resnet20, tmp_path / "runs" / "a" / "model.safetensors")
    assert path == tmp_path / "runs" / "a" / "model.safetensors"
    assert [p.name for p in path.parent.iterdir()] == ["model.safetensors"]


def test_save_model_overwrites(tmp_path, resnet20):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"an older, broken file")
    first = _as_if_trained(graft.plan_surgery(resnet20, num_classes=5).apply(resnet20), seed=1)
    graft.save_model(first, path)
    second = _as_if_trained(graft.plan_surgery(resnet20, num_classes=5).apply(resnet20), seed=2)
    graft.save_model(second, path)
    x = torch.randn(2, 3, 32, 32)
    reloaded = _outputs(graft.load_model(path), x)
    assert torch.equal(reloaded, _outputs(second, x))
    assert not torch.allclose(reloaded, _outputs(first, x))
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


# -- a user's own module --------------------------------------------------------------------------------

def test_a_grafted_user_module_cannot_be_rebuilt_from_the_file(tmp_path, keras_cnn):
    base = graft.load_model(keras_cnn)
    assert base.spec.origin == "module"
    plan = graft.plan_surgery(base, num_classes=5)
    grafted = _as_if_trained(plan.apply(base))
    path = graft.save_model(grafted, tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="user-defined KerasStyleCNN") as info:
        graft.load_model(path)
    assert "timm or zoo" in info.value.expected and "load_weights" in info.value.fix

    # the fix the message gives works: rebuild the module, replay the plan, load the weights
    meta = graft.read_checkpoint(path).metadata["graft"]
    replayed = graft.SurgeryPlan.from_dict(json.loads(meta)["plan"]).apply(graft.load_model(KerasStyleCNN()))
    report = graft.load_weights(replayed.module, path)
    assert report.complete
    x = torch.randn(3, 1, 28, 9)
    assert torch.equal(_outputs(replayed, x), _outputs(grafted, x))


# -- plan_surgery from a dataset ------------------------------------------------------------------------

def test_plan_surgery_from_a_dataset(resnet20, pets_npz):
    plan = graft.plan_surgery(resnet20, data=pets_npz)
    assert plan.target.in_chans == 1 and plan.target.input_size == (28, 28)
    assert plan.target.label_names == ("dog", "lizard", "cat") and plan.target.num_classes == 3
    assert plan.result_input.channels == 1 and plan.result_input.size == (28, 28)
    assert plan.result_head.num_classes == 3 and plan.result_labels == ("dog", "lizard", "cat")
    assert plan.step("head").params["rows"] == [5, None, 3], "CIFAR-10: cat is class 3, dog is class 5"
    grafted = plan.apply(resnet20)
    assert _outputs(grafted, torch.randn(2, 1, 28, 28)).shape == (2, 3)


def test_plan_surgery_from_a_dataset_spec_a_model_name_and_overrides(pets_npz):
    spec = graft.describe_data(pets_npz)
    plan = graft.plan_surgery("cifar_resnet20", data=spec, load_options={"pretrained": False},
                              input_size=(32, 32), keep_rows="never")
    assert plan.target.input_size == (32, 32), "a keyword overrides what the dataset says"
    assert plan.target.in_chans == 1 and plan.target.label_names == spec.label_names
    assert plan.step("head").params["rows"] == [None, None, None]


def test_plan_surgery_from_an_image_folder(tmp_path, resnet20):
    from PIL import Image

    for cls in ("b", "a"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        Image.new("RGB", (12, 10)).save(tmp_path / "imgs" / cls / "0.png")
    plan = graft.plan_surgery(resnet20, data=tmp_path / "imgs")
    assert plan.result_input.channels == 3 and plan.result_input.size == (10, 12)
    assert plan.result_labels == ("a", "b")


def test_target_and_data_together_is_an_error(resnet20, pets_npz):
    with pytest.raises(GraftError, match="a target or a dataset, not both"):
        graft.plan_surgery(resnet20, graft.Target(num_classes=3), data=pets_npz)


def test_target_from_data(pets_npz):
    t = graft.target_from_data(pets_npz, num_classes=None, truncate_at="layer2.2")
    assert (t.in_chans, t.input_size, t.label_names, t.truncate_at) == (1, (28, 28), ("dog", "lizard", "cat"),
                                                                        "layer2.2")


def test_a_workflow_whose_budget_the_earlier_stages_spent_says_so(tmp_path, pets_npz):
    workflow = graft.Workflow("cifar_resnet20", pets_npz, load_options={"pretrained": False}, budget=0.01)
    assert workflow.plan.steps  # planned once, and planning alone outlasts a budget of 10 ms
    time.sleep(0.02)
    with pytest.raises(graft.GraftError, match="none: the earlier stages of this workflow took"):
        workflow.fit(tmp_path / "run", strategy="linear")
    assert not (tmp_path / "run").exists()
