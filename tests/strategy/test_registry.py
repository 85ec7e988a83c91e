"""The strategy registry: a new strategy is one definition plus its registration, and every part of graft that
asks about strategies (parsing, phases, pricing, the Trainer, compare, the advisor, the report) sees it."""

from __future__ import annotations

import json

import pytest

import graft
from graft.errors import GraftError
from graft.strategy import (Phase, Strategy, StrategyDefinition, get_strategy, parse_strategy, phases,
                            register_strategy, registered_strategies, strategy_names, unregister_strategy)
from graft.strategy.advisor import advise
from graft.training.budget import StepTimes, epochs_for_budget, least_epochs

RANDOM = {"pretrained": False}


def _top_block(strategy, num_blocks, epochs, has_adapter=False):
    """The whole of a new strategy's training recipe: the top block and the head, the rest frozen."""
    return (Phase("top block + head", epochs, (num_blocks - 1, -1), (strategy.lr, strategy.lr)),)


@pytest.fixture
def top_block():
    """A strategy added the way a plug-in adds one: a definition, registered (and removed after the test)."""
    definition = register_strategy(StrategyDefinition(
        "top-block", "the top block and the head, the rest frozen", _top_block,
        prior=lambda s, e: ("top-block", 5.0, "a test prior that always wins")))
    yield definition
    unregister_strategy("top-block")


def test_a_new_strategy_is_parsed_compiled_priced_and_listed(top_block):
    s = parse_strategy("top-block", lr=0.01)
    assert s.definition is top_block and s.label == "top-block" and "top block" in s.describe()
    assert phases(s, 4, 3) == (Phase("top block + head", 3, (3, -1), (0.01, 0.01)),)
    assert "top-block" in strategy_names() and least_epochs(s) == 1
    times = StepTimes(train=0.01, forward=0.004, train_steps=4, eval_steps=1, blocks=4)
    assert epochs_for_budget(s, times, 10.0, max_epochs=50) == 50
    assert Strategy.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_a_new_strategy_trains_compares_and_is_advised(top_block, tmp_path, shades):
    record = graft.fine_tune("cifar_resnet20", shades, tmp_path / "run", strategy="top-block", epochs=2,
                             load_options=RANDOM, data_options={"val_fraction": 0.2}, progress=False)
    assert record.strategy == "top-block" and record.epochs_run == 2
    trained = record.trainable_params
    network = graft.load_run(tmp_path / "run")
    head = sum(p.numel() for p in network.module.linear.parameters())
    top = sum(p.numel() for p in network.module.layer3[-1].parameters())
    assert trained == head + top, "only the top block and the head trained"
    assert "the top block and the head, the rest frozen" in (tmp_path / "run" / "report.html").read_text()
    result = graft.compare("cifar_resnet20", shades, tmp_path / "cmp", strategies="linear,top-block", budget=30,
                           max_epochs=2, load_options=RANDOM, data_options={"val_fraction": 0.2}, report=False)
    assert [e["strategy"] for e in result.strategies] == ["linear", "top-block"]
    advice = graft.advise("cifar_resnet20", shades, load_options=RANDOM, data_options={"val_fraction": 0.2},
                          multilayer=False)
    assert advice.strategy == "top-block" and advice.reasons[0] == "a test prior that always wins"


def test_a_strategy_without_a_prior_is_never_advised(tmp_path, shades):
    register_strategy(StrategyDefinition("top-block", "no prior", _top_block))
    try:
        advice = graft.advise("cifar_resnet20", shades, load_options=RANDOM, data_options={"val_fraction": 0.2},
                              multilayer=False)
        assert "top-block" not in {c["strategy"] for c in advice.candidates}
    finally:
        unregister_strategy("top-block")


def test_the_advisor_asks_the_registry_for_its_candidates():
    with_prior = [name for name, d in registered_strategies().items() if d.prior is not None]
    assert with_prior == ["linear", "partial", "lp-ft", "full", "multilayer", "scratch"]
    assert advise.__module__ == "graft.strategy.advisor"


@pytest.mark.parametrize("definition, match", [
    (dict(name="Full"), "lower case"), (dict(name="a:b"), "without ':'"), (dict(name=""), "lower case"),
    (dict(unfreeze="some"), "unfreeze among all, above, none"), (dict(least_epochs=0), "least_epochs >= 1"),
    (dict(measure="multilayer"), "a ceiling for a prior"),
])
def test_bad_definitions_are_refused(definition, match):
    fields = dict(name="x", description="d", compile=_top_block) | definition
    with pytest.raises(GraftError, match=match):
        StrategyDefinition(**fields)


def test_a_name_is_registered_once_unless_replaced(top_block):
    other = StrategyDefinition("top-block", "another", _top_block)
    with pytest.raises(GraftError, match="already registered"):
        register_strategy(other)
    assert register_strategy(other, replace=True) is other and get_strategy("top-block") is other


@pytest.mark.parametrize("text, match", [
    ("fulll", "did you mean 'full'"), ("partial", "partial:K with K a number"), ("full:2", "without a ':' argument"),
    ("", "a strategy name among"), (3, "a strategy name among"),
])
def test_bad_strategy_names(text, match):
    with pytest.raises(GraftError, match=match):
        parse_strategy(text)


@pytest.mark.parametrize("name", list(registered_strategies()))
def test_every_registered_config_round_trips_through_json(name):
    s = parse_strategy(f"{name}:2" if get_strategy(name).takes_k else name)
    again = Strategy.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again == s and type(again) is type(s)


@pytest.mark.parametrize("options, match", [
    ({"lrr": 0.1}, "lrr: did you mean 'lr'"), ({"load_kwargs": {}}, "load_kwargs is now load_options"),
    ({"max_width": 64}, "options of the full strategy"),
])
def test_unknown_strategy_options_are_refused_by_name(options, match):
    with pytest.raises(GraftError, match=match):
        parse_strategy("full", **options)
    assert parse_strategy("multilayer", max_width=64).max_width == 64  # that strategy's config has it
