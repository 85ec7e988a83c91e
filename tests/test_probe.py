"""graft.probe / graft probe: per-layer measures from one extraction, on tiny real networks and real data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import graft
from graft.cli import main
from graft.data import load_data
from graft.errors import GraftError
from graft.measures.summary import Measures
from tests.conftest import DATA, WEIGHTS, TinyPooledCNN, randomize_bn, shared_file

STAGES = ["stem", "stage1", "stage2"]


@pytest.fixture
def net():
    torch.manual_seed(0)
    return graft.load_model(randomize_bn(TinyPooledCNN(classes=6)).eval())


def _blobs(n: int = 90, seed: int = 0, shift: float = 0.0, test: float = 0.0):
    """Three classes of 3x12x12 images that differ by which channel is bright: linearly separable."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(0.2 + shift, 0.1, (n, 3, 12, 12)).astype(np.float32)
    x[np.arange(n), y] += 0.6
    return load_data((x, y), layout="NCHW", test_fraction=test, seed=seed)


def test_probe_measures_every_layer_and_writes_the_run_folder(net, tmp_path):
    data = _blobs(test=0.3)
    m = graft.probe(net, data, layers=STAGES, out=tmp_path / "run", plot=True, cache_dir=tmp_path / "cache")
    assert [e.name for e in m.layers] == STAGES and [e.dim for e in m.layers] == [8, 16, 32]
    assert m.eval_split == "test" and m.num_train == 63 and m.num_eval == 27
    assert m.best_layer in STAGES and m.layer(m.best_layer).probe_accuracy >= 0.9  # separable by colour
    for e in m.layers:
        assert 0 <= e.probe_low <= e.probe_accuracy <= e.probe_high <= 1 and np.isfinite(e.logme)
        assert e.similarity is not None and e.similarity >= 0 and e.batchnorms == 1
    assert m.leep is not None and m.leep <= 0 and m.nce <= 0  # the 6-class source head exists
    back = Measures.from_json((tmp_path / "run" / "measures.json").read_text())
    assert back == m
    png = Image.open(tmp_path / "run" / "measures.png")
    assert png.format == "PNG" and png.size[0] > 400 and png.size[1] > 300
    assert "<- best" in m.render()
    # every layer at once: the multilayer probe, beside the per-layer ones
    assert m.multilayer["n_test"] == 27 and set(m.multilayer["selected"]) == set(STAGES)
    assert m.multilayer["accuracy"] >= 0.9 and "all layers, selected (multilayer)" in m.render()
    assert graft.probe(net, data, layers=STAGES, cache_dir=tmp_path / "cache", multilayer=False).multilayer is None


def test_without_a_test_split_the_probe_is_cross_validated(net, tmp_path):
    m = graft.probe(net, _blobs(), layers=["stage2"], cache_dir=tmp_path)
    assert m.eval_split == "cross-validation" and m.num_eval == m.num_train == 90
    assert graft.probe(net, _blobs(test=0.3), layers=["stage2"], eval_split=None,
                       cache_dir=tmp_path).eval_split == "cross-validation"


def test_similarity_is_zero_when_the_source_statistics_are_the_targets(net, tmp_path):
    data = _blobs()
    before = graft.probe(net, data, layers=STAGES, cache_dir=tmp_path)
    modules = dict(net.module.named_modules())
    for bn in ("stem.1", "stage1.1", "stage2.1"):  # in order: each BN changes what the next one sees
        stats = graft.extract_features(net, data, layers=STAGES, cache_dir=tmp_path,
                                       batchnorm=True).batchnorm_statistics()[bn]
        with torch.no_grad():  # this BN now "remembers" exactly the target data
            modules[bn].running_mean.copy_(torch.from_numpy(stats["target_mean"]))
            modules[bn].running_var.copy_(torch.from_numpy(stats["target_var"]))
    after = graft.probe(net, data, layers=STAGES, cache_dir=tmp_path)
    assert all(e.similarity < 1e-3 for e in after.layers)
    assert all(b.similarity > 0.05 for b in before.layers)
    shifted = graft.probe(net, _blobs(shift=1.0), layers=STAGES, cache_dir=tmp_path)
    assert shifted.layer("stem").similarity > 10 * after.layer("stem").similarity + 0.1


def test_identity_batchnorm_is_said_and_a_source_sample_is_used_instead(tmp_path):
    module = TinyPooledCNN(classes=6).eval()  # fresh BN: running mean 0, variance 1
    net = graft.load_model(module)
    data = _blobs()
    m = graft.probe(net, data, layers=STAGES, cache_dir=tmp_path)
    assert m.similarity_method == "none" and "identity statistics" in m.similarity_note
    assert all(e.similarity is None for e in m.layers)
    same = graft.probe(net, data, layers=STAGES, source_data=data, cache_dir=tmp_path)
    assert same.similarity_method == "frechet" and all(abs(e.similarity) < 1e-6 for e in same.layers)
    other = graft.probe(net, data, layers=STAGES, source_data=_blobs(seed=1, shift=1.0), cache_dir=tmp_path)
    assert all(e.similarity > 0.05 for e in other.layers)


def test_a_network_without_a_class_output(tmp_path):
    body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(8, 1))  # one output: no source classes
    m = graft.probe(graft.load_model(body), _blobs(), layers=["1"], cache_dir=tmp_path)
    assert m.leep is None and m.nce is None and m.similarity_method == "none"
    assert "no BatchNorm layer" in m.similarity_note and any("LEEP/NCE not computed" in n for n in m.notes)


def test_max_samples_draws_a_stratified_subsample(net, tmp_path):
    m = graft.probe(net, _blobs(n=300, test=0.3), layers=["stage2"], max_samples=60, cache_dir=tmp_path)
    assert m.num_train == 60 and m.num_eval == 60
    assert m.classes["samples_per_class"] == {"0": 20, "1": 20, "2": 20}


def test_bad_input(net, tmp_path):
    with pytest.raises(GraftError, match="3 input channels"):
        graft.probe(net, load_data((np.zeros((12, 2, 8, 8), np.float32), np.arange(12) % 3), layout="NCHW"),
                    cache_dir=tmp_path)
    with pytest.raises(GraftError, match="a run folder for the plot"):
        graft.probe(net, _blobs(), layers=["stage2"], plot=True, cache_dir=tmp_path)
    with pytest.raises(GraftError, match="at least one layer"):
        graft.probe(net, _blobs(), layers=[], cache_dir=tmp_path)


def test_grey_images_go_to_an_rgb_network(net, tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    x = rng.normal(0, 0.1, (60, 1, 12, 12)).astype(np.float32) + y[:, None, None, None]
    m = graft.probe(net, load_data((x, y), layout="NCHW"), layers=["stage2"], cache_dir=tmp_path)
    assert any("grey images are repeated" in n for n in m.notes) and m.layers[0].probe_accuracy > 0.9


# ---------------------------------------------------------------- the command

def test_the_probe_command(tmp_path, capsys, pets_npz):
    code = main(["probe", "cifar_resnet20", "--random", "--data", str(pets_npz), "--layers", "layer3.2,-2",
                 "--out", str(tmp_path / "run"), "--plot"])
    out = capsys.readouterr().out
    assert code == 0 and "<- best" in out and "wrote measures.json and measures.png" in out
    saved = json.loads((tmp_path / "run" / "measures.json").read_text())
    assert [e["name"] for e in saved["layers"]] == ["layer3.2", "layer3.1"]
    assert main(["probe", "cifar_resnet20", "--random", "--data", str(pets_npz), "--layers", "last", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["best_layer"] == "layer3.2"
    assert saved["multilayer"]["kept"] >= 1  # two layers tapped: the multilayer probe ran
    assert main(["probe", "cifar_resnet20", "--random", "--data", str(pets_npz), "--layers", "layer3.2,-2",
                 "--no-multilayer", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["multilayer"] is None


def test_the_probe_command_refuses_a_plot_without_a_folder(capsys, pets_npz):
    assert main(["probe", "cifar_resnet20", "--random", "--data", str(pets_npz), "--plot"]) == 2
    assert "--out RUN_FOLDER" in capsys.readouterr().err


# ---------------------------------------------------------------- real networks, real data

@pytest.mark.slow
@pytest.mark.shared
def test_cifar_resnet20_on_mnist_digits(tmp_path):
    weights = shared_file("weights", "resnet20-12fca82f.th")
    mnist = shared_file("data", "mnist", "mnist.npz")
    m = graft.probe(weights, mnist, max_samples=300, cache_dir=tmp_path)
    assert len(m.layers) == 10 and m.similarity_method == "batchnorm"
    first, best = m.layers[0], m.layer(m.best_layer)
    assert best.probe_accuracy > 0.75 and best.probe_accuracy > first.probe_accuracy + 0.2
    assert m.best_layer.startswith(("layer2", "layer3"))
    assert first.similarity > min(e.similarity for e in m.layers)  # digits look least like CIFAR at the input
    assert DATA.exists() and WEIGHTS.exists()


@pytest.mark.shared
def test_the_coral_mobilenet_says_its_batchnorm_is_empty(tmp_path):
    weights = shared_file("weights", "mobilenetv1_025_128_imagenet.timm.safetensors")
    cifar = shared_file("data", "cifar10", "cifar10_jpg_subset.npz")
    m = graft.probe(weights, cifar, layers="last", max_samples=100, input_size=(64, 64), cache_dir=tmp_path,
                    load_options={"arch": "mobilenetv1_025"})
    assert m.similarity_method == "none" and "identity statistics" in m.similarity_note
    assert m.leep is not None and m.leep < 0
