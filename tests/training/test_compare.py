"""graft compare and --strategy auto on a real (tiny) network and real files: fair budgets, dropped strategies
with reasons, resumable comparisons, trials that settle an ambiguous advice."""

from __future__ import annotations

import json

import numpy as np
import pytest

import graft
from graft.data import load_data
from graft.errors import GraftError
from graft.api import compare, fine_tune
from graft.strategy import parse_strategy
from graft.strategy.advisor import Advice
from graft.training.budget import StepTimes, least_epochs, strategy_seconds
from graft.training.compare import check_splits, plan_budget

RANDOM = {"pretrained": False}


@pytest.mark.slow
def test_compare_runs_every_strategy_on_the_same_splits(tmp_path, shades):
    out = tmp_path / "cmp"
    result = compare("cifar_resnet20", shades, out, strategies="linear,partial:1,full,partial:99", budget=60,
                     max_epochs=2, load_options=RANDOM, data_options={"val_fraction": 0.2})
    assert [e["strategy"] for e in result.strategies] == ["linear", "partial:1", "full"]
    assert result.dropped[0]["strategy"] == "partial:99" and "at most the 10 blocks" in result.dropped[0]["why"]
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["best"] == result.best in {"linear", "partial:1", "full"}
    for entry in saved["strategies"]:
        run = entry["runs"][0]
        epochs = 1 if entry["strategy"] == "linear" else 2  # linear's head is solved in one pass
        assert run["epochs"] == epochs and len(run["history"]) == epochs and len(run["per_class_recall"]) == 3
        assert 0 <= run["test_accuracy"] <= 1 and run["latency_ms"] > 0 and run["trainable_params"] > 0
        configs = json.loads((tmp_path / run["run_dir"] / "config.json").read_text())
        assert configs["data"] == json.loads((out / "runs" / "linear-s0" / "config.json").read_text())["data"]
    linear, full = saved["strategies"][0]["runs"][0], saved["strategies"][2]["runs"][0]
    assert linear["trainable_params"] < full["trainable_params"] == full["total_params"]
    for name in ("comparison.json", "learning_curves.png", "accuracy_vs_time.png", "per_class.png", "report.html"):
        assert (out / name).is_file(), name
    # run again: the finished runs are read back, not trained again
    again = compare("cifar_resnet20", shades, out, strategies="linear,partial:1,full", budget=60, max_epochs=2,
                    load_options=RANDOM, data_options={"val_fraction": 0.2})
    assert [e["runs"][0]["train_seconds"] for e in again.strategies] == [
        e["runs"][0]["train_seconds"] for e in saved["strategies"]]


def test_seeds_give_a_mean_and_a_spread(tmp_path, shades):
    result = compare("cifar_resnet20", shades, tmp_path / "cmp", strategies="linear", budget=30, seeds=(0, 1),
                     max_epochs=1, load_options=RANDOM, data_options={"val_fraction": 0.2}, report=False)
    entry = result.strategies[0]
    assert [r["seed"] for r in entry["runs"]] == [0, 1] and entry["std"]["val_accuracy"] is not None
    assert "±" in result.table()[0][1]


def test_a_budget_share_too_small_drops_the_strategy_and_says_why():
    times = StepTimes(train=1.0, forward=0.2, train_steps=10, eval_steps=1, blocks=4)
    epochs, dropped, share = plan_budget([parse_strategy("linear"), parse_strategy("full")], times, 16.0, 1, 30)
    assert "linear" in epochs and "full" not in epochs
    assert dropped[0]["strategy"] == "full" and "over an equal share of the budget (8 s of 16 s" in dropped[0]["why"]
    assert share == 16.0, "what is left is split again among the strategies that fit"


def test_a_small_budget_drops_the_costliest_first_and_compares_what_it_affords():
    """Three strategies whose shortest runs cost about 2, 4 and 10 s in 9 s: an equal third (3 s) fits only the
    cheapest, but without the costliest the two others fit in halves (4.5 s): both are compared."""
    times = StepTimes(train=1.0, forward=0.2, train_steps=10, eval_steps=1, blocks=4)
    labels = ["linear", "partial:1", "full"]
    parsed = [parse_strategy(label) for label in labels]
    need = {s.label: strategy_seconds(s, times, least_epochs(s)) for s in parsed}
    budget = 2.1 * max(need["linear"], need["partial:1"])
    assert need["full"] > budget / 2 and max(need["linear"], need["partial:1"]) > budget / 3, need
    epochs, dropped, share = plan_budget(parsed, times, budget, 1, 30)
    assert sorted(epochs) == ["linear", "partial:1"] and [d["strategy"] for d in dropped] == ["full"]
    assert share == pytest.approx(budget / 2) and all(n >= 1 for n in epochs.values())


def test_no_strategy_fits_the_budget(tmp_path, shades):
    with pytest.raises(GraftError, match="a budget that fits at least one strategy"):
        compare("cifar_resnet20", shades, tmp_path / "c", strategies="full,scratch", budget=0.01,
                load_options=RANDOM, data_options={"val_fraction": 0.2})


def test_a_dataset_too_small_to_split(tmp_path):
    x = np.random.default_rng(0).normal(size=(7, 1, 8, 8)).astype(np.float32)
    data = load_data((x, np.array([0, 0, 0, 1, 1, 1, 2])), layout="NCHW")
    with pytest.raises(GraftError, match="at least 3 samples of every class"):
        check_splits(data)
    with pytest.raises(GraftError, match="not applicable|strategy among"):
        compare("cifar_resnet20", load_data((np.repeat(x, 4, 0), np.arange(28) % 2), layout="NCHW",
                                            val_fraction=0.25), tmp_path / "c", strategies="everything",
                load_options=RANDOM)


@pytest.mark.slow
def test_auto_settles_an_ambiguous_advice_with_trials(tmp_path, shades):
    out = tmp_path / "auto"
    record = fine_tune("cifar_resnet20", shades, out, strategy="auto", budget=45, margin=10.0, load_options=RANDOM,
                       data_options={"val_fraction": 0.2}, progress=False, min_trial_val=10)
    advice = Advice.from_json((out / "advice.json").read_text())
    assert advice.trials and len({t["strategy"] for t in advice.trials}) == 3
    rounds = [r for t in advice.trials for r in t["rounds"]]
    assert {r["round"] for r in rounds} == {1, 2}
    assert len(list((out / "trials").glob("round1-*"))) == 3, "every candidate ran a first-round trial"
    first = {t["strategy"]: t["rounds"][0]["val_accuracy"] for t in advice.trials}
    last = {t["strategy"]: t["rounds"][-1]["val_accuracy"] for t in advice.trials}
    final = sorted(first, key=lambda n: -first[n])[:2]  # 3 candidates -> the better 2 -> the best
    # each finalist ran a second round, but a one-pass strategy, whose first score carries over
    assert all(any(r["round"] == 2 for r in t["rounds"]) or parse_strategy(t["strategy"]).definition.one_pass
               for t in advice.trials if t["strategy"] in final)
    winner = sorted(final, key=lambda n: -last[n])[0]
    assert advice.strategy == winner == record.strategy
    saved = json.loads((out / "advice.json").read_text())
    assert saved["strategy"] == record.strategy and saved["trials"]
    for name in ("measures.json", "measures.png", "advice.json", "report.html", "model.safetensors"):
        assert (out / name).is_file(), name
    assert graft.load_run(out).spec.label_names == ("dark", "grey", "light")


@pytest.mark.slow
def test_auto_never_fits_a_fraction_of_a_run_when_the_budget_is_spent(tmp_path, shades):
    """Half a second: measuring takes what there is, and nothing is left to train: a clear error, not a strategy
    fitted for its minimum (issue 16)."""
    said = []
    with pytest.raises(GraftError, match="budget") as caught:
        fine_tune("cifar_resnet20", shades, tmp_path / "auto", strategy="auto", budget=0.5, load_options=RANDOM,
                  data_options={"val_fraction": 0.2}, progress=False, messages=said.append)
    assert "raise --budget" in str(caught.value)
    advice = Advice.from_json((tmp_path / "auto" / "advice.json").read_text())
    assert all(c.get("left_out") for c in advice.candidates) or advice.reasons[0].startswith("no measurement")
    assert not (tmp_path / "auto" / "model.safetensors").exists()
    assert any("measuring" in m for m in said), said


@pytest.mark.slow
def test_auto_runs_no_trials_on_a_validation_split_too_small_to_decide_them(tmp_path, shades):
    said = []
    record = fine_tune("cifar_resnet20", shades, tmp_path / "auto", strategy="auto", budget=20, margin=10.0,
                       load_options=RANDOM, data_options={"val_fraction": 0.2}, progress=False, messages=said.append)
    advice = Advice.from_json((tmp_path / "auto" / "advice.json").read_text())
    assert not advice.trials and not (tmp_path / "auto" / "trials").exists()
    assert record.strategy == advice.candidates[0]["strategy"]  # the prior's choice
    assert any("the validation split has 24 samples, too few" in m for m in said), said


def test_a_one_pass_trial_is_fit_once_and_its_score_carries_over(tmp_path, shades):
    """successive_halving with multilayer (one pass, whatever the epochs) among three candidates: its trial is fit
    once (1 epoch), never again in a later round; linear, whose epochs matter when its head cannot be solved, runs
    every round it reaches; and the winner is the best validation accuracy."""
    from graft.training.auto import successive_halving

    backbone = graft.load_model("cifar_resnet20", pretrained=False)
    data = load_data(shades, val_fraction=0.2, seed=0)
    plan = graft.plan_surgery(backbone, data=data)
    times = StepTimes(train=0.01, forward=0.004, train_steps=4, eval_steps=1, blocks=10)
    winner, trials = successive_halving(backbone, data, plan, tmp_path, ["multilayer", "linear", "partial:1"], 30,
                                        times, max_epochs=3)
    every = next(t for t in trials if t["strategy"] == "multilayer")
    assert [r["epochs"] for r in every["rounds"]] == [1]
    assert (tmp_path / "trials" / "round1-multilayer" / "model.safetensors").is_file()
    assert not (tmp_path / "trials" / "round2-multilayer").exists()
    first = {t["strategy"]: t["rounds"][0]["val_accuracy"] for t in trials}
    best = {t["strategy"]: t["rounds"][-1]["val_accuracy"] for t in trials}
    finalists = sorted(first, key=lambda n: -first[n])[:2]  # the better half of round 1 goes on
    for name in finalists:
        rounds = next(t for t in trials if t["strategy"] == name)["rounds"]
        assert len(rounds) == (1 if name == "multilayer" else 2), (name, rounds)
    assert winner in finalists and best[winner] == max(best[f] for f in finalists)


def test_runs_that_take_longer_than_planned_leave_the_later_strategies_out(tmp_path):
    """Estimates 1000x too low (a machine that got busy after the timing): the first run takes the whole budget,
    and the strategies after it are dropped with why, instead of running past the budget."""
    from graft.training.compare import compare as run_comparison

    rng = np.random.default_rng(0)
    y = np.arange(600) % 3
    x = (rng.normal(60, 20, (600, 1, 16, 16)) + 60 * y[:, None, None, None]).clip(0, 255).astype(np.uint8)
    data = load_data((x, y), layout="NCHW", val_fraction=0.2)
    backbone = graft.load_model("cifar_resnet20", pretrained=False)
    plan = graft.plan_surgery(backbone, data=data)
    tiny = StepTimes(train=1e-4, forward=1e-5, train_steps=60, eval_steps=15, blocks=len(plan.apply(backbone).spec.blocks))
    result = run_comparison(backbone, data, plan, tmp_path / "c", strategies=["full", "partial:1", "linear"],
                            budget=0.05, times=tiny, batch_size=8, max_epochs=1)
    assert [e["strategy"] for e in result.strategies] == ["full"]
    late = {d["strategy"]: d["why"] for d in result.dropped}
    assert set(late) == {"partial:1", "linear"} and all(w.startswith("the runs before it took") for w in late.values())
