"""The users' shapes: (28, 9, 1) -> (20, 5, 1) with some features different, and (44, 99, 6), cut as
windows from real series (aeon's bundled JapaneseVowels and Daphnet sensors), loaded, planned, applied."""

import numpy as np
import pytest
import torch

import graft
from graft.data import windows

pytest.importorskip("aeon")

COEFS = [f"lpc{i}" for i in range(12)]  # JapaneseVowels: 12 LPC cepstrum coefficients per frame


@pytest.fixture(scope="module")
def vowels():
    data = graft.load_data("aeon:JapaneseVowels", normalize="zscore")
    x, y = data.arrays("train")
    return x, y, data.spec.label_names


def _windows(x, y, channels, length):
    w, src = windows(x[:, channels], length, step=1, layout="time_by_feature")
    return w, y[src]


def test_28x9_source_to_20x5_target_with_other_features(vowels):
    x, y, speakers = vowels
    src_x, src_y = _windows(x, y, list(range(9)), 28)
    assert src_x.shape[1:] == (1, 28, 9)  # (28, 9, 1) channels-last, as users write it
    source = graft.load_data((np.moveaxis(src_x, 1, -1), src_y), layout="NHWC", label_names=speakers,
                             feature_names=COEFS[:9], feature_axis=2)
    assert source.spec.input_shape == (1, 28, 9) and source.spec.feature_names == tuple(COEFS[:9])

    new_cols = [0, 2, 1, 9, 10]  # lpc1/lpc2 swapped, lpc9/lpc10 never seen, lpc3..lpc8 missing
    tgt_x, tgt_y = _windows(x, y, new_cols, 20)
    target = graft.load_data((np.moveaxis(tgt_x, 1, -1), tgt_y), layout="NHWC", label_names=speakers,
                             feature_names=[COEFS[c] for c in new_cols], feature_axis=2, val_fraction=0.2)
    assert target.spec.input_shape == (1, 20, 5)

    net = graft.load_model("sensor_cnn", pretrained=False, input_size=(28, 9), width=4,
                           num_classes=len(speakers), label_names=list(speakers),
                           feature_names=source.spec.feature_names, feature_axis=2)
    plan = graft.plan_surgery(net, data=target)
    kinds = [s.kind for s in plan.steps]
    assert kinds == ["features", "input_channels", "input_size"]  # same 9 speakers: the head stays
    features = plan.steps[0].params
    assert features["sources"][:3] == [0, 2, 1] and features["sources"][3:] == [None] * 6
    assert features["extra"] == [3, 4]
    assert plan.steps[2].params["mode"] == "pad" and plan.steps[2].params["to"] == [28, 9]

    grafted = plan.apply(net)
    batch, labels = next(iter(target.loader("val", batch_size=16)))
    assert grafted.module(batch).shape == (len(labels), len(speakers))


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_44x99x6_trajectory_windows_from_a_sensor_recording():
    from aeon.datasets import load_daphnet_s06r02e0

    series, _ = load_daphnet_s06r02e0()  # 9 accelerometer channels (ankle, thigh, trunk x 3 axes)
    six = series[:, :6].T[None].astype(np.float32)  # ankle and thigh: (1, 6, 7040)
    w, _ = windows(six, 142, step=142, layout="trajectory", rows=44)
    assert w.shape[1:] == (6, 44, 99)
    # labels for planning only: which half of the recording a window comes from
    y = (np.arange(len(w)) >= len(w) // 2).astype(int)
    data = graft.load_data((np.moveaxis(w, 1, -1), y), layout="NHWC", label_names=["first half", "second half"])
    assert data.spec.input_shape == (6, 44, 99)

    net = graft.load_model("sensor_cnn", pretrained=False, input_size=(28, 9), width=4)
    plan = graft.plan_surgery(net, data=data)
    params = {s.kind: s.params for s in plan.steps}
    assert params["input_channels"]["to"] == 6
    assert params["input_size"]["mode"] == "resize"  # larger than the fixed 28x9: resized, nothing cut
    out = plan.apply(net).module(torch.from_numpy(data.arrays()[0][:4]))
    assert out.shape == (4, 2)
