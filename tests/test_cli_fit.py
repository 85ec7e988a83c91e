"""graft fit / graft predict end to end on a zoo network and a real archive: run folder, resume, predictions."""

from __future__ import annotations

import csv
import json

import numpy as np
import torch
import pytest

import graft
from graft.cli import main
from tests.conftest import write_shades


@pytest.fixture
def digits(tmp_path):
    """90 grey 12x12 images of 3 classes told apart by brightness, with a test split."""
    return write_shades(tmp_path / "digits.npz")


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


def test_fit_json_prints_the_run_record_alone(tmp_path, digits, capsys):
    from graft.training.run import RunRecord

    run = tmp_path / "r"
    assert main(["fit", "cifar_resnet20", "--random", "--data", str(digits), "--strategy", "full", "--epochs", "1",
                 "--out", str(run), "--json"]) == 0
    out, err = capsys.readouterr()
    record = RunRecord.from_json(out)  # stdout is the JSON and nothing else
    assert record == RunRecord.from_json((run / "run.json").read_text())
    assert record.strategy == "full" and record.epochs_run == 1
    assert "epoch   1 [everything]" in err and "run folder:" in err  # the lines for people went to stderr


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


@pytest.mark.slow
def test_export_a_run_and_run_the_file(tmp_path, digits, capsys):
    from graft.export import load_exported

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


@pytest.mark.slow
def test_continue_a_finished_run_on_new_data(tmp_path, digits, capsys):
    """A finished run is a model: `graft fit RUN --data NEW` grafts it again (classes kept by name), and the
    result reloads from its folder alone, through both plans, twice over."""
    more = write_shades(tmp_path / "more.npz", 120, 80, seed=1, step=50,
                        labels=("dark", "grey", "light", "white"))
    first, second, third = tmp_path / "r1", tmp_path / "r2", tmp_path / "r3"
    common = ["--strategy", "full", "--epochs", "2", "--lr", "0.01", "--quiet"]
    assert main(["fit", "cifar_resnet20", "--random", "--data", str(digits), "--out", str(first), *common]) == 0
    assert main(["fit", str(first), "--data", str(more), "--out", str(second), *common]) == 0
    head = next(s for s in json.loads((second / "plan.json").read_text())["steps"] if s["kind"] == "head")
    assert head["params"]["rows"] == [0, 1, 2, None]  # dark, grey, light carried over; white is new
    net = graft.load_run(second)
    assert net.spec.label_names == ("dark", "grey", "light", "white") and len(net.plans) == 2
    _, _, _, metrics = graft.predict(second, more)
    assert metrics.accuracy == pytest.approx(json.loads((second / "metrics.json").read_text())["accuracy"])
    # the same data again: a plan with nothing to change, a third link in the chain
    assert main(["fit", str(second), "--data", str(more), "--out", str(third), *common]) == 0
    assert len(graft.load_run(third).plans) == 3
    capsys.readouterr()


@pytest.mark.slow
def test_resume_after_a_kill(tmp_path, digits):
    """SIGKILL a real `graft fit` process mid-run (wherever it is: mid-epoch or mid-write), resume it, and end
    with exactly the weights of a run that was never interrupted."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    rng = np.random.default_rng(2)
    y = np.arange(600) % 3
    x = (rng.normal(60, 20, (600, 16, 16)) + 60 * y[:, None, None]).clip(0, 255).astype(np.uint8)
    data = tmp_path / "big.npz"
    np.savez(data, x_train=x[:540], y_train=y[:540], x_test=x[540:], y_test=y[540:])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

    def command(out):
        return [sys.executable, "-m", "graft", "fit", "cifar_resnet20", "--random", "--data", str(data), "--strategy",
                "two-phase", "--epochs", "5", "--batch-size", "16", "--lr", "0.01", "--out", str(out), "--quiet"]

    killed = subprocess.Popen(command(tmp_path / "cut"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = tmp_path / "cut" / "checkpoints" / "last.json"
    deadline = time.monotonic() + 120
    while not last.is_file() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # into the second epoch (or the write of its checkpoint)
    assert killed.poll() is None, "the run ended before it could be killed: " + killed.stderr.read().decode()
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    epoch = json.loads(last.read_text())["state"]["epoch"]
    assert 1 <= epoch < 5 and not (tmp_path / "cut" / "model.safetensors").exists()
    subprocess.run([*command(tmp_path / "cut"), "--resume"], env=env, check=True, capture_output=True)
    subprocess.run(command(tmp_path / "whole"), env=env, check=True, capture_output=True)
    cut, whole = load_file(str(tmp_path / "cut" / "model.safetensors")), load_file(str(tmp_path / "whole" / "model.safetensors"))
    assert cut.keys() == whole.keys()
    for key in whole:
        assert torch.equal(cut[key], whole[key]), key
