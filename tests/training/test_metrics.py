"""classification_report, Metrics (JSON, render), plot_confusion and predict_classes on real arrays and tensors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import balanced_accuracy_score
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from graft.errors import GraftError, LabelError, ShapeError
from graft.report.plots import plot_confusion
from graft.training.metrics import ClassMetrics, Metrics, classification_report, predict_classes

NAMES = ("ant", "bee", "cat", "dog")
# Hand-computed: 'cat' is never predicted, 'dog' has no sample but is predicted once.
Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 3, 1]


@pytest.fixture
def mixed() -> Metrics:
    return classification_report(Y_TRUE, Y_PRED, NAMES)


def test_hand_computed_scores(mixed):
    assert mixed.accuracy == pytest.approx(3 / 6)
    assert mixed.balanced_accuracy == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)  # 'dog' has no recall: left out
    assert mixed.macro_f1 == pytest.approx((0.8 + 0.4 + 0 + 0) / 4)  # 'dog' was predicted: it counts with F1 0
    assert mixed.num_samples == 6
    assert mixed.label_names == NAMES
    assert mixed.per_class == (
        ClassMetrics("ant", 1.0, pytest.approx(2 / 3), pytest.approx(0.8), 3),
        ClassMetrics("bee", pytest.approx(1 / 3), 0.5, pytest.approx(0.4), 2),
        ClassMetrics("cat", 0.0, 0.0, 0.0, 1),
        ClassMetrics("dog", 0.0, 0.0, 0.0, 0),
    )
    assert mixed.confusion == ((2, 1, 0, 0), (0, 1, 0, 1), (0, 1, 0, 0), (0, 0, 0, 0))
    assert mixed.confusion_matrix.shape == (4, 4) and mixed.confusion_matrix.sum() == 6


def test_balanced_accuracy_matches_sklearn_over_present_classes(mixed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns that y_pred holds a class absent from y_true
        assert mixed.balanced_accuracy == pytest.approx(balanced_accuracy_score(Y_TRUE, Y_PRED))


def test_class_absent_from_both_is_left_out_of_macro_f1_but_kept_in_the_table():
    m = classification_report([0, 1, 0, 1], [0, 1, 1, 1], ["a", "b", "c"])
    assert m.accuracy == pytest.approx(0.75)
    assert m.balanced_accuracy == pytest.approx((0.5 + 1.0) / 2)
    assert m.macro_f1 == pytest.approx((2 / 3 + 0.8) / 2)
    assert m.per_class[2] == ClassMetrics("c", 0.0, 0.0, 0.0, 0)
    assert m.confusion == ((1, 1, 0), (0, 2, 0), (0, 0, 0))


@pytest.mark.parametrize("y_true, y_pred, expected", [
    ([0, 1, 2, 1], [0, 1, 2, 1], 1.0),  # perfect
    ([0, 1, 2], [1, 2, 0], 0.0),  # all wrong
])
def test_perfect_and_all_wrong(y_true, y_pred, expected):
    m = classification_report(np.array(y_true), torch.tensor(y_pred), ["x", "y", "z"])
    assert (m.accuracy, m.balanced_accuracy, m.macro_f1) == (expected, expected, expected)
    assert all(c.f1 == expected for c in m.per_class)
    assert np.trace(m.confusion_matrix) == (len(y_true) if expected else 0)


def test_whole_number_floats_are_accepted():
    m = classification_report(np.array([0.0, 1.0]), [0, 1], ["x", "y"])
    assert m.accuracy == 1.0


def test_json_round_trip(mixed):
    again = Metrics.from_json(mixed.to_json())
    assert again == mixed
    assert isinstance(again.per_class[0], ClassMetrics)
    assert isinstance(again.confusion[0][0], int) and isinstance(again.accuracy, float)


def test_render_has_the_summary_and_every_class(mixed):
    text = mixed.render()
    assert "accuracy 0.500" in text and "macro F1 0.300" in text
    for name in NAMES:
        assert name in text
    assert "no samples of: dog" in text and "never predicted: cat" in text


@pytest.mark.parametrize("num_classes", [4, 25])
def test_plot_confusion_writes_a_png(tmp_path, num_classes):
    rng = np.random.default_rng(0)
    names = [f"class_{i}" for i in range(num_classes)]
    m = classification_report(rng.integers(0, num_classes, 60), rng.integers(0, num_classes, 60), names)
    out = plot_confusion(m, tmp_path / "plots" / "confusion.png")
    assert out == tmp_path / "plots" / "confusion.png"
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size[0] > 100 and img.size[1] > 100
    assert [p.name for p in out.parent.iterdir()] == ["confusion.png"]  # no temporary file left


def test_plot_confusion_refuses_bad_arguments(tmp_path, mixed):
    with pytest.raises(GraftError, match=r"\.png"):
        plot_confusion(mixed, tmp_path / "confusion.pdf")
    with pytest.raises(GraftError, match="Metrics"):
        plot_confusion({"accuracy": 1.0}, tmp_path / "confusion.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("y_true, y_pred, names, error, pattern", [
    ([0, 1, 1], [0, 1], ["a", "b"], ShapeError, "3 true labels and 2 predictions"),
    ([], [], ["a", "b"], GraftError, "at least one sample"),
    ([0, 5, 1, 7], [0, 1, 1, 1], ["a", "b"], LabelError, r"values 5, 7 \(at positions 1, 3\)"),
    ([0, 1], [0, -1], ["a", "b"], LabelError, r"y_pred in 0\.\.1.*value -1 \(at position 1\)"),
    ([0, 1], [0.0, 0.5], ["a", "b"], LabelError, r"(?s)whole-number.*0\.5.*argmax"),
    ([0, 1], [0, float("nan")], ["a", "b"], LabelError, "nan"),
    ([0, 1], [[0.9, 0.1], [0.2, 0.8]], ["a", "b"], ShapeError, r"y_pred\.argmax\(1\)"),
    ([0, 1], [[0], [1]], ["a", "b"], ShapeError, r"shape \(2, 1\)"),
    (["a", "b"], [0, 1], ["a", "b"], LabelError, "names like 'a', 'b'"),
    ([True, False], [0, 1], ["a", "b"], LabelError, "booleans"),
    (3, [0], ["a", "b"], ShapeError, "a single value 3"),
    ([0, 1], [0, 1], ["a", "a"], LabelError, "duplicates"),
    ([0, 1], [0, 1], [], LabelError, "at least one label name"),
    ([0, 1], [0, 1], "ab", LabelError, "list of strings"),
])
def test_bad_inputs_say_what_is_wrong(y_true, y_pred, names, error, pattern):
    with pytest.raises(error, match=pattern) as info:
        classification_report(y_true, y_pred, names)
    assert "fix:" in str(info.value)


class _Linear4(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.dropout = nn.Dropout(0.9)  # would make predictions random if eval mode were not set

    def forward(self, x):
        return self.fc(self.dropout(x))


def test_predict_classes_matches_argmax_and_restores_training_flag():
    torch.manual_seed(0)
    module = _Linear4().train()
    x, y = torch.randn(10, 3), torch.arange(10) % 4
    y_true, y_pred = predict_classes(module, DataLoader(TensorDataset(x, y), batch_size=4))
    assert module.training
    module.eval()
    with torch.no_grad():
        assert np.array_equal(y_pred, module(x).argmax(1).numpy())
    assert np.array_equal(y_true, y.numpy()) and y_true.dtype == y_pred.dtype == np.int64
    m = classification_report(y_true, y_pred, ["a", "b", "c", "d"])
    assert m.num_samples == 10


class _OnlyInputs(Dataset):
    def __len__(self):
        return 3

    def __getitem__(self, i):
        return torch.randn(3)


def test_predict_classes_bad_inputs():
    module = _Linear4().eval()
    with pytest.raises(GraftError, match=r"\(x, y\) batches"):
        predict_classes(module, DataLoader(_OnlyInputs(), batch_size=2))
    with pytest.raises(ShapeError, match=r"\(batch, classes\)"):
        predict_classes(nn.Flatten(0), DataLoader(TensorDataset(torch.randn(4, 3), torch.zeros(4)), batch_size=2))
    with pytest.raises(GraftError, match="empty loader"):
        predict_classes(module, DataLoader(TensorDataset(torch.randn(0, 3), torch.zeros(0)), batch_size=2))
    with pytest.raises(GraftError, match="torch.nn.Module"):
        predict_classes(lambda x: x, [])
    assert not module.training
