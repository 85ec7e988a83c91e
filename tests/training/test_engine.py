"""The trainer on tiny real networks: what each strategy trains, frozen BatchNorm, optimizer groups when blocks
unfreeze, checkpoints, and a resumed run that ends with exactly the weights of an uninterrupted one."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import graft
from graft.data import load_data
from graft.errors import GraftError
from graft.progress import LiveBar
from graft.strategy import parse_strategy, phases
from graft.training.engine import HEAD, Trainer
from graft.training.run import fine_tune, parse_budget
from tests.conftest import TinyPooledCNN, randomize_bn


class Dropped(TinyPooledCNN):
    """TinyPooledCNN with dropout before the head: resuming must restore the RNG to reproduce it."""

    def __init__(self, classes: int = 3):
        super().__init__(classes=classes)
        self.drop = nn.Dropout(0.3)

    def forward(self, x):
        return self.fc(self.drop(torch.flatten(self.pool(self.stage2(self.stage1(self.stem(x)))), 1)))


def _data(n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(0.2, 0.2, (n, 3, 12, 12)).astype(np.float32)
    x[np.arange(n), y] += 0.5
    return load_data((x, y), layout="NCHW", val_fraction=0.2, seed=seed)


def _net(seed: int = 0, cls=TinyPooledCNN):
    torch.manual_seed(seed)
    module = randomize_bn(cls(classes=3)).eval()
    return graft.load_model(module, label_names=["0", "1", "2"])


def _weights(run) -> dict[str, torch.Tensor]:
    meta = json.loads((run / "checkpoints" / "last.json").read_text())
    return load_file(str(run / "checkpoints" / meta["weights"]))


# ---------------------------------------------------------------- strategies -> phases

@pytest.mark.parametrize("name, expected", [
    ("linear", [("head (solved, body frozen)", 6, (HEAD,))]),
    ("partial:2", [("top 2 blocks + head", 6, (4, 5, HEAD))]),
    ("two-phase", [("head (body frozen)", 2, (HEAD,)), ("everything", 4, (-2, 0, 1, 2, 3, 4, 5, HEAD))]),
    ("lp-ft", [("linear probe (solved, body frozen)", 1, (HEAD,)), ("everything", 5, (-2, 0, 1, 2, 3, 4, 5, HEAD))]),
])
def test_strategies_compile_to_phases(name, expected):
    got = phases(parse_strategy(name), num_blocks=6, epochs=6)
    assert [(p.name, p.epochs, p.trainable) for p in got] == expected


def test_lp_ft_fits_the_head_to_convergence_first(tmp_path):
    """lp-ft's first phase is sklearn's logistic regression on the frozen body's standardized features, solved,
    its C chosen on validation; then everything trains as in 'full'."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from graft.training.solve import C_GRID

    net, data = _net(), _data()
    trainer = Trainer(net, data, parse_strategy("lp-ft"), tmp_path / "r", epochs=2, batch_size=8)
    full = phases(parse_strategy("full"), len(trainer.blocks), 1)[0]
    assert trainer.phases[1].lrs == full.lrs and trainer.phases[1].trainable == full.trainable
    trainer.epochs = 1  # stop after the probe
    trainer.run()
    x, y = trainer._head_inputs("train")  # the features after the BatchNorm re-estimation: what it was solved on
    record = trainer.state.history[0]
    assert record["lbfgs_iterations"] > 1 and record["phase"].startswith("linear probe")
    assert record["head_c"] in C_GRID  # chosen on the validation split
    scaler = StandardScaler().fit(x.double().numpy())
    z = scaler.transform(x.double().numpy())
    reference = LogisticRegression(C=record["head_c"], max_iter=10000, tol=1e-10).fit(z, y.numpy())
    head = net.module.fc
    ours = torch.softmax(x @ head.weight.detach().T + head.bias.detach(), 1).numpy()
    np.testing.assert_allclose(ours, reference.predict_proba(z), atol=2e-3)


def test_lp_ft_solves_its_head_on_the_batchnorm_statistics_fine_tuning_will_use(tmp_path):
    """AdaBN before the solve: the body's BatchNorm layers hold the training data's statistics, so a training-mode
    pass (batch statistics, what the next phase runs) gives the solved head nearly the features it was solved
    on. With the source's statistics, the first fine-tuning step would see other features (a loss spike)."""
    from graft.data.transforms import Preprocess

    net, data = _net(), _data()
    source = {n: b.clone() for n, b in net.module.named_buffers() if n.endswith("running_mean")}
    trainer = Trainer(net, data, parse_strategy("lp-ft"), tmp_path / "r", epochs=2, batch_size=48)
    trainer.epochs = 1
    trainer.run()
    assert trainer.state.history[0]["batchnorm_adapted"] == len(source) > 0
    adapted = {n: b for n, b in net.module.named_buffers() if n.endswith("running_mean")}
    assert all(not torch.allclose(adapted[n], source[n]) for n in source)
    stale_net = _net()  # the same run with the source's statistics kept (lp-ft before AdaBN)
    stale = Trainer(stale_net, data, parse_strategy("lp-ft"), tmp_path / "s", epochs=2, batch_size=48)
    stale.phases = (replace(stale.phases[0], adapt_batchnorm=False), *stale.phases[1:])
    stale.epochs = 1
    stale.run()
    prep = Preprocess(net.spec.input.mean, net.spec.input.std, None)
    x = prep.batch(torch.stack([data["train"][i][0] for i in range(len(data["train"]))]))  # all 48: one batch
    y = torch.as_tensor(np.asarray(data["train"].y))

    def losses(module):  # as solved (eval mode) and as the first fine-tuning step sees it (batch statistics)
        with torch.no_grad():
            return [float(nn.functional.cross_entropy(module.train(mode)(x), y)) for mode in (False, True)]

    solved, first_step = losses(net.module)
    stale_solved, stale_first_step = losses(stale_net.module)
    assert abs(first_step - solved) < 0.05 * solved
    assert abs(stale_first_step - stale_solved) > 4 * abs(first_step - solved)


def test_layer_wise_decay_lowers_lower_blocks():
    (full,) = phases(parse_strategy("full", lr=1e-2, layer_decay=0.5), num_blocks=3, epochs=4)
    lrs = dict(zip(full.trainable, full.lrs))
    assert lrs[HEAD] == 1e-2 and lrs[2] == 1e-2 and lrs[1] == 5e-3 and lrs[0] == 2.5e-3
    (two,) = phases(parse_strategy("two-phase", lr=1e-2), num_blocks=3, epochs=4)[1:]
    assert max(two.lrs) == pytest.approx(1e-3)  # the second phase runs 10x lower


@pytest.mark.parametrize("text, match", [
    ("fulll", "did you mean 'full'"), ("partial", "partial:K"), ("partial:x", "partial:K"), ("full:2", "without a ':'"),
    ("", "a strategy name"),
])
def test_bad_strategy_names(text, match):
    with pytest.raises(GraftError, match=match):
        parse_strategy(text)


def test_bad_strategy_fits():
    with pytest.raises(GraftError, match="at most the 6 blocks"):
        phases(parse_strategy("partial:7"), num_blocks=6, epochs=3)
    with pytest.raises(GraftError, match="at least 2 epochs"):
        phases(parse_strategy("two-phase"), num_blocks=6, epochs=1)
    with pytest.raises(GraftError, match="new input layers"):
        phases(parse_strategy("adapter-warmup"), num_blocks=6, epochs=4, has_adapter=False)
    with pytest.raises(GraftError, match="in range"):
        parse_strategy("full", lr=-1.0)


# ---------------------------------------------------------------- what trains

def test_linear_trains_the_head_only_and_keeps_batchnorm_frozen(tmp_path):
    net, data = _net(), _data()
    before = {k: v.clone() for k, v in net.module.state_dict().items()}
    record = fine_tune(net, data, tmp_path / "run", strategy="linear", epochs=2, batch_size=16)
    assert record.epochs_run == 1  # solved in one pass, not trained for epochs
    after = net.module.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}  # BN running statistics untouched too


def test_batchnorm_adapt_updates_frozen_blocks_statistics(tmp_path):
    net, data = _net(), _data()
    before = net.module.stem[1].running_mean.clone()
    fine_tune(net, data, tmp_path / "run", strategy="linear", epochs=1, batchnorm="adapt")
    assert not torch.equal(before, net.module.stem[1].running_mean)
    assert torch.equal(net.module.stem[0].weight, _net().module.stem[0].weight)  # weights still frozen


def test_partial_trains_the_top_blocks(tmp_path):
    net, data = _net(), _data()
    before = {k: v.clone() for k, v in net.module.named_parameters()}
    fine_tune(net, data, tmp_path / "run", strategy="partial:2", epochs=2)
    changed = {k for k, v in net.module.named_parameters() if not torch.equal(before[k], v)}
    assert changed == {"stage2.0.weight", "stage2.0.bias", "stage2.1.weight", "stage2.1.bias", "fc.weight", "fc.bias"}


def test_gradual_adds_optimizer_groups_without_losing_state(tmp_path):
    net, data = _net(), _data()
    trainer = Trainer(net, data, parse_strategy("gradual"), tmp_path / "run", epochs=7, batch_size=16)
    seen = []
    trainer.log = lambda record: seen.append((record["trainable_groups"], len(trainer.optimizer.param_groups),
                                              sum(len(s) > 0 for s in trainer.optimizer.state.values())))
    trainer.run()
    groups = [g for g, _, _ in seen]
    assert groups == sorted(groups) and groups[0] == 1 and groups[-1] > 3  # one more block at a time
    for trainable, opt_groups, _ in seen:
        assert opt_groups == trainable  # every trainable group is in the optimizer, once
    states = [with_state for _, _, with_state in seen]
    assert states == sorted(states)  # unfreezing a block adds state; it never drops the others'
    params_in_opt = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert params_in_opt == {id(p) for p in net.module.parameters() if p.requires_grad}


def test_scratch_starts_from_fresh_weights(tmp_path):
    from graft.training.engine import _reinitialize

    net, data = _net(), _data()
    with torch.no_grad():
        net.module.stem[0].weight.add_(1.0)  # "pretrained": far from any fresh initialization
    pretrained = net.module.stem[0].weight.clone()
    fine_tune(net, data, tmp_path / "run", strategy="scratch", epochs=1, lr=1e-12, warmup_epochs=0)
    fresh = _net().module
    _reinitialize(fresh, seed=0)
    trained = net.module.stem[0].weight
    assert torch.allclose(trained, fresh.stem[0].weight, atol=1e-6)  # lr ~0: still the fresh initialization
    assert (trained - pretrained).abs().min() > 0.5


def test_l2sp_keeps_weights_closer_to_the_start(tmp_path):
    def drift(l2sp):
        net = _net()
        start = {k: v.detach().clone() for k, v in net.module.named_parameters()}
        fine_tune(net, _data(), tmp_path / f"run{l2sp}", strategy="full", epochs=3, lr=1e-2, l2sp=l2sp)
        return sum(float(((v.detach() - start[k]) ** 2).sum()) for k, v in net.module.named_parameters() if not k.startswith("fc"))

    assert drift(10.0) < 0.5 * drift(0.0)


# ---------------------------------------------------------------- runs, checkpoints, resume

def test_a_run_folder_has_everything(tmp_path):
    net = _net()
    record = fine_tune(net, _data(), tmp_path / "run", strategy="full", epochs=2)
    net_after = net.module.state_dict()
    run = tmp_path / "run"
    for name in ("config.json", "history.jsonl", "run.json", "model.safetensors", "metrics.json",
                 "checkpoints/last.json", "checkpoints/best.json", "checkpoints/start.safetensors"):
        assert (run / name).is_file(), name
    assert not (run / "confusion.png").exists(), "the training layer draws nothing; graft.report.plots does"
    from graft.report.plots import plot_run

    assert plot_run(run) == [run / "confusion.png"] and (run / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    names = sorted(p.name for p in (run / "checkpoints").glob("*-*.safetensors"))
    # weights + optimizer of the last two epochs (last, and last.previous until the next is whole); best
    assert len(names) == 5 and sum(n.startswith("last-") for n in names) == 4
    last, previous = (json.loads((run / "checkpoints" / f"{n}.json").read_text()) for n in ("last", "last.previous"))
    assert (last["state"]["epoch"], previous["state"]["epoch"]) == (2, 1)
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2] and all("val_accuracy" in h for h in history)
    assert record.epochs_run == 2 and record.final_split == "val" and 0 <= record.final_accuracy <= 1
    back = graft.load_run(run, module=TinyPooledCNN(classes=3))  # a class of our own: pass a fresh instance
    assert back.spec.label_names == ("0", "1", "2")
    for key, value in back.module.state_dict().items():
        assert torch.equal(value, net_after[key]), key


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path):
    """Same seed, same data: stop after epoch 2 of 4 (as Ctrl-C would), resume, and get the same weights."""
    data = _data()
    fine_tune(_net(cls=Dropped), data, tmp_path / "whole", strategy="two-phase", epochs=4, batch_size=8)

    def stop_after_two(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fine_tune(_net(cls=Dropped), data, tmp_path / "cut", strategy="two-phase", epochs=4, batch_size=8,
                  log=stop_after_two)
    assert json.loads((tmp_path / "cut" / "checkpoints" / "last.json").read_text())["state"]["epoch"] == 2
    record = fine_tune(_net(cls=Dropped), data, tmp_path / "cut", strategy="two-phase", epochs=4, batch_size=8,
                       resume=True)
    assert record.epochs_run == 4
    whole, cut = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    assert whole.keys() == cut.keys()
    for key in whole:
        assert torch.equal(whole[key], cut[key]), key


def test_resume_refuses_other_data_or_settings(tmp_path):
    data = _data()

    def stop(record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fine_tune(_net(), data, tmp_path / "run", strategy="full", epochs=3, log=stop)
    with pytest.raises(GraftError, match="different training data"):
        fine_tune(_net(), _data(seed=1), tmp_path / "run", strategy="full", epochs=3, resume=True)
    with pytest.raises(GraftError, match="different starting weights"):
        fine_tune(_net(seed=5), data, tmp_path / "run", strategy="full", epochs=3, resume=True)
    with pytest.raises(GraftError, match="strategy"):
        fine_tune(_net(), data, tmp_path / "run", strategy="linear", epochs=3, resume=True)
    with pytest.raises(GraftError, match="already holds a run"):
        fine_tune(_net(), data, tmp_path / "run", strategy="full", epochs=3)
    with pytest.raises(GraftError, match="a run to resume"):
        fine_tune(_net(), data, tmp_path / "nothing", strategy="full", epochs=3, resume=True)


def test_early_stopping_and_the_best_checkpoint(tmp_path):
    record = fine_tune(_net(), _data(), tmp_path / "run", strategy="full", epochs=30, lr=0.5, patience=2)
    assert record.stopped == "early stopping" and record.epochs_run < 30
    best = json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())
    assert best["epoch"] == record.best_epoch and best["accuracy"] == record.best_accuracy


def test_a_time_budget(tmp_path):
    assert parse_budget("90s") == 90 and parse_budget("10m") == 600 and parse_budget("1.5h") == 5400
    for bad in ("ten minutes", "-5m", 0):
        with pytest.raises(GraftError, match="budget"):
            parse_budget(bad)
    with pytest.raises(GraftError, match="a budget of at least 1 epoch"):
        fine_tune(_net(), _data(n=600), tmp_path / "tiny", strategy="full", budget=1e-4)
    record = fine_tune(_net(), _data(), tmp_path / "run", strategy="full", epochs=50, budget=0.3)
    assert record.stopped == "budget" and record.epochs_run < 50


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import safetensors.torch as st

    run = tmp_path / "run"
    original = st.save_file
    calls = {"n": 0}

    def full_after_a_while(tensors, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 6:  # in the second epoch's checkpoint: the disk is full
            raise OSError(28, "No space left on device")
        return original(tensors, path, *args, **kwargs)

    monkeypatch.setattr(st, "save_file", full_after_a_while)
    with pytest.raises(GraftError, match="No space left on device"):
        fine_tune(_net(), _data(), run, strategy="full", epochs=3)
    monkeypatch.setattr(st, "save_file", original)
    from graft.training.checkpoints import read_checkpoint_state

    state = read_checkpoint_state(run / "checkpoints", "last")
    assert state is not None and state["state"]["epoch"] == 1  # the previous checkpoint, whole
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # no temporary files
    record = fine_tune(_net(), _data(), run, strategy="full", epochs=3, resume=True)  # and it resumes
    assert record.epochs_run == 3


# ---------------------------------------------------------------- the cached frozen prefix

@pytest.mark.parametrize("strategy", ["partial:1", "partial:3", "two-phase"])
def test_a_cached_prefix_trains_exactly_like_recomputing_it(tmp_path, strategy):
    data = _data()
    results = {}
    for cached in (True, False):
        net = _net(cls=Dropped)
        trainer = Trainer(net, data, parse_strategy(strategy), tmp_path / str(cached), epochs=3, batch_size=8,
                          cache_prefix=cached)
        trainer.run()
        results[cached] = ({k: v.clone() for k, v in net.module.state_dict().items()},
                           [h["cached_prefix"] for h in trainer.state.history])
    (with_cache, flags), (without, no_flags) = results[True], results[False]
    assert any(flags) and not any(no_flags)
    for key in with_cache:
        torch.testing.assert_close(with_cache[key], without[key], rtol=1e-5, atol=1e-6, msg=key)


def test_the_prefix_is_not_cached_when_it_cannot_be(tmp_path):
    data = _data()
    for strategy, options in (("full", {}), ("partial:2", {"batchnorm": "adapt"}), ("gradual", {})):
        trainer = Trainer(_net(), data, parse_strategy(strategy, **options), tmp_path / strategy, epochs=2)
        trainer.run()
        assert not any(h["cached_prefix"] for h in trainer.state.history), strategy
    trainer = Trainer(_net(), data, parse_strategy("partial:1"), tmp_path / "small", epochs=1, cache_limit=10)
    trainer.run()
    assert not trainer.state.history[0]["cached_prefix"] and "not cached" in trainer.notes[0]


def test_loose_modules_go_with_the_block_before_them(tmp_path):
    trainer = Trainer(_net(cls=Dropped), _data(), parse_strategy("partial:1"), tmp_path / "r", epochs=1)
    last = len(trainer.blocks) - 1
    assert trainer.module_groups["drop"] == last and trainer.module_groups["pool"] == last
    assert trainer.module_groups["fc"] == HEAD and trainer.module_groups["stem.2"] == 1  # the ReLU after stem.1


def test_folded_batchnorm_stays_in_inference_mode(tmp_path):
    """Identity statistics with a learned shift (BN folded into the conv, as in the Coral MobileNets): batch
    statistics would normalize the folded activations away, so these layers keep inference mode."""
    net = _net()
    with torch.no_grad():
        for bn in (net.module.stem[1], net.module.stage2[1]):
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0)
            bn.bias.fill_(-0.5)
    trainer = Trainer(net, _data(), parse_strategy("full"), tmp_path / "r", epochs=1)
    assert trainer.folded_bn == {"stem.1", "stage2.1"} and "identity statistics" in trainer.notes[0]
    trainer.run()
    assert torch.equal(net.module.stem[1].running_var, torch.ones(8))  # never updated from batches
    assert not torch.equal(net.module.stage1[1].running_var, _net().module.stage1[1].running_var)  # a normal BN
    fresh = Trainer(graft.load_model(TinyPooledCNN(classes=3)), _data(), parse_strategy("full"), tmp_path / "f",
                    epochs=1)
    assert fresh.folded_bn == set()  # a freshly built BN (scale 1, shift 0) trains normally


def test_a_live_progress_bar_per_batch(tmp_path):
    """On a terminal, each epoch shows a bar with the running loss and accuracy; off, nothing is drawn."""
    import io

    from rich.console import Console

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    fine_tune(_net(), _data(), tmp_path / "shown", strategy="two-phase", epochs=2, batch_size=8, progress=console)
    text = screen.getvalue()
    assert "epoch 1/2 [head (body frozen)]" in text and "epoch 2/2 [everything]" in text
    assert "loss" in text and "acc" in text and "6/6" in text  # 48 training samples in batches of 8
    quiet = io.StringIO()
    with LiveBar(6, "epoch 1/1", enabled=False, console=Console(file=quiet, force_terminal=True)) as bar:
        bar.advance(loss=1.0)
    assert quiet.getvalue() == ""
