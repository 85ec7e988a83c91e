"""The HTML report of a run folder: one self-contained file (images as data URIs, inline CSS, no script, no URL).

:func:`write_report` rebuilds ``run_dir/report.html`` from the artifacts in the folder alone, whichever of them
exist: ``config.json``, ``run.json``, ``plan.json``, ``history.jsonl``, ``metrics.json`` + ``confusion.png``
(a fit run), ``measures.json`` + ``measures.png`` and ``advice.json`` (an auto run), ``comparison.json`` and
its plots (a compare folder). Each section appears only when its artifact does. Every string that comes from
the files (class names, run names, notes) is HTML-escaped; a Content-Security-Policy forbids scripts and any
load beyond the embedded images, so the page opens offline and runs nothing.
"""

from __future__ import annotations

import datetime
import json
import shlex
from pathlib import Path

from graft.errors import GraftError
from graft.files import write_atomic
from graft.report.markup import STYLE, _escape, _format, _Html, _image, _items, _pairs, _table, _warnings
from graft.strategy.registry import registered_strategies

ARTIFACTS = ("config.json", "run.json", "plan.json", "history.jsonl", "metrics.json", "measures.json", "advice.json",
             "comparison.json")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_TENSOR_ROWS = 40
def _mean_std(summary: dict, key: str, runs: list) -> str:
    mean, std = (summary.get("mean") or {}).get(key), (summary.get("std") or {}).get(key)
    if mean is None:
        return "-"
    text = _format(mean, 1 if key == "train_seconds" else 3)
    return text + (f" ± {_format(std, 1 if key == 'train_seconds' else 3)}" if len(runs) > 1 and std else "")


def _relative(path, run) -> str:
    """``path`` relative to the report's folder when it lies inside it (run folders of a comparison)."""
    if not path:
        return "-"
    try:
        return str(Path(path).resolve().relative_to(run.path.resolve()))
    except ValueError:
        return str(path)


def _description(name: str | None) -> str:
    """The registered description of the strategy a run used ('' for one this graft does not know)."""
    definition = registered_strategies().get(name or "")
    return definition.description if definition else ""


def _strategy_label(strategy) -> str | None:
    if isinstance(strategy, dict):
        name = strategy.get("name")
        return f"{name}:{strategy['k']}" if strategy.get("k") else name
    return strategy


class _RunFolder:
    """The artifacts of one folder, parsed; files that cannot be read are listed in ``problems``."""

    def __init__(self, run_dir):
        self.path = Path(run_dir).expanduser()
        fix = "pass the folder a graft fit, graft auto or graft compare run wrote (its --out)"
        expected = f"a run folder holding at least one of {', '.join(ARTIFACTS)}"
        if not self.path.is_dir():
            raise GraftError(expected, f"{self.path}: {'a file' if self.path.exists() else 'no such folder'}", fix)
        self.files: dict[str, object] = {}
        self.problems: list[str] = []
        for name in ARTIFACTS:
            file = self.path / name
            if file.is_file():
                try:
                    self.files[name] = self._read(file)
                except (OSError, UnicodeDecodeError, ValueError) as exc:
                    self.problems.append(f"{name} could not be read ({exc}); what it holds is left out of the report")
        if not self.files and not self.problems:
            found = sorted(p.name for p in self.path.iterdir())[:8]
            raise GraftError(expected, f"{self.path} holding {', '.join(found) or 'nothing'}", fix)

    def _read(self, file: Path):
        text = file.read_text(encoding="utf-8")
        if file.suffix == ".jsonl":
            entries = []
            for number, line in enumerate(text.splitlines(), 1):
                try:
                    entry = json.loads(line) if line.strip() else None
                except ValueError:
                    entry = "bad"
                if isinstance(entry, dict):
                    entries.append(entry)
                elif entry is not None:
                    self.problems.append(f"{file.name} line {number} is not a JSON object; it is left out")
            return entries
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError(f"a JSON {type(value).__name__}, not an object")
        return value

    def get(self, name: str) -> dict:
        return self.files.get(name) or {}

    def png(self, name: str) -> bytes | None:
        file = self.path / name
        data = file.read_bytes() if file.is_file() else None
        return data if data and data.startswith(PNG_SIGNATURE) else None

    def date(self) -> str:
        times = [(self.path / n).stat().st_mtime for n in ARTIFACTS if (self.path / n).is_file()]
        stamp = datetime.datetime.fromtimestamp(max(times), tz=datetime.UTC) if times else None
        return stamp.strftime("%Y-%m-%d %H:%M UTC") if stamp else "-"


def _header(run: _RunFolder) -> str:
    config, record, comparison = run.get("config.json"), run.get("run.json"), run.get("comparison.json")
    measures, plan, advice = run.get("measures.json"), run.get("plan.json"), run.get("advice.json")
    model = (config.get("model") or comparison.get("model") or measures.get("model")
             or (plan.get("source") or {}).get("name"))
    strategy = _strategy_label(config.get("strategy")) or record.get("strategy") or advice.get("strategy")
    if comparison and not strategy:
        entries = comparison.get("strategies") if isinstance(comparison.get("strategies"), list) else []
        strategy = f"comparison of {sum(isinstance(e, dict) for e in entries)} strategies"
    try:
        from importlib.metadata import version

        report_version = version("graft-ml")
    except ImportError:  # PackageNotFoundError is an ImportError: a source tree that is not installed
        report_version = "unknown"
    result = None
    if record.get("final_accuracy") is not None:
        result = f"{record.get('final_split')} accuracy {_format(record['final_accuracy'])}"
    body = _pairs([("model", model), ("data", config.get("data_name") or comparison.get("data") or measures.get("data")),
                   ("strategy", strategy), ("result", result), ("date", run.date()),
                   ("graft version", f"{config.get('graft') or report_version} (report: {report_version})")])
    name = run.path.resolve().name
    return f'<header id="header"><h1>graft report: {_escape(name)}</h1>{body}{_warnings(run.problems)}</header>'


def _plan(run: _RunFolder) -> str:
    plan = run.get("plan.json")
    source, head = plan.get("source") or {}, plan.get("result_head") or {}
    intro = (f"<p>{_escape(source.get('name', '?'))} ({_escape(_format((source.get('head') or {}).get('num_classes')))}"
             f" classes) becomes a network of {_escape(_format(head.get('num_classes')))} classes.</p>")
    steps = []
    for step in plan.get("steps") or []:
        text = f"<b>{_escape(step.get('kind', '?'))}</b>: {_escape(step.get('summary', ''))}"
        if step.get("reason"):
            text += f"<br><span class=muted>why: {_escape(step['reason'])}</span>"
        text += _items([f"other option: {a}" for a in step.get("alternatives") or []])
        steps.append(_Html(text))
    tensors = plan.get("tensors") or []
    counts = ", ".join(f"{sum(t.get('action') == a for t in tensors)} {a}" for a in ("reused", "resized", "new",
                                                                                     "dropped"))
    changed = [t for t in tensors if t.get("action") != "reused"]
    rows = [(t.get("action"), t.get("name"), "x".join(map(str, t.get("old_shape") or [])) or "-",
             "x".join(map(str, t.get("new_shape") or [])) or "-",
             {True: "yes", False: "frozen"}.get(t.get("trainable"), ""), t.get("note", "")) for t in changed]
    more = (f"<p class=muted>... and {len(rows) - MAX_TENSOR_ROWS} more changed tensors (plan.json lists them)</p>"
            if len(rows) > MAX_TENSOR_ROWS else "")
    table = _table(("action", "tensor", "old shape", "new shape", "trainable", "note"), rows[:MAX_TENSOR_ROWS])
    verified = f"<p>checked: {_escape(plan['verified'])}</p>" if plan.get("verified") else ""
    return (intro + (_items(steps, ordered=True) or "<p>nothing to change: the network already fits.</p>")
            + _warnings(plan.get("warnings")) + f"<p>tensors: {_escape(counts)}</p>" + (table if rows else "")
            + more + verified)


def _measures(run: _RunFolder) -> str:
    measures = run.get("measures.json")
    parts = []
    if measures:
        best = measures.get("best_layer")
        layers = measures.get("layers") or []
        parts.append(f"<p>{_escape(measures.get('model', '?'))} on {_escape(measures.get('data', '?'))}: "
                     f"{_escape(_format(measures.get('num_train')))} training samples, "
                     f"{len(measures.get('label_names') or [])} classes; probe evaluated on "
                     f"{_escape(measures.get('eval_split', '?'))}.</p>")
        rows = [(e.get("name"), e.get("dim"), None if e.get("probe_accuracy") is None else _Html(_escape(
            f"{_format(e['probe_accuracy'])} ({_format(e.get('probe_low'))}-{_format(e.get('probe_high'))})")),
            e.get("logme"), e.get("h_score"), e.get("similarity"), "best" if e.get("name") == best else "")
            for e in layers]
        parts.append(_table(("layer", "dim", "probe accuracy (95% CI)", "LogME", "H-score", "similarity", ""), rows,
                            {i for i, e in enumerate(layers) if e.get("name") == best}))
        parts.append(f"<p><b>best layer: {_escape(best)}</b>: {_escape(measures.get('best_reason', ''))}</p>")
        if measures.get("multilayer"):
            from graft.measures.summary import multilayer_line

            parts.append(f"<p>{_escape(multilayer_line(measures['multilayer']))}</p>")
        if measures.get("leep") is not None:
            parts.append(f"<p>source head: LEEP {_escape(_format(measures['leep']))}, NCE "
                         f"{_escape(_format(measures.get('nce')))} (closer to 0: the source's classes predict the new "
                         "ones better)</p>")
        parts.append(_items([measures["similarity_note"]] if measures.get("similarity_note") else [])
                     + _items(measures.get("notes") or []))
    return "".join(parts) + _image(run.png("measures.png"), "per-layer probe accuracy, LogME and similarity")


def _advice(run: _RunFolder) -> str:
    advice = run.get("advice.json")
    recommended = advice.get("strategy")
    intro = _pairs([("recommended strategy", recommended), ("options", advice.get("options")),
                    ("scenario", advice.get("scenario")), ("features tapped at", advice.get("tap_layer")),
                    ("blocks unfrozen", advice.get("unfreeze"))])
    candidates = advice.get("candidates") or []
    parts = [intro, "<h3>why</h3>" + _items(advice.get("reasons") or [])]
    if advice.get("ambiguous"):
        parts.append("<p>the top candidates scored within the advisor's margin: "
                     + ("the short trials below decided.</p>" if advice.get("trials") else "no trial ran.</p>"))
    if candidates:
        parts.append("<h3>candidates</h3>" + _table(
            ("strategy", "score", "why"), [(c.get("strategy"), c.get("score"), c.get("why", "")) for c in candidates],
            {i for i, c in enumerate(candidates) if c.get("strategy") == recommended}))
    rows = [(trial.get("strategy"), number, _Html(_escape(_format(r.get("budget_seconds"), 1))), r.get("epochs"),
             r.get("val_accuracy"))
            for trial in advice.get("trials") or [] for number, r in enumerate(trial.get("rounds") or [], 1)]
    if rows:
        parts.append("<h3>trials</h3>" + _table(("strategy", "round", "budget (s)", "epochs", "val accuracy"), rows))
    if advice.get("measurements"):
        parts.append("<h3>measurements</h3>" + _pairs(advice["measurements"].items()))
    return "".join(parts)


def _comparison(run: _RunFolder) -> str:
    from graft.report.compare_plots import PLOT_FILES, render_comparison_plots

    comparison = run.get("comparison.json")
    if not isinstance(comparison.get("strategies"), list):
        raise ValueError(f"'strategies' is {type(comparison.get('strategies')).__name__}, not a list")
    strategies = [s for s in comparison["strategies"] if isinstance(s, dict)]
    best = comparison.get("best")
    budget = comparison.get("budget_seconds")
    intro = (f"<p>{len(strategies)} strategies on {_escape(comparison.get('data', '?'))}, seeds "
             f"{_escape(_format(comparison.get('seeds')))}"
             f"{', a budget of ' + _escape(_format(budget, 0)) + ' s in all, split equally' if budget else ''}. "
             f"Best by validation accuracy: <b>{_escape(best or '-')}</b> (the "
             f"{_escape(comparison.get('split') or 'test')} accuracy is reported, never used to choose).</p>")
    rows = []
    for s in strategies:
        runs = [r for r in s.get("runs") or [] if isinstance(r, dict)]
        params = runs[0] if runs else {}
        rows.append((s.get("strategy"), len(runs), *(_mean_std(s, k, runs) for k in (
            "val_accuracy", "test_accuracy", "macro_f1", "train_seconds", "latency_ms")),
            f"{_format(params.get('trainable_params'))} of {_format(params.get('total_params'))}"))
    table = _table(("strategy", "seeds", "val accuracy", "test accuracy", "macro-F1", "train seconds", "latency (ms)",
                    "trained parameters"), rows, {i for i, s in enumerate(strategies) if s.get("strategy") == best})
    dropped = _items([f"{d.get('strategy')}: {d.get('why', '')}" for d in comparison.get("dropped") or []
                      if isinstance(d, dict)])
    plots = {name: run.png(name) for name in PLOT_FILES}
    if not all(plots.values()):
        drawn = render_comparison_plots(comparison)
        plots = {name: png or drawn[name] for name, png in plots.items()}
    alts = ("validation accuracy per epoch of each strategy", "accuracy against training time",
            "per-class recall of each strategy")
    notes = _items(comparison.get("notes") or [])
    runs = [(s.get("strategy"), r.get("seed"), r.get("epochs"), r.get("val_accuracy"), r.get("test_accuracy"),
             _Html(_escape(_format(r.get("train_seconds"), 1))), r.get("stopped") or "", _relative(r.get("run_dir"), run))
            for s in strategies for r in s.get("runs") or [] if isinstance(r, dict)]
    runs_table = "<h3>runs</h3>" + _table(("strategy", "seed", "epochs", "val accuracy", "test accuracy", "seconds",
                                           "stopped", "folder"), runs) if runs else ""
    return (intro + table + ("<h3>dropped</h3>" + dropped if dropped else "") + ("<h3>notes</h3>" + notes if notes else "")
            + runs_table + "".join(_image(plots[n], a) for n, a in zip(PLOT_FILES, alts)))


def _history(run: _RunFolder) -> str:
    entries = run.files.get("history.jsonl") or []
    if not entries:
        return "<p>history.jsonl holds no epoch yet.</p>"
    eval_keys = list(dict.fromkeys(k for e in entries for k in e if k.endswith("_accuracy") and k != "train_accuracy"))
    headers = ["epoch", "phase", "loss", "train accuracy", *(k.replace("_", " ") for k in eval_keys), "elapsed (s)"]
    rows = [(e.get("epoch"), e.get("phase", ""), e.get("loss"), e.get("train_accuracy"), *(e.get(k) for k in eval_keys),
             e.get("elapsed")) for e in entries]
    from graft.report.compare_plots import render_history_plot

    return _image(render_history_plot(entries), "loss and accuracy per epoch") + _table(headers, rows)


def _metrics(run: _RunFolder) -> str:
    metrics = run.get("metrics.json")
    parts = []
    if metrics:
        parts.append(f"<p>on {_escape(metrics.get('split', '?'))} ({_escape(_format(metrics.get('num_samples')))} "
                     f"samples): accuracy <b>{_escape(_format(metrics.get('accuracy')))}</b>, balanced accuracy "
                     f"{_escape(_format(metrics.get('balanced_accuracy')))}, macro-F1 "
                     f"{_escape(_format(metrics.get('macro_f1')))}</p>")
        parts.append(_table(("class", "precision", "recall", "F1", "support"), [
            (c.get("name"), c.get("precision"), c.get("recall"), c.get("f1"), c.get("support"))
            for c in metrics.get("per_class") or []]))
    return "".join(parts) + _image(run.png("confusion.png"), "confusion matrix (rows: true class)")


def _model_card(run: _RunFolder) -> str:
    config, record, plan = run.get("config.json"), run.get("run.json"), run.get("plan.json")
    strategy = config.get("strategy") if isinstance(config.get("strategy"), dict) else {}
    label = _strategy_label(strategy) or record.get("strategy")
    name = strategy.get("name") or str(label or "").split(":")[0]
    tensors = plan.get("tensors") or []
    transferred = (f"{sum(t.get('action') == 'reused' for t in tensors)} tensors reused as they were, "
                   f"{sum(t.get('action') == 'resized' for t in tensors)} resized, "
                   f"{sum(t.get('action') == 'new' for t in tensors)} new, "
                   f"{sum(t.get('action') == 'dropped' for t in tensors)} dropped") if tensors else None
    trained, total = record.get("trainable_params"), record.get("total_params")
    frozen = (f"{_format(trained)} of {_format(total)} parameters trained, {_format(total - trained)} frozen"
              if isinstance(trained, int) and isinstance(total, int) else None)
    options = {k: v for k, v in strategy.items() if k not in ("name", "k")}
    source = plan.get("source") or {}
    folder = str(run.path)
    reload = _Html(f"<pre>import graft\nnetwork = graft.load_run({_escape(repr(folder))})\n\n"
                   f"graft predict {_escape(shlex.quote(folder))} --data NEW_DATA</pre>")
    labels = config.get("label_names") or record.get("label_names") or plan.get("result_labels")
    result = None
    if record.get("final_accuracy") is not None:
        result = (f"{record.get('final_split')} accuracy {_format(record['final_accuracy'])}, macro-F1 "
                  f"{_format(record.get('final_macro_f1'))} (best epoch {_format(record.get('best_epoch'))})")
    return _pairs([
        ("source model", " ".join(str(v) for v in (config.get("model") or source.get("name"),
                                                  f"({source['origin']})" if source.get("origin") else "") if v)),
        ("starting weights (digest)", config.get("start_weights")),
        ("surgery", "; ".join(f"{s.get('kind')}: {s.get('summary')}" for s in plan.get("steps") or [])),
        ("what was transferred", transferred),
        ("training", f"{label}: {_description(name)}".rstrip(": ") if label else None),
        ("frozen and trained", frozen), ("strategy options", options),
        ("epochs", f"{_format(record.get('epochs_run'))} of {_format(record.get('epochs'))} run in "
                   f"{_format(record.get('seconds'), 1)} s" if record else config.get("epochs")),
        ("seed, batch size", f"{config.get('seed')}, {config.get('batch_size')}" if config else None),
        ("data", config.get("data_name")), ("data fingerprint", config.get("data")),
        ("label names", labels), ("result", result), ("notes", record.get("notes")), ("how to reload", reload)])


SECTIONS = (
    ("plan", "Surgery plan", ("plan.json",), _plan),
    ("measures", "Per-layer similarity and transferability", ("measures.json", "measures.png"), _measures),
    ("advice", "The advisor's reasoning", ("advice.json",), _advice),
    ("comparison", "Strategy comparison", ("comparison.json",), _comparison),
    ("history", "Training history", ("history.jsonl",), _history),
    ("metrics", "Final metrics", ("metrics.json", "confusion.png"), _metrics),
    ("model_card", "Model card", ("config.json", "run.json"), _model_card),
)


def _present(run: _RunFolder, files) -> bool:
    return any(name in run.files or (name.endswith(".png") and run.png(name)) for name in files)


def report_sections(run_dir) -> list[str]:
    """The names of the sections the report of ``run_dir`` has: ``header`` then, in page order, those of
    ``plan``, ``measures``, ``advice``, ``comparison``, ``history``, ``metrics``, ``model_card`` whose
    artifacts are in the folder."""
    run = _RunFolder(run_dir)
    return ["header"] + [key for key, _, files, _ in SECTIONS if _present(run, files)]


def render_report(run_dir) -> str:
    """The report of ``run_dir`` as an HTML string (what :func:`write_report` writes)."""
    return _render(_RunFolder(run_dir))


def _render(run: _RunFolder) -> str:
    sections = []
    for key, title, files, render in SECTIONS:
        if not _present(run, files):
            continue
        try:
            body = render(run)
        except (GraftError, KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            body = _warnings([f"this section could not be shown: {' or '.join(files)} does not have the layout this "
                              f"version of graft expects ({type(exc).__name__}: {exc})"])
        sections.append((key, title, body))
    try:
        header = _header(run)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        header = _warnings([f"the summary could not be built ({type(exc).__name__}: {exc})"])
    nav = " ".join(f'<a href="#{key}">{_escape(title)}</a>' for key, title, _ in sections)
    body = "".join(f'<section id="{key}"><h2>{_escape(title)}</h2>{text}</section>' for key, title, text in sections)
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'\"><meta name=viewport content=\"width=device-width, initial-scale=1\">"
            f"<title>graft report: {_escape(run.path.resolve().name)}</title><style>{STYLE}</style></head>"
            f"<body><main>{header}<nav>{nav}</nav>{body}</main></body></html>\n")


def write_report(run_dir) -> Path:
    """Write ``run_dir/report.html`` (atomically: a temporary file, then renamed) and return its path.

    Rebuilt from the artifacts in the folder alone, whichever exist; raises :class:`GraftError` when the folder
    holds none of them.
    """
    run = _RunFolder(run_dir)
    page = _render(run)
    target = run.path / "report.html"
    write_atomic(target, page)
    return target
