"""``graft data``, ``graft pretrain`` and ``graft plan`` on real datasets: in-process through ``graft.cli.main``,
one real process for the console entry point."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import graft
from graft.cli import main
from graft.models.checkpoint import graft_metadata
from tests.conftest import shared_file

pytest.importorskip("aeon")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}


@pytest.fixture(autouse=True)
def wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich does not wrap, so lines can be matched whole


def graft_call(capsys, *args) -> tuple[int, str, str]:
    """Run ``graft ARGS`` in this process; stdout as printed, stderr with its whitespace collapsed."""
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, " ".join(err.split())


# -- graft data ------------------------------------------------------------------------------------------

def test_data_as_a_real_process():
    proc = subprocess.run([sys.executable, "-m", "graft", "data", "aeon:BasicMotions", "--val", "0.25"], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "BasicMotions: timeseries, 80 samples of shape 6x100 (channels first)"
    assert "  splits: train 30, val 10, test 40" in lines, "a quarter of the 40 train series held out, stratified"
    assert "  classes (4): badminton 20, running 20, standing 20, walking 20" in lines
    assert lines[-1] == "problems: none found"


def test_data_json_of_variable_length_series(capsys):
    rc, out, _ = graft_call(capsys, "data", "aeon:JapaneseVowels", "--json")
    assert rc == 0
    spec = json.loads(out)
    assert spec["lengths"] == [7, 29]
    assert spec["input_shape"] == [12, 29] and spec["modality"] == "timeseries"
    assert dict(spec["splits"]) == {"train": 270, "test": 370}
    assert spec["label_names"] == [str(i) for i in range(1, 10)] and spec["problems"] == []
    assert graft.DatasetSpec.from_json(out).lengths == (7, 29)


@pytest.fixture
def images_with_a_truncated_png(tmp_path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    root = tmp_path / "pets"
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    bad = root / "cat" / "1.png"
    bad.write_bytes(bad.read_bytes()[:60])
    return root, bad


def test_data_lists_a_corrupt_image_and_exits_1(capsys, images_with_a_truncated_png):
    root, bad = images_with_a_truncated_png
    rc, out, _ = graft_call(capsys, "data", root)
    assert rc == 1
    assert "problems (1):" in out and "[error] corrupt_image: 1 image files cannot be decoded" in out
    assert str(bad) in out


def test_data_skip_bad_drops_it_and_lists_it(capsys, images_with_a_truncated_png):
    root, bad = images_with_a_truncated_png
    rc, out, _ = graft_call(capsys, "data", root, "--skip-bad", "--json")
    assert rc == 0
    spec = graft.DatasetSpec.from_json(out)
    assert len(spec.skipped) == 1 and spec.skipped[0].startswith(str(bad))
    assert [(p.kind, p.severity) for p in spec.problems] == [("corrupt_image", "warning")]
    assert spec.num_samples == 5 and spec.class_counts == (2, 3)
    rc, out, _ = graft_call(capsys, "data", root, "--skip-bad")
    assert rc == 0 and f"skipped (1): {bad}" in out


def test_data_with_a_model_that_cannot_take_it(capsys):
    rc, out, _ = graft_call(capsys, "data", "aeon:BasicMotions", "--model", "cifar_resnet20", "--random", "--json")
    assert rc == 1
    problems = graft.DatasetSpec.from_json(out).problems
    assert [(p.kind, p.severity) for p in problems] == [("model_mismatch", "error")]
    assert "2 axes" in problems[0].message and "cifar_resnet20" in problems[0].items


def test_data_with_a_model_that_can_take_it(capsys):
    rc, out, _ = graft_call(capsys, "data", "aeon:BasicMotions", "--model", "ts_fcn", "--random")
    assert rc == 0 and out.rstrip().endswith("problems: none found")


# -- graft inspect / plan on a zoo network without published weights --------------------------------------

def test_inspect_a_random_time_series_network(capsys):
    rc, out, _ = graft_call(capsys, "inspect", "ts_fcn", "--random")
    assert rc == 0
    text = " ".join(out.split())
    assert "ts_fcn (zoo; weights: random init)" in text
    assert "input: 1 channels, size 128" in text and "any size >= 1 (global pooling)" in text
    assert "head: fc (linear, 128 -> 2)" in text


def test_plan_a_random_time_series_network(capsys):
    rc, out, err = graft_call(capsys, "plan", "ts_fcn", "--random", "--in-chans", 12, "--input-size", 29,
                              "--labels", "a,b,c")
    assert rc == 0, err
    text = " ".join(out.split())
    assert "Surgery plan: ts_fcn (2 classes, input (1, 128)) -> 3 classes, input (12, 29)" in text
    assert "0 rows kept, 3 new" in text and "repeat the 1 input filters of block1.0 to 12" in text
    assert "feed 29 inputs as they are" in text
    assert "checked: dry run of the result: input (2, 12, 29) -> output (2, 3)" in text


# -- graft pretrain, then plan from the saved network ---------------------------------------------------

@pytest.fixture(scope="module")
def arrowhead_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("arrowhead") / "run"
    rc = main(["pretrain", "ts_fcn", "aeon:ArrowHead", "--normalize", "zscore", "--val", "0.2", "--epochs", "2",
               "--width", "8", "--out", str(out)])
    return rc, out


def test_pretrain_writes_the_run_folder(arrowhead_run):
    rc, out = arrowhead_run
    assert rc == 0
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "history.jsonl", "splits.json", "dataset.json"}
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    assert all({"loss", "train_accuracy", "eval_accuracy", "seconds"} <= set(h) for h in history)
    splits = json.loads((out / "splits.json").read_text())
    assert splits["val_fraction"] == 0.2 and splits["stratified"] is True
    assert len(splits["ids"]["val"]) + len(splits["ids"]["train"]) == 36, "ArrowHead has 36 train series"
    assert not set(splits["ids"]["val"]) & set(splits["ids"]["train"])
    data = graft.DatasetSpec.from_json((out / "dataset.json").read_text())
    assert data.name == "ArrowHead" and data.input_shape == (1, 251) and data.label_names == ("0", "1", "2")


def test_pretrained_network_reloads_with_its_contract(arrowhead_run):
    _, out = arrowhead_run
    b = graft.load_model(out / "model.safetensors")
    assert b.load_report.complete
    assert b.spec.name == "ts_fcn" and b.spec.label_names == ("0", "1", "2")
    assert b.spec.input.shape() == (1, 251) and b.module.graft_build_kwargs == {"width": 8}
    assert b.spec.head.in_features == 8
    meta = graft_metadata(graft.read_checkpoint(out / "model.safetensors"))
    assert "pretrained by graft on ArrowHead for 2 epochs" in meta["spec"]["notes"]


def test_plan_the_pretrained_network_to_its_own_data_changes_nothing(capsys, arrowhead_run):
    _, out = arrowhead_run
    rc, text, err = graft_call(capsys, "plan", out / "model.safetensors", "--data", "aeon:ArrowHead")
    assert rc == 0, err
    text = " ".join(text.split())
    assert "-> 3 classes, input (1, 251)" in text
    assert "nothing to change: the network already fits the target" in text, "all 3 head rows kept as they are"
    assert "0 resized, 0 new, 0 dropped" in text


def test_plan_the_pretrained_network_to_some_of_its_classes(capsys, arrowhead_run):
    _, out = arrowhead_run
    rc, text, err = graft_call(capsys, "plan", out / "model.safetensors", "--data", "aeon:ArrowHead",
                               "--classes", "2,0", "--json")
    assert rc == 0, err
    plan = graft.SurgeryPlan.from_json(text)  # bare numbers, a different set of them: not matched by default
    assert plan.step("head").params["rows"] == [None, None] and "only a number" in plan.step("head").reason
    rc, text, err = graft_call(capsys, "plan", out / "model.safetensors", "--data", "aeon:ArrowHead",
                               "--classes", "2,0", "--keep-rows", "require", "--json")
    assert rc == 0, err
    plan = graft.SurgeryPlan.from_json(text)  # the user says they are the same classes
    assert plan.step("head").params["rows"] == [2, 0]
    assert "2 rows kept, 0 new" in plan.step("head").summary
    assert plan.result_labels == ("2", "0")


# -- FSDD: four speakers learned, six to classify --------------------------------------------------------

@pytest.mark.shared
@pytest.mark.slow
def test_fsdd_four_speakers_grow_to_six_keeping_the_learned_rows(capsys, tmp_path):
    recordings = shared_file("data", "fsdd", "recordings")
    pytest.importorskip("librosa")
    subset = tmp_path / "fsdd"
    subset.mkdir()
    for f in recordings.glob("*.wav"):
        take = int(f.stem.rsplit("_", 1)[1])
        if 5 <= take <= 8 or take == 0:  # 4 train takes and 1 test take of each digit and speaker
            shutil.copy(f, subset / f.name)
    assert len(list(subset.iterdir())) == 6 * 10 * 5
    run = tmp_path / "run"
    learned = ["jackson", "nicolas", "theo", "yweweler"]
    rc, _, err = graft_call(capsys, "pretrain", "audio_cnn", subset, "--label-from", "speaker", "--classes",
                            ",".join(learned), "--epochs", 2, "--width", 4, "--out", run)
    assert rc == 0, err
    source = graft.load_model(run / "model.safetensors")
    assert source.spec.label_names == tuple(learned)
    data = graft.load_data(subset, labels="speaker")
    assert data.spec.label_names == ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
    plan = graft.plan_surgery(source, data=data)
    assert [s.kind for s in plan.steps] == ["head"]
    rows = plan.step("head").params["rows"]
    assert rows == [None, 0, None, 1, 2, 3]
    assert {data.spec.label_names[i]: r for i, r in enumerate(rows) if r is not None} == {
        name: learned.index(name) for name in learned}
    assert "4 rows kept, 2 new" in plan.step("head").summary
    grafted = plan.apply(source)
    for i, r in enumerate(rows):
        if r is not None:
            assert torch.equal(grafted.module.fc.weight[i], source.module.fc.weight[r])
            assert torch.equal(grafted.module.fc.bias[i], source.module.fc.bias[r])
    x = torch.from_numpy(data.arrays("test")[0][:8])
    with torch.inference_mode():
        new, old = grafted.module.eval()(x), source.module.eval()(x)
    assert torch.allclose(new[:, [1, 3, 4, 5]], old, atol=1e-6), "same rows; a wider matmul may round differently"
