"""Devices and precision (graft.devices): what each request resolves to on this machine, the refusals, and runs in
bf16 and under an out-of-memory device, on real tiny networks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import graft
from graft.cli import main
from graft.devices import Runtime, is_out_of_memory, machine_devices, resolve_device, resolve_precision
from graft.errors import GraftError
from graft.strategy import parse_strategy
from graft.training.engine import Trainer
from tests.conftest import TinyPooledCNN, randomize_bn
from tests.training.test_engine import _data

NO_CUDA = not torch.cuda.is_available()
NO_MPS = not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def _net(seed: int = 0):
    torch.manual_seed(seed)
    return graft.load_model(randomize_bn(TinyPooledCNN(classes=3)).eval(), label_names=["0", "1", "2"])


def _weights(run) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    meta = json.loads((run / "checkpoints" / "last.json").read_text())
    return load_file(str(run / "checkpoints" / meta["weights"]))


# ------------------------------------------------------------------ what a request resolves to
def test_auto_takes_what_the_machine_has():
    expected = "cuda" if not NO_CUDA else ("mps" if not NO_MPS else "cpu")
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert resolve_device("CPU") == torch.device("cpu")
    runtime = Runtime.resolve("cpu", "auto")
    assert (runtime.device, runtime.precision, runtime.channels_last, runtime.world_size) == ("cpu", "fp32", False, 1)
    assert runtime.scaler() is None and not runtime.pin_memory
    assert "cpu" in runtime.describe() and "fp32" in runtime.describe()


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA: the refusal is for machines without it")
@pytest.mark.parametrize("asked", ["cuda", "cuda:1"])
def test_cuda_without_cuda_says_what_the_machine_has(asked):
    with pytest.raises(GraftError) as info:
        resolve_device(asked)
    text = str(info.value)
    assert "no CUDA device" in text and "--device cpu" in text and repr(asked) in text


@pytest.mark.skipif(not NO_MPS, reason="this machine has MPS")
def test_mps_without_mps():
    with pytest.raises(GraftError, match="MPS"):
        resolve_device("mps")


@pytest.mark.parametrize("asked", ["gpu", "cuda:x", "tpu", ""])
def test_an_unknown_device_string(asked):
    with pytest.raises(GraftError, match="auto, cpu, cuda, cuda:N or mps"):
        resolve_device(asked)


def test_precisions_on_the_cpu():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(GraftError) as info:
        resolve_precision("fp16", cpu)
    assert "fp16" in str(info.value) and "bf16" in str(info.value)
    with pytest.raises(GraftError, match="auto, fp32, bf16, fp16"):
        resolve_precision("half", cpu)


def test_a_fixed_gpu_under_torchrun_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(GraftError, match="LOCAL_RANK"):
        Runtime.resolve("cuda:0")
    runtime = Runtime.resolve("cpu")
    assert (runtime.rank, runtime.world_size, runtime.local_rank, runtime.is_main) == (1, 2, 1, False)


def test_the_cli_refuses_a_device_the_machine_lacks(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", x=np.zeros((20, 3, 8, 8), np.float32), y=np.arange(20) % 2)
    asked = "cuda" if NO_CUDA else "tpu"
    code = main(["fit", "cifar_resnet20", "--random", "--data", str(tmp_path / "d.npz"), "--out",
                 str(tmp_path / "run"), "--device", asked, "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "error:" in err and asked in err and "Traceback" not in err
    assert not (tmp_path / "run" / "config.json").exists()
    code = main(["fit", "cifar_resnet20", "--random", "--data", str(tmp_path / "d.npz"), "--out",
                 str(tmp_path / "run"), "--device", "cpu", "--precision", "fp16", "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "fp16" in err and "bf16" in err


# ------------------------------------------------------------------ runs
def test_a_bf16_fit_on_the_cpu_trains_and_records_its_runtime(tmp_path):
    data = _data()
    graft.fine_tune(_net(), data, tmp_path / "fp32", strategy="full", epochs=2, batch_size=8,
                           progress=False, report=False, device="cpu", precision="fp32")
    bf16 = graft.fine_tune(_net(), data, tmp_path / "bf16", strategy="full", epochs=2, batch_size=8,
                           progress=False, report=False, device="cpu", precision="bf16")
    config = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert config["runtime"]["precision"] == "bf16" and config["runtime"]["device"] == "cpu"
    assert any("trained on cpu" in n and "bf16" in n for n in bf16.notes)
    history = [json.loads(line) for line in (tmp_path / "bf16" / "history.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in history)
    a, b = _weights(tmp_path / "fp32"), _weights(tmp_path / "bf16")
    assert all(v.dtype == torch.float32 for v in b.values() if v.is_floating_point())  # autocast: weights stay fp32
    changed = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert 0 < changed < 0.5  # another rounding, not another model


def test_auto_on_the_cpu_is_the_fp32_run(tmp_path):
    data = _data()
    graft.fine_tune(_net(), data, tmp_path / "a", strategy="full", epochs=1, batch_size=8, progress=False,
                    report=False)
    graft.fine_tune(_net(), data, tmp_path / "b", strategy="full", epochs=1, batch_size=8, progress=False,
                    report=False, device="cpu", precision="fp32")
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    if NO_CUDA and NO_MPS:
        assert all(torch.equal(a[k], b[k]) for k in a)


def _small_device(module: nn.Module, room: int, training_room: int | None = None) -> None:
    """``module`` as on a device that holds batches of at most ``room`` samples (``training_room`` in training):
    larger ones raise the error CUDA raises, torch.OutOfMemoryError."""
    forward = module.forward

    def limited(x):
        limit = training_room if module.training and training_room is not None else room
        if len(x) > limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate a batch of {len(x)}")
        return forward(x)

    module.forward = limited


def test_evaluation_halves_a_batch_that_runs_out_of_memory(tmp_path):
    backbone = _net()
    data = _data(n=120)
    trainer = Trainer(backbone, data, parse_strategy("full"), tmp_path, epochs=1, batch_size=8, progress=False)
    expected = trainer.evaluate("val")
    _small_device(backbone.module, room=5)
    got = trainer.evaluate("val")
    assert got["accuracy"] == pytest.approx(expected["accuracy"]) and got["loss"] == pytest.approx(expected["loss"])
    said = [n for n in trainer.notes if "ran out of memory" in n]
    assert said and "evaluated at" in said[-1]
    assert trainer._inference_batch("val") <= 5


def test_a_training_step_out_of_memory_names_the_batch_and_what_to_pass(tmp_path):
    backbone = _net()
    trainer = Trainer(backbone, _data(), parse_strategy("full"), tmp_path, epochs=1, batch_size=16, progress=False)
    _small_device(backbone.module, room=10**6, training_room=8)
    with pytest.raises(GraftError) as info:
        trainer.run()
    text = str(info.value)
    assert "batch of 16" in text and "--batch-size 8" in text


def test_out_of_memory_is_recognized():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert "CPU" in machine_devices()


def test_a_run_resumed_on_another_device_says_so(tmp_path):
    data = _data()
    run = tmp_path / "run"
    graft.fine_tune(_net(), data, run, strategy="full", epochs=1, batch_size=8, progress=False, report=False,
                    device="cpu")
    # a run started on a GPU: the checkpoint files are device-free; only its record says where it ran
    meta_path = run / "checkpoints" / "last.json"
    meta = json.loads(meta_path.read_text())
    meta["runtime"] = {"device": "cuda:0", "precision": "bf16", "world_size": 1}
    meta_path.write_text(json.dumps(meta))
    trainer = Trainer(_net(), data, parse_strategy("full"), run, epochs=2,
                      batch_size=8, progress=False)
    trainer.run(resume=True)
    assert any("resumed on cpu in fp32" in n and "cuda:0" in n for n in trainer.notes)
