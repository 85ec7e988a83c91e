"""graft fit / graft predict end to end on a zoo network and a real archive: run folder, resume, predictions."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import graft
from graft.cli import main


@pytest.fixture
def digits(tmp_path):
    """90 grey 12x12 images of 3 classes told apart by brightness, with a test split."""
    rng = np.random.default_rng(0)
    y = np.arange(90) % 3
    x = (rng.normal(60, 20, (90, 12, 12)) + 60 * y[:, None, None]).clip(0, 255).astype(np.uint8)
    path = tmp_path / "digits.npz"
    np.savez(path, x_train=x[:60], y_train=y[:60], x_test=x[60:], y_test=y[60:],
             label_names=np.array(["dark", "grey", "light"]))
    return path


def test_fit_then_predict(tmp_path, digits, capsys):
    run = tmp_path / "runs" / "r"
    code = main(["fit", "cifar_resnet20", "--random", "--data", str(digits), "--strategy", "full", "--epochs", "2",
                 "--lr", "0.01", "--out", str(run)])
    text = capsys.readouterr().out
    assert code == 0 and "epoch   1 [everything]" in text and "test accuracy" in text
    plan = json.loads((run / "plan.json").read_text())
    assert any(step["kind"] == "head" for step in plan["steps"]) and (run / "confusion.png").is_file()
    net = graft.load_run(run)  # rebuilt from the file alone: zoo architecture + plan + weights
    assert net.spec.label_names == ("dark", "grey", "light") and net.spec.input.channels == 1
    code = main(["predict", str(run), "--data", str(digits), "--out", str(tmp_path / "p.csv")])
    text = capsys.readouterr().out
    assert code == 0 and "accuracy" in text and "light" in text
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == 30 and {r["prediction"] for r in rows} <= {"dark", "grey", "light"}
    metrics = json.loads((run / "metrics.json").read_text())
    _, _, _, again = graft.predict(run, digits)
    assert again.accuracy == pytest.approx(metrics["accuracy"])


def test_fit_resume_after_an_interruption(tmp_path, digits, capsys):
    run = tmp_path / "r"
    args = ["fit", "cifar_resnet20", "--random", "--data", str(digits), "--strategy", "linear", "--epochs", "2",
            "--out", str(run), "--quiet"]
    assert main(args) == 0
    assert main(args) == 2  # the folder holds a run: refused, nothing overwritten
    assert "already holds a run" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0  # a finished run resumes to the same end
    assert main([*args[:6], "full", *args[7:], "--resume"]) == 2
    assert "strategy" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--strategy", "partial:99"], "at most the 10 blocks"),
    (["--strategy", "everything"], "a strategy among"),
    (["--budget", "soon"], "a time budget"),
])
def test_fit_bad_input(tmp_path, digits, capsys, extra, message):
    code = main(["fit", "cifar_resnet20", "--random", "--data", str(digits), "--epochs", "1", "--out",
                 str(tmp_path / "r"), *extra])
    assert code == 2 and message in capsys.readouterr().err


def test_predict_on_an_unfinished_run(tmp_path, digits, capsys):
    assert main(["predict", str(tmp_path / "nothing"), "--data", str(digits)]) == 2
    assert "a finished run folder" in capsys.readouterr().err


def test_export_a_run_and_run_the_file(tmp_path, digits, capsys):
    from graft.training import load_exported

    run = tmp_path / "r"
    assert main(["fit", "cifar_resnet20", "--random", "--data", str(digits), "--strategy", "linear", "--epochs", "1",
                 "--out", str(run), "--quiet"]) == 0
    assert main(["export", str(run), "--format", "onnx"]) == 0
    assert "verified" in capsys.readouterr().out.lower()
    exported = load_exported(run / "model.onnx")
    x, y = graft.load_data(digits).arrays("test")
    _, labels, probs, _ = graft.predict(run, digits)
    logits = exported(x)  # raw [0, 1] inputs: the normalization is inside the exported file
    assert (logits.argmax(1) == probs.argmax(1)).all()
    assert main(["export", str(run), "--format", "torchscript"]) == 0 and (run / "model.pt").is_file()
