"""graft compare / advise / report / fit --strategy auto from the command line, on a real archive."""

from __future__ import annotations

import json

import pytest

from graft.cli import main
from tests.conftest import write_shades


@pytest.fixture
def shades(tmp_path):
    return write_shades(tmp_path / "shades.npz", 120, 90, seed=1, step=40, labels=("dark", "grey", "<b>light</b>"))


@pytest.mark.slow
def test_compare_prints_a_table_and_writes_the_evidence(tmp_path, shades, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", "cifar_resnet20", "--random", "--data", str(shades), "--strategies", "linear,full",
                 "--budget", "30s", "--max-epochs", "2", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0 and "linear" in text and "full" in text and "best on validation" in text
    assert (out / "report.html").is_file() and "&lt;b&gt;light&lt;/b&gt;" in (out / "report.html").read_text()
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0 and (out / "report.html").is_file()


def test_compare_json_prints_the_comparison_alone(tmp_path, shades, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "cifar_resnet20", "--random", "--data", str(shades), "--strategies", "linear",
                 "--budget", "30s", "--max-epochs", "1", "--out", str(out), "--json"]) == 0
    text, err = capsys.readouterr()
    result = json.loads(text)  # stdout is the JSON and nothing else
    assert result == json.loads((out / "comparison.json").read_text())
    assert [e["strategy"] for e in result["strategies"]] == ["linear"] and result["best"] == "linear"
    assert "best on validation" in err  # the table and messages went to stderr


def test_advise_prints_reasons_and_json(tmp_path, shades, capsys):
    assert main(["advise", "cifar_resnet20", "--random", "--data", str(shades), "--out", str(tmp_path / "a")]) == 0
    text = capsys.readouterr().out
    assert "advice:" in text and "scenario:" in text and "candidates:" in text
    saved = json.loads((tmp_path / "a" / "measures.json").read_text())
    advised = json.loads((tmp_path / "a" / "advice.json").read_text())
    names = {c["strategy"] for c in advised["candidates"]}
    if saved["multilayer"] is not None:  # by default it runs only where its candidate could win
        assert saved["multilayer"]["accuracy"] == advised["measurements"]["multilayer_accuracy"]
        assert "multilayer" in names and "multilayer" in text
    else:
        assert any(n.startswith("multilayer probe skipped: even with a perfect multilayer measure") for n in saved["notes"])
        assert "multilayer" not in names
    assert main(["advise", "cifar_resnet20", "--random", "--data", str(shades), "--json", "--no-multilayer"]) == 0
    advice = json.loads(capsys.readouterr().out)
    assert advice["strategy"] in {c["strategy"] for c in advice["candidates"]} and advice["reasons"]
    assert "multilayer" not in {c["strategy"] for c in advice["candidates"]}
    assert "multilayer_accuracy" not in advice["measurements"]


@pytest.mark.slow
def test_fit_auto_from_the_command_line(tmp_path, shades, capsys):
    run = tmp_path / "auto"
    code = main(["fit", "cifar_resnet20", "--random", "--data", str(shades), "--strategy", "auto", "--epochs", "2",
                 "--out", str(run), "--quiet"])
    text = capsys.readouterr().out
    assert code == 0 and "advice:" in text and "report:" in text
    advice = json.loads((run / "advice.json").read_text())
    assert json.loads((run / "run.json").read_text())["strategy"] == advice["strategy"]


def test_report_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "error" in capsys.readouterr().err


def test_advise_refuses_an_unknown_multilayer_setting(shades):
    from graft.errors import GraftError
    from graft.api import advise

    with pytest.raises(GraftError, match='multilayer=True, False or "auto"'):
        advise("cifar_resnet20", str(shades), load_options={"pretrained": False}, multilayer="always")
