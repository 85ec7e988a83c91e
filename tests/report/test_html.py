"""write_report on real run folders: every section, embedded PNGs, no URL, escaping, partial and broken folders."""

from __future__ import annotations

import base64
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import graft
from graft.errors import GraftError
from graft.report import render_report, report_sections, write_comparison_plots, write_report

HOSTILE = ["<script>alert(1)</script>", 'a&b "q"', "light"]
ALL_SECTIONS = ["header", "plan", "measures", "advice", "comparison", "history", "metrics", "model_card"]
RUN_NAME = 'run <b>&"x"'
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_BUILT: dict[str, Path] = {}


def comparison_example(label_names=HOSTILE) -> dict:
    """A comparison.json as graft compare writes it: two seeds of linear, full without a test score, a scratch
    run whose history has no validation accuracy, and a dropped strategy."""
    def run(seed, val, test, seconds, recall, history):
        return {"seed": seed, "run_dir": f"runs/x-s{seed}", "epochs": len(history), "val_accuracy": val,
                "test_accuracy": test, "macro_f1": 0.7, "train_seconds": seconds, "trainable_params": 195,
                "total_params": 269000, "latency_ms": 0.4, "per_class_recall": recall, "history": history}

    def history(values, step=2.0):
        return [{"epoch": i + 1, "val_accuracy": v, "elapsed": step * (i + 1), "loss": 1.0 - 0.1 * i,
                 "train_accuracy": 0.5} for i, v in enumerate(values)]

    def summary(runs, key):
        values = [r[key] for r in runs if r[key] is not None]
        return (float(np.mean(values)) if values else None), (float(np.std(values)) if values else None)

    strategies = {"linear": [run(0, 0.8, 0.78, 12.0, [0.9, 0.7, 0.75], history([0.5, 0.7, 0.8])),
                             run(1, 0.7, 0.74, 14.0, [0.8, 0.6, 0.8], history([0.4, 0.6, 0.7], 2.5))],
                  "full": [run(0, 0.9, None, 30.0, [1.0, 0.9, 0.8], history([0.6, 0.9], 15.0))],
                  "scratch": [run(0, None, 0.4, 25.0, [0.3, 0.4, 0.5],
                                  [{"epoch": 1, "loss": 2.0, "elapsed": 12.0}, {"epoch": 2, "loss": 1.8}])]}
    entries = []
    for name, runs in strategies.items():
        keys = ("val_accuracy", "test_accuracy", "macro_f1", "train_seconds", "latency_ms")
        pairs = {k: summary(runs, k) for k in keys}
        entries.append({"strategy": name, "runs": runs, "mean": {k: v[0] for k, v in pairs.items()},
                        "std": {k: v[1] for k, v in pairs.items()}})
    return {"model": "cifar_resnet20", "data": "digits", "budget_seconds": 120.0, "seeds": [0, 1],
            "label_names": list(label_names), "split": "test", "strategies": entries,
            "dropped": [{"strategy": "lp-ft", "why": "did not fit the budget <i>really</i>"}], "best": "full",
            "notes": ["full has no test score: <img src=x onerror=alert(1)>"]}


def advice_example() -> dict:
    return {"strategy": "partial:2", "options": {"lr": 0.001}, "tap_layer": "layer3.2",
            "unfreeze": ["layer3.1", "layer3.2"], "scenario": "small data, similar to the source",
            "reasons": ["the best probe layer is layer3.2 <b>not bold</b>", "few samples per class"],
            "candidates": [{"strategy": "partial:2", "score": 0.8, "why": "best probe near the top"},
                           {"strategy": "linear", "score": 0.6, "why": "cheapest"}],
            "trials": [{"strategy": "partial:2", "rounds": [{"budget_seconds": 10.0, "epochs": 2, "val_accuracy": 0.7}]}],
            "measurements": {"train_samples": 60, "classes": 3, "samples_per_class_min": 20, "best_layer": "layer3.2",
                             "best_probe_accuracy": 0.8, "last_probe_accuracy": 0.7}}


def build_run(tmp_path_factory) -> Path:
    """One real fit run with measures, advice and a comparison, built once per session (copy it before use)."""
    if "run" not in _BUILT:
        base = tmp_path_factory.mktemp("report_run")
        rng = np.random.default_rng(0)
        y = np.arange(90) % 3
        x = (rng.normal(60, 20, (90, 12, 12)) + 60 * y[:, None, None]).clip(0, 255).astype(np.uint8)
        data = base / "hostile.npz"
        np.savez(data, x_train=x[:60], y_train=y[:60], x_test=x[60:], y_test=y[60:], label_names=np.array(HOSTILE))
        run = base / RUN_NAME
        graft.fine_tune("cifar_resnet20", data, run, strategy="two-phase", epochs=2,
                        load_options={"pretrained": False}, progress=False)
        graft.probe("cifar_resnet20", data, out=run, plot=True, layers=["layer2.2", "layer3.2"], folds=2,
                    load_options={"pretrained": False})
        (run / "advice.json").write_text(json.dumps(advice_example()))
        comparison = comparison_example()
        (run / "comparison.json").write_text(json.dumps(comparison))
        write_comparison_plots(run, comparison)
        _BUILT["run"] = run
    return _BUILT["run"]


@pytest.fixture
def full_run(tmp_path_factory, tmp_path) -> Path:
    copy = tmp_path / RUN_NAME
    shutil.copytree(build_run(tmp_path_factory), copy, ignore=shutil.ignore_patterns("checkpoints", "report.html"))
    return copy


class PageParts(HTMLParser):
    """Every tag's attributes, the ids, and the image sources of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    @property
    def ids(self) -> set[str]:
        return {attrs["id"] for _, attrs in self.tags if "id" in attrs}

    @property
    def images(self) -> list[str]:
        return [attrs.get("src", "") for tag, attrs in self.tags if tag == "img"]


def decoded_images(text: str) -> list[bytes]:
    images = PageParts(text).images
    assert all(src.startswith("data:image/png;base64,") for src in images), [s[:40] for s in images]
    return [base64.b64decode(src.split(",", 1)[1], validate=True) for src in images]


def test_a_full_run_gets_every_section_with_embedded_images(full_run):
    path = write_report(full_run)
    assert path == full_run / "report.html" and path.is_file()
    assert report_sections(full_run) == ALL_SECTIONS
    text = path.read_text(encoding="utf-8")
    parts = PageParts(text)
    assert set(ALL_SECTIONS) <= parts.ids
    images = decoded_images(text)
    # confusion, measures, the history curves and the three comparison plots
    assert len(images) == 6 and all(png.startswith(PNG_SIGNATURE) and len(png) > 2000 for png in images)
    for tag, attrs in parts.tags:
        for name in ("src", "href", "action", "data"):
            value = attrs.get(name) or ""
            assert not value.startswith(("http:", "https:", "//")), (tag, name, value[:60])
    assert "http://" not in text and "https://" not in text and "<script" not in text.lower()
    assert "graft.load_run(" in text and "graft predict" in text and "layer3.2" in text and "partial:2" in text
    assert "runs/x-s1" in text and "the short trials below decided" not in text


def test_strings_from_the_files_are_escaped(full_run):
    text = write_report(full_run).read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert 'a&b "q"' not in text and "a&amp;b &quot;q&quot;" in text
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "<b>not bold</b>" not in text and "<i>really</i>" not in text
    assert "run &lt;b&gt;&amp;&quot;x&quot;" in text and 'run <b>&"x"' not in text
    assert {tag for tag, _ in PageParts(text).tags} <= {"html", "head", "meta", "title", "style", "body", "main",
                                                        "header", "h1", "h2", "h3", "dl", "dt", "dd", "nav", "a",
                                                        "section", "p", "b", "br", "span", "ol", "ul", "li", "table",
                                                        "thead", "tbody", "tr", "th", "td", "figure", "img", "pre"}


def test_rebuilding_gives_the_same_valid_file(full_run):
    first = write_report(full_run).read_bytes()
    second = write_report(full_run).read_bytes()
    assert first == second and first.rstrip().endswith(b"</html>")
    assert sorted(p.name for p in full_run.iterdir() if "report" in p.name) == ["report.html"]  # no temp file left


def test_a_plain_fit_run_renders_without_the_auto_and_compare_artifacts(full_run):
    for name in ("measures.json", "measures.png", "advice.json", "comparison.json", "learning_curves.png",
                 "accuracy_vs_time.png", "per_class.png"):
        (full_run / name).unlink()
    assert report_sections(full_run) == ["header", "plan", "history", "metrics", "model_card"]
    text = write_report(full_run).read_text(encoding="utf-8")
    assert len(decoded_images(text)) == 2 and 'id="comparison"' not in text and 'id="advice"' not in text


@pytest.mark.parametrize("files, sections, images", [
    (["comparison.json"], ["header", "comparison"], 3),  # plots drawn from comparison.json when the PNGs are absent
    (["comparison.json", "learning_curves.png", "accuracy_vs_time.png", "per_class.png"], ["header", "comparison"], 3),
    (["advice.json"], ["header", "advice"], 0),
    (["measures.json"], ["header", "measures"], 0),
    (["metrics.json", "confusion.png"], ["header", "metrics"], 1),
    (["history.jsonl"], ["header", "history"], 1),
    (["plan.json"], ["header", "plan"], 0),
    (["config.json", "run.json"], ["header", "model_card"], 0),
])
def test_a_folder_with_some_artifacts_renders_those(full_run, tmp_path, files, sections, images):
    folder = tmp_path / "partial"
    folder.mkdir()
    for name in files:
        shutil.copy(full_run / name, folder / name)
    assert report_sections(folder) == sections
    text = write_report(folder).read_text(encoding="utf-8")
    assert len(decoded_images(text)) == images and "could not" not in text


def test_a_comparison_with_missing_scores_renders(tmp_path):
    comparison = comparison_example(["dark", "grey", "light"])
    for strategy in comparison["strategies"]:
        strategy["mean"]["test_accuracy"] = None
        for run in strategy["runs"]:
            run["test_accuracy"] = None
    comparison["seeds"] = [0]
    (tmp_path / "comparison.json").write_text(json.dumps(comparison))
    text = write_report(tmp_path).read_text(encoding="utf-8")
    assert report_sections(tmp_path) == ["header", "comparison"] and len(decoded_images(text)) == 3
    assert "this section could not be shown" not in text


@pytest.mark.parametrize("make, got", [
    (lambda p: p / "missing", "no such folder"),
    (lambda p: p, "holding nothing"),
    (lambda p: (p / "notes.txt").write_text("hi") and p, "holding notes.txt"),
    (lambda p: (p / "weights.pt").write_bytes(b"x") and p / "weights.pt", "a file"),
])
def test_a_folder_that_is_not_a_run_gives_a_clear_error(tmp_path, make, got):
    folder = make(tmp_path)
    with pytest.raises(GraftError) as caught:
        write_report(folder)
    message = str(caught.value)
    assert "expected a run folder" in message and got in message and "fix:" in message and "--out" in message
    assert not (tmp_path / "report.html").exists()


def test_broken_artifacts_are_reported_in_the_page(full_run):
    (full_run / "metrics.json").write_text("{not json")
    with (full_run / "history.jsonl").open("a") as file:
        file.write('{"epoch": 3, "loss"\n')
    (full_run / "comparison.json").write_text(json.dumps({"strategies": "linear, full"}))
    (full_run / "advice.json").write_text(json.dumps(["partial:2"]))
    text = write_report(full_run).read_text(encoding="utf-8")
    assert "metrics.json could not be read" in text and "history.jsonl line 3 is not a JSON object" in text
    assert "advice.json could not be read" in text and 'id="history"' in text
    assert 'id="metrics"' in text  # confusion.png is still there to show
    assert "this section could not be shown: comparison.json" in text


def test_render_report_matches_the_written_file(full_run):
    assert render_report(full_run) == write_report(full_run).read_text(encoding="utf-8")
