"""extract_features on tiny real networks: the pooled features and BN statistics equal what a hand-written
forward computes, the cache is reused only when nothing changed, and bad input gets a clear error."""

from __future__ import annotations

import json
import tempfile

import numpy as np
import pytest
import torch
from torch import nn

import graft
from graft.data import load_data
from graft.data.transforms import Jitter
from graft.errors import GraftError
from graft.features import extract_features
from tests.conftest import TinyPooledCNN, randomize_bn


@pytest.fixture
def net():
    torch.manual_seed(0)
    return graft.load_model(randomize_bn(TinyPooledCNN(classes=4)).eval(), input_size=(16, 16))


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    x = rng.normal(0.5, 0.3, (50, 3, 16, 16)).astype(np.float32)
    return load_data((x, np.arange(50) % 5), layout="NCHW", test_fraction=0.2)


def _by_hand(module: TinyPooledCNN, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        a = module.stem(x)
        b = module.stage1(a)
        c = module.stage2(b)
        return {"stem": a, "stage1": b, "stage2": c, "logits": module(x)}


STAGES = ["stem", "stage1", "stage2"]


def test_every_block_is_tapped_by_default(net, images, tmp_path):
    fs = extract_features(net, images, cache_dir=tmp_path)
    assert fs.layers == net.spec.taps == ("stem.0", "stem.1", "stage1.0", "stage1.1", "stage2.0", "stage2.1")
    assert fs.dims == (8, 8, 16, 16, 32, 32)
    assert fs.batchnorms == () and fs.batchnorm_statistics() == {}  # BN statistics only when asked


def test_features_are_the_pooled_outputs_of_the_layers(net, images, tmp_path):
    fs = extract_features(net, images, cache_dir=tmp_path, batch_size=7, layers=STAGES)
    assert fs.layers == tuple(STAGES) and fs.dims == (8, 16, 32)
    x, y = images.arrays("train")
    ref = _by_hand(net.module, torch.from_numpy(x))
    for name in fs.layers:
        np.testing.assert_allclose(fs.features(name), ref[name].mean((2, 3)).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fs.logits(), ref["logits"].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(fs.labels(), y)
    assert isinstance(fs.features(0), np.memmap) and not fs.features(0).flags.writeable  # read from disk
    assert fs.num_samples == len(y) and fs.label_names == images.spec.label_names


def test_batchnorm_input_statistics_over_the_whole_split(net, images, tmp_path):
    fs = extract_features(net, images, cache_dir=tmp_path, batch_size=8, batchnorm=True)
    x, _ = images.arrays("train")
    ref = _by_hand(net.module, torch.from_numpy(x))
    stats = fs.batchnorm_statistics()
    assert list(stats) == ["stem.1", "stage1.1", "stage2.1"]
    assert [stats[n]["block"] for n in stats] == ["stem.1", "stage1.1", "stage2.1"]  # each BN is a block here
    bn_input = net.module.stem[0](torch.from_numpy(x)).detach()  # stem.1's input: the stem conv's output
    np.testing.assert_allclose(stats["stem.1"]["target_mean"], bn_input.mean((0, 2, 3)).numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats["stem.1"]["target_var"], bn_input.var((0, 2, 3), unbiased=False).numpy(),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(stats["stage2.1"]["source_var"], net.module.stage2[1].running_var.numpy())
    assert stats["stage2.1"]["target_mean"].shape == (32,) and ref["stage2"].shape[1] == 32


def test_the_batch_size_does_not_change_the_features(net, images, tmp_path):
    a = extract_features(net, images, cache_dir=tmp_path / "a", batch_size=1, layers=STAGES, batchnorm=True)
    b = extract_features(net, images, cache_dir=tmp_path / "b", batch_size=64, layers=STAGES, batchnorm=True)
    for i in range(3):
        np.testing.assert_allclose(a.features(i), b.features(i), rtol=1e-5, atol=1e-6)
    bn_a, bn_b = a.batchnorm_statistics(), b.batchnorm_statistics()
    for name in bn_a:
        np.testing.assert_allclose(bn_a[name]["target_var"], bn_b[name]["target_var"], rtol=1e-5)


@pytest.mark.parametrize("pool, dims", [("max", (8, 16, 32)), ("avgmax", (16, 32, 64))])
def test_pooling(net, images, tmp_path, pool, dims):
    fs = extract_features(net, images, cache_dir=tmp_path, pool=pool, layers=STAGES)
    assert fs.dims == dims
    x, _ = images.arrays("train")
    out = _by_hand(net.module, torch.from_numpy(x))["stage1"]
    want = out.amax((2, 3)) if pool == "max" else torch.cat([out.mean((2, 3)), out.amax((2, 3))], 1)
    np.testing.assert_allclose(fs.features("stage1"), want.numpy(), rtol=1e-5, atol=1e-5)


def test_layers_by_name_index_and_module_path(net, images, tmp_path):
    assert extract_features(net, images, cache_dir=tmp_path, layers="last").layers == ("stage2.1",)
    assert extract_features(net, images, cache_dir=tmp_path, layers=[0, -1]).layers == ("stem.0", "stage2.1")
    fs = extract_features(net, images, cache_dir=tmp_path, layers=["stage1.2"])  # any module: the ReLU inside
    assert fs.layers == ("stage1.2",) and fs.dims == (16,)
    assert fs.features(0).min() >= 0


def test_preprocessing_and_resizing_apply_to_the_batch(images, tmp_path):
    module = randomize_bn(TinyPooledCNN(classes=4)).eval()
    net = graft.load_model(module, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    fs = extract_features(net, images, cache_dir=tmp_path, input_size=(8, 8), layers=["stage2"])
    x, _ = images.arrays("train")
    xt = torch.nn.functional.interpolate(torch.from_numpy(x), size=(8, 8), mode="bilinear", align_corners=False)
    xt = (xt - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / 0.2
    np.testing.assert_allclose(fs.features(0), _by_hand(module, xt)["stage2"].mean((2, 3)).numpy(), rtol=1e-5, atol=1e-5)
    raw = extract_features(net, images, cache_dir=tmp_path, normalize=False, layers=["stage2"])
    assert raw.key != fs.key and not np.allclose(raw.features(0), fs.features(0))


def test_a_sequence_network(tmp_path):
    data = load_data("aeon:ArrowHead", normalize="zscore")
    net = graft.load_model("ts_fcn", pretrained=False, num_classes=3, width=4)
    fs = extract_features(net, data, cache_dir=tmp_path, batchnorm=True)
    assert fs.layers == ("block1", "block2", "block3") and fs.dims == (4, 8, 4)
    assert len(fs.batchnorms) == 3 and fs.features(-1).shape == (len(data["train"]), 4)


def test_a_network_without_batchnorm(images, tmp_path):
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    fs = extract_features(graft.load_model(module), images, cache_dir=tmp_path, layers=["1"])
    assert fs.batchnorms == () and fs.batchnorm_statistics() == {} and fs.has_logits


# ---------------------------------------------------------------- the cache

def test_a_second_call_reads_the_cache(net, images, tmp_path):
    first = extract_features(net, images, cache_dir=tmp_path, layers=STAGES, batchnorm=True)
    second = extract_features(net, images, cache_dir=tmp_path, layers=STAGES, batchnorm=True)
    assert not first.from_cache and second.from_cache and second.key == first.key
    np.testing.assert_array_equal(second.features(-1), first.features(-1))
    entries = [p for p in tmp_path.iterdir() if not p.name.endswith(".lock")]  # the entry's lock file stays
    assert [p.name for p in entries] == [first.key]  # no temporary folder left behind
    meta = json.loads((entries[0] / "meta.json").read_text())
    assert set(meta["files"]) == {"layer_000.npy", "layer_001.npy", "layer_002.npy", "labels.npy", "logits.npy",
                                  "batchnorm.npz"}


def test_anything_that_changes_the_bytes_changes_the_key(net, images, tmp_path):
    base = extract_features(net, images, cache_dir=tmp_path).key
    keys = {
        "split": extract_features(net, images, split="test", cache_dir=tmp_path).key,
        "layers": extract_features(net, images, layers="last", cache_dir=tmp_path).key,
        "pool": extract_features(net, images, pool="max", cache_dir=tmp_path).key,
        "size": extract_features(net, images, input_size=(12, 12), cache_dir=tmp_path).key,
    }
    with torch.no_grad():
        net.module.stage2[0].weight[0, 0, 0, 0] += 1e-3
    keys["weights"] = extract_features(net, images, cache_dir=tmp_path).key
    x, y = images.arrays("train")
    x[0, 0, 0, 0] += 1e-3
    keys["data"] = extract_features(net, load_data((x, y), layout="NCHW"), cache_dir=tmp_path).key
    assert base not in keys.values() and len(set(keys.values())) == len(keys)


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "meta"])
def test_a_damaged_entry_is_recomputed_not_used(net, images, tmp_path, damage):
    first = extract_features(net, images, cache_dir=tmp_path, layers=STAGES)
    expected = np.array(first.features(-1))
    entry = tmp_path / first.key
    target = entry / "layer_002.npy"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:-16])
    elif damage == "flip":
        raw = bytearray(target.read_bytes())
        raw[-3] ^= 0xFF
        target.write_bytes(bytes(raw))
    elif damage == "delete":
        target.unlink()
    else:
        (entry / "meta.json").write_text("{not json")
    again = extract_features(net, images, cache_dir=tmp_path, layers=STAGES)
    assert not again.from_cache and any("recomputed" in n for n in again.notes)
    np.testing.assert_allclose(again.features(-1), expected, rtol=1e-6)
    assert extract_features(net, images, cache_dir=tmp_path, layers=STAGES).from_cache  # and the repaired entry is used


def test_an_interrupted_extraction_leaves_no_entry(net, images, tmp_path):
    class Explode:
        cacheable = True
        seen = 0

        def __call__(self, x):
            Explode.seen += 1
            if Explode.seen > 20:
                raise KeyboardInterrupt
            return x

    with pytest.raises(KeyboardInterrupt):
        extract_features(net, images, cache_dir=tmp_path, transform=Explode(), batch_size=4)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []  # no entry, no temporary
    assert not extract_features(net, images, cache_dir=tmp_path).from_cache


def test_random_transforms_are_never_cached(net, images, tmp_path):
    fs = extract_features(net, images, cache_dir=tmp_path / "c", transform=Jitter(0.1))
    assert not fs.cached and any("random" in n for n in fs.notes)
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())
    again = extract_features(net, images, cache_dir=tmp_path / "c", transform=Jitter(0.1))
    assert not again.from_cache


def test_cache_false_uses_a_temporary_folder(net, images, tmp_path):
    fs = extract_features(net, images, cache=False, cache_dir=tmp_path)
    assert not fs.cached and not list(tmp_path.iterdir()) and fs.features(0).shape == (40, 8)
    assert fs.directory.startswith(tempfile.gettempdir())


def test_the_feature_set_round_trips_through_json(net, images, tmp_path):
    fs = extract_features(net, images, cache_dir=tmp_path)
    back = graft.FeatureSet.from_json(fs.to_json())
    assert back == fs
    np.testing.assert_array_equal(back.features("stage1.0"), fs.features("stage1.0"))


def test_the_api_takes_paths(pets_npz, tmp_path):
    fs = graft.extract_features("cifar_resnet20", pets_npz, load_options={"pretrained": False, "in_chans": 1},
                                cache_dir=tmp_path, layers="last")
    assert fs.dims == (64,) and fs.num_samples == 12 and fs.label_names == ("dog", "lizard", "cat")


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs, match", [
    ({"layers": []}, "at least one layer"),
    ({"layers": ["stage9.1"]}, "did you mean 'stage2.1' or 'stage1.1'"),
    ({"layers": [7]}, "a block index between 0 and 5"),
    ({"layers": ["stem.0", 0]}, "each layer once"),
    ({"pool": "mean"}, "pool among"),
    ({"batch_size": 0}, "batch_size >= 1"),
    ({"split": "val"}, "a split among"),
])
def test_bad_options(net, images, tmp_path, kwargs, match):
    with pytest.raises(GraftError, match=match):
        extract_features(net, images, cache_dir=tmp_path, **kwargs)


def test_bad_arguments(net, images, tmp_path):
    with pytest.raises(GraftError, match="a graft Data"):
        extract_features(net, (np.zeros((4, 3, 8, 8)), np.arange(4)), cache_dir=tmp_path)
    with pytest.raises(GraftError, match="a graft Backbone"):
        extract_features(net.module, images, cache_dir=tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(GraftError, match="a writable folder for the feature cache"):
        extract_features(net, images, cache_dir=blocker / "sub")


def test_a_layer_that_runs_twice(images, tmp_path):
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(self.conv(self.conv(x)).mean((2, 3)))

    with pytest.raises(GraftError, match="run once per forward pass"):
        extract_features(graft.load_model(Twice()), images, cache_dir=tmp_path, layers=["conv"])
