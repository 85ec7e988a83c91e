"""plan_surgery + apply: each capability of the issue, checked on the behaviour of real networks."""

from __future__ import annotations

import copy

import pytest
import torch

from graft.errors import GraftError, LabelError, ModelStructureError, ShapeError
from graft.models import load_network as load_model
from graft.surgery import SurgeryPlan, Target, plan_surgery
from tests.conftest import TinyPooledCNN, randomize_bn


def _logits(backbone, x):
    with torch.inference_mode():
        return backbone.module.eval()(x)


@pytest.fixture
def speaker_net(speakers40):
    torch.manual_seed(0)
    return load_model(randomize_bn(TinyPooledCNN(classes=40)).eval(), label_names=speakers40, input_size=(32, 32))


# -- head -------------------------------------------------------------------------------------------------

def test_40_to_45_speakers_keeps_the_40_learned_rows(speaker_net, speakers40):
    new = speakers40 + [f"new_{i}" for i in range(5)]
    plan = plan_surgery(speaker_net, label_names=new)
    grafted = plan.apply(speaker_net)
    x = torch.randn(4, 3, 32, 32)
    assert torch.allclose(_logits(grafted, x)[:, :40], _logits(speaker_net, x), atol=1e-5)
    assert plan.tensor("fc.weight").action == "resized" and plan.tensor("fc.weight").new_shape == (45, 32)
    assert "40 rows kept, 5 new" in plan.step("head").summary
    assert grafted.spec.label_names == tuple(new)


def test_40_to_15_speakers_keeps_those_15_rows_in_the_new_order(speaker_net, speakers40):
    chosen = [speakers40[i] for i in (39, 3, 17, 0, 8, 22, 5, 30, 11, 27, 14, 2, 36, 19, 25)]
    plan = plan_surgery(speaker_net, label_names=chosen)
    grafted = plan.apply(speaker_net)
    x = torch.randn(4, 3, 32, 32)
    idx = [speakers40.index(s) for s in chosen]
    assert torch.allclose(_logits(grafted, x), _logits(speaker_net, x)[:, idx], atol=1e-5)
    assert "25 source classes dropped" in plan.step("head").reason


def test_all_new_classes_get_a_default_init_and_a_warning(speaker_net):
    plan = plan_surgery(speaker_net, label_names=["cat", "dog", "eel"])
    assert plan.tensor("fc.weight").action == "new" and any("label_map" in w for w in plan.warnings)
    w = plan.apply(speaker_net).module.fc.weight
    assert w.abs().sum() > 0 and w.std() > 0, "new rows must not be all zeros"


def test_renamed_classes_follow_the_label_map(speaker_net, speakers40):
    plan = plan_surgery(speaker_net, label_names=["alice", "bob"], label_map={"alice": speakers40[7]})
    assert plan.step("head").params["rows"] == [7, None]


@pytest.mark.parametrize("fields, match", [
    ({"num_classes": 3, "label_names": ["a", "b"]}, "3 label names"),
    ({"label_names": ["a", "a"]}, "all different"),
    ({"label_names": ["a", "b"], "label_map": {"zzz": "speaker_01"}}, "target label names"),
    ({"label_names": ["a", "b"], "label_map": {"a": "speeker_01"}}, "did you mean 'speaker_01'"),
    ({"label_names": ["cat", "dog"], "keep_rows": "require"}, "matches a source class"),
])
def test_label_mistakes_get_one_clear_message(speaker_net, fields, match):
    with pytest.raises(LabelError, match=match):
        plan_surgery(speaker_net, **fields)


def test_keeping_rows_requires_source_names():
    b = load_model(TinyPooledCNN(), input_size=(32, 32))
    with pytest.raises(LabelError, match="(?s)source's label names.*label_names="):
        plan_surgery(b, label_names=["a", "b"], keep_rows="require")


# -- input channels ---------------------------------------------------------------------------------------

def test_one_channel_input_matches_the_color_network_on_gray_images(speaker_net):
    grafted = plan_surgery(speaker_net, in_chans=1).apply(speaker_net)
    gray = torch.randn(3, 1, 32, 32)
    assert torch.allclose(_logits(grafted, gray), _logits(speaker_net, gray.expand(-1, 3, -1, -1)), atol=1e-4)
    assert grafted.spec.input.channels == 1 and len(grafted.spec.input.mean or (0,)) == 1


IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


@pytest.mark.parametrize("net", ["tiny-with-bias", "cifar_resnet20-without-bias"])
def test_one_channel_under_normalization_is_exact_away_from_the_border(net):
    if net.startswith("tiny"):
        torch.manual_seed(0)
        b = load_model(randomize_bn(TinyPooledCNN()).eval(), input_size=(32, 32), **IMAGENET)
    else:
        b = load_model("cifar_resnet20", pretrained=False)
    first = b.spec.first_layer
    plan = plan_surgery(b, in_chans=1)
    grafted = plan.apply(b)
    (m1,), (s1,) = grafted.spec.input.mean, grafted.spec.input.std
    assert m1 == pytest.approx(sum(IMAGENET["mean"]) / 3) and s1 == pytest.approx(sum(IMAGENET["std"]) / 3)
    gray = torch.rand(2, 1, 16, 16)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (IMAGENET["mean"], IMAGENET["std"]))
    with torch.inference_mode():
        old = b.get(first)((gray.expand(-1, 3, -1, -1) - mean) / std)
        new = grafted.get(first)((gray - m1) / s1)
    assert torch.allclose(old[..., 1:-1, 1:-1], new[..., 1:-1, 1:-1], atol=1e-5)
    assert plan.tensor(f"{first}.bias").action == ("resized" if net.startswith("tiny") else "new")


@pytest.mark.parametrize("channels", [2, 4, 6, 9])
def test_more_channels_rescale_the_first_conv(speaker_net, channels):
    plan = plan_surgery(speaker_net, in_chans=channels)
    grafted = plan.apply(speaker_net)
    assert grafted.module.stem[0].weight.shape[1] == channels
    assert _logits(grafted, torch.randn(2, channels, 32, 32)).shape == (2, 40)
    assert plan.tensor("stem.0.weight").action == "resized"


def test_channels_on_a_timm_network():
    b = load_model("test_efficientnet", pretrained=False)
    plan = plan_surgery(b, in_chans=1, num_classes=4, input_size=(64, 64))
    grafted = plan.apply(b)
    assert _logits(grafted, torch.randn(2, 1, 64, 64)).shape == (2, 4)
    assert plan.tensor(f"{b.spec.first_layer}.weight").new_shape[1] == 1


# -- input size -------------------------------------------------------------------------------------------

@pytest.fixture
def keras(keras_cnn, speakers40):
    return load_model(keras_cnn, input_size=(28, 9), label_names=speakers40)


def test_pooled_network_takes_a_new_size_as_it_is(speaker_net):
    plan = plan_surgery(speaker_net, input_size=(20, 50))
    assert plan.step("input_size").params["mode"] == "native" and not plan.count("resized")
    assert _logits(plan.apply(speaker_net), torch.randn(2, 3, 20, 50)).shape == (2, 40)


def test_pad_with_sentinel_and_mask_keeps_the_output_on_padded_data(keras):
    """(28, 9, 1) -> (20, 5, 1): padding inside the model + a mask the network ignores at first."""
    plan = plan_surgery(keras, input_size=(20, 5))
    step = plan.step("input_size")
    assert step.params["mode"] == "pad" and step.params["mask_channel"] is True
    grafted = plan.apply(keras)
    small = torch.randn(3, 1, 20, 5)
    padded = torch.nn.functional.pad(small, (2, 2, 4, 4), value=0.0)
    assert torch.allclose(_logits(grafted, small), _logits(keras, padded), atol=1e-5)
    assert grafted.module.body.conv1.weight.shape[1] == 2
    assert plan.tensor("body.conv1.weight").note.endswith("mask channel")


def test_pad_value_is_the_sentinel(keras):
    plan = plan_surgery(keras, input_size=(20, 5), pad_value=-3.0, mask_channel=False)
    grafted = plan.apply(keras)
    small = torch.randn(1, 1, 20, 5)
    assert torch.allclose(_logits(grafted, small),
                          _logits(keras, torch.nn.functional.pad(small, (2, 2, 4, 4), value=-3.0)), atol=1e-5)


def test_larger_input_on_a_fixed_network_is_resized_and_alternatives_are_listed(keras):
    plan = plan_surgery(keras, input_size=(44, 99), in_chans=6)
    assert plan.step("input_size").params["mode"] == "resize"
    assert any(a.startswith("global_pool") for a in plan.step("input_size").alternatives)
    assert any(a.startswith("adapter") for a in plan.step("input_size").alternatives)
    assert _logits(plan.apply(keras), torch.randn(2, 6, 44, 99)).shape == (2, 40)


def test_global_pool_equals_the_original_on_constant_feature_maps(keras):
    plan = plan_surgery(keras, size_mode="global_pool", input_size=(44, 99))
    grafted = plan.apply(keras)
    assert plan.tensor("fc1.linear.weight").old_shape == (32, 16 * 14 * 4)
    assert plan.tensor("fc1.linear.weight").new_shape == (32, 16)
    constant = torch.full((2, 1, 28, 9), 0.7)  # constant input -> conv maps constant away from the border
    lin_old = keras.module.fc1
    lin_new = grafted.module.fc1
    feat = torch.rand(2, 16, 1, 1).expand(-1, -1, 14, 4).reshape(2, -1)
    assert torch.allclose(lin_new(feat), lin_old(feat), atol=1e-4)
    assert _logits(grafted, torch.randn(2, 1, 44, 99)).shape == (2, 40)
    assert _logits(grafted, constant).shape == (2, 40)


def test_adapter_starts_as_resize_and_trains_with_the_body_frozen(keras):
    plan = plan_surgery(keras, size_mode="adapter", input_size=(44, 99), in_chans=1)
    grafted = plan.apply(keras)
    x = torch.randn(2, 1, 44, 99)
    resized = torch.nn.functional.interpolate(x, size=(28, 9), mode="bilinear", align_corners=False)
    assert torch.allclose(_logits(grafted, x), _logits(keras, resized), atol=1e-5)
    trainable = {n for n, p in grafted.module.named_parameters() if p.requires_grad}
    assert trainable == {"input_layer.mix.weight", "input_layer.mix.bias", "input_layer.refine.weight",
                         "input_layer.refine.bias", "body.fc2.weight", "body.fc2.bias"}  # adapter + head
    assert plan.tensor("body.conv1.weight").trainable is False
    assert "body frozen" in plan.step("input_size").summary


def test_native_size_that_does_not_fit_is_refused_with_options(keras):
    with pytest.raises(ShapeError, match="(?s)fails at that size.*global_pool"):
        plan_surgery(keras, input_size=(20, 5), size_mode="native")


def test_fixed_network_of_unknown_size_asks_for_it(keras_cnn):
    with pytest.raises(ShapeError, match="input_size=\\(H, W\\)"):
        plan_surgery(load_model(keras_cnn), input_size=(20, 5))


def test_wrong_number_of_axes(keras):
    with pytest.raises(ShapeError, match="2 axes"):
        plan_surgery(keras, input_size=(100,))


# -- truncation -------------------------------------------------------------------------------------------

def test_truncation_keeps_blocks_up_to_L_and_computes_exactly_that(speaker_net):
    plan = plan_surgery(speaker_net, truncate_at="stage1.1", num_classes=5)
    grafted = plan.apply(speaker_net)
    x = torch.randn(2, 3, 32, 32)
    m = speaker_net.module.eval()
    with torch.inference_mode():
        feats = m.stage1[1](m.stage1[0](m.stem(x))).mean((2, 3))  # stage1.1 is the BN, before the ReLU
        expected = grafted.module.head(feats)
    assert torch.allclose(_logits(grafted, x), expected, atol=1e-5)
    dropped = {t.name for t in plan.tensors if t.action == "dropped"}
    assert {"stage2.0.weight", "fc.weight"} <= dropped
    assert grafted.spec.num_params == sum(p.numel() for p in grafted.module.parameters())
    assert [b.name for b in grafted.spec.blocks][-1] == "body.stage1.1"


def test_truncation_of_an_unknown_block(speaker_net):
    with pytest.raises(ModelStructureError, match="did you mean"):
        plan_surgery(speaker_net, truncate_at="stage1.7")


# -- the plan as data -------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields", [
    {"label_names": [f"speaker_{i:02d}" for i in range(35, 40)] + ["x", "y"], "in_chans": 1},
    {"truncate_at": 3, "num_classes": 2},
    {"input_size": (24, 24), "in_chans": 4},
])
def test_the_plan_lists_every_tensor_of_the_result(speaker_net, fields):
    plan = plan_surgery(speaker_net, **fields)
    grafted = plan.apply(speaker_net)
    after = grafted.module.state_dict()
    listed = {t.name: t for t in plan.tensors if t.action != "dropped"}
    assert set(listed) == set(after)
    for name, tensor in after.items():
        assert listed[name].new_shape == tuple(tensor.shape)
    before = speaker_net.module.state_dict()
    accounted = {t.old_name or t.name for t in plan.tensors if t.action != "new"}
    assert accounted == set(before)


def test_a_plan_round_trips_through_json_and_replays_identically(speaker_net, speakers40):
    plan = plan_surgery(speaker_net, label_names=speakers40[:3] + ["z"], in_chans=2, truncate_at=None)
    again = SurgeryPlan.from_json(plan.to_json())
    assert again == plan
    a, b = plan.apply(speaker_net), again.apply(speaker_net)
    for (k, v), (k2, v2) in zip(a.module.state_dict().items(), b.module.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_apply_copies_unless_inplace(speaker_net):
    original = copy.deepcopy(speaker_net.module.state_dict())
    plan = plan_surgery(speaker_net, num_classes=3, in_chans=1)
    copy_result = plan.apply(speaker_net)
    assert copy_result.module is not speaker_net.module
    assert all(torch.equal(original[k], v) for k, v in speaker_net.module.state_dict().items())
    inplace = plan.apply(speaker_net, inplace=True)
    assert inplace.module is speaker_net.module and speaker_net.module.fc.out_features == 3


def test_a_plan_is_refused_on_another_network(speaker_net):
    plan = plan_surgery(speaker_net, num_classes=3)
    with pytest.raises(GraftError, match="make a new plan"):
        plan.apply(load_model("cifar_resnet20", pretrained=False))


def test_the_printed_plan_says_what_and_why(speaker_net, speakers40):
    text = plan_surgery(speaker_net, label_names=speakers40 + ["new"], in_chans=1, input_size=(28, 28)).render(width=160)
    for phrase in ("head", "40 rows kept, 1 new", "input_channels", "why:", "reused", "resized", "dry run of the result"):
        assert phrase in text


def test_target_validates_at_construction():
    with pytest.raises(GraftError, match="size_mode"):
        Target(size_mode="stretch")
    with pytest.raises(GraftError, match="positive integer"):
        Target(num_classes=0)
    with pytest.raises(GraftError, match="positive integers"):
        Target(input_size=(28, -1))
    assert Target(label_names=["a", "b"]).num_classes == 2
