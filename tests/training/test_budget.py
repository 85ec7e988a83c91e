"""Pricing strategies before they run: the epochs that fit in a budget, from timed steps of a real network."""

from __future__ import annotations

import numpy as np
import pytest

import graft
from graft.data import load_data
from graft.errors import GraftError
from graft.strategy import parse_strategy, phases
from graft.training.budget import (EXTRACT_SHARE, StepTimes, epochs_for_budget, forward_seconds, measure_step_times,
                                   plan_measuring, require_budget, require_sound, sound_epochs, strategy_seconds)
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


# -- issue 16: the budget as a contract ---------------------------------------------------------------------

def test_step_times_say_what_share_of_the_forward_pass_each_block_takes():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (40, 3, 12, 12)).astype(np.float32)
    data = load_data((x, np.arange(40) % 2), layout="NCHW", val_fraction=0.25, seed=0)
    net = graft.load_model(randomize_bn(TinyPooledCNN(classes=2)).eval())
    times = measure_step_times(net, data, batch_size=8)
    assert len(times.shares) == len(net.spec.blocks) and all(s > 0 for s in times.shares)
    assert sum(times.shares) <= 1.0 + 1e-6  # the blocks, within the whole forward pass
    assert times.share([0, 1]) == pytest.approx(max(0.02, times.shares[0] + times.shares[1]))


def test_a_phase_is_priced_by_the_timed_share_of_the_blocks_it_trains():
    """MobileNetV2's top block (a 1x1 conv on a 3x3 map) costs 0.4 % of the forward pass, not 1/11: priced at
    1/11, partial:1 got 7 epochs of a 35 s budget and finished in 11 s (issue 16)."""
    top_heavy = StepTimes(train=0.30, forward=0.10, train_steps=10, eval_steps=2, blocks=4, shares=(0.7, 0.2, 0.05, 0.05))
    partial = parse_strategy("partial:1")
    assert strategy_seconds(partial, top_heavy, 5) < strategy_seconds(partial, TIMES, 5)
    assert epochs_for_budget(partial, top_heavy, 20.0) > epochs_for_budget(partial, TIMES, 20.0)
    assert TIMES.share([3]) == pytest.approx(0.25) and top_heavy.share([3]) == pytest.approx(0.05)


def test_a_budget_below_the_sound_epochs_is_refused_with_what_to_do():
    full = parse_strategy("full")
    require_sound(full, TIMES, 100.0, 3)  # 3 epochs: sound
    with pytest.raises(GraftError, match="at least 3 epochs of full, the fewest that adapt it soundly") as caught:
        require_sound(full, TIMES, 4.0, 1)
    assert "--keep-going" in str(caught.value) and "affords 1" in str(caught.value)
    assert sound_epochs(parse_strategy("linear")) == 1 and sound_epochs(parse_strategy("multilayer")) == 1
    assert sound_epochs(parse_strategy("two-phase")) == 3 and sound_epochs(parse_strategy("scratch")) == 10


def test_the_measuring_plan_draws_what_the_time_affords():
    per_sample = 0.01  # seconds per sample of a forward pass
    roomy = plan_measuring(per_sample, 100.0, train=5000, val=1000, classes=10, max_samples=2000)
    assert roomy.samples == 2000 and roomy.extract_seconds <= 100.0 * EXTRACT_SHARE + 1e-9
    tight = plan_measuring(per_sample, 10.0, train=5000, val=1000, classes=10, max_samples=2000)
    assert 50 <= tight.samples < roomy.samples and tight.extract_seconds <= 10.0 * EXTRACT_SHARE + 1e-9
    assert tight.deadline_seconds == pytest.approx(10.0 - tight.extract_seconds)
    none = plan_measuring(per_sample, 0.5, train=5000, val=1000, classes=10, max_samples=2000)
    assert none.samples == 0 and "5 per class" in none.why and "measuring skipped" in none.describe()
    assert "would take about 0.8 s of the 0.5 s" in none.why, "seconds below 10 are said to a tenth"
    spent = plan_measuring(per_sample, 0.0, train=5000, val=1000, classes=10, max_samples=2000)
    assert spent.samples == 0 and spent.why.startswith("no time is left for measuring")


def test_forward_seconds_of_a_real_network(shades):
    data = load_data(shades)
    net = graft.load_model(randomize_bn(TinyPooledCNN(classes=3)).eval())
    per_sample = forward_seconds(net, data, batch_size=16)
    assert 0 < per_sample < 1 and not net.module.training
