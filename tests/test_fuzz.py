"""Fuzzing the public API and the CLI (issue 17): every generated case ends in a correct result or a GraftError
with its three parts (expected, got, fix), never a raw exception and never a hang.

Hypothesis draws the cases: malformed arrays, dtypes and shapes, label sets, option values out of range, missing,
empty and unreadable files, wrong file types, names with markup and control characters. Each entry point is one
test; :data:`RAN` counts the cases, and the last test prints the total (``pytest -s -m reliability``).
"""

from __future__ import annotations

import json
import signal
import string
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import graft
from graft.errors import GraftError

pytestmark = pytest.mark.reliability
RAN: dict[str, int] = {}
CASES = 30  # per entry point: 20+ entry points, 600+ cases, well under a minute on 2 cores
FUZZ = settings(max_examples=CASES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])

# text that has broken CLIs and renderers: markup, emoji codes, control characters, format strings, paths
NASTY = st.one_of(
    st.text(alphabet=string.printable + "[]/\\$:{}%\x00\x1b\u202e\u00e9\u4e2d", max_size=24),
    st.sampled_from(["[/]", "[bold]", "[/b]x", ":smile:", "$\\notacommand$", "{0}", "%s", "\x1b[31m", "../..", "",
                     " ", "nan", "inf", "-1", "1e309", "a" * 300]),
)


CASE_SECONDS = 60.0  # a case still running after this is a hang: the slowest take a few seconds on 2 cores


class Hang(BaseException):
    """Raised in a case that runs past CASE_SECONDS (a BaseException: no ``except Exception`` can swallow it)."""


def answered(entry: str, call, *args, **kwargs):
    """Run ``call``: a result, or a GraftError with its three parts; anything else fails the test, and so does a
    case that runs past :data:`CASE_SECONDS` (a SIGALRM watchdog: never a hang)."""
    RAN[entry] = RAN.get(entry, 0) + 1

    def alarm(_signum, _frame):
        raise Hang(f"{entry}: a case still running after {CASE_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    try:
        return call(*args, **kwargs)
    except GraftError as exc:
        assert exc.expected and str(exc), f"{entry}: a GraftError without what was expected: {exc!r}"
        assert exc.got is None or isinstance(exc.got, str)
        return exc
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_case_that_hangs_fails():
    import time

    global CASE_SECONDS
    saved, CASE_SECONDS = CASE_SECONDS, 0.2
    try:
        start = time.monotonic()
        with pytest.raises(Hang, match="still running"):
            answered("a sleeper", time.sleep, 5)
        assert time.monotonic() - start < 2
    finally:
        CASE_SECONDS = saved
        RAN.pop("a sleeper", None)


ARRAYS = st.one_of(
    st.builds(lambda shape, dtype, seed: (np.random.default_rng(seed).normal(size=shape) * 10).astype(dtype),
              hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
              st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_, np.complex64, np.float16]),
              st.integers(0, 2**16)),
    st.sampled_from([np.array([{}, {}, {}], dtype=object), np.array(["a", "b", "c"]), np.full((3, 2), np.nan),
                     np.full((3, 4, 4), np.inf), np.zeros((3, 0, 4)), np.zeros((0, 3))]),
)
LABELS = st.one_of(
    st.lists(st.integers(-3, 5), max_size=8).map(np.array),
    st.lists(NASTY, max_size=8).map(lambda v: np.array(v, dtype=str)),
    st.builds(lambda n: np.full(n, np.nan), st.integers(0, 6)),
    st.builds(lambda n: np.eye(max(n, 1)), st.integers(0, 4)),
)


# -- the data layer --------------------------------------------------------------------------------------------
@FUZZ
@given(ARRAYS, LABELS)
def test_load_data_from_arrays(x, y):
    result = answered("load_data(arrays)", graft.load_data, (x, y))
    if isinstance(result, graft.Data):
        assert len(result["train"]) == len(y) == len(x)


@FUZZ
@given(ARRAYS, LABELS, st.sampled_from(["x", "x_train", "images", "train_x"]), st.booleans())
def test_load_data_from_an_npz(x, y, key, with_names):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.npz"
        arrays = {key: x, "y" if key == "x" else key.replace("x", "y").replace("images", "labels"): y}
        if with_names:
            arrays["label_names"] = np.array(["a", "[/]", ":smile:"])
        np.savez(path, **arrays)
        answered("load_data(.npz)", graft.load_data, path)


@FUZZ
@given(st.binary(max_size=64), st.sampled_from([".npz", ".csv", ".npy", ".wav", ".png", ".ts", ".parquet", ".json",
                                                 ""]))
def test_describe_data_of_a_file_of_random_bytes(content, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"data{suffix}"
        path.write_bytes(content)
        answered("describe_data(file)", graft.describe_data, path)


@FUZZ
@given(st.lists(st.tuples(NASTY.filter(lambda n: n.strip() and "/" not in n and "\x00" not in n and n not in (".", "..")),
                          st.sampled_from([b"", b"hello", b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x00WAVE"]),
                          st.sampled_from([".png", ".wav", ".txt", ".jpg", ""])), max_size=4),
       st.booleans())
def test_load_data_of_a_folder_of_odd_files(files, nested):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        for i, (name, content, suffix) in enumerate(files):
            folder = root / name[:40] if nested else root
            try:
                folder.mkdir(exist_ok=True)
                (folder / f"{i}{suffix}").write_bytes(content)
            except OSError:  # a name the file system refuses: not graft's to answer
                continue
        answered("load_data(folder)", graft.load_data, root)


@FUZZ
@given(st.fixed_dictionaries({}, optional={
    "val_fraction": st.one_of(st.floats(allow_nan=True), st.integers(-2, 3), NASTY),
    "test_fraction": st.one_of(st.floats(-1, 2), st.none()),
    "seed": st.one_of(st.integers(-5, 5), st.floats(), NASTY),
    "normalize": NASTY,
    "on_error": NASTY,
    "layout": NASTY,
    "length": st.one_of(st.integers(-3, 3), NASTY),
    "classes": st.lists(NASTY, max_size=3),
    "label_names": st.lists(NASTY, max_size=3),
    "image_size": st.lists(st.integers(-2, 3), max_size=3),
}))
def test_data_options(fields):
    from graft.data.options import DataOptions

    answered("DataOptions", DataOptions, **fields)


# -- the network layer -----------------------------------------------------------------------------------------
@FUZZ
@given(st.one_of(NASTY, st.integers(), st.none(), st.lists(st.integers(), max_size=2)))
def test_load_model_of_odd_sources(source):
    answered("load_model", graft.load_model, source, pretrained=False)


@FUZZ
@given(st.binary(max_size=96), st.sampled_from([".pt", ".pth", ".safetensors", ".bin", ".th", ".ckpt"]))
def test_read_checkpoint_of_random_bytes(content, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"w{suffix}"
        path.write_bytes(content)
        answered("read_checkpoint", graft.read_checkpoint, path)
        answered("load_model(file)", graft.load_model, path)


@FUZZ
@given(st.binary(max_size=96), st.sampled_from([b"", b"PK\x03\x04", b"\x80\x02", b"\x10\x00\x00\x00\x00\x00\x00\x00{"]))
def test_audit_of_random_bytes(content, head):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.pt"
        path.write_bytes(head + content)
        result = answered("audit", graft.audit, path)
        if isinstance(result, list):
            assert all(entry.render() for entry in result)


@FUZZ
@given(st.fixed_dictionaries({}, optional={
    "weights": NASTY, "arch": NASTY, "pretrained": st.one_of(st.booleans(), NASTY), "num_classes": st.integers(-3, 3),
    "label_names": st.lists(NASTY, max_size=3), "input_size": st.lists(st.integers(-2, 40), max_size=3),
    "mean": st.lists(st.floats(), max_size=4), "std": st.lists(st.floats(), max_size=4), "head": NASTY,
    "strict": st.one_of(st.booleans(), NASTY)}))
def test_load_options(fields):
    from graft.models.options import LoadOptions

    answered("LoadOptions", LoadOptions, **fields)


@pytest.fixture(scope="module")
def tiny():
    from tests.conftest import TinyPooledCNN

    return graft.load_model(TinyPooledCNN(), num_classes=10, in_chans=3, input_size=(16, 16),
                            label_names=[f"c{i}" for i in range(10)])


@FUZZ
@given(st.fixed_dictionaries({}, optional={
    "num_classes": st.one_of(st.integers(-2, 50), NASTY), "label_names": st.lists(NASTY, max_size=5),
    "in_chans": st.one_of(st.integers(-1, 6), st.floats()), "input_size": st.lists(st.integers(-3, 64), max_size=3),
    "size_mode": NASTY, "keep_rows": st.sampled_from(["auto", "require", "never", "sometimes", ""]),
    "label_map": st.dictionaries(NASTY, NASTY, max_size=2), "truncate_at": st.one_of(NASTY, st.integers(-3, 12)),
    "pad_value": st.floats(), "run_size": st.lists(st.integers(-2, 64), max_size=3)}))
def test_plan_surgery_with_odd_targets(tiny, fields):
    plan = answered("plan_surgery", graft.plan_surgery, tiny, **fields)
    if isinstance(plan, graft.SurgeryPlan):
        assert plan.render()


# -- measures: arrays in, numbers out --------------------------------------------------------------------------
FEATURES = st.builds(lambda n, d, seed, scale: np.random.default_rng(seed).normal(size=(n, d)) * scale,
                     st.integers(0, 12), st.integers(0, 6), st.integers(0, 99),
                     st.sampled_from([1.0, 0.0, 1e30, float("nan"), float("inf")]))
CLASS_LABELS = st.builds(lambda n, k, seed: np.random.default_rng(seed).integers(0, max(k, 1), size=n),
                         st.integers(0, 12), st.integers(1, 4), st.integers(0, 99))


@FUZZ
@given(FEATURES, CLASS_LABELS)
def test_linear_probe(features, labels):
    from graft.measures import linear_probe

    answered("linear_probe", linear_probe, features, labels, folds=2)


MEASURES = {  # name -> how it is called on (features, labels, other features)
    "log_maximum_evidence": lambda m, f, y, g: m.log_maximum_evidence(f, y),
    "h_score": lambda m, f, y, g: m.h_score(f, y),
    "transrate": lambda m, f, y, g: m.transrate(f, y),
    "leep": lambda m, f, y, g: m.log_expected_empirical_prediction(np.abs(f), y),
    "frechet_distance": lambda m, f, y, g: m.frechet_distance(f, g),
    "linear_cka": lambda m, f, y, g: m.linear_cka(f, g),
}


@pytest.mark.parametrize("name", list(MEASURES))
@FUZZ
@given(FEATURES, CLASS_LABELS, FEATURES)
def test_measures(name, features, labels, other):
    import graft.measures as measures

    value = answered(name, MEASURES[name], measures, features, labels, other)
    assert isinstance(value, (GraftError, float, int))


@FUZZ
@given(st.lists(st.integers(-2, 4), max_size=10), st.lists(st.integers(-2, 4), max_size=10), st.lists(NASTY, max_size=4))
def test_classification_report(y_true, y_pred, names):
    from graft.training.metrics import classification_report

    report = answered("classification_report", classification_report, y_true, y_pred, names)
    if not isinstance(report, GraftError):
        assert all(name in report.render(width=200) for name in names if name.isprintable() and name.strip())


# -- strategies, budgets, JSON round trips ---------------------------------------------------------------------
@FUZZ
@given(NASTY, st.dictionaries(st.sampled_from(["lr", "layer_decay", "batchnorm", "l2sp", "k", "nonsense"]),
                              st.one_of(st.floats(), st.integers(-3, 3), NASTY), max_size=2))
def test_parse_strategy(text, options):
    answered("parse_strategy", graft.parse_strategy, text, **options)


@FUZZ
@given(st.one_of(NASTY, st.floats(allow_nan=True), st.integers(), st.booleans(), st.none()))
def test_parse_budget(value):
    from graft.training.run import parse_budget

    seconds = answered("parse_budget", parse_budget, value)
    assert seconds is None or isinstance(seconds, (float, GraftError))


@FUZZ
@given(st.one_of(NASTY, st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
                 st.dictionaries(NASTY, st.one_of(NASTY, st.integers()), max_size=3).map(json.dumps)))
def test_json_artifacts_from_odd_text(text):
    from graft.measures.summary import Measures
    from graft.training.run import RunRecord

    for kind in (graft.SurgeryPlan, Measures, RunRecord):
        answered(f"{kind.__name__}.from_json", kind.from_json, text)


# -- the command line ------------------------------------------------------------------------------------------
COMMANDS = ["data", "inspect", "audit", "plan", "probe", "fit", "compare", "advise", "predict", "export", "report"]
OPTIONS = ["--epochs", "--budget", "--val", "--test", "--seed", "--batch-size", "--strategy", "--lr", "--classes",
           "--input-size", "--keep-rows", "--size-mode", "--labels", "--normalize", "--out", "--num-classes"]


@FUZZ
@given(st.sampled_from(COMMANDS), st.lists(st.tuples(st.sampled_from(OPTIONS), NASTY), max_size=3), NASTY)
def test_the_cli_with_odd_arguments(command, options, positional):
    from graft.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        argv = [command, str(Path(tmp) / (positional.replace("\x00", "") or "missing"))]
        for option, value in options:
            argv += [option, value.replace("\x00", "")]
        if command in ("probe", "fit", "compare", "advise", "predict"):
            argv += ["--data", str(Path(tmp) / "none.npz")]
        RAN["cli"] = RAN.get("cli", 0) + 1
        try:
            code = main(argv)
        except SystemExit as exit:  # argparse: usage and a one-line error, exit 2
            code = exit.code
        assert code in (0, 1, 2, 3)


def test_the_fuzz_count():
    """Run last in this module: the count of cases, and at least 500 over at least 20 entry points."""
    total = sum(RAN.values())
    print(f"\nfuzz: {total} cases over {len(RAN)} entry points: {', '.join(f'{k} {v}' for k, v in sorted(RAN.items()))}")
    if len(RAN) < 20:
        pytest.skip(f"only {len(RAN)} entry points ran (run the whole module for the count)")
    assert total >= 500 and len(RAN) >= 20
