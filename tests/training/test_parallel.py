"""Data-parallel training under torchrun (graft.training.parallel, graft.distributed): each rank's part of the
global batches, and real 2-process launches on the gloo backend that reach one process's weights, survive a
rank that dies, and refuse a resume under another number of processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader, TensorDataset

from graft.training.parallel import global_order, rank_batches

TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")


# ------------------------------------------------------------------ the batches of each rank
@pytest.mark.parametrize("n, seed", [(50, 0), (97, 3)])
def test_the_global_order_is_the_shuffled_loaders(n, seed):
    ds = TensorDataset(torch.arange(n))
    loader = DataLoader(ds, batch_size=n, shuffle=True, generator=torch.Generator().manual_seed(seed))
    (drawn,) = next(iter(loader))
    assert torch.equal(drawn, global_order(n, seed))


@pytest.mark.parametrize("n, batch, world", [(50, 16, 2), (33, 8, 3), (17, 16, 4), (9, 4, 8)])
def test_the_ranks_split_every_global_batch_between_them(n, batch, world):
    order = global_order(n, 1)
    parts = [rank_batches(order, batch, r, world) for r in range(world)]
    steps = len(parts[0])
    assert all(len(p) == steps for p in parts)  # every rank takes every step: no all-reduce waits forever
    for step in range(steps):
        whole = order[step * batch:(step + 1) * batch].numpy()
        real = [p[step] for p in parts if not p[step][2]]
        assert np.array_equal(np.concatenate([index for index, _, _ in real]), whole)
        assert all(size == len(whole) for _, size, _ in (p[step] for p in parts))
        for index, _, dummy in (p[step] for p in parts):  # a stand-in part counts 0 and runs the whole batch
            assert not dummy or np.array_equal(index, whole)
        # the loss factors: DDP divides the sum of the ranks' gradients by the world size
        factors = sum((0.0 if dummy else world / size) * len(index) for index, size, dummy in (p[step] for p in parts))
        assert factors / world == pytest.approx(1.0)


# ------------------------------------------------------------------ real launches
def _data(path: Path) -> Path:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 26)
    x = (rng.normal(size=(len(y), 3, 32, 32)) + y[:, None, None, None] * 0.3).astype(np.float32)
    np.savez(path, x=x, y=y)
    return path


def _fit(args: list[str], processes: int, env=None, **kwargs) -> subprocess.CompletedProcess | subprocess.Popen:
    base = [sys.executable, "-m", "graft", "fit"] if processes == 1 else \
        [TORCHRUN, f"--nproc_per_node={processes}", "--standalone", "-m", "graft", "fit"]
    full = {**os.environ, "OMP_NUM_THREADS": "1", "GRAFT_DIST_TIMEOUT": "60", **(env or {})}
    if kwargs.pop("background", False):
        return subprocess.Popen(base + args, env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    return subprocess.run(base + args, env=full, capture_output=True, text=True, timeout=300, **kwargs)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def _close(a: dict, b: dict, tol: float = 1e-5) -> float:
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].is_floating_point())
    assert worst < tol, worst
    return worst


@pytest.mark.parametrize("strategy", ["full", "two-phase"])
@pytest.mark.slow
@pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed")
def test_two_processes_reach_the_weights_of_one(tmp_path, strategy):
    """test_convnext normalizes with LayerNorm (nothing depends on the batch), and 104 training samples in batches
    of 16 leave a last global batch of 8: its split and the loss factors are exact."""
    data = _data(tmp_path / "d.npz")
    common = ["test_convnext", "--random", "--data", str(data), "--strategy", strategy, "--epochs", "3",
              "--batch-size", "16", "--val", "0", "--device", "cpu", "--quiet"]
    one = _fit([*common, "--out", str(tmp_path / "one")], 1)
    two = _fit([*common, "--out", str(tmp_path / "two")], 2)
    assert one.returncode == 0, one.stdout + one.stderr
    assert two.returncode == 0, two.stdout + two.stderr
    _close(_weights(tmp_path / "one"), _weights(tmp_path / "two"))
    config = json.loads((tmp_path / "two" / "config.json").read_text())
    assert config["runtime"]["world_size"] == 2 and config["runtime"]["device"] == "cpu"
    run = json.loads((tmp_path / "two" / "run.json").read_text())
    assert any("2 processes, DistributedDataParallel" in n for n in run["notes"])
    assert two.stdout.count(f"{strategy}: 3 epochs") == 1  # rank 0 alone reports
    history = (tmp_path / "two" / "history.jsonl").read_text().splitlines()
    assert len(history) == 3  # rank 0 alone writes


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed")
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finding the ranks' processes needs /proc")
def test_a_rank_that_dies_stops_the_others_and_the_run_resumes(tmp_path):
    data = _data(tmp_path / "d.npz")
    out = tmp_path / "run"
    common = ["test_convnext", "--random", "--data", str(data), "--strategy", "full", "--epochs", "40",
              "--batch-size", "16", "--val", "0", "--device", "cpu", "--quiet", "--out", str(out)]
    launcher = _fit(common, 2, background=True)
    last = out / "checkpoints" / "last.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (last.is_file() and json.loads(last.read_text())["state"]["epoch"] >= 2):
        time.sleep(0.2)
    assert last.is_file(), "no checkpoint was written"
    ranks = _children(launcher.pid)
    assert len(ranks) == 2, ranks
    os.kill(max(ranks), signal.SIGKILL)  # one rank dies (the later-started one: rank 1 almost always)
    output, _ = launcher.communicate(timeout=120)
    assert launcher.returncode != 0
    assert "SIGKILL" in output or "exitcode" in output  # torchrun names the rank that failed
    # the survivor says why, and how to go on
    assert "stopped by torchrun" in output or "another rank stopped" in output, output[-6000:]
    assert "--resume" in output
    # one process may not resume a two-process run: the global batches would be split otherwise
    alone = _fit([*common, "--resume"], 1)
    assert alone.returncode == 2 and "torchrun --nproc_per_node=2" in alone.stderr and "Traceback" not in alone.stderr
    again = _fit([*common, "--resume"], 2)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((out / "run.json").read_text())["epochs_run"] == 40
    # the same weights as a run never interrupted, in one process
    whole = _fit([*common[:-1], str(tmp_path / "whole")], 1)
    assert whole.returncode == 0, whole.stderr
    _close(_weights(out), _weights(tmp_path / "whole"), tol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed")
def test_pretrain_on_two_processes_reaches_the_weights_of_one(tmp_path):
    data = _data(tmp_path / "d.npz")
    outs = {}
    for processes in (1, 2):
        out = tmp_path / f"p{processes}"
        base = [sys.executable, "-m", "graft"] if processes == 1 else \
            [TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "graft"]
        done = subprocess.run([*base, "pretrain", "test_convnext", str(data), "--out", str(out), "--epochs", "2",
                               "--batch-size", "24", "--val", "0.2", "--device", "cpu"], capture_output=True, text=True,
                              timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stdout + done.stderr
        outs[processes] = done.stdout
    _close(_weights(tmp_path / "p1"), _weights(tmp_path / "p2"))
    assert outs[2].count("saved ") == 1  # rank 0 alone reports
    one = [json.loads(line) for line in (tmp_path / "p1" / "history.jsonl").read_text().splitlines()]
    two = [json.loads(line) for line in (tmp_path / "p2" / "history.jsonl").read_text().splitlines()]
    assert len(two) == 2
    for a, b in zip(one, two):  # the metrics are reduced over the ranks: those of one process
        assert a["train_accuracy"] == pytest.approx(b["train_accuracy"])
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["eval_accuracy"] == pytest.approx(b["eval_accuracy"])


def test_a_rank_loader_follows_the_shuffled_loader_epoch_after_epoch():
    from graft.data import load_data
    from graft.devices import CPU
    from graft.training.parallel import RankLoader

    data = load_data((np.arange(30, dtype=np.float32).reshape(30, 1, 1, 1).repeat(4, 2).repeat(4, 3),
                      np.arange(30) % 3), layout="NCHW")
    single = data.loader("train", 8, seed=5)
    ranks = RankLoader(data, "train", 8, 5, CPU)
    for _ in range(3):  # one generator across epochs, in both
        want = [x[:, 0, 0, 0] for x, _ in single]
        got = [x[:, 0, 0, 0] for x, _, _ in ranks]
        assert all(torch.equal(a, b) for a, b in zip(want, got)) and len(want) == len(got)


@pytest.mark.slow
@pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed")
def test_compare_under_torchrun_trains_every_run_data_parallel(tmp_path):
    data = _data(tmp_path / "d.npz")
    out = tmp_path / "cmp"
    done = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "graft", "compare", "test_convnext",
                           "--random", "--data", str(data), "--strategies", "full,two-phase,multilayer",
                           "--budget", "90s", "--max-epochs", "3", "--batch-size", "16", "--device", "cpu",
                           "--out", str(out)], capture_output=True, text=True, timeout=400,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((out / "comparison.json").read_text())
    assert [e["strategy"] for e in result["strategies"]] == ["full", "two-phase"]
    assert any(d["strategy"] == "multilayer" and "one pass" in d["why"] for d in result["dropped"])
    for entry in result["strategies"]:
        run = Path(entry["runs"][0]["run_dir"])
        assert json.loads((run / "config.json").read_text())["runtime"]["world_size"] == 2
        assert (run / "model.safetensors").is_file() and entry["runs"][0]["latency_ms"] > 0
    assert (out / "report.html").is_file()
    assert done.stdout.count("best on validation") == 1  # rank 0 alone reports
