"""The contract every architecture and every strategy keeps, from its first line: each zoo entry, grafted to
two new classes, trains with each registered strategy for its shortest run on one tiny batch, writes a run
folder whose model reloads from its file alone and gives the same outputs. A strategy that does not apply to a
network (adapter-warmup without new input layers) says so with a GraftError before anything trains.

The default suite runs every strategy on one small network and every network with one strategy; the whole
cross product is marked slow (``.ci/run`` runs it as its second step)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import graft
from graft.errors import GraftError
from graft.models.zoo import ZOO
from graft.strategy import get_strategy, registered_strategies, strategy_names

SMALL_NETWORK = "ts_fcn"
ONE_STRATEGY = "full"


def _label(name: str) -> str:
    return f"{name}:1" if get_strategy(name).takes_k else name


def _tiny_data(entry):
    """8 training and 4 validation samples of the entry's own input shape, two classes apart in their mean."""
    rng = np.random.default_rng(0)
    shape = (entry.in_chans, *entry.input_size)
    y = np.arange(12) % 2
    x = (rng.normal(0, 1, (12, *shape)) + 1.5 * y.reshape(-1, *[1] * len(shape))).astype(np.float32)
    return graft.load_data((x, y), layout="NCHW" if len(shape) == 3 else "NCL", label_names=["a", "b"],
                           val_fraction=1 / 3, seed=0)


def _check(network: str, strategy: str, tmp_path):
    entry = ZOO[network]
    data = _tiny_data(entry)
    label = _label(strategy)
    least = get_strategy(strategy).least_epochs
    torch.manual_seed(0)
    try:
        record = graft.fine_tune(network, data, tmp_path / "run", strategy=label, epochs=least, batch_size=8,
                                 load_options={"pretrained": False}, progress=False, report=False)
    except GraftError as error:  # a strategy that does not apply says so, before training
        assert not (tmp_path / "run" / "checkpoints").exists(), "it refused after it began training"
        assert strategy == "adapter-warmup" and "new input layers" in str(error), str(error)
        return
    assert record.strategy == label and record.epochs_run >= 1 and record.label_names == ("a", "b")
    assert 0 <= record.best_accuracy <= 1 if record.best_accuracy is not None else True
    run = graft.load_run(tmp_path / "run")
    assert run.spec.label_names == ("a", "b")
    x, _ = data.arrays("val")
    prep = graft.preprocessing(run)
    with torch.inference_mode():
        logits = run.module.eval()(prep.batch(torch.from_numpy(x)))
    assert logits.shape == (len(x), 2) and torch.isfinite(logits).all()
    again = graft.load_run(tmp_path / "run")
    with torch.inference_mode():
        assert torch.allclose(again.module.eval()(prep.batch(torch.from_numpy(x))), logits, atol=1e-5)


@pytest.mark.parametrize("strategy", list(registered_strategies()))
def test_every_strategy_on_a_small_network(strategy, tmp_path):
    _check(SMALL_NETWORK, strategy, tmp_path)


@pytest.mark.parametrize("network", list(ZOO))
def test_every_network_with_one_strategy(network, tmp_path):
    _check(network, ONE_STRATEGY, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("network", list(ZOO))
@pytest.mark.parametrize("strategy", list(registered_strategies()))
def test_every_network_with_every_strategy(network, strategy, tmp_path):
    if network == SMALL_NETWORK or strategy == ONE_STRATEGY:
        pytest.skip("in the default suite already")
    _check(network, strategy, tmp_path)


def test_the_contract_covers_what_the_registry_and_the_zoo_hold():
    assert set(strategy_names()) >= {"linear", "partial:K", "full", "multilayer"} and len(ZOO) >= 8
