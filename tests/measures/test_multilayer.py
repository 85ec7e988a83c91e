"""The multilayer probe: features of several layers, narrowed, selected, and which layers carried the signal."""

from __future__ import annotations

import json

import numpy as np
import pytest

from graft.errors import GraftError, ShapeError
from graft.measures import linear_probe
from graft.measures.multilayer import MultilayerResult, multilayer_probe, narrow


def _layers(n: int, seed: int = 0):
    """Three classes. Layer "low" tells class 0 from the rest, layer "high" class 2 from the rest, "noise"
    (300 wide) nothing: only both informative layers together separate all three."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    low = rng.normal(size=(n, 8))
    low[:, 0] += 3.0 * (y == 0)
    high = rng.normal(size=(n, 16))
    high[:, 5] += 3.0 * (y == 2)
    return {"low": low, "noise": rng.normal(size=(n, 300)), "high": high}, y


def test_several_layers_together_beat_each_one_and_the_useful_ones_are_kept():
    train, y = _layers(300)
    test, y_test = _layers(300, seed=1)
    result = multilayer_probe(train, y, test, y_test, max_width=100)
    singles = {name: linear_probe(train[name], y, test[name], y_test).accuracy for name in ("low", "high")}
    assert result.evaluated_on == "test" and result.n_test == 300
    assert result.accuracy > max(singles.values()) + 0.15 and result.accuracy > 0.85
    assert result.widths == {"low": [8, 8], "noise": [300, 100], "high": [16, 16]}
    assert result.total == 124 and result.kept < result.total and result.fraction < 1
    assert 0 in result.selected["low"] and 5 in result.selected["high"]
    assert result.contributions["low"] + result.contributions["high"] > 0.5
    assert sum(result.contributions.values()) == pytest.approx(1.0)
    assert set(result.layers_kept()) >= {"low", "high"}


def test_choosing_on_a_validation_split_and_cross_validation_without_one():
    train, y = _layers(240)
    val, y_val = _layers(120, seed=2)
    chosen = multilayer_probe(train, y, val, y_val, choose="eval", fractions=(0.05, 1.0))
    assert chosen.evaluated_on == "eval" and chosen.accuracy == max(chosen.fraction_accuracy.values())
    assert any("slightly optimistic" in n for n in chosen.notes)
    crossed = multilayer_probe(train, y, fractions=(0.05, 1.0))
    assert crossed.evaluated_on == "cross-validation" and crossed.n_test == 240 and crossed.accuracy > 0.8


def test_a_deadline_stops_the_search_and_a_far_one_changes_nothing():
    import time

    train, y = _layers(240)
    test, y_test = _layers(120, seed=1)
    late = multilayer_probe(train, y, test, y_test, max_width=100, deadline=time.perf_counter() - 1.0)
    from graft.measures.multilayer import FRACTIONS

    assert late.fraction == FRACTIONS[0] and len(late.fraction_accuracy) == 1  # the first C, the first fraction
    assert any(n.startswith("the time given ran out (its deadline): C searched over 1 of") and
               f"the fraction over 1 of {len(FRACTIONS)}" in n for n in late.notes)
    roomy = multilayer_probe(train, y, test, y_test, max_width=100, deadline=time.perf_counter() + 600)
    assert roomy == multilayer_probe(train, y, test, y_test, max_width=100)
    assert not any("ran out" in n for n in roomy.notes)


def test_narrowing_averages_contiguous_channels():
    x = np.arange(2 * 7, dtype=np.float64).reshape(2, 7)
    np.testing.assert_allclose(narrow(x, 3), [[1, 4, 6], [8, 11, 13]])  # groups of 3: [0 1 2] [3 4 5] [6]
    assert narrow(x, 7) is x


def test_the_result_round_trips_through_json():
    train, y = _layers(90)
    result = multilayer_probe(train, y, fractions=(0.5, 1.0))
    assert MultilayerResult.from_dict(json.loads(result.to_json())) == result


@pytest.mark.parametrize("call, words", [
    (lambda t, y: multilayer_probe({}, y), "at least one layer"),
    (lambda t, y: multilayer_probe(t, y, {"low": t["low"]}, y), "test features for every training layer"),
    (lambda t, y: multilayer_probe(t, y, choose="eval"), "choose='eval'"),
    (lambda t, y: multilayer_probe(t, y, fractions=(0, 0.5)), "fractions in"),
    (lambda t, y: multilayer_probe({"low": t["low"][:, :, None]}, y), "(N, D) features for layer 'low'"),
    (lambda t, y: multilayer_probe(t, y, memory_limit=10_000), "lower max_width, tap fewer layers"),
])
def test_bad_input_says_what_to_do(call, words):
    train, y = _layers(60)
    with pytest.raises((GraftError, ShapeError), match=words.replace("(", r"\(").replace(")", r"\)")):
        call(train, y)


def test_measure_layers_asks_before_the_multilayer_probe_and_keeps_the_reason_to_skip():
    from graft.measures.summary import measure_layers

    train, y = _layers(150)
    val, y_val = _layers(90, seed=3)
    seen = []

    def ask(answer):
        def decide(measures):
            seen.append(measures)
            return answer
        return decide

    skipped = measure_layers(list(train), train, y, val, y_val, choose_c="eval", multilayer=ask("not worth it"))
    assert skipped.multilayer is None and "multilayer probe skipped: not worth it" in skipped.notes
    assert "multilayer" not in skipped.seconds
    # the decision saw the per-layer measures, without the multilayer probe
    assert seen[-1].multilayer is None and [e.name for e in seen[-1].layers] == ["low", "noise", "high"]
    assert seen[-1].layers[0].probe_accuracy == skipped.layers[0].probe_accuracy
    ran = measure_layers(list(train), train, y, val, y_val, choose_c="eval", multilayer=ask(None))
    assert ran.multilayer["accuracy"] > max(e.probe_accuracy for e in ran.layers) and ran.seconds["multilayer"] > 0
    assert [e.probe_accuracy for e in ran.layers] == [e.probe_accuracy for e in skipped.layers]
    assert not any("skipped" in n for n in ran.notes)
    with pytest.raises(GraftError, match="multilayer=True, False or a callable"):
        measure_layers(list(train), train, y, multilayer="auto")


def test_layers_are_probed_best_first_until_the_deadline():
    """A deadline that has passed leaves the last layer probed (what a linear head reads) and says which were not;
    the multilayer probe is skipped with the time it would have taken (issue 16)."""
    import time

    from graft.measures.summary import measure_layers, priority_order

    assert priority_order(11) == [10, 5, 2, 7, 1, 3, 6, 8, 4, 9, 0]
    assert sorted(priority_order(7)) == list(range(7)) and priority_order(1) == [0]
    train, y = _layers(150)
    val, y_val = _layers(90, seed=3)
    order = []
    late = measure_layers(list(train), train, y, val, y_val, choose_c="eval", deadline=time.perf_counter() - 1,
                          progress=order.append)
    assert order == ["high"] and [e.probe_accuracy is not None for e in late.layers] == [False, False, True]
    assert late.best_layer == "high" and late.layers[0].logme is None and late.layers[0].dim == 8
    assert any("2 of 3 layers not probed" in n and "low, noise" in n.replace("noise, low", "low, noise")
               for n in late.notes)
    assert late.multilayer is None and any(n.startswith("multilayer probe skipped: it would take about")
                                           for n in late.notes)
    roomy = measure_layers(list(train), train, y, val, y_val, choose_c="eval", deadline=time.perf_counter() + 600,
                           refine=False)
    assert all(e.probe_accuracy is not None for e in roomy.layers) and roomy.multilayer is not None
    assert [e.name for e in roomy.layers] == ["low", "noise", "high"], "reported in depth order, probed best-first"


def _profile(n: int, strengths, seed: int = 0):
    """Layers whose class signal has the given strengths (a rising-then-falling profile over the depth)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    layers = {}
    for i, strength in enumerate(strengths):
        x = rng.normal(size=(n, 12))
        x[np.arange(n), y] += strength
        layers[f"block{i}"] = x
    return layers, y


def test_refining_leaves_out_the_layers_that_cannot_hold_the_best_and_finds_the_same_best():
    """Nine layers, the signal peaking at block6: probed best-first, the layers between probes that lie below the
    best's interval are left out and named; the best is the one every layer's probe finds (issue 16)."""
    from graft.measures.summary import measure_layers

    strengths = [0.0, 0.1, 0.2, 0.4, 0.8, 1.6, 2.4, 1.8, 1.2]
    train, y = _profile(400, strengths)
    val, y_val = _profile(400, strengths, seed=1)
    order = []
    every = measure_layers(list(train), train, y, val, y_val, choose_c="eval", multilayer=False)
    refined = measure_layers(list(train), train, y, val, y_val, choose_c="eval", multilayer=False, refine=True,
                             progress=order.append)
    assert every.best_layer == refined.best_layer == "block6"
    left_out = [e.name for e in refined.layers if e.probe_accuracy is None]
    assert 0 < len(left_out) < len(strengths) - 2 and "block6" in order and order[0] == "block8"
    assert set(left_out) <= {"block0", "block1", "block2", "block3"}, "only layers below the rise are left out"
    for name in order:  # what was probed is what probing everything measures
        assert refined.layer(name).probe_accuracy == every.layer(name).probe_accuracy
    assert any(f"{len(left_out)} of 9 layers not probed, as they cannot hold the best" in n for n in refined.notes)


def test_a_layer_is_bounded_only_when_both_neighbours_lie_below_the_best():
    from graft.measures.summary import LayerMeasures, bounded

    def probed(name, acc, half=0.03):
        return LayerMeasures(name=name, dim=8, probe_accuracy=acc, probe_low=acc - half, probe_high=acc + half)

    found = {0: probed("a", 0.40), 4: probed("b", 0.50), 8: probed("c", 0.80)}
    assert "between a and b" in bounded(2, found), "both below the best's interval: the peak is not between them"
    assert bounded(6, found) is None, "next to the best: the peak may lie between"
    found[4] = probed("b", 0.76)
    assert bounded(2, found) is None, "b's interval reaches the best's: not separated"
    assert bounded(3, {8: probed("c", 0.8)}) is None, "the best itself is the only neighbour"
    assert bounded(1, {4: probed("b", 0.5), 8: probed("c", 0.8)}) is not None, "before the first probed layer"
    assert bounded(1, {}) is None and bounded(1, {4: LayerMeasures(name="b", dim=8)}) is None
