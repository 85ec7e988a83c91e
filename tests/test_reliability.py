"""Nothing lost, nothing run, every bad input answered (issue 17): the measured failures, each as a test.

Each test reproduces a case that failed on main before the fix: markup in names and messages, a full disk, a
damaged or tampered checkpoint, two processes on one run folder, a class name matplotlib reads as TeX, and what
killed writers leave behind. They run on real files, real processes and real training (tiny networks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import graft
from graft.cli import main
from graft.errors import GraftError
from tests.conftest import write_shades

pytestmark = pytest.mark.reliability
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


# -- 1. markup in paths, names and messages -------------------------------------------------------------------
def test_a_path_with_markup_is_printed_as_it_is(tmp_path, capsys):
    path = tmp_path / "nope[/]x.npz"
    assert main(["data", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "nope[/]x.npz" in err and "Traceback" not in err


def test_a_suggested_regex_keeps_its_brackets(tmp_path, capsys):
    folder = tmp_path / "flat"
    folder.mkdir()
    for i in range(3):
        (folder / f"a_{i}.png").write_bytes(b"")
    assert main(["data", str(folder)]) == 2
    assert r"(?P<label>[a-z]+)_\d+" in capsys.readouterr().err


NAMES = ("[/b]", "[a-z]+", ":smile:", "[bold]x")


def test_renders_print_names_literally():
    from graft.training.metrics import classification_report

    text = classification_report([0, 1, 2, 3], [0, 1, 2, 2], NAMES).render()
    for name in NAMES:
        assert name in text


def test_model_and_plan_renders_print_names_literally(pooled_cnn):
    import dataclasses

    backbone = graft.load_model(pooled_cnn, num_classes=10, in_chans=3, input_size=(16, 16))
    name = "net[/b] :smile: [a-z]+"
    backbone.spec = dataclasses.replace(backbone.spec, name=name)
    assert backbone.spec.render().startswith(name + "  (")
    plan = graft.plan_surgery(backbone, num_classes=4, in_chans=3, input_size=(16, 16))
    assert plan.render().startswith(f"Surgery plan: {name} (10 classes")


# -- 2. a full disk, and what killed writers leave ------------------------------------------------------------
WRITE_WITH_A_LIMIT = """
import resource, signal, sys, torch
from torch import nn
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit, a write fails with EFBIG instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
from graft.errors import GraftError
from graft.training.checkpoints import save_checkpoint
from graft.surgery.saving import save_model
import graft
module = nn.Linear(64, 64)
try:
    WHAT
except GraftError as exc:
    print("GRAFT:" + str(exc))
    sys.exit(2)
"""


@pytest.mark.parametrize("what", [
    "save_checkpoint(sys.argv[1], 'last', module, torch.optim.AdamW(module.parameters()), {'epoch': 1})",
    "save_model(graft.load_model(nn.Sequential(nn.Flatten(), nn.Linear(64, 2000))), sys.argv[1] + '/model.safetensors')",
])
def test_a_full_disk_is_one_message_and_leaves_no_temporary_file(tmp_path, what):
    folder = tmp_path / "out"
    folder.mkdir()
    proc = subprocess.run([sys.executable, "-c", WRITE_WITH_A_LIMIT.replace("WHAT", what), str(folder)],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and proc.stdout.startswith("GRAFT:expected room to write")
    assert "free some disk space" in proc.stdout
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


def test_what_a_killed_writer_left_is_removed_by_the_next_write(tmp_path):
    from graft.files import remove_orphans, write_atomic

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    try:
        (tmp_path / f".last-1.safetensors.{dead}.abc_1.tmp").write_bytes(b"half")  # its writer is gone
        (tmp_path / f".last-2.safetensors.{child.pid}.xyz.tmp").write_bytes(b"being written")  # alive
        (tmp_path / f".{'0' * 40}.{dead}.q1w2").mkdir()  # a cache entry's temporary folder
        write_atomic(tmp_path / "keep.json", "{}")
        assert remove_orphans(tmp_path) and sorted(p.name for p in tmp_path.iterdir()) == [
            f".last-2.safetensors.{child.pid}.xyz.tmp", "keep.json"]
    finally:
        child.kill()
        child.wait()


# -- 3. damaged and tampered checkpoints ----------------------------------------------------------------------
def _fit(run, data, epochs=3, extra=()):
    return main(["fit", "cifar_resnet20", "--random", "--data", str(data), "--strategy", "full", "--epochs",
                 str(epochs), "--lr", "0.01", "--out", str(run), "--quiet", *extra])


@pytest.fixture
def shades_npz(tmp_path):
    return write_shades(tmp_path / "shades.npz")


def test_resume_falls_back_to_the_checkpoint_before_a_damaged_last(tmp_path, shades_npz, capsys):
    from safetensors.torch import load_file

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert _fit(whole, shades_npz) == 0
    assert _fit(cut, shades_npz, epochs=3) == 0
    # make cut look interrupted after epoch 3 with its last checkpoint damaged: resume must use epoch 2's
    (cut / "model.safetensors").unlink()
    ckpt = cut / "checkpoints"
    last = json.loads((ckpt / "last.json").read_text())
    previous = json.loads((ckpt / "last.previous.json").read_text())
    assert previous["state"]["epoch"] == 2 and last["state"]["epoch"] == 3
    weights = ckpt / last["weights"]
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated
    capsys.readouterr()
    assert _fit(cut, shades_npz, extra=["--resume"]) == 0
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    record = json.loads((cut / "run.json").read_text())
    assert any("resumed from the checkpoint before the last (epoch 2)" in n for n in record["notes"])
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(cut / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same weights as the run never interrupted
    history = [json.loads(line) for line in (cut / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2, 3]


def test_resume_with_no_intact_checkpoint_says_what_to_do(tmp_path, shades_npz, capsys):
    run = tmp_path / "r"
    assert _fit(run, shades_npz, epochs=2) == 0
    (run / "model.safetensors").unlink()
    for name in ("last", "last.previous"):
        meta = json.loads((run / "checkpoints" / f"{name}.json").read_text())
        (run / "checkpoints" / meta["weights"]).write_bytes(b"truncated")
    capsys.readouterr()
    assert _fit(run, shades_npz, epochs=2, extra=["--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "does not match its digest" in err and "another --out" in err


def test_a_pickle_in_place_of_a_checkpoint_is_refused_in_one_message(tmp_path, shades_npz, capsys):
    import hashlib

    run = tmp_path / "r"
    assert _fit(run, shades_npz, epochs=2) == 0
    (run / "model.safetensors").unlink()
    ckpt = run / "checkpoints"
    for name in ("last", "last.previous"):
        meta = json.loads((ckpt / f"{name}.json").read_text())
        target = ckpt / meta["weights"]
        torch.save({"x": torch.zeros(2)}, target)  # a pickle, its digest updated as a tamperer would
        h = hashlib.blake2b(target.read_bytes(), digest_size=16).hexdigest()
        meta["files"][meta["weights"]] = h
        (ckpt / f"{name}.json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert _fit(run, shades_npz, epochs=2, extra=["--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "safetensors cannot read" in err and "Traceback" not in err


# -- 4. two processes on one run folder -----------------------------------------------------------------------
def test_a_second_process_on_the_same_run_folder_is_refused_with_the_first_ones_pid(tmp_path):
    from graft.files import folder_lock

    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom graft.files import folder_lock\n"
                               "with folder_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)",
                               str(run)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(GraftError, match=f"in use by process {holder.pid}"):
            with folder_lock(run):
                pass
        code = main(["fit", "cifar_resnet20", "--random", "--data", str(tmp_path / "none.npz"), "--out", str(run)])
        assert code == 2
    finally:
        holder.kill()
        holder.wait()
    with folder_lock(run), folder_lock(run):  # free again, and re-entrant within one process
        pass


def test_two_fits_on_one_folder_one_is_refused(tmp_path, shades_npz):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "graft", "fit", "cifar_resnet20", "--random", "--data", str(shades_npz),
               "--strategy", "full", "--epochs", "30", "--out", str(run), "--quiet"]
    first = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (run / "config.json").is_file() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120)
    first.wait(timeout=300)
    assert first.returncode == 0, first.stderr.read()[-2000:]
    assert second.returncode == 2 and f"in use by process {first.pid}" in " ".join(second.stderr.split())


# -- 5. a class name matplotlib would read as TeX -------------------------------------------------------------
def test_a_tex_class_name_neither_crashes_nor_loses_the_model(tmp_path, capsys):
    data = write_shades(tmp_path / "tex.npz", labels=(r"$\notacommand$", "a$b", "plain"))
    run = tmp_path / "run"
    assert _fit(run, data, epochs=1) == 0
    assert (run / "model.safetensors").is_file() and (run / "confusion.png").stat().st_size > 0
    assert graft.load_run(run).spec.label_names[0] == r"$\notacommand$"


def test_a_plot_that_fails_after_training_is_a_note_and_the_model_is_kept(tmp_path, monkeypatch):
    import graft.report.plots as plots

    def broken(*args, **kwargs):
        raise ValueError("the plot could not be drawn")

    monkeypatch.setattr(plots, "plot_run", broken)  # any failure of a plot, whatever its cause
    run = tmp_path / "run"
    record = graft.fine_tune("cifar_resnet20", write_shades(tmp_path / "d.npz"), run, strategy="full", epochs=1,
                             load_options={"pretrained": False}, progress=False)
    assert (run / "model.safetensors").is_file() and (run / "report.html").is_file()
    assert any("confusion.png was not written (ValueError: the plot could not be drawn)" in n for n in record.notes)
    assert not record.warnings


# -- the lock file does not get in the way of what reads a run folder -----------------------------------------
def test_a_finished_run_folder_holds_only_the_lock_file_besides_its_own(tmp_path, shades_npz):
    run = tmp_path / "run"
    assert _fit(run, shades_npz, epochs=1) == 0
    assert (run / ".graft.lock").read_text() == ""  # released: nobody holds it
    assert np.isfinite(json.loads((run / "run.json").read_text())["final_accuracy"])
