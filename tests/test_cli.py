"""The ``graft`` command: as real processes where it matters (demo, the console script, error exits),
in-process through ``graft.cli.main`` where a process would only add start-up time."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graft
from graft.cli import main
from graft.demo import COMPARED, asset
from graft.errors import GraftError
from graft.models.checkpoint import graft_metadata
from tests.conftest import shared_file

ASSET = str(asset("cifar_resnet20.safetensors"))
CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# COLUMNS keeps rich from wrapping lines, so that names and messages can be matched whole.
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}


def graft_process(*args, cwd=None, timeout=300, script: str | None = None) -> subprocess.CompletedProcess:
    """Run ``graft ARGS`` as a real process (``python -m graft``, or the installed console script)."""
    cmd = [script] if script else [sys.executable, "-m", "graft"]
    return subprocess.run([*cmd, *map(str, args)], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def graft_call(capsys, *args) -> tuple[int, str, str]:
    """Run ``graft ARGS`` in this process; stdout as printed, stderr with its whitespace collapsed."""
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, " ".join(err.split())


def block_rows(text: str) -> list[tuple[int, str]]:
    """(index, name) of each row of the blocks table that ``graft inspect`` prints."""
    return [(int(m[1]), m[2]) for m in re.finditer(r"^\s*(\d+)\s*│\s*(\S+)\s*│", text, re.MULTILINE)]


# -- graft demo (one real run, shared by the tests below) -----------------------------------------------

@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    proc = graft_process("demo", "--out", out)
    return proc, out


@pytest.mark.slow
def test_demo_exits_0_and_writes_the_run_folder(demo):
    proc, out = demo
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "plan.json", "backbone.json", "dataset.json",
                                                "demo.json", "measures.json", "advice.json", "comparison.json",
                                                "report.html", "metrics.json", "learning_curves.png"}
    assert "graft demo" in proc.stdout and "reloaded model.safetensors" in proc.stdout
    for stage in ("the plan", "measure every layer", "compare strategies", "fit with the advice", "report:"):
        assert stage in proc.stdout, stage


@pytest.mark.slow
def test_demo_measurements(demo):
    _, out = demo
    summary = json.loads((out / "demo.json").read_text())
    assert summary["samples"] == 2000
    assert summary["logits_shape"] == [400, 10]  # the 20 % test split
    assert summary["reload_max_abs_diff"] < 1e-6, "the saved file alone rebuilds the same network"
    assert summary["forward_seconds"] > 0 and summary["total_seconds"] >= summary["forward_seconds"]
    advice = json.loads((out / "advice.json").read_text())
    comparison = json.loads((out / "comparison.json").read_text())
    assert summary["advice"] == advice["strategy"] and summary["best_compared"] == comparison["best"]
    ran = {e["strategy"] for e in comparison["strategies"]} | {d["strategy"] for d in comparison["dropped"]}
    assert ran == set(COMPARED) and "multilayer" in ran
    assert summary["test_accuracy"] > 0.5  # a trained head, far above chance (0.1)


@pytest.mark.slow
def test_demo_writes_plan_spec_and_dataset_as_json(demo):
    _, out = demo
    plan = graft.SurgeryPlan.from_json((out / "plan.json").read_text())
    assert plan.source.name == "cifar_resnet20" and plan.source.input.channels == 3
    assert plan.result_head.num_classes == 10
    assert (plan.result_input.channels, plan.result_input.size) == (1, (28, 28))
    assert plan.result_labels == tuple(str(d) for d in range(10))

    spec = graft.BackboneSpec.from_json((out / "backbone.json").read_text())
    assert spec.input.size == (28, 28) and spec.name == "cifar_resnet20"
    assert (spec.input.channels, spec.head.num_classes, spec.label_names) == (1, 10, plan.result_labels)

    data = graft.DatasetSpec.from_json((out / "dataset.json").read_text())
    assert (data.num_samples, data.input_shape) == (2000, (1, 28, 28))
    assert data.class_counts == (200,) * 10

    meta = graft_metadata(graft.read_checkpoint(out / "model.safetensors"))
    assert graft.SurgeryPlan.from_dict(meta["plan"]) == plan, "the model file carries the same plan as plan.json"


# -- graft inspect --------------------------------------------------------------------------------------

def test_inspect_the_embedded_asset_with_the_console_script():
    script = Path(sys.executable).parent / "graft"
    if not script.exists():
        pytest.skip(f"no console script next to {sys.executable}")
    proc = graft_process("inspect", ASSET, script=str(script))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "cifar_resnet20" in text and "(zoo;" in text
    assert "head: linear (linear, 64 -> 10)" in text
    assert "input: 3 channels, size 32x32" in text
    rows = block_rows(text)
    assert [i for i, _ in rows] == list(range(10))
    assert [n for _, n in rows] == ["conv1"] + [f"layer{s}.{b}" for s in (1, 2, 3) for b in range(3)]
    assert "labels (10): airplane, automobile" in text


def test_inspect_json(capsys):
    rc, out, _ = graft_call(capsys, "inspect", ASSET, "--json")
    assert rc == 0
    spec = graft.BackboneSpec.from_json(out)
    assert len(spec.blocks) == 10 and spec.head.num_classes == 10
    assert spec.name == "cifar_resnet20" and spec.origin == "zoo" and spec.weights == ASSET
    assert spec.label_names == CIFAR10
    assert spec.blocks[-1].out_shape == (64, 8, 8)


def test_inspect_overrides_the_normalization(capsys):
    rc, out, _ = graft_call(capsys, "inspect", ASSET, "--json", "--mean", "0.5", "0.5", "0.5", "--std", "0.2", "0.2",
                            "0.2")
    assert rc == 0
    spec = graft.BackboneSpec.from_json(out)
    assert spec.input.mean == (0.5, 0.5, 0.5) and spec.input.std == (0.2, 0.2, 0.2)


def test_version_and_usage(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"graft {graft.__version__}"
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2 and "usage: graft" in capsys.readouterr().err


# -- graft plan -----------------------------------------------------------------------------------------

def test_plan_to_a_number_of_classes_channels_and_size(capsys):
    rc, out, _ = graft_call(capsys, "plan", "cifar_resnet20", "--weights", ASSET, "--num-classes", 15,
                            "--in-chans", 1, "--input-size", 28, 28, "--json")
    assert rc == 0
    plan = graft.SurgeryPlan.from_json(out)
    assert plan.result_head.num_classes == 15
    assert plan.result_input.channels == 1 and plan.result_input.size == (28, 28)
    assert {s.kind for s in plan.steps} == {"head", "input_channels", "input_size"}
    assert plan.source.weights == ASSET


def test_plan_prints_a_readable_plan(capsys):
    rc, out, _ = graft_call(capsys, "plan", "cifar_resnet20", "--weights", ASSET, "--num-classes", 15)
    assert rc == 0
    assert "Surgery plan: cifar_resnet20 (10 classes, input (3, 32, 32)) -> 15 classes" in " ".join(out.split())
    assert "head" in out and "tensors:" in out


def test_plan_from_a_dataset_takes_its_labels_and_keeps_known_rows(capsys, pets_npz):
    rc, out, _ = graft_call(capsys, "plan", "cifar_resnet20", "--weights", ASSET, "--data", pets_npz, "--json")
    assert rc == 0
    plan = graft.SurgeryPlan.from_json(out)
    assert plan.result_labels == ("dog", "lizard", "cat"), "labels come from the file"
    assert plan.result_head.num_classes == 3
    assert (plan.result_input.channels, plan.result_input.size) == (1, (28, 28))
    assert plan.step("head").params["rows"] == [CIFAR10.index("dog"), None, CIFAR10.index("cat")] == [5, None, 3]


def test_plan_data_with_an_override(capsys, pets_npz):
    rc, out, _ = graft_call(capsys, "plan", "cifar_resnet20", "--weights", ASSET, "--data", pets_npz,
                            "--input-size", 32, 32, "--keep-rows", "never", "--json")
    assert rc == 0
    plan = graft.SurgeryPlan.from_json(out)
    assert plan.result_input.size == (32, 32) and plan.result_input.channels == 1
    assert plan.step("head").params["rows"] == [None, None, None]


@pytest.mark.parametrize("labels_arg, rows", [
    ("cat,dog,zebra", [3, 5, None]),
    ("file:cat\ndog\nzebra\n", [3, 5, None]),
])
def test_plan_labels_with_rows_required(capsys, tmp_path, labels_arg, rows):
    if labels_arg.startswith("file:"):
        (tmp_path / "labels.txt").write_text(labels_arg[5:])
        labels_arg = tmp_path / "labels.txt"
    rc, out, err = graft_call(capsys, "plan", "cifar_resnet20", "--weights", ASSET, "--labels", labels_arg,
                              "--keep-rows", "require", "--json")
    assert rc == 0, err
    plan = graft.SurgeryPlan.from_json(out)
    assert plan.result_labels == ("cat", "dog", "zebra")
    assert plan.step("head").params["rows"] == rows


def test_plan_label_map_keeps_rows_of_renamed_classes(capsys):
    rc, out, err = graft_call(capsys, "plan", "cifar_resnet20", "--weights", ASSET, "--labels", "kitty,dog",
                              "--label-map", "kitty=cat", "--keep-rows", "require", "--json")
    assert rc == 0, err
    assert graft.SurgeryPlan.from_json(out).step("head").params["rows"] == [3, 5]


def test_plan_truncated(capsys):
    rc, out, _ = graft_call(capsys, "plan", "cifar_resnet20", "--weights", ASSET, "--truncate-at", "layer2.2",
                            "--num-classes", 4, "--json")
    assert rc == 0
    plan = graft.SurgeryPlan.from_json(out)
    assert plan.step("truncate") is not None
    assert plan.result_head.num_classes == 4 and plan.result_head.in_features == 32


# -- errors: exit code 2, "error: expected ...", never a traceback --------------------------------------

def _garbage_npz(tmp_path):
    path = tmp_path / "trunc.npz"
    np.savez(tmp_path / "good.npz", x=np.zeros((4, 8, 8)), y=np.arange(4) % 2)
    path.write_bytes((tmp_path / "good.npz").read_bytes()[:100])
    return path


ERRORS = {
    # id: (argv, files to create in the working folder, fragments the message must hold)
    "missing-path": (["inspect", "does/not/exist.pth"], {}, ["does not exist", "does/not/exist.pth"]),
    "text-named-pt": (["inspect", "x.pt"], {"x.pt": "hello, I am text"}, ["x.pt", "checkpoint"]),
    "empty-file": (["inspect", "w.pth"], {"w.pth": ""}, ["an empty file"]),
    "folder": (["inspect", "somedir"], {"somedir/": None}, ["a folder"]),
    "text-as-weights": (["inspect", "cifar_resnet20", "--weights", "x.pt"], {"x.pt": "hello"}, ["x.pt"]),
    "unknown-name": (["inspect", "cifar_resnet21"], {}, ["cifar_resnet21", "did you mean", "'cifar_resnet20'"]),
    "no-target": (["plan", "cifar_resnet20", "--weights", ASSET], {}, ["what to adapt to", "--num-classes"]),
    "bad-label-map": (["plan", "cifar_resnet20", "--weights", ASSET, "--labels", "cat,dog", "--label-map", "foo"], {},
                      ["--label-map as new=old", "foo"]),
    "label-map-unknown-key": (["plan", "cifar_resnet20", "--weights", ASSET, "--labels", "cat,dog", "--label-map",
                               "kitty=cat"], {}, ["kitty"]),
    "unknown-block": (["plan", "cifar_resnet20", "--weights", ASSET, "--truncate-at", "nonexistent_block"], {},
                      ["'nonexistent_block'", "layer1.0", "layer3.2"]),
    "rows-required-none-match": (["plan", "cifar_resnet20", "--weights", ASSET, "--labels", "a,b", "--keep-rows",
                                  "require"], {}, ["matches a source class", "'a'"]),
    "zero-classes": (["plan", "cifar_resnet20", "--weights", ASSET, "--num-classes", "0"], {}, ["positive integer"]),
    "labels-vs-num-classes": (["plan", "cifar_resnet20", "--weights", ASSET, "--num-classes", "3", "--labels", "a,b"],
                              {}, ["3 label names", "2 names"]),
    "four-axis-size": (["plan", "cifar_resnet20", "--weights", ASSET, "--input-size", "1", "2", "3", "4"], {},
                       ["input_size"]),
    "missing-data": (["plan", "cifar_resnet20", "--weights", ASSET, "--data", "missing.npz"], {},
                     ["dataset", "missing.npz"]),
    "global-pool-on-pooled-net": (["plan", "cifar_resnet20", "--weights", ASSET, "--in-chans", "1", "--size-mode",
                                   "global_pool"], {},
                                  ["already pools globally"]),
}


def _make_files(folder: Path, files: dict):
    for name, content in files.items():
        if name.endswith("/"):
            (folder / name).mkdir()
        else:
            (folder / name).write_text(content)


@pytest.mark.parametrize("argv, files, fragments", list(ERRORS.values()), ids=list(ERRORS))
def test_errors_in_process(capsys, tmp_path, monkeypatch, argv, files, fragments):
    monkeypatch.chdir(tmp_path)
    _make_files(tmp_path, files)
    rc, out, err = graft_call(capsys, *argv)
    assert rc == 2
    assert err.startswith("error: expected "), err
    assert "fix:" in err and "Traceback" not in err and out == ""
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_error_for_a_truncated_npz(capsys, tmp_path):
    rc, _, err = graft_call(capsys, "plan", "cifar_resnet20", "--weights", ASSET, "--data", _garbage_npz(tmp_path))
    assert rc == 2 and err.startswith("error: expected ")


PROCESS_ERRORS = ["missing-path", "text-named-pt", "unknown-name", "no-target"]


@pytest.fixture(scope="module")
def error_processes(tmp_path_factory):
    """The PROCESS_ERRORS cases as real processes, started together to share their start-up time."""
    running = {}
    for case in PROCESS_ERRORS:
        argv, files, _ = ERRORS[case]
        folder = tmp_path_factory.mktemp(case)
        _make_files(folder, files)
        running[case] = subprocess.Popen([sys.executable, "-m", "graft", *argv], cwd=folder, env=ENV, text=True,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return {case: (p, *p.communicate(timeout=300)) for case, p in running.items()}


@pytest.mark.parametrize("case", PROCESS_ERRORS)
def test_errors_as_real_processes(error_processes, case):
    proc, out, err = error_processes[case]
    assert proc.returncode == 2, err
    assert "Traceback" not in err and out == ""
    flat = " ".join(err.split())
    assert flat.startswith("error: expected ") and "fix:" in flat
    for fragment in ERRORS[case][2]:
        assert fragment in flat, (fragment, flat)


# -- the real networks in ../shared ---------------------------------------------------------------------

MOBILENET = "mobilenetv2_100_imagenet.timm.safetensors"


@pytest.mark.shared
def test_inspect_resnet56_checkpoint(capsys):
    path = shared_file("weights", "resnet56-4bfd9763.th")
    rc, out, _ = graft_call(capsys, "inspect", path)
    assert rc == 0
    assert "cifar_resnet56" in out and "head: linear (linear, 64 -> 10)" in " ".join(out.split())
    rows = block_rows(out)
    assert len(rows) == 28, "the stem and 27 residual blocks"
    assert rows[0] == (0, "conv1") and rows[-1] == (27, "layer3.8")
    assert [i for i, _ in rows] == list(range(28))


@pytest.mark.shared
@pytest.mark.slow
def test_inspect_mobilenet_with_normalization_json(capsys):
    weights = shared_file("weights", MOBILENET)
    rc, out, _ = graft_call(capsys, "inspect", "mobilenetv2_100", "--weights", weights, "--mean", 0.5, 0.5, 0.5,
                            "--std", 0.5, 0.5, 0.5, "--json")
    assert rc == 0
    spec = graft.BackboneSpec.from_json(out)
    assert spec.origin == "timm" and spec.name == "mobilenetv2_100"
    assert spec.input.mean == (0.5, 0.5, 0.5) and spec.input.std == (0.5, 0.5, 0.5)
    assert spec.head.num_classes == 1000 and spec.label_names[:2] == ("tench", "goldfish")


@pytest.mark.shared
@pytest.mark.slow
def test_plan_mobilenet_to_grey_fish(capsys):
    weights = shared_file("weights", MOBILENET)
    rc, out, err = graft_call(capsys, "plan", "mobilenetv2_100", "--weights", weights, "--labels",
                              "tench,goldfish,my_fish", "--in-chans", 1, "--input-size", 124, 124, "--json")
    assert rc == 0, err
    plan = graft.SurgeryPlan.from_json(out)
    rows = plan.step("head").params["rows"]
    assert rows == [0, 1, None] and sum(r is not None for r in rows) == 2
    assert plan.result_head.num_classes == 3 and plan.result_labels == ("tench", "goldfish", "my_fish")
    assert (plan.result_input.channels, plan.result_input.size) == (1, (124, 124))


def test_demo_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    from graft.cli import main

    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert "other files" in " ".join(capsys.readouterr().err.split()) and (tmp_path / "mine.txt").read_text() == "keep me"


def test_demo_replaces_the_folder_a_failed_demo_left(tmp_path):
    """A first demo that failed half-way (a busy machine, Ctrl-C) leaves its marker: the next one starts over."""
    from rich.console import Console

    from graft.demo import STARTED, _fresh

    (tmp_path / STARTED).write_text("written by graft demo")
    (tmp_path / "measures.json").write_text("{}")  # what the failed run got to write
    _fresh(tmp_path, Console(file=open(tmp_path.parent / "log.txt", "w")))
    assert not tmp_path.exists(), "the half-done demo folder was cleared"
    (tmp_path / "sub").mkdir(parents=True)
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(GraftError, match="holds other files"):
        _fresh(tmp_path, Console(file=open(tmp_path.parent / "log.txt", "w")))
    assert (tmp_path / "mine.txt").read_text() == "keep me"


# -- the parser: option groups defined once ----------------------------------------------------------------

def _subcommands() -> dict:
    import argparse

    from graft.cli import build_parser

    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _group(add) -> dict:
    """dest -> action of the options that ``add`` (a group function of graft.cli.options) declares."""
    import argparse

    reference = argparse.ArgumentParser(add_help=False)
    add(reference)
    return {a.dest: a for a in reference._actions}


def _declared(action) -> tuple:
    return (action.option_strings, action.help, action.choices, action.type, action.nargs)


@pytest.mark.parametrize("group, commands", [
    ("data", {"data", "pretrain", "probe", "fit", "compare", "advise", "predict", "plan"}),
    ("model", {"inspect", "data", "probe", "fit", "compare", "advise", "plan"}),
])
def test_every_subcommand_shares_the_option_group(group, commands):
    from graft.cli import options

    add = {"data": options.add_data_options, "model": options.add_model_options}[group]
    reference = _group(add)
    first = next(iter(reference))  # the dataset or network itself: a positional or --data/--model
    having = {}
    for name, sub in _subcommands().items():
        actions = {a.dest: a for a in sub._actions if a.dest in reference and (a.option_strings or a.dest == first)}
        if set(actions) - {first}:
            having[name] = actions
    assert set(having) == commands
    for name, actions in having.items():
        assert set(actions) == set(reference), (name, set(reference) ^ set(actions))
        for dest, action in actions.items():
            if dest == first:
                assert action.help.endswith(reference[dest].help), (name, dest)
            else:
                assert _declared(action) == _declared(reference[dest]), (name, dest)


def test_each_command_keeps_its_default_validation_fraction():
    defaults = {name: sub.get_default("val") for name, sub in _subcommands().items() if sub.get_default("val") is not None}
    assert defaults == {"data": 0.0, "pretrain": 0.0, "probe": 0.0, "plan": 0.0, "predict": 0.0,
                        "fit": 0.1, "compare": 0.1, "advise": 0.1}


def test_every_subcommand_has_one_handler_and_the_same_json_flag():
    from graft.cli.options import JSON_HELP

    subs = _subcommands()
    assert all(callable(sub.get_default("handler")) for sub in subs.values())
    with_json = {name for name, sub in subs.items() if any(a.dest == "json" for a in sub._actions)}
    assert with_json == {"inspect", "audit", "data", "probe", "fit", "compare", "advise", "plan"}
    assert all(a.help == JSON_HELP for sub in subs.values() for a in sub._actions if a.dest == "json")


def test_main_turns_an_interrupt_into_exit_130(monkeypatch, capsys):
    import graft.cli.network

    def interrupted(args, console):
        raise KeyboardInterrupt

    monkeypatch.setattr(graft.cli.network, "inspect", interrupted)
    assert main(["inspect", "cifar_resnet20"]) == 130 and "interrupted" in capsys.readouterr().err


def test_an_error_message_is_printed_as_written(capsys):
    """GraftError text goes out verbatim: brackets in it are not taken for rich markup."""
    rc, out, err = graft_call(capsys, "plan", "cifar_resnet20", "--weights", ASSET, "--labels", "x,y", "--label-map",
                              "[red]z")
    assert rc == 2 and out == "" and "[red]z" in err
