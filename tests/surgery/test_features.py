"""Named-feature alignment: columns matched by name, missing ones a sentinel + mask, new ones a zero adapter.

Checked on the behaviour of real (tiny) networks: the grafted network starts as the source network fed the
same data placed by hand where it learned each feature.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graft
from graft.errors import CheckpointError, ShapeError
from graft.surgery import SurgeryPlan
from graft.surgery.modules import FeatureAlign

SENSORS = ["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z", "mag_x", "mag_y", "mag_z"]
ACTIVITIES = ["walk", "run", "sit", "stand", "up", "down"]
# acc_x and acc_y where they were, gyr_z moved from column 5 to 2, temp and baro new; 6 source columns missing
NEW = ["acc_x", "acc_y", "gyr_z", "temp", "baro"]
SHARED = {0: 0, 1: 1, 2: 5}  # new column -> source column


def _out(backbone, x):
    with torch.inference_mode():
        return backbone.module.eval()(x)


def _state(backbone) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in backbone.module.state_dict().items()}


@pytest.fixture
def sensor_net():
    torch.manual_seed(0)
    return graft.load_model("sensor_cnn", pretrained=False, input_size=(28, 9), feature_names=SENSORS,
                            feature_axis=2, label_names=ACTIVITIES, width=4)


@pytest.fixture
def sensor_plan(sensor_net):
    return graft.plan_surgery(sensor_net, in_chans=1, input_size=(20, 5), feature_names=NEW)


def _by_hand(x: torch.Tensor, rows: slice) -> torch.Tensor:
    """The source's (N, 1, 28, 9) input: the shared columns at their source positions, 0 everywhere else."""
    full = torch.zeros(x.shape[0], 1, 28, 9)
    for new, src in SHARED.items():
        full[:, :, rows, src] = x[:, :, :, new]
    return full


# -- the plan -----------------------------------------------------------------------------------------------

def test_plan_aligns_columns_by_name_then_masks_and_pads(sensor_plan):
    assert [s.kind for s in sensor_plan.steps] == ["features", "input_channels", "input_size"]
    p = sensor_plan.step("features").params
    assert (p["axis"], p["from"], p["to"]) == (2, 5, 9)
    assert p["sources"] == [0, 1, None, None, None, 2, None, None, None]
    assert p["extra"] == [3, 4]
    assert p["mask"] is True and p["mask_channels"] == 1 and p["sentinel"] == 0.0
    columns = p["columns"]
    assert columns[:2] == ["acc_x: kept", "acc_y: kept"]
    assert columns[5] == "gyr_z: kept (new position 2 -> 5)"
    assert all(c.startswith(f"{n}: missing -> sentinel 0") and "mask" in c
               for n, c in zip(SENSORS, columns[:9]) if n not in NEW)
    assert columns[9].startswith("temp: new ->") and columns[10].startswith("baro: new ->")
    assert len(columns) == 11
    assert "3 kept, 6 missing, 2 new" in sensor_plan.step("features").summary

    ch = sensor_plan.step("input_channels").params
    assert (ch["layer"], ch["from"], ch["to"], ch["mask_channels"]) == ("conv1.0", 1, 1, 1)
    size = sensor_plan.step("input_size").params
    assert size["mode"] == "pad" and size["from"] == [20, 9] and size["to"] == [28, 9]
    assert size["mask_channels_in"] == 1 and size["mask_channel"] is False, "the alignment's mask is padded, not a second one"

    assert sensor_plan.tensor("body.conv1.0.weight").new_shape == (4, 2, 3, 3)
    adapter = sensor_plan.tensor("input_layer.0.adapter.weight")
    assert adapter.action == "new" and adapter.new_shape == (9, 2) and adapter.trainable
    assert sensor_plan.result_input.feature_names == tuple(NEW)
    assert sensor_plan.result_labels == tuple(ACTIVITIES)


def test_applied_network_takes_the_new_shape(sensor_net, sensor_plan):
    grafted = sensor_plan.apply(sensor_net)
    assert _out(grafted, torch.randn(3, 1, 20, 5)).shape == (3, 6)
    w = grafted.module.body.conv1[0].weight
    assert w.shape == (4, 2, 3, 3) and w[:, 1].eq(0).all(), "the mask channel starts with zero weights"
    assert torch.equal(w[:, :1], sensor_net.module.conv1[0].weight)
    assert grafted.spec.input.feature_names == tuple(NEW) and grafted.spec.input.feature_axis == 2
    assert grafted.spec.label_names == tuple(ACTIVITIES)


def test_grafted_network_starts_as_the_source_on_the_aligned_input(sensor_net, sensor_plan):
    grafted = sensor_plan.apply(sensor_net)
    torch.manual_seed(1)
    x = torch.randn(4, 1, 20, 5)
    # PadCrop centres the 20 rows in 28: 4 rows of sentinel before, 4 after
    expected = _out(sensor_net, _by_hand(x, slice(4, 24)))
    assert torch.allclose(_out(grafted, x), expected, atol=1e-5)
    # the check can fail: the source's output depends on where the data sits and on the shared columns
    assert not torch.allclose(_out(sensor_net, _by_hand(x, slice(0, 20))), expected, atol=1e-3)
    moved = x.clone()
    moved[:, :, :, 2] += 1.0
    assert not torch.allclose(_out(grafted, moved), expected, atol=1e-3)
    # the new columns go through the zero-initialized adapter: they change nothing yet
    other = x.clone()
    other[:, :, :, 3:] = torch.randn(4, 1, 20, 2) * 10
    assert torch.allclose(_out(grafted, other), expected, atol=1e-5)


def test_the_adapter_is_trainable_and_gets_a_gradient(sensor_net, sensor_plan):
    grafted = sensor_plan.apply(sensor_net)
    adapter = grafted.module.input_layer[0].adapter
    assert adapter.weight.requires_grad and adapter.bias.requires_grad
    assert adapter.weight.eq(0).all() and adapter.bias.eq(0).all()
    grafted.module.train()
    loss = nn.functional.cross_entropy(grafted.module(torch.randn(8, 1, 20, 5)), torch.arange(8) % 6)
    loss.backward()
    assert adapter.weight.grad is not None and adapter.weight.grad.abs().sum() > 0
    assert adapter.bias.grad.abs().sum() > 0


def test_missing_cells_become_the_sentinel_in_the_grafted_network(sensor_net, sensor_plan):
    grafted = sensor_plan.apply(sensor_net)
    x = torch.randn(2, 1, 20, 5)
    holes = x.clone()
    holes[0, 0, 3, 0] = float("nan")
    holes[1, 0, 7, 2] = float("inf")
    holes[1, 0, 9, 4] = float("nan")  # in a new column: through the adapter
    filled = torch.where(torch.isfinite(holes), holes, torch.zeros(()))
    out = _out(grafted, holes)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, _out(grafted, filled), atol=1e-6), "mask weights start at zero"


# -- FeatureAlign on its own ------------------------------------------------------------------------------

def test_feature_align_replaces_non_finite_cells_and_marks_them_in_the_mask():
    align = FeatureAlign(axis=2, sources=[2, None, 0], extra=[1], sentinel=-1.0, mask=True)
    x = torch.tensor([[[[10.0, 11.0, 12.0],
                        [20.0, float("nan"), float("-inf")],
                        [30.0, 31.0, 32.0]]]])  # (1, 1, 3 rows, 3 columns)
    out = align(x)
    assert out.shape == (1, 2, 3, 3), "data channel + mask channel"
    data, mask = out[0, 0], out[0, 1]
    assert data.tolist() == [[12.0, -1.0, 10.0], [-1.0, -1.0, 20.0], [32.0, -1.0, 30.0]]
    assert mask.tolist() == [[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 1.0]]
    assert align.adapter.weight.shape == (3, 1) and align.adapter.weight.eq(0).all()


def test_feature_align_on_channels_without_mask():
    align = FeatureAlign(axis=0, sources=[1, 0], extra=[], mask=False)
    x = torch.randn(2, 2, 7)
    assert align.adapter is None
    assert torch.equal(align(x), x.flip(1))


# -- when no step, or no plan -----------------------------------------------------------------------------

def test_same_names_in_the_same_order_need_no_step(sensor_net):
    plan = graft.plan_surgery(sensor_net, feature_names=SENSORS)
    assert plan.step("features") is None and plan.steps == ()
    assert plan.warnings == ()


def test_a_source_without_feature_names_warns_and_takes_features_by_position():
    torch.manual_seed(0)
    anonymous = graft.load_model("sensor_cnn", pretrained=False, input_size=(28, 9), width=4)
    plan = graft.plan_surgery(anonymous, feature_names=[f"c{i}" for i in range(9)])
    assert plan.step("features") is None and plan.steps == ()
    assert len(plan.warnings) == 1 and "taken by position" in plan.warnings[0]
    assert "feature_names=" in plan.warnings[0]


def test_wrong_number_of_target_names_is_a_shape_error(sensor_net):
    with pytest.raises(ShapeError, match=r"(?s)one target feature name per entry of axis 2 \(5 entries\).*4 names"):
        graft.plan_surgery(sensor_net, input_size=(20, 5), feature_names=NEW[:4])


def test_no_name_in_common_warns(sensor_net):
    plan = graft.plan_surgery(sensor_net, input_size=(28, 3), feature_names=["p", "q", "r"])
    assert plan.step("features").params["sources"] == [None] * 9
    assert any("no feature name in common" in w for w in plan.warnings)


# -- channels of a time-series network -------------------------------------------------------------------

@pytest.fixture
def xyz_net():
    torch.manual_seed(0)
    return graft.load_model("ts_fcn", pretrained=False, in_chans=3, feature_names=["x", "y", "z"], width=8)


def test_channel_alignment_for_a_time_series_network(xyz_net):
    plan = graft.plan_surgery(xyz_net, in_chans=2, feature_names=["z", "x"])
    assert [s.kind for s in plan.steps] == ["features", "input_channels"]
    p = plan.step("features").params
    assert (p["axis"], p["sources"], p["extra"], p["mask_channels"]) == (0, [1, None, 0], [], 3)
    grafted = plan.apply(xyz_net)
    first = grafted.module.body.block1[0]
    assert first.weight.shape == (8, 3 + 3, 8) and first.weight[:, 3:].eq(0).all()
    assert torch.equal(first.weight[:, :3], xyz_net.module.block1[0].weight)
    for length in (40, 128):
        x = torch.randn(3, 2, length)
        by_hand = torch.stack([x[:, 1], torch.zeros_like(x[:, 0]), x[:, 0]], 1)  # x, y (missing: 0), z
        assert torch.allclose(_out(grafted, x), _out(xyz_net, by_hand), atol=1e-5)
    assert grafted.spec.input.channels == 2 and grafted.spec.input.feature_names == ("z", "x")


def test_reordered_channels_need_no_mask(xyz_net):
    plan = graft.plan_surgery(xyz_net, feature_names=["z", "y", "x"])
    assert [s.kind for s in plan.steps] == ["features"]
    assert plan.step("features").params["mask"] is False
    grafted = plan.apply(xyz_net)
    x = torch.randn(2, 3, 50)
    assert torch.allclose(_out(grafted, x), _out(xyz_net, x.flip(1)), atol=1e-5)


# -- a table network (Linear first layer) -----------------------------------------------------------------

@pytest.fixture
def table_net():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    return graft.load_model(module, feature_names=["a", "b", "c", "d"])


@pytest.fixture
def table_plan(table_net):
    return graft.plan_surgery(table_net, feature_names=["b", "a", "e"], in_chans=3)


def test_table_columns_are_aligned_by_name(table_net, table_plan):
    assert table_net.spec.input.spatial_dims == 0
    p = table_plan.step("features").params
    assert (p["sources"], p["extra"], p["mask_channels"]) == ([1, 0, None, None], [2], 4)
    assert table_plan.step("input_channels").params["mask_channels"] == 4
    grafted = table_plan.apply(table_net)
    first = grafted.module.body[0]
    assert first.weight.shape == (8, 8) and first.weight[:, 4:].eq(0).all()
    assert torch.equal(first.weight[:, :4], table_net.module[0].weight)
    x = torch.randn(5, 3)
    by_hand = torch.stack([x[:, 1], x[:, 0], torch.zeros(5), torch.zeros(5)], 1)  # a, b, c, d
    assert torch.allclose(_out(grafted, x), _out(table_net, by_hand), atol=1e-6)
    assert _out(grafted, x).shape == (5, 3)


def test_a_user_defined_grafted_table_is_not_rebuilt_from_its_file(table_net, table_plan, tmp_path):
    path = graft.save_model(table_plan.apply(table_net), tmp_path / "table.safetensors")
    with pytest.raises(CheckpointError, match="user-defined"):
        graft.load_model(path)


# -- plans replay from JSON and from the saved file -------------------------------------------------------

@pytest.mark.parametrize("case", ["sensor", "channels", "table"])
def test_plan_round_trips_through_json(case, sensor_net, xyz_net, table_net):
    net, target = {
        "sensor": (sensor_net, dict(in_chans=1, input_size=(20, 5), feature_names=NEW)),
        "channels": (xyz_net, dict(in_chans=2, feature_names=["z", "x"])),
        "table": (table_net, dict(in_chans=3, feature_names=["b", "a", "e"])),
    }[case]
    plan = graft.plan_surgery(net, **target)
    again = SurgeryPlan.from_json(plan.to_json())
    assert again == plan
    a, b = _state(plan.apply(net)), _state(again.apply(net))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("case", ["sensor", "channels"])
def test_grafted_network_saves_and_loads_from_its_file_alone(case, sensor_net, sensor_plan, xyz_net, tmp_path):
    if case == "sensor":
        source, plan, x = sensor_net, sensor_plan, torch.randn(3, 1, 20, 5)
    else:
        source, x = xyz_net, torch.randn(3, 2, 33)
        plan = graft.plan_surgery(xyz_net, in_chans=2, feature_names=["z", "x"])
    grafted = plan.apply(source)
    with torch.no_grad():  # trained a little: the file must carry the adapter and the mask weights
        for p in grafted.module.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = graft.save_model(grafted, tmp_path / "grafted.safetensors")
    back = graft.load_model(path)
    assert back.load_report.complete, back.load_report.summary()
    assert back.plan == plan
    assert torch.equal(_out(back, x), _out(grafted, x))
    assert back.spec.input.feature_names == grafted.spec.input.feature_names
    assert back.spec.input.shape() == grafted.spec.input.shape()
    assert back.spec.label_names == grafted.spec.label_names
    assert back.spec.weights == str(path)


def test_a_wrong_number_of_columns_is_refused_with_a_clear_error(sensor_net, sensor_plan):
    from graft.errors import ShapeError

    grafted = sensor_plan.apply(sensor_net)
    for columns in (4, 7):
        with pytest.raises(ShapeError, match="5 features on axis 2"):
            grafted.module(torch.randn(2, 1, 20, columns))
