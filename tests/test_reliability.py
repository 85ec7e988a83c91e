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
from pathlib import Path

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


def test_an_out_that_is_a_file_is_one_message(tmp_path, shades_npz, capsys):
    (tmp_path / "taken").write_text("a file, not a folder")
    assert _fit(tmp_path / "taken", shades_npz, epochs=1) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("error: expected a run folder graft can create or write") and "FileExistsError" in err
    assert (tmp_path / "taken").read_text() == "a file, not a folder"


def test_two_fits_on_one_folder_one_is_refused(tmp_path, shades_npz):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "graft", "fit", "cifar_resnet20", "--random", "--data", str(shades_npz),
               "--strategy", "full", "--epochs", "1000", "--out", str(run), "--quiet"]
    first = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (run / "config.json").is_file() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        second = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first run ended before the second asked: " + first.stderr.read()[-2000:]
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2 and f"in use by process {first.pid}" in " ".join(second.stderr.split())
    assert not (run / "model.safetensors").exists()  # the second wrote nothing into the first's folder


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


# -- 6. bad data answered, never accepted silently or blamed on the wrong cause --------------------------------
def test_a_series_of_length_zero_is_refused(tmp_path):
    np.savez(tmp_path / "empty.npz", x=np.zeros((40, 1, 0), dtype=np.float32), y=np.arange(40) % 2)
    with pytest.raises(GraftError, match=r"empty along axis 2"):
        graft.load_data(tmp_path / "empty.npz")


def test_a_text_file_named_npz_is_called_what_it_is(tmp_path):
    (tmp_path / "table.npz").write_text("a,b,label\n1,2,cat\n")
    with pytest.raises(GraftError, match=r"text starting 'a,b,labe', not a zip") as caught:
        graft.load_data(tmp_path / "table.npz")
    assert "truncated" not in str(caught.value)


def test_an_object_array_is_refused_without_unpickling_it(tmp_path):
    x = np.empty(4, dtype=object)
    x[:] = [np.zeros(3)] * 4
    np.savez(tmp_path / "objects.npz", x=x, y=np.arange(4) % 2)
    with pytest.raises(GraftError, match=r"array 'x' of Python objects \(dtype object\)") as caught:
        graft.load_data(tmp_path / "objects.npz")
    assert "truncated" not in str(caught.value) and "np.asarray(x, dtype=np.float32)" in str(caught.value)


def test_a_wav_that_is_not_audio_says_what_it_holds(tmp_path):
    pytest.importorskip("librosa")
    from graft.data.audio import _unreadable

    fake = tmp_path / "a.wav"
    fake.write_text("hello, this is text")
    reason = _unreadable(str(fake), Exception(""))  # audioread's NoBackendError has no message
    assert reason.startswith("not audio: it starts with 'hello, this ', not a WAV")
    (tmp_path / "b.wav").write_bytes(b"")
    assert _unreadable(str(tmp_path / "b.wav"), Exception("")) == "an empty file (0 bytes)"
    (tmp_path / "c.wav").write_bytes(b"RIFF\x00\x00")
    assert _unreadable(str(tmp_path / "c.wav"), RuntimeError("")).startswith("RuntimeError (a damaged")


# -- 9. a final figure on the split that chose it is said to be optimistic ------------------------------------
def test_without_a_test_split_the_final_accuracy_is_called_optimistic(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    np.savez(tmp_path / "d.npz", x=(rng.normal(60, 20, (60, 12, 12)) + 60 * y[:, None, None]).astype(np.uint8), y=y)
    run = tmp_path / "r"
    assert main(["fit", "cifar_resnet20", "--random", "--data", str(tmp_path / "d.npz"), "--strategy", "full",
                 "--epochs", "1", "--out", str(run), "--quiet", "--val", "0.3"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "val accuracy" in out and "(optimistic: no test split" in out
    record = json.loads((run / "run.json").read_text())
    assert record["final_split"] == "val" and any(n.startswith("optimistic, no test split") for n in record["notes"])
    with_test = tmp_path / "t"
    assert _fit(with_test, write_shades(tmp_path / "s.npz"), epochs=1) == 0
    assert not any("optimistic" in n for n in json.loads((with_test / "run.json").read_text())["notes"])


# -- 10. a backbone saved without its classifier --------------------------------------------------------------
def test_a_backbone_file_without_its_classifier_loads_and_the_plan_says_the_head_is_new(tmp_path, capsys):
    from safetensors.torch import save_file

    net = graft.load_model("cifar_resnet20", pretrained=False)
    head = net.spec.head.name  # "linear" in this zoo network
    body = {k: v.contiguous() for k, v in net.module.state_dict().items() if not k.startswith(head + ".")}
    save_file(body, str(tmp_path / "backbone.safetensors"))
    loaded = graft.load_model(tmp_path / "backbone.safetensors", arch="cifar_resnet20")
    report = loaded.load_report
    assert report.head_missing == (f"{head}.weight", f"{head}.bias") and not report.missing
    assert "no classifier in the file" in report.summary()
    plan = graft.plan_surgery(loaded, num_classes=10)  # as many classes as the missing head: replaced anyway
    assert "has no classifier" in plan.step("head").reason and plan.step("head").params["rows"] == [None] * 10
    run = tmp_path / "r"
    assert main(["fit", str(tmp_path / "backbone.safetensors"), "--arch", "cifar_resnet20", "--data",
                 str(write_shades(tmp_path / "s.npz")), "--epochs", "1", "--out", str(run), "--quiet"]) == 0
    assert (run / "model.safetensors").is_file()
    partial = {k: v for k, v in body.items() if not k.startswith("layer3.2")}
    with pytest.raises(GraftError, match=r"strict=False \(--partial-weights\)"):  # part of the body missing: refused
        graft.load_model("cifar_resnet20", weights=partial)
    save_file(partial, str(tmp_path / "partial.safetensors"))
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "partial.safetensors"), "--arch", "cifar_resnet20", "--partial-weights"]) == 0
    assert "missing from the file (10" in capsys.readouterr().out


# -- 11. class names that are bare numbers do not match by default --------------------------------------------
def test_numbered_classes_keep_no_head_rows_unless_asked(pooled_cnn):
    source = graft.load_model(pooled_cnn, num_classes=10, in_chans=3, input_size=(16, 16),
                              label_names=[str(i) for i in range(1, 11)])
    plan = graft.plan_surgery(source, num_classes=4, label_names=["1", "2", "3", "cat"], in_chans=3,
                              input_size=(16, 16))
    step = plan.step("head")
    assert step.params["rows"] == [None] * 4 and "only a number" in step.reason and "keep_rows='require'" in step.reason
    asked = graft.plan_surgery(source, num_classes=4, label_names=["1", "2", "3", "cat"], in_chans=3,
                               input_size=(16, 16), keep_rows="require")
    assert asked.step("head").params["rows"] == [0, 1, 2, None]
    named = graft.load_model(pooled_cnn, in_chans=3, input_size=(16, 16),
                             label_names=["cat", "7", "dog", *(f"c{i}" for i in range(7))])
    mixed = graft.plan_surgery(named, num_classes=2, label_names=["dog", "7"], in_chans=3, input_size=(16, 16))
    assert mixed.step("head").params["rows"] == [2, None]  # a real name still matches; the number does not


# -- 7. offline: fast answers --------------------------------------------------------------------------------
def test_an_unreachable_host_is_said_within_seconds():
    from graft.errors import HubUnavailableError
    from graft.models.hub import require_reachable

    t0 = time.perf_counter()
    with pytest.raises(HubUnavailableError, match=r"to download the weights from nothing.invalid; got no connection"):
        require_reachable("nothing.invalid", "the weights", "pass a local file")
    print(f"unreachable host answered in {time.perf_counter() - t0:.2f} s")


def test_a_hub_model_offline_fails_at_once_with_the_offline_message(tmp_path):
    env = {**ENV, "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "https://nothing.invalid", "TORCH_HOME": str(tmp_path)}
    env.pop("HF_HUB_OFFLINE")
    for extra in ({}, {"HF_HUB_OFFLINE": "1"}):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "graft", "inspect", "resnet18"], capture_output=True, text=True,
                              env={**env, **extra}, timeout=120)
        text = " ".join(proc.stderr.split())
        assert proc.returncode == 2 and "no connection" in text and "pass a local weights file" in text, text
        assert "Traceback" not in proc.stderr
        print(f"graft inspect resnet18 offline {extra}: {time.perf_counter() - t0:.1f} s")


def test_weights_in_the_hub_cache_load_offline(tmp_path, monkeypatch):
    import timm
    from safetensors.torch import save_file

    repo = timm.models.get_pretrained_cfg("resnet18").hf_hub_id
    snapshot = tmp_path / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    reference = timm.create_model("resnet18", pretrained=False)
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(snapshot / "model.safetensors"))
    code = ("import sys, torch, graft\nnet = graft.load_model('resnet18')\nref = torch.load(sys.argv[1], "
            "weights_only=True)\nassert all(torch.equal(v, ref[k]) for k, v in net.module.state_dict().items())\n"
            "print('cached', net.spec.weights)")
    torch.save(reference.state_dict(), tmp_path / "ref.pt")
    env = {**ENV, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "https://nothing.invalid"}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "ref.pt")], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("cached"), proc.stderr[-2000:]


# -- graft audit: what a file holds, nothing executed ----------------------------------------------------------
class _Payload:
    """A pickle that would run a command when loaded (the attack torch.load without weights_only allows)."""

    def __reduce__(self):
        return (os.system, ("echo pwned > PWNED",))


def test_audit_names_what_a_malicious_pickle_would_call_and_runs_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"weight": torch.zeros(3), "extra": _Payload()}, tmp_path / "evil.pt")
    torch.save({"weight": torch.zeros(3), "bias": torch.ones(2)}, tmp_path / "plain.pt")
    (evil,), (plain,) = graft.audit(tmp_path / "evil.pt"), graft.audit(tmp_path / "plain.pt")
    assert not evil.safe and any(kind == "UNSAFE" and name.endswith(".system") for name, kind in evil.globals)
    assert "graft refuses it" in evil.verdict and not (tmp_path / "PWNED").exists()
    assert plain.safe and plain.kind == "torch-zip" and "weights_only=True" in plain.verdict
    assert main(["audit", str(tmp_path / "evil.pt")]) == 1
    out = capsys.readouterr().out
    assert "beyond what weights_only allows" in out and "system" in out and not (tmp_path / "PWNED").exists()
    assert main(["audit", str(tmp_path / "plain.pt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["kind"] == "torch-zip"


def test_audit_of_a_run_folder_checks_every_file_and_the_checkpoint_digests(tmp_path, shades_npz, capsys):
    run = tmp_path / "r"
    assert _fit(run, shades_npz, epochs=2) == 0
    found = {Path(f.path).name: f for f in graft.audit(run)}
    model = found["model.safetensors"]
    assert model.kind == "safetensors" and model.tensors > 50 and "nothing in it can run" in model.verdict
    assert "a graft model: cifar_resnet20, 3 classes" in str(model.metadata["graft"])
    assert found["checkpoints"].verdict == "digests match" and all(f.safe for f in found.values())
    capsys.readouterr()
    last = json.loads((run / "checkpoints" / "last.json").read_text())
    weights = run / "checkpoints" / last["weights"]
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated
    assert main(["audit", str(run)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "truncated: the tensors need" in out and "does not match its digest" in out
    assert main(["audit", str(tmp_path / "nothing")]) == 2


# -- kills at random points: every interrupted run resumes to what an uninterrupted one reaches ----------------
def _kill_after_an_epoch(command, run, delay: float) -> bool:
    """Start ``command``; once it has written a checkpoint newer than the one it started from, wait ``delay`` s (into
    the next epoch, or the write of its checkpoint) and SIGKILL it; whether it was killed."""
    import signal

    def epoch() -> int:
        try:
            return json.loads((run / "checkpoints" / "last.json").read_text())["state"]["epoch"]
        except (OSError, ValueError, KeyError):
            return 0

    before = epoch()
    proc = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while proc.poll() is None and epoch() <= before and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


@pytest.mark.slow
def test_a_fit_killed_at_random_points_resumes_to_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    rng = np.random.default_rng(17)
    y = np.arange(480) % 3
    x = (rng.normal(60, 20, (480, 16, 16)) + 60 * y[:, None, None]).clip(0, 255).astype(np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x[:420], y_train=y[:420], x_test=x[420:], y_test=y[420:])

    def command(out, resume=False):
        return [sys.executable, "-m", "graft", "fit", "cifar_resnet20", "--random", "--data", str(tmp_path / "d.npz"),
                "--strategy", "two-phase", "--epochs", "6", "--batch-size", "16", "--lr", "0.01", "--out", str(out),
                "--quiet", *(["--resume"] if resume else [])]

    whole = tmp_path / "whole"
    subprocess.run(command(whole), env=ENV, check=True, capture_output=True, timeout=600)
    reference = load_file(str(whole / "model.safetensors"))
    cut = tmp_path / "cut"
    kills = 0
    for delay in rng.uniform(0.0, 0.6, size=3):  # seeded: the same points in every run, whatever the machine's speed
        kills += _kill_after_an_epoch(command(cut, resume=(cut / "config.json").is_file()), cut, float(delay))
    proc = subprocess.run(command(cut, resume=(cut / "config.json").is_file()), env=ENV, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    print(f"killed {kills} times at seeded random points, then resumed to the end")
    assert kills == 3
    got = load_file(str(cut / "model.safetensors"))
    assert got.keys() == reference.keys() and all(torch.equal(got[k], reference[k]) for k in reference)
    leftovers = [p.name for p in (cut / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []  # what the killed writers left was removed by the next write


EXTRACT = """
import sys, graft
network = graft.load_model("cifar_resnet20", weights=sys.argv[3])  # the same weights in every process
features = graft.extract_features(network, sys.argv[1], cache_dir=sys.argv[2], batch_size=8, progress=False)
print(features.key, features.from_cache)
"""


def _weights(tmp_path) -> str:
    """A cifar_resnet20's random weights in a file: processes that load it extract the same features."""
    from safetensors.torch import save_file

    net = graft.load_model("cifar_resnet20", pretrained=False)
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in net.module.state_dict().items()}, str(path))
    return str(path)


@pytest.mark.slow
def test_a_feature_extraction_killed_midway_leaves_a_cache_that_matches_an_uninterrupted_one(tmp_path):
    import signal

    rng = np.random.default_rng(3)
    y = np.arange(4000) % 4
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 255, (4000, 3, 32, 32), dtype=np.uint8), y=y)
    cache = tmp_path / "cache"
    weights = _weights(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", EXTRACT, str(tmp_path / "d.npz"), str(cache), weights], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not (cache.is_dir() and any(cache.iterdir())):
        time.sleep(0.02)
    time.sleep(float(rng.uniform(0.2, 1.0)))  # into the extraction, its entry half-written
    assert proc.poll() is None, "the extraction finished before it could be killed: make the data larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not [p for p in cache.iterdir() if not p.name.startswith(".")]  # no entry: the half-written one is hidden
    again = subprocess.run([sys.executable, "-c", EXTRACT, str(tmp_path / "d.npz"), str(cache), weights], env=ENV,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    key, from_cache = again.stdout.split()
    entries = [p.name for p in cache.iterdir() if not p.name.endswith(".lock")]
    assert from_cache == "False" and entries == [key]  # the killed writer's temporary folder was removed
    fresh = tmp_path / "fresh"
    done = subprocess.run([sys.executable, "-c", EXTRACT, str(tmp_path / "d.npz"), str(fresh), weights], env=ENV,
                          check=True, capture_output=True, text=True, timeout=600)
    assert done.stdout.split()[0] == key  # the same model and data: the same entry
    arrays = sorted((fresh / key).glob("*.npy"))
    assert len(arrays) >= 10
    for array in arrays:
        assert np.array_equal(np.load(array), np.load(cache / key / array.name)), array.name


# -- 8. measures taken far below the source's input size say so ----------------------------------------------
def test_measures_far_below_the_source_input_size_say_the_size_is_the_cause(tmp_path, pooled_cnn):
    data = write_shades(tmp_path / "s.npz")  # 12x12 images
    trained_large = graft.load_model(pooled_cnn, num_classes=10, in_chans=3, input_size=(64, 64))
    measures = graft.probe(trained_large, data, multilayer=False, cache_dir=tmp_path / "cache")
    note = next(n for n in measures.notes if "far below" in n)
    assert note.startswith("the network runs at 12x12, far below the 64x64 it was trained at")
    assert "--input-size 36 36" in note and note in " ".join(measures.render(width=400).split())
    at_size = graft.probe(trained_large, data, multilayer=False, input_size=(48, 48), cache_dir=tmp_path / "cache")
    assert not any("far below" in n for n in at_size.notes)  # 48 of 64: near enough
    trained_small = graft.load_model(pooled_cnn, num_classes=10, in_chans=3, input_size=(16, 16))
    assert not any("far below" in n for n in graft.probe(trained_small, data, multilayer=False,
                                                           cache_dir=tmp_path / "cache").notes)


EXTRACT_SAY = EXTRACT.replace("print(features.key, features.from_cache)",
                              "print(features.key, features.from_cache, any('waited' in n for n in features.notes))")


@pytest.mark.slow
def test_two_processes_extracting_the_same_features_compute_them_once(tmp_path):
    rng = np.random.default_rng(5)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 255, (6000, 3, 32, 32), dtype=np.uint8), y=np.arange(6000) % 4)
    cache = tmp_path / "cache"
    command = [sys.executable, "-c", EXTRACT_SAY, str(tmp_path / "d.npz"), str(cache), _weights(tmp_path)]
    first = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while first.poll() is None and time.monotonic() < deadline and not (cache.is_dir() and any(cache.iterdir())):
        time.sleep(0.02)
    second = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0 and second.returncode == 0, err[-2000:] + second.stderr[-2000:]
    (key, computed, _), (same, read, waited) = out.split(), second.stdout.split()
    assert key == same and computed == "False" and read == "True"  # computed once, read by the other
    assert waited == "True", "the second process did not have to wait: make the extraction longer"
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == [key]
