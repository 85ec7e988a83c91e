"""The multilayer strategy end to end on a real (tiny) network and real files: fit, the truncated model, reload,
predict, export; its outputs match the head applied to the extracted features."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import graft
from graft.api import export_run
from graft.data import load_data
from graft.errors import GraftError
from graft.features.extract import extract_features
from graft.measures.multilayer import narrow
from graft.models import Backbone
from graft.surgery.multilayer import MultilayerHead, MultilayerModel, narrow_tensor

RANDOM = {"pretrained": False}


@pytest.mark.parametrize("d, width", [(7, 3), (16, 16), (64, 10), (1280, 256), (300, 100)])
def test_the_torch_narrowing_is_the_numpy_one(d, width):
    x = np.random.default_rng(d).normal(size=(5, d))
    numpy_side = narrow(x, width)
    torch_side = narrow_tensor(torch.as_tensor(x), numpy_side.shape[1])
    np.testing.assert_allclose(torch_side.numpy(), numpy_side, rtol=1e-12)


def test_fit_reload_predict_and_the_outputs_match_the_features(tmp_path, shades):
    out = tmp_path / "ml"
    record = graft.fine_tune("cifar_resnet20", shades, out, strategy="multilayer", load_options=RANDOM,
                             data_options={"val_fraction": 0.2}, progress=False)
    assert record.strategy == "multilayer" and record.final_split == "test" and record.final_accuracy > 0.6
    for name in ("config.json", "plan.json", "multilayer.json", "metrics.json", "confusion.png", "model.safetensors",
                 "run.json"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "multilayer.json").read_text())
    loaded = graft.load_run(out)
    model = loaded.module
    assert isinstance(model, MultilayerModel) and model.layers == saved["model_layers"]
    assert loaded.spec.label_names == ("dark", "grey", "light")
    # the truncated graph stops at the deepest kept layer: nothing above it (nor the old head) is in it
    blocks = [b.name for b in graft.load_model("cifar_resnet20", **RANDOM).spec.blocks]
    deepest = blocks.index(model.layers[-1])
    inside = {n for n, _ in model.extractor.named_modules()}
    assert not any(name in inside for name in blocks[deepest + 1:]) and "linear" not in inside
    assert record.trainable_params == sum(p.numel() for p in model.head.parameters())
    # the model's logits = the head on the cached pooled features of the same layers
    data = load_data(shades, val_fraction=0.2)
    body = Backbone(model.full_body(), loaded.spec)  # the grafted network the head was fit on, whole
    features = extract_features(body, data, split="test", layers=model.layers, progress=False, cache=False)
    pooled = np.concatenate([narrow(features.features(n), w[1]) for n, w in zip(model.layers, model.head.widths)], 1)
    head = model.head.linear
    expected = pooled[:, model.head.keep.numpy()] @ head.weight.detach().numpy().T + head.bias.detach().numpy()
    ids, names, probabilities, metrics = graft.predict(out, data, split="test")
    np.testing.assert_allclose(probabilities, torch.softmax(torch.as_tensor(expected), 1).numpy(), atol=1e-4)
    saved_metrics = json.loads((out / "metrics.json").read_text())
    assert saved_metrics["accuracy"] == pytest.approx(metrics.accuracy)
    assert metrics.accuracy == pytest.approx(float((expected.argmax(1) == features.labels()).mean()))


def test_a_multilayer_run_exports_and_the_file_matches(tmp_path, shades):
    pytest.importorskip("onnx")
    out = tmp_path / "ml"
    graft.fine_tune("cifar_resnet20", shades, out, strategy="multilayer", load_options=RANDOM,
                    data_options={"val_fraction": 0.2}, progress=False)
    report = export_run(out, "onnx")  # verified by running the written file against the network
    assert (out / "model.onnx").is_file() and report.max_abs_diff < 1e-3


def test_multilayer_model_bad_input():
    body = graft.load_model("cifar_resnet20", **RANDOM).module
    head = MultilayerHead([[16, 16]], torch.tensor([0, 1]), 3)
    with pytest.raises(GraftError, match="unknown"):
        MultilayerModel(body, ["layer9.9"], head)
    with pytest.raises(GraftError, match="at least one layer"):
        MultilayerModel(body, [], head)


def test_the_fit_command_with_the_multilayer_strategy(tmp_path, shades, capsys):
    from graft.cli import main

    run = tmp_path / "runs" / "ml"
    code = main(["fit", "cifar_resnet20", "--random", "--data", str(shades), "--strategy", "multilayer",
                 "--out", str(run)])
    text = capsys.readouterr().out
    assert code == 0 and "test accuracy" in text, text
    assert json.loads((run / "run.json").read_text())["strategy"] == "multilayer"
    assert main(["predict", str(run), "--data", str(shades)]) == 0 and "accuracy" in capsys.readouterr().out
    again = main(["fit", "cifar_resnet20", "--random", "--data", str(shades), "--strategy", "multilayer",
                  "--out", str(run)])
    assert again == 2 and "already holds a run" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_runs_multilayer_beside_the_other_strategies(tmp_path, shades):
    from graft.api import compare

    result = compare("cifar_resnet20", shades, tmp_path / "cmp", strategies="linear,multilayer", budget=30,
                     max_epochs=2, load_options=RANDOM, data_options={"val_fraction": 0.2})
    assert [e["strategy"] for e in result.strategies] == ["linear", "multilayer"] and not result.dropped
    run = result.strategies[1]["runs"][0]
    assert run["epochs"] == 1 and run["latency_ms"] > 0 and 0 <= run["test_accuracy"] <= 1
    assert run["trainable_params"] < run["total_params"]
    assert (tmp_path / "cmp" / "report.html").is_file()


def test_a_budget_stops_the_heads_search_and_the_run_says_so(tmp_path, shades):
    """A comparison gives each run a share of its budget: multilayer's search of C and of the fraction kept stops
    where 80 % of it is spent (its first fit always runs), instead of running past it (issue 17: a busy machine's
    demo spent 27 s of a 5 s share there)."""
    from graft.training.run import fine_tune  # what compare calls, with each run's share

    data = load_data(shades, val_fraction=0.2)
    net = graft.load_model("cifar_resnet20", **RANDOM)
    plan = graft.plan_surgery(net, data=data)
    whole = fine_tune(plan.apply(net), data, tmp_path / "whole", strategy="multilayer", plan=plan, progress=False)
    cut = fine_tune(plan.apply(net), data, tmp_path / "cut", strategy="multilayer", plan=plan, progress=False,
                    budget=0.01)
    assert not any("ran out" in n for n in whole.notes)
    assert any("ran out" in n for n in cut.notes), cut.notes
    assert (tmp_path / "cut" / "model.safetensors").is_file() and cut.final_accuracy is not None
