"""The backbone contract, derived from timm metadata, graft's zoo, or any module tree."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from graft.errors import LabelError, ModelStructureError
from graft.models import BackboneSpec
from graft.models import load_network as load_model
from graft.models.backbone import describe
from tests.conftest import KerasStyleCNN, TinyPooledCNN


def test_any_module_gets_a_contract_from_its_tree():
    spec = describe(TinyPooledCNN(classes=7))
    assert spec.head.name == "fc" and spec.head.num_classes == 7 and spec.head.in_features == 32
    assert spec.first_layer == "stem.0"
    assert [b.name for b in spec.blocks] == ["stem.0", "stem.1", "stage1.0", "stage1.1", "stage2.0", "stage2.1"]
    assert spec.taps == tuple(b.name for b in spec.blocks)
    assert spec.input.channels == 3 and spec.input.flexible_size is True
    assert spec.num_params == sum(p.numel() for p in TinyPooledCNN(classes=7).parameters())


def test_flexible_network_reports_its_smallest_input():
    class Valid(nn.Module):  # no padding: each 3x3 conv takes 2 pixels, so 5x5 is the least
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.c2(self.c1(x)).mean((2, 3)))

    spec = describe(Valid(), input_size=(32, 32))
    assert spec.input.flexible_size is True and spec.input.min_size == (5, 5)


def test_fixed_size_network_is_recognized():
    spec = describe(KerasStyleCNN(), input_size=(28, 9))
    assert spec.input.flexible_size is False and spec.input.size == (28, 9)
    assert spec.head.name == "fc2" and [b.name for b in spec.blocks] == ["conv1", "conv2", "fc1"]
    assert spec.blocks[1].out_shape == (16, 14, 4) and spec.blocks[1].reduction == 2


def test_fixed_size_network_without_its_size_says_what_to_pass():
    spec = describe(KerasStyleCNN())
    assert spec.input.size is None and any("input_size" in n for n in spec.notes)


def test_wrong_input_size_is_a_clear_error():
    with pytest.raises(ModelStructureError, match="runs on inputs of shape"):
        describe(KerasStyleCNN(), input_size=(20, 5))


def test_every_name_can_be_overridden():
    spec = describe(TinyPooledCNN(), blocks=["stem", "stage1", "stage2"], taps=["stage2"], head="fc",
                    first_layer="stem.0", label_names=[str(i) for i in range(10)])
    assert [b.name for b in spec.blocks] == ["stem", "stage1", "stage2"] and spec.taps == ("stage2",)
    assert spec.blocks[2].out_shape[0] == 32


@pytest.mark.parametrize("kwargs, match", [
    ({"head": "stem.0"}, "nn.Linear or a 1x1"),
    ({"head": "nope"}, "no such module"),
    ({"blocks": ["stage3"]}, "did you mean 'stage2'"),
    ({"label_names": ["a", "b"]}, "10 source label names"),
    ({"label_names": ["a"] * 10}, "all different"),
])
def test_bad_overrides(kwargs, match):
    with pytest.raises((ModelStructureError, LabelError), match=match):
        describe(TinyPooledCNN(), **kwargs)


def test_a_model_without_a_head_is_refused_clearly():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))
    with pytest.raises(ModelStructureError, match="(?s)recognizable head.*'2' \\(Conv2d\\).*head="):
        describe(net)


def test_a_conv_1x1_head_is_a_head():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 5, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    spec = describe(net, input_size=(16, 16))
    assert spec.head.kind == "conv" and spec.head.num_classes == 5


def test_timm_metadata_gives_the_contract():
    model = timm.create_model("test_resnet", pretrained=False)
    spec = describe(model, origin="timm")
    assert spec.first_layer == model.pretrained_cfg["first_conv"]
    assert spec.head.name == model.pretrained_cfg["classifier"]
    assert spec.input.size == tuple(model.pretrained_cfg["input_size"][1:])
    assert spec.input.mean == tuple(model.pretrained_cfg["mean"])
    assert spec.label_names and len(spec.label_names) == 1000 and spec.label_names[0] == "tench"
    assert len(set(spec.label_names)) == 1000
    reductions = [b.reduction for b in spec.blocks if b.reduction]
    assert reductions == sorted(reductions)
    modules = dict(model.named_modules())
    feature_blocks = {f["module"] for f in model.feature_info if any(True for _ in modules[f["module"]].parameters())}
    assert feature_blocks  # timm's stages are found among the blocks (each stage or its sub-blocks)
    assert feature_blocks <= {b.name.rsplit(".", 1)[0] for b in spec.blocks} | {b.name for b in spec.blocks}


def test_a_1d_network():
    net = nn.Sequential(nn.Conv1d(6, 8, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, 3))
    spec = describe(net)
    assert spec.input.spatial_dims == 1 and spec.input.channels == 6 and spec.input.flexible_size


def test_spec_round_trips_through_json():
    spec = load_model("cifar_resnet20", pretrained=False).spec
    assert BackboneSpec.from_json(spec.to_json()) == spec
    text = spec.render()
    assert "layer3.2" in text and "64 -> 10" in text and "airplane" in text


def test_block_index_by_name_or_position():
    spec = describe(TinyPooledCNN())
    assert spec.block_index("stage1.0") == 2 == spec.block_index(2) == spec.block_index("2")
    assert spec.block_index(-1) == len(spec.blocks) - 1
    with pytest.raises(ModelStructureError, match="between 0 and 5"):
        spec.block_index(9)


def test_dry_runs_leave_the_module_as_they_found_it():
    net = TinyPooledCNN().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    describe(net)
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items()), "BN statistics changed"


def test_timm_feature_info_stages_are_taps_in_execution_order():
    model = timm.create_model("test_resnet", pretrained=False)
    spec = describe(model, origin="timm")
    feature_modules = [f["module"] for f in model.feature_info]
    assert set(feature_modules) <= set(spec.taps)
    assert spec.taps.index("act1") > spec.taps.index("bn1") and spec.taps[-1] == "layer4"


def test_get_classifier_names_the_head_when_it_is_not_the_last_layer():
    class WithAux(TinyPooledCNN):
        def __init__(self):
            super().__init__(classes=6)
            self.aux = nn.Conv2d(32, 32, 3)  # registered after the classifier, never a head

        def get_classifier(self):
            return self.fc

    spec = describe(WithAux(), input_size=(32, 32))
    assert spec.head.name == "fc" and spec.head.num_classes == 6
