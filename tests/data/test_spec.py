"""describe_dataset on real .npz archives and real image folders, and the errors for bad ones."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from graft.data import DatasetSpec, describe_dataset, load_arrays
from graft.errors import DataError, GraftError, LabelError


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _labels(n: int, k: int) -> np.ndarray:
    return np.arange(n) % k


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
    spec = describe_dataset(path)
    assert spec.input_shape == input_shape
    assert spec.channels == input_shape[0] and spec.size == input_shape[1:]
    assert spec.modality == modality
    assert spec.num_samples == 6 and spec.class_counts == (2, 2, 2)
    assert spec.name == "d" and spec.source == str(path)
    xs, ys, names = load_arrays(path)
    expected = {"add-channel": x[:, None], "channels-last": np.moveaxis(x, -1, 1), "as-is": x}[layout]
    np.testing.assert_array_equal(xs, expected)  # the values move with the axes, not only the reported shape
    assert ys.dtype == np.int64 and names == ("0", "1", "2")


def test_npz_without_label_names_names_the_classes_by_index(tmp_path):
    y = np.array([0, 2, 1, 2, 2, 0, 1])
    spec = describe_dataset(_npz(tmp_path / "d.npz", x=np.zeros((7, 8, 8), np.uint8), y=y))
    assert spec.label_names == ("0", "1", "2")
    assert spec.class_counts == (2, 2, 3)


def test_npz_with_label_names(tmp_path):
    names = np.array(["cat", "dog", "zebra"])
    y = np.array([2, 2, 0, 1, 2])
    spec = describe_dataset(_npz(tmp_path / "d.npz", x=np.zeros((5, 8, 8), np.uint8), y=y, label_names=names))
    assert spec.label_names == ("cat", "dog", "zebra")
    assert spec.class_counts == (1, 1, 3)


def test_label_names_may_name_a_class_without_samples(tmp_path):
    y = np.array([0, 0, 2])
    spec = describe_dataset(_npz(tmp_path / "d.npz", x=np.zeros((3, 4, 4)), y=y, label_names=np.array(["a", "b", "c"])))
    assert spec.class_counts == (2, 0, 1)


@pytest.mark.parametrize("y", [
    np.array([1, 2, 1, 2]),      # does not start at 0
    np.array([0, 2, 0, 2]),      # a gap
    np.array([-1, 0, 1, 0]),     # negative
    np.array(["a", "b", "a", "b"]),  # strings in y
], ids=["from-1", "gap", "negative", "strings"])
def test_labels_must_be_0_to_k_minus_1_without_names(tmp_path, y):
    path = _npz(tmp_path / "d.npz", x=np.zeros((4, 8, 8)), y=y)
    with pytest.raises(DataError, match="labels 0..K-1, or label_names|integer class index") as info:
        describe_dataset(path)
    assert "label_names" in info.value.fix


def test_length_mismatch(tmp_path):
    path = _npz(tmp_path / "d.npz", x=np.zeros((5, 8, 8)), y=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match="as many labels as samples") as info:
        describe_dataset(path)
    assert "5 samples and 4 labels" in str(info.value)


@pytest.mark.parametrize("arrays, missing", [
    ({"x": np.zeros((4, 8, 8))}, "['x']"),
    ({"y": np.array([0, 1, 0, 1])}, "['y']"),
    ({"images": np.zeros((4, 8, 8)), "labels": np.array([0, 1, 0, 1])}, "['images', 'labels']"),
])
def test_missing_arrays(tmp_path, arrays, missing):
    path = _npz(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match="arrays 'x' .* and 'y'") as info:
        describe_dataset(path)
    assert missing in str(info.value) and "np.savez" in info.value.fix


def test_x_with_too_many_axes(tmp_path):
    path = _npz(tmp_path / "d.npz", x=np.zeros((4, 1, 2, 2, 2)), y=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match="2 to 4 axes"):
        describe_dataset(path)


def test_duplicate_label_names(tmp_path):
    path = _npz(tmp_path / "d.npz", x=np.zeros((4, 8, 8)), y=np.array([0, 1, 0, 1]), label_names=np.array(["a", "a"]))
    with pytest.raises(LabelError, match="all different"):
        describe_dataset(path)


@pytest.mark.parametrize("y", [np.array([0, 1, 2, 5]), np.array([0, 1, 2, -1])], ids=["too-large", "negative"])
def test_labels_beyond_the_label_names_are_refused(tmp_path, y):
    path = _npz(tmp_path / "d.npz", x=np.zeros((4, 8, 8)), y=y, label_names=np.array(["a", "b", "c"]))
    try:
        spec = describe_dataset(path)
    except DataError:
        return
    assert sum(spec.class_counts) == spec.num_samples, f"{spec.class_counts} for {spec.num_samples} samples"


def test_one_hot_labels_give_a_data_error(tmp_path):
    path = _npz(tmp_path / "d.npz", x=np.zeros((4, 8, 8)), y=np.eye(4))
    with pytest.raises(DataError):
        describe_dataset(path)


def test_truncated_npz_gives_a_data_error(tmp_path):
    good = _npz(tmp_path / "good.npz", x=np.zeros((4, 8, 8)), y=np.array([0, 1, 0, 1]))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(good.read_bytes()[:100])
    with pytest.raises(DataError):
        describe_dataset(bad)


# -- files that are not datasets ------------------------------------------------------------------------

@pytest.mark.parametrize("name, content, match", [
    ("d.csv", b"x,y\n1,0\n", "an .npz archive or an image folder"),
    ("d.npy", None, "an .npz archive or an image folder"),
    ("d.npz", b"hello, not an archive", "a readable .npz archive"),
])
def test_not_a_dataset_file(tmp_path, name, content, match):
    path = tmp_path / name
    if content is None:
        np.save(path, np.zeros((4, 8, 8)))
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match=match) as info:
        describe_dataset(path)
    assert name in str(info.value)


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="does not exist") as info:
        describe_dataset(tmp_path / "nope.npz")
    assert isinstance(info.value, GraftError) and info.value.fix


# -- image folders --------------------------------------------------------------------------------------

def _image_folder(root, counts: dict[str, int], size=(12, 10), mode="RGB"):
    rng = np.random.default_rng(0)
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / cls / f"{i}.png")
    return root


def test_image_folder(tmp_path):
    root = _image_folder(tmp_path / "pets", {"dog": 3, "cat": 2})
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / ".cache").mkdir()
    spec = describe_dataset(root)
    assert spec.input_shape == (3, 10, 12), "PIL size is (W, H); the spec is channels first (C, H, W)"
    assert spec.label_names == ("cat", "dog"), "sorted class folders, hidden folders left out"
    assert spec.class_counts == (2, 3), "only image files are counted"
    assert spec.num_samples == 5
    assert spec.modality == "image" and spec.name == "pets" and spec.source == str(root)


def test_grey_image_folder(tmp_path):
    spec = describe_dataset(_image_folder(tmp_path / "g", {"a": 1, "b": 1}, size=(7, 9), mode="L"))
    assert spec.input_shape == (1, 9, 7)


def test_image_folder_whose_first_class_is_empty(tmp_path):
    root = _image_folder(tmp_path / "r", {"b": 2})
    (root / "a").mkdir()
    spec = describe_dataset(root)
    assert spec.label_names == ("a", "b") and spec.class_counts == (0, 2) and spec.input_shape == (3, 10, 12)


@pytest.mark.parametrize("layout", ["empty", "only-empty-class-folders", "images-without-class-folders"])
def test_folders_that_are_not_image_datasets(tmp_path, layout):
    root = tmp_path / "r"
    root.mkdir()
    if layout == "only-empty-class-folders":
        (root / "a").mkdir()
        (root / "b").mkdir()
    elif layout == "images-without-class-folders":
        Image.new("RGB", (4, 4)).save(root / "x.png")
    with pytest.raises(DataError, match="one sub-folder of images per class") as info:
        describe_dataset(root)
    assert "root/CLASS_NAME/image.png" in info.value.fix


# -- JSON -----------------------------------------------------------------------------------------------

def test_dataset_spec_json_round_trip(tmp_path):
    path = _npz(tmp_path / "d.npz", x=np.zeros((5, 3, 16, 12), np.float32), y=np.array([0, 1, 1, 0, 1]),
                label_names=np.array(["left", "right"]))
    spec = describe_dataset(path)
    text = spec.to_json()
    back = DatasetSpec.from_json(text)
    assert back == spec
    assert isinstance(back.input_shape, tuple) and isinstance(back.label_names, tuple)
    assert back.channels == 3 and back.size == (16, 12)


def test_dataset_spec_json_round_trip_of_a_folder(tmp_path):
    spec = describe_dataset(_image_folder(tmp_path / "f", {"x": 1, "y": 2}))
    assert DatasetSpec.from_json(spec.to_json()) == spec
