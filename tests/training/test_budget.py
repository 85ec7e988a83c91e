"""Pricing strategies before they run: the epochs that fit in a budget, from timed steps of a real network."""

from __future__ import annotations

import numpy as np
import pytest

import graft
from graft.data import load_data
from graft.errors import GraftError
from graft.strategy import parse_strategy, phases
from graft.training.budget import StepTimes, epochs_for_budget, measure_step_times, require_budget, strategy_seconds
from tests.conftest import TinyPooledCNN, randomize_bn

TIMES = StepTimes(train=0.30, forward=0.10, train_steps=10, eval_steps=2, blocks=4)


def test_the_price_of_each_strategy():
    full = strategy_seconds(parse_strategy("full"), TIMES, 5)
    assert full == pytest.approx(5 * 10 * 0.30 + 5 * 2 * 0.10)  # every epoch: forward + whole backward; + eval
    # linear: the head is solved after one pass over train (and one evaluation), whatever the epochs
    linear = strategy_seconds(parse_strategy("linear"), TIMES, 5)
    assert linear == pytest.approx((10 + 2) * 0.10) == strategy_seconds(parse_strategy("linear"), TIMES, 50)
    # partial:1: one pass through the frozen prefix, then a quarter of the network per epoch
    partial = strategy_seconds(parse_strategy("partial:1"), TIMES, 5)
    assert partial == pytest.approx(10 * (0.10 + 5 * (0.20 * 0.25 + 0.10 * 0.25)) + 5 * 2 * 0.10)
    assert linear < partial < strategy_seconds(parse_strategy("partial:2"), TIMES, 5) < full
    # scratch trains everything with no cache; gradual cannot cache (blocks thaw one by one)
    assert strategy_seconds(parse_strategy("scratch"), TIMES, 5) == pytest.approx(full)
    assert strategy_seconds(parse_strategy("gradual"), TIMES, 5) > linear
    # lp-ft: a pass for the BatchNorm statistics and one for the probe's features, then full's epochs
    lpft = strategy_seconds(parse_strategy("lp-ft"), TIMES, 5)
    assert lpft == pytest.approx(linear + 10 * 0.10 + strategy_seconds(parse_strategy("full"), TIMES, 4))


@pytest.mark.parametrize("name", ["linear", "partial:1", "full", "two-phase", "lp-ft", "gradual", "scratch"])
def test_the_epochs_that_fit(name):
    strategy = parse_strategy(name)
    for seconds in (5.0, 20.0, 60.0):
        epochs = epochs_for_budget(strategy, TIMES, seconds, max_epochs=200)
        assert epochs == 0 or strategy_seconds(strategy, TIMES, epochs) <= seconds
        if 0 < epochs < 200:  # the largest: one more does not fit
            assert strategy_seconds(strategy, TIMES, epochs + 1) > seconds
    assert epochs_for_budget(strategy, TIMES, 1e-3) == 0
    with pytest.raises(GraftError, match="a budget of at least"):
        require_budget(strategy, TIMES, 1e-3)


def test_cheaper_strategies_get_more_epochs_from_the_same_budget():
    got = {n: epochs_for_budget(parse_strategy(n), TIMES, 30.0, max_epochs=500) for n in ("linear", "partial:1", "full")}
    assert got["linear"] == 500 and got["partial:1"] > got["full"] >= 1  # linear: one pass, any epochs
    assert epochs_for_budget(parse_strategy("two-phase"), TIMES, 100.0) >= 2
    assert len(phases(parse_strategy("two-phase"), 4, epochs_for_budget(parse_strategy("two-phase"), TIMES, 100.0))) == 2


def test_step_times_of_a_real_network():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (40, 3, 12, 12)).astype(np.float32)
    data = load_data((x, np.arange(40) % 2), layout="NCHW", val_fraction=0.25, seed=0)
    net = graft.load_model(randomize_bn(TinyPooledCNN(classes=2)).eval())
    before = {k: v.clone() for k, v in net.module.state_dict().items()}
    times = measure_step_times(net, data, batch_size=8)
    assert times.train > 0 and times.forward > 0 and times.train_steps == 4 and times.eval_steps == 2
    assert times.blocks == len(net.spec.blocks)
    for key, value in net.module.state_dict().items():  # timed on a copy
        assert (value == before[key]).all(), key
