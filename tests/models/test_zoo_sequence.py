"""graft's zoo networks for sequences, audio and sensor windows: built, described, run at other sizes, saved."""

from __future__ import annotations

import pytest
import torch

import graft
from graft.errors import HubUnavailableError
from graft.models.zoo.sequence import SameConv1d

# name -> (build kwargs, spatial dims, global pooling, first layer, blocks, native input size)
NETS = {
    "ts_fcn": (dict(width=8), 1, True, "block1.0", ["block1", "block2", "block3"], (128,)),
    "ts_resnet": (dict(width=4), 1, True, "block1.conv1.0", ["block1", "block2", "block3"], (128,)),
    "audio_cnn": (dict(width=4), 2, True, "block1.0", ["block1", "block2", "block3", "block4"], (40, 101)),
    "sensor_cnn": (dict(width=4), 2, False, "conv1.0", ["conv1", "conv2", "dense"], (28, 9)),
}


def _out(backbone, x):
    with torch.inference_mode():
        return backbone.module.eval()(x)


def _build(name, **kw):
    torch.manual_seed(0)
    return graft.load_model(name, pretrained=False, **{**NETS[name][0], **kw})


@pytest.mark.parametrize("name", list(NETS))
def test_contract_of_each_zoo_network(name):
    _, dims, pooled, first, blocks, size = NETS[name]
    b = _build(name)
    spec = b.spec
    assert spec.origin == "zoo" and spec.name == name and spec.weights is None
    assert spec.input.spatial_dims == dims and spec.input.channels == 1 and spec.input.size == size
    assert spec.input.flexible_size is pooled
    assert spec.head.name == "fc" and spec.head.kind == "linear"
    assert spec.first_layer == first
    assert [blk.name for blk in spec.blocks] == blocks
    assert spec.input.mean is None and spec.input.std is None, "no normalization is claimed for random nets"
    assert _out(b, torch.randn(2, 1, *size)).shape == (2, spec.head.num_classes)
    assert b.module.graft_build_kwargs["width"] == NETS[name][0]["width"]


def test_width_sets_the_filters():
    b = _build("ts_fcn", width=8)
    assert [b.spec.blocks[i].out_shape[0] for i in range(3)] == [8, 16, 8]
    assert b.spec.head.in_features == 8
    assert _build("audio_cnn", width=4).spec.head.in_features == 32, "8 x width after four blocks"


@pytest.mark.parametrize("name", ["ts_fcn", "ts_resnet"])
@pytest.mark.parametrize("length", [7, 29, 150])
def test_series_of_any_length(name, length):
    b = _build(name, in_chans=3, num_classes=4)
    assert _out(b, torch.randn(2, 3, length)).shape == (2, 4)


@pytest.mark.parametrize("name", ["ts_fcn", "ts_resnet"])
@pytest.mark.parametrize("length", [7, 29, 150])
def test_same_padding_keeps_the_length_in_every_block(name, length):
    b = _build(name)
    lengths = {}
    hooks = [b.get(blk).register_forward_hook(lambda m, a, out, blk=blk: lengths.__setitem__(blk, out.shape[-1]))
             for blk in NETS[name][4]]
    try:
        _out(b, torch.randn(2, 1, length))
    finally:
        for h in hooks:
            h.remove()
    assert lengths == {blk: length for blk in NETS[name][4]}
    assert all(blk.out_shape[-1] == 128 and blk.reduction == 1.0 for blk in b.spec.blocks)


@pytest.mark.parametrize("k, before, after", [(8, 3, 4), (5, 2, 2), (3, 1, 1), (2, 0, 1)])
def test_same_conv_pads_as_keras_does(k, before, after):
    conv = SameConv1d(1, 1, k)
    assert conv.pads == (before, after)
    with torch.no_grad():
        conv.weight.copy_(torch.arange(1.0, k + 1).view(1, 1, k))
        impulse = torch.zeros(1, 1, 20)
        impulse[0, 0, 10] = 1.0
        y = conv(impulse)[0, 0]
    assert y.shape == (20,)
    # out[i] = sum_j w[j] x[i + j - before]: the impulse at 10 shows w[j] at position 10 + before - j
    expected = torch.zeros(20)
    for j in range(k):
        expected[10 + before - j] = j + 1
    assert torch.equal(y, expected)


def test_sensor_cnn_is_tied_to_its_input_size():
    b = _build("sensor_cnn", input_size=(20, 6))
    assert b.spec.input.size == (20, 6) and b.spec.input.flexible_size is False
    assert b.module.dense[0].in_features == 2 * 4 * 10 * 3
    with pytest.raises(RuntimeError):
        _out(b, torch.randn(1, 1, 28, 9))


@pytest.mark.parametrize("name", list(NETS))
def test_pretrained_without_published_weights_is_a_hub_error(name):
    with pytest.raises(HubUnavailableError, match=f"(?s)published weights for {name}.*no download URL.*weights="):
        graft.load_model(name, **NETS[name][0])


CASES = {
    # name -> load_model arguments beyond the width; input of the saved network
    "ts_fcn": (dict(in_chans=3, num_classes=3, input_size=(251,), feature_names=["x", "y", "z"],
                    label_names=["arrow", "blade", "point"]), (3, 251)),
    "ts_resnet": (dict(num_classes=2, input_size=(60,), label_names=["no", "yes"]), (1, 60)),
    "audio_cnn": (dict(num_classes=4, input_size=(20, 50), label_names=["jackson", "nicolas", "theo", "yweweler"]),
                  (1, 20, 50)),
    "sensor_cnn": (dict(num_classes=3, input_size=(20, 6), feature_axis=2,
                        feature_names=["ax", "ay", "az", "gx", "gy", "gz"], label_names=["sit", "walk", "run"]),
                   (1, 20, 6)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_save_and_load_keep_width_labels_size_and_features(name, tmp_path):
    kwargs, shape = CASES[name]
    b = _build(name, width=6, **kwargs)
    with torch.no_grad():
        for m in b.module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    path = graft.save_model(b, tmp_path / f"{name}.safetensors")
    back = graft.load_model(path)
    assert back.load_report.complete, back.load_report.summary()
    assert back.module.graft_build_kwargs["width"] == 6
    assert back.spec.num_params == b.spec.num_params
    assert back.spec.name == name and back.spec.origin == "zoo"
    assert back.spec.label_names == tuple(kwargs["label_names"])
    assert back.spec.input.shape() == shape
    assert back.spec.input.feature_names == (tuple(kwargs["feature_names"]) if "feature_names" in kwargs else None)
    assert back.spec.input.feature_axis == b.spec.input.feature_axis
    assert back.spec.blocks == b.spec.blocks
    x = torch.randn(2, *shape)
    assert torch.equal(_out(back, x), _out(b, x))
