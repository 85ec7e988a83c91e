"""Partial loading by name and shape, with a report instead of a crash or a silent skip."""

from __future__ import annotations

import pytest
import torch

from graft.errors import ShapeError
from graft.models.weights import load_weights
from tests.conftest import TinyPooledCNN


def _net(classes=10, in_chans=3, seed=0):
    torch.manual_seed(seed)
    return TinyPooledCNN(classes, in_chans)


def test_identical_architecture_loads_everything():
    src, dst = _net(seed=1), _net(seed=2)
    report = load_weights(dst, src.state_dict(), strict=True)
    assert report.complete and len(report.loaded) == len(src.state_dict())
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v)


def test_shape_mismatch_missing_and_unexpected_are_reported_and_the_rest_loaded():
    src = _net(classes=40, seed=1)
    dst = _net(classes=15, seed=2)
    head_before = dst.fc.weight.detach().clone()
    weights = dict(src.state_dict())
    weights["extra.weight"] = torch.zeros(3)
    del weights["stem.0.bias"]
    report = load_weights(dst, weights)
    assert ("fc.weight", (40, 32), (15, 32)) in report.shape_mismatch
    assert "stem.0.bias" in report.missing and "extra.weight" in report.unexpected
    assert torch.equal(dst.fc.weight, head_before), "a mismatched tensor must keep the model's values"
    assert torch.equal(dst.stem[0].weight, src.stem[0].weight)
    text = report.summary()
    assert "fc.weight file (40, 32) vs model (15, 32)" in text and "extra.weight" in text


def test_strict_refuses_with_the_report_and_loads_nothing():
    src, dst = _net(classes=40, seed=1), _net(classes=15, seed=2)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(ShapeError, match="(?s)strict loading.*fc.weight file \\(40, 32\\)"):
        load_weights(dst, src.state_dict(), strict=True)
    assert all(torch.equal(before[k], v) for k, v in dst.state_dict().items())


@pytest.mark.parametrize("file_prefix, model_wrapped", [("model.", False), ("backbone.", False), ("", True)])
def test_prefixes_are_matched(file_prefix, model_wrapped):
    src = _net(seed=1)
    dst = _net(seed=2)
    weights = {file_prefix + k: v for k, v in src.state_dict().items()}
    target = dst
    if model_wrapped:  # the model holds the network under 'body.', the file does not
        target = torch.nn.Module()
        target.body = dst
    report = load_weights(target, weights)
    assert report.complete, report.summary()
    assert torch.equal(dst.fc.weight, src.fc.weight)
    assert report.key_mapping in (f"removed {file_prefix!r}", "added 'body.'")


def test_nothing_matching_is_an_error_not_a_silent_no_op():
    with pytest.raises(ShapeError, match="none of the 2 tensors matched"):
        load_weights(_net(), {"foo.weight": torch.zeros(2), "bar.bias": torch.zeros(2)})


def test_dtype_is_converted_and_said():
    src = _net(seed=1).half()
    dst = _net(seed=2)
    report = load_weights(dst, src.state_dict())
    assert dst.fc.weight.dtype == torch.float32 and "fc.weight" in report.dtype_cast
    assert torch.allclose(dst.fc.weight, src.fc.weight.float())


def test_batchnorm_counters_are_harmless_when_missing():
    src = _net(seed=1)
    weights = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    report = load_weights(_net(seed=2), weights, strict=True)
    assert report.complete and len(report.ignored_missing) == 3
