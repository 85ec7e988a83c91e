"""describe_data / load_data on small .npz archives and image folders: the DatasetSpec they give (layouts,
class names and counts), the errors for archives and folders that are not datasets, and the spec's JSON form.

Cases already covered by test_load_malformed.py (a path that does not exist, x with too many axes, labels
beyond label_names, an empty folder, a table without its label column) are not repeated here."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from graft.data import DatasetSpec, describe_data, load_data
from graft.errors import DataError, LabelError


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _labels(n: int, k: int) -> np.ndarray:
    return np.arange(n) % k


def _problem(spec, kind: str):
    found = [p for p in spec.problems if p.kind == kind]
    assert len(found) == 1, f"one {kind!r} expected among {[p.kind for p in spec.problems]}"
    return found[0]


# -- .npz layouts ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("x_shape, input_shape, modality, layout", [
    ((6, 28, 28), (1, 28, 28), "image", "add-channel"),        # grey images without a channel axis
    ((6, 28, 28, 1), (1, 28, 28), "image", "channels-last"),   # channels last, one channel
    ((6, 32, 30, 3), (3, 32, 30), "image", "channels-last"),   # channels last (numpy / PIL / Keras style)
    ((6, 3, 32, 30), (3, 32, 30), "image", "as-is"),           # channels first (PyTorch style)
    ((6, 3, 8, 2), (3, 8, 2), "image", "as-is"),               # narrow last axis: not mistaken for channels
    ((6, 50), (1, 50), "array", "add-channel"),                # sequences
])
def test_npz_layouts_become_channels_first(tmp_path, x_shape, input_shape, modality, layout):
    x = np.random.default_rng(0).integers(0, 256, x_shape, dtype=np.uint8)
    path = _npz(tmp_path / "d.npz", x=x, y=_labels(6, 3))
    spec = describe_data(path)
    assert spec.input_shape == input_shape
    assert spec.channels == input_shape[0] and spec.size == input_shape[1:]
    assert spec.modality == modality
    assert spec.num_samples == 6 and spec.class_counts == (2, 2, 2)
    assert spec.name == "d" and spec.source == str(path)
    assert spec.label_names == ("0", "1", "2") and spec.problems == ()
    data = load_data(path)
    assert data.spec == spec
    xs, ys = data.arrays()
    expected = {"add-channel": x[:, None], "channels-last": np.moveaxis(x, -1, 1), "as-is": x}[layout]
    assert xs.dtype == np.float32 and xs.shape == (6, *input_shape)
    # the values move with the axes, not only the reported shape (uint8 is scaled to [0, 1])
    np.testing.assert_allclose(xs, expected / 255.0, atol=1e-6)
    assert ys.dtype == np.int64 and ys.tolist() == _labels(6, 3).tolist()


def test_npz_without_label_names_names_the_classes_by_index(tmp_path):
    y = np.array([0, 2, 1, 2, 2, 0, 1])
    path = _npz(tmp_path / "d.npz", x=np.zeros((7, 8, 8), np.uint8), y=y)
    spec = describe_data(path)
    assert spec.label_names == ("0", "1", "2")
    assert spec.class_counts == (2, 2, 3)
    assert load_data(path).arrays()[1].tolist() == y.tolist()


@pytest.mark.parametrize("y, names, counts", [
    (np.array([1, 2, 1, 2]), ("1", "2"), (2, 2)),                # does not start at 0
    (np.array([0, 2, 0, 2]), ("0", "2"), (2, 2)),                # a gap
    (np.array([-1, 0, 1, 0]), ("-1", "0", "1"), (1, 2, 1)),      # negative: numeric order, not text order
    (np.array([10, 9, 10, 10]), ("9", "10"), (1, 3)),            # numeric order: 9 before 10
    (np.array(["b", "a", "b", "b"]), ("a", "b"), (1, 3)),        # names in y
], ids=["from-1", "gap", "negative", "numeric-order", "strings"])
def test_labels_without_label_names_name_their_classes(tmp_path, y, names, counts):
    """Without label_names, the classes are the values found in y (in numeric order when they are numbers),
    and y becomes indices into them: no class is invented for a gap, none is lost."""
    path = _npz(tmp_path / "d.npz", x=np.zeros((4, 8, 8)), y=y)
    data = load_data(path)
    assert data.spec.label_names == names
    indices = data.arrays()[1]
    assert [names[i] for i in indices] == [str(v) for v in y]
    assert data.spec.class_counts == counts


def test_label_names_may_name_a_class_without_samples(tmp_path):
    y = np.array([0, 0, 2])
    path = _npz(tmp_path / "d.npz", x=np.zeros((3, 4, 4)), y=y, label_names=np.array(["a", "b", "c"]))
    spec = describe_data(path)
    assert spec.label_names == ("a", "b", "c") and spec.class_counts == (2, 0, 1)
    assert _problem(spec, "empty_class").items == ("b",)
    assert load_data(path).arrays()[1].tolist() == [0, 0, 2]


# -- archives that are not datasets ---------------------------------------------------------------------

def test_length_mismatch(tmp_path):
    path = _npz(tmp_path / "d.npz", x=np.zeros((5, 8, 8)), y=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match="as many labels as samples") as info:
        load_data(path)
    assert "5 samples and 4 labels" in str(info.value) and "same split" in info.value.fix


@pytest.mark.parametrize("arrays, found", [
    ({"x": np.zeros((4, 8, 8))}, "['x']"),
    ({"y": np.array([0, 1, 0, 1])}, "['y']"),
    ({"images": np.zeros((4, 8, 8)), "labels": np.array([0, 1, 0, 1])}, "['images', 'labels']"),
])
def test_missing_arrays(tmp_path, arrays, found):
    path = _npz(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=r"an \.npz archive with arrays x and y \(or x_train/y_train") as info:
        describe_data(path)
    assert f"arrays {found} in {path}" in str(info.value)
    assert "np.savez" in info.value.fix


def test_duplicate_label_names(tmp_path):
    path = _npz(tmp_path / "d.npz", x=np.zeros((4, 8, 8)), y=np.array([0, 1, 0, 1]), label_names=np.array(["a", "a"]))
    with pytest.raises(LabelError, match="all different") as info:
        describe_data(path)
    assert "['a']" in str(info.value)


def test_one_hot_labels_give_a_data_error(tmp_path):
    path = _npz(tmp_path / "d.npz", x=np.zeros((4, 8, 8)), y=np.eye(4))
    with pytest.raises(DataError, match="y as one class per sample") as info:
        describe_data(path)
    assert "shape (4, 4)" in str(info.value) and "argmax" in info.value.fix


def test_truncated_npz_gives_a_data_error(tmp_path):
    good = _npz(tmp_path / "good.npz", x=np.zeros((4, 8, 8)), y=np.array([0, 1, 0, 1]))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(good.read_bytes()[:100])
    with pytest.raises(DataError, match=r"a readable \.npz archive") as info:
        describe_data(bad)
    assert str(bad) in str(info.value) and "truncated" in info.value.fix


# -- files that are not datasets ------------------------------------------------------------------------

@pytest.mark.parametrize("name, match", [
    ("d.npy", "a dataset: a folder, .npz, .csv/.parquet"),
    ("d.npz", r"an \.npz archive \(a zip file of \.npy arrays.*text starting 'hello, n', not a zip"),
    ("d.png", "a dataset \\(a folder of files, a list, or an archive\\); got a single file"),
])
def test_not_a_dataset_file(tmp_path, name, match):
    path = tmp_path / name
    if name.endswith(".npy"):
        np.save(path, np.zeros((4, 8, 8)))
    elif name.endswith(".png"):
        Image.new("RGB", (4, 4)).save(path)
    else:
        path.write_bytes(b"hello, not an archive")
    with pytest.raises(DataError, match=match) as info:
        describe_data(path)
    assert name in str(info.value) and info.value.fix


# -- image folders --------------------------------------------------------------------------------------

def _image_folder(root, counts: dict[str, int], size=(12, 10), mode="RGB"):
    """``counts`` images per class, ``size`` (W, H) as PIL takes it."""
    rng = np.random.default_rng(0)
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / cls / f"{i}.png")
    return root


def test_image_folder(tmp_path):
    root = _image_folder(tmp_path / "pets", {"dog": 3, "cat": 2})
    notes = root / "dog" / "notes.txt"
    notes.write_text("not an image")
    (root / ".cache").mkdir()
    Image.new("RGB", (12, 10)).save(root / ".cache" / "0.png")
    data = load_data(root)
    spec = data.spec
    assert spec.input_shape == (3, 10, 12), "PIL size is (W, H); the spec is channels first (C, H, W)"
    assert spec.label_names == ("cat", "dog"), "sorted class folders, hidden folders left out"
    assert spec.class_counts == (2, 3), "only image files are counted"
    assert spec.num_samples == 5 and spec.splits == (("train", 5),)
    assert spec.modality == "image" and spec.name == "pets" and spec.source == str(root)
    other = _problem(spec, "other_files")
    assert other.severity == "warning" and other.items == (str(notes),)
    assert str(notes) not in data["train"].paths
    x, y = data.arrays()
    assert x.shape == (5, 3, 10, 12) and sorted(y.tolist()) == [0, 0, 1, 1, 1]


def test_grey_image_folder(tmp_path):
    spec = describe_data(_image_folder(tmp_path / "g", {"a": 1, "b": 1}, size=(7, 9), mode="L"))
    assert spec.input_shape == (1, 9, 7)


def test_an_empty_class_folder_is_not_a_class(tmp_path):
    """Classes come from the files found: an empty class folder (here the first one) adds no class and does not
    stop the shape from being read from the others."""
    root = _image_folder(tmp_path / "r", {"b": 2, "c": 2})
    (root / "a").mkdir()
    spec = describe_data(root)
    assert spec.label_names == ("b", "c") and spec.class_counts == (2, 2) and spec.input_shape == (3, 10, 12)


@pytest.mark.parametrize("layout, match, fix", [
    ("only-empty-class-folders", "image or audio files; got 0 files", "images: ["),
    ("images-without-class-folders", "one sub-folder per class, or files named so that label_pattern",
     "root/CLASS/file"),
])
def test_folders_that_are_not_image_datasets(tmp_path, layout, match, fix):
    root = tmp_path / "r"
    root.mkdir()
    if layout == "only-empty-class-folders":
        (root / "a").mkdir()
        (root / "b").mkdir()
    else:
        Image.new("RGB", (4, 4)).save(root / "x.png")
    with pytest.raises(DataError, match=match) as info:
        describe_data(root)
    assert str(root) in str(info.value) and fix in info.value.fix


# -- JSON -----------------------------------------------------------------------------------------------

def test_dataset_spec_json_round_trip(tmp_path):
    path = _npz(tmp_path / "d.npz", x=np.zeros((5, 3, 16, 12), np.float32), y=np.array([0, 1, 1, 0, 1]),
                label_names=np.array(["left", "right"]))
    spec = load_data(path, val_fraction=0.4).spec
    assert spec.splits == (("train", 3), ("val", 2))
    text = spec.to_json()
    back = DatasetSpec.from_json(text)
    assert back == spec
    assert isinstance(back.input_shape, tuple) and isinstance(back.label_names, tuple)
    assert isinstance(back.splits, tuple) and back.splits == (("train", 3), ("val", 2))
    assert back.channels == 3 and back.size == (16, 12) and back.label_names == ("left", "right")


def test_dataset_spec_json_round_trip_of_a_folder_with_problems(tmp_path):
    root = _image_folder(tmp_path / "f", {"x": 1, "y": 2})
    (root / "x" / "readme.txt").write_text("not an image")
    spec = describe_data(root)
    assert spec.problems and spec.notes
    back = DatasetSpec.from_json(spec.to_json())
    assert back == spec
    assert back.problems[0].items == spec.problems[0].items and isinstance(back.problems[0].items, tuple)
