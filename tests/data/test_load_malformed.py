"""load_data / describe_data on broken inputs: every problem is a DataError that names it, or a Problem in
``describe_data(...).problems`` with its kind and the samples concerned; never a raw numpy/PIL/pandas/aeon
exception. The last section throws random malformed inputs at every loader (Hypothesis)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from graft.data import AudioFeatures, Data, describe_data, load_data
from graft.errors import DataError, GraftError

# librosa on a file that is not audio: "PySoundFile failed. Trying audioread instead" and a FutureWarning
QUIET_AUDIO = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


def _problem(spec, kind: str):
    found = [p for p in spec.problems if p.kind == kind]
    assert len(found) == 1, f"one {kind!r} expected among {[p.kind for p in spec.problems]}"
    return found[0]


def _named(items, paths) -> bool:
    """The problem's items are exactly these files (items are 'PATH (why)' or 'PATH')."""
    return sorted(i.split(" (")[0] for i in items) == sorted(str(p) for p in paths)


def _check_loaded(data: Data) -> None:
    """What every successful load promises: splits of the spec's shape, labels within the classes."""
    spec = data.spec
    assert dict(spec.splits) == {k: len(v) for k, v in data.splits.items()}
    assert sum(n for _, n in spec.splits) == spec.num_samples == sum(spec.class_counts)
    assert len(spec.class_counts) == len(spec.label_names)
    for split in data.splits:
        x, y = data.arrays(split)
        assert x.shape == (len(y), *spec.input_shape), (split, x.shape, spec.input_shape)
        assert np.isfinite(x).all(), split  # NaN/inf samples stop the load or are skipped
        assert len(y) == 0 or (0 <= y.min() and y.max() < len(spec.label_names))


def _check_described(spec) -> None:
    assert sum(n for _, n in spec.splits) == spec.num_samples == sum(spec.class_counts)
    assert len(spec.class_counts) == len(spec.label_names)
    assert all(isinstance(s, int) for s in spec.input_shape)


def _image(path: Path, size=(10, 12), mode="RGB", seed=0, array=None) -> Path:
    """A real image file of ``size`` (H, W); the format follows the suffix."""
    rng = np.random.default_rng(seed)
    if array is None:
        shape = (*size, 3) if mode == "RGB" else size
        array = rng.integers(0, 256, shape, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).convert(mode).save(path)
    return path


def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _wav(path: Path, freq: float, seconds: float = 0.25, sr: int = 8000) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr, subtype="PCM_16")
    return path


# -- images that cannot be decoded ----------------------------------------------------------------------------

@pytest.fixture
def broken_images(tmp_path):
    root = tmp_path / "pics"
    for i in range(3):
        _image(root / "cat" / f"{i}.png", seed=i)
        _image(root / "dog" / f"{i}.jpg", seed=10 + i)
    bad = [_truncate(root / "cat" / "0.png"), _truncate(root / "dog" / "0.jpg", 0.3)]
    fake = root / "dog" / "notes.png"
    fake.write_text("this is a text file with an image suffix")
    return root, [*bad, fake]


def test_corrupt_images_are_listed(broken_images):
    root, bad = broken_images
    spec = describe_data(root)
    problem = _problem(spec, "corrupt_image")
    assert problem.severity == "error" and problem.skippable
    assert _named(problem.items, bad)
    assert "truncated" in problem.message and "on_error='skip'" in problem.fix


def test_corrupt_images_stop_the_load_with_every_file_named(broken_images):
    root, bad = broken_images
    with pytest.raises(DataError, match="corrupt_image") as info:
        load_data(root)
    text = str(info.value)
    assert all(str(p) in text for p in bad)
    assert "3 image files cannot be decoded" in text


def test_corrupt_images_are_skipped_on_request(broken_images):
    root, bad = broken_images
    data = load_data(root, on_error="skip")
    spec = data.spec
    assert spec.num_samples == 4 and spec.class_counts == (2, 2)
    assert _named(spec.skipped, bad)
    assert _problem(spec, "corrupt_image").severity == "warning"
    assert not set(map(str, bad)) & set(data["train"].paths)
    _check_loaded(data)


def test_mixed_sizes_are_read_at_the_most_common_size(tmp_path):
    root = tmp_path / "pics"
    for i in range(3):
        _image(root / "a" / f"{i}.png", size=(10, 12), seed=i)
    _image(root / "b" / "0.png", size=(10, 12))
    odd = [_image(root / "b" / "1.png", size=(20, 8)), _image(root / "b" / "2.png", size=(5, 5))]
    data = load_data(root)
    problem = _problem(data.spec, "mixed_sizes")
    assert problem.severity == "warning"
    assert _named(problem.items, odd) and "resized to 10x12" in problem.message
    assert data.spec.input_shape == (3, 10, 12)
    x, _ = data.arrays()
    assert x.shape == (6, 3, 10, 12)
    other = load_data(root, image_size=(7, 9))
    assert other.spec.input_shape == (3, 7, 9) and other.arrays()[0].shape == (6, 3, 7, 9)
    assert "resized to 7x9" in _problem(other.spec, "mixed_sizes").message


def test_grey_and_colour_images_are_all_read_as_rgb(tmp_path):
    root = tmp_path / "pics"
    grey = _image(root / "a" / "0.png", mode="L", seed=1)
    for i in range(1, 3):
        _image(root / "a" / f"{i}.png", seed=i + 5)
        _image(root / "b" / f"{i}.png", seed=i + 9)
    data = load_data(root)
    assert data.spec.input_shape == (3, 10, 12)
    problem = _problem(data.spec, "mixed_modes")
    assert _named(problem.items, [grey]) and "read as RGB" in problem.message
    x, _ = data["train"][data["train"].paths.index(str(grey))]
    assert x.shape == (3, 10, 12)
    np.testing.assert_array_equal(x[0], x[1])
    np.testing.assert_array_equal(x[1], x[2])
    np.testing.assert_allclose(x[0].numpy(), np.asarray(Image.open(grey)) / 255.0, atol=1e-6)
    assert load_data(root, image_mode="L").arrays()[0].shape == (5, 1, 10, 12)


def test_16_bit_grey_images_keep_their_range(tmp_path):
    """PIL's convert('L') clips 16-bit values at 255; graft keeps the top 8 bits instead."""
    ramp = (np.arange(64, dtype=np.uint16) * 1024).reshape(8, 8)
    for cls in ("a", "b"):
        for i in range(2):
            path = tmp_path / "deep" / cls / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(ramp).save(path)
    assert Image.open(path).mode == "I;16"
    x, _ = load_data(tmp_path / "deep").arrays()
    assert x.shape == (4, 1, 8, 8)
    np.testing.assert_allclose(x[0, 0], (ramp >> 8) / 255.0, atol=1e-6)


@pytest.mark.parametrize("option, match", [
    ({"image_size": (0, 5)}, "image_size as \\(height, width\\)"),
    ({"image_size": (32,)}, "image_size as \\(height, width\\)"),
    ({"image_size": (8.5, 8)}, "image_size as \\(height, width\\)"),
    ({"image_mode": "RGBA"}, "image_mode 'RGB'"),
    ({"image_mode": "rgb"}, "image_mode 'RGB'"),
])
def test_bad_image_options(tmp_path, option, match):
    for cls in ("a", "b"):
        _image(tmp_path / "pics" / cls / "0.png")
    with pytest.raises(DataError, match=match):
        load_data(tmp_path / "pics", **option)


# -- NaN and inf ----------------------------------------------------------------------------------------------

def _with_non_finite():
    x = np.random.default_rng(0).normal(size=(8, 5)).astype(np.float32)
    x[1, 3], x[4, 0], x[4, 1] = np.nan, np.inf, -np.inf
    return x, np.arange(8) % 2


def test_non_finite_values_are_listed():
    spec = describe_data(_with_non_finite())
    problem = _problem(spec, "non_finite")
    assert problem.severity == "error" and problem.items == ("train[1]", "train[4]")
    assert "2 samples hold NaN or inf (3 values)" in problem.message


def test_non_finite_values_stop_the_load():
    with pytest.raises(DataError, match="non_finite") as info:
        load_data(_with_non_finite())
    assert "train[1], train[4]" in str(info.value)


def test_non_finite_samples_are_skipped_on_request():
    data = load_data(_with_non_finite(), on_error="skip")
    spec = data.spec
    assert spec.skipped == ("train[1]", "train[4]") and spec.num_samples == 6
    assert _problem(spec, "non_finite").severity == "warning"
    x, _ = data.arrays()
    assert np.isfinite(x).all() and x.shape == (6, 1, 5)
    assert data["train"].ids == ["train[0]", "train[2]", "train[3]", "train[5]", "train[6]", "train[7]"]
    _check_loaded(data)


def test_values_beyond_float32_are_non_finite():
    x = np.ones((4, 3))
    x[2, 1] = 1e300  # finite in float64, inf once read as float32
    assert _problem(describe_data((x, np.arange(4) % 2)), "non_finite").items == ("train[2]",)


def test_non_finite_in_the_test_split_of_an_archive(tmp_path):
    x, y = _with_non_finite()
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros_like(x), y_train=y, x_test=x, y_test=y)
    assert _problem(describe_data(path), "non_finite").items == ("test[1]", "test[4]")


def test_empty_cells_in_a_table_are_non_finite(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n1,2,x\n3,,y\n5,6,x\n7,8,y\n")
    assert _problem(describe_data(path), "non_finite").items == ("t.csv:row 3",)


def test_an_archive_whose_train_split_is_all_non_finite(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.full((4, 6), np.nan), y_train=np.array([0, 1, 0, 1]),
             x_test=np.zeros((4, 6)), y_test=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match="val split with at least one sample"):
        load_data(path, on_error="skip", val_fraction=0.25)  # nothing left in train to split


# -- classes --------------------------------------------------------------------------------------------------

def test_a_single_class_is_an_error():
    data = (np.zeros((5, 4)), np.zeros(5, np.int64))
    problem = _problem(describe_data(data), "single_class")
    assert problem.severity == "error" and "1 class(es)" in problem.message
    with pytest.raises(DataError, match="single_class"):
        load_data(data)


def test_a_class_with_one_sample_is_a_warning():
    data = load_data((np.random.default_rng(0).normal(size=(5, 4)), np.array(["a", "a", "b", "a", "c"])),
                     label_names=["a", "b", "c", "d"])
    single = _problem(data.spec, "singleton_class")
    assert single.severity == "warning" and sorted(single.items) == ["b", "c"]
    assert _problem(data.spec, "empty_class").items == ("d",)
    _check_loaded(data)


def test_a_split_that_cannot_be_stratified_says_so():
    y = np.array([0] * 6 + [1] * 5 + [2])
    data = load_data((np.arange(12.0)[:, None] * np.ones((1, 3)), y), val_fraction=0.25)
    assert _problem(data.spec, "unstratified_split").severity == "warning"
    assert data.spec.splits == (("train", 9), ("val", 3))


@pytest.mark.parametrize("y, names, match", [
    (np.array([0, 1, 2, 5]), ["a", "b", "c"], "labels between 0 and 2"),
    (np.array([0, 1, -1, 2]), ["a", "b", "c"], "labels between 0 and 2"),
    (np.array(["a", "b", "zebra", "a"]), ["a", "b", "c"], r"labels that are among label_names.*zebra"),
])
def test_labels_outside_label_names(y, names, match):
    with pytest.raises(DataError, match=match):
        load_data((np.zeros((4, 3)), y), label_names=names)


def test_labels_outside_label_names_in_an_archive(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((4, 3)), y=np.array([0, 1, 3, 1]), label_names=np.array(["a", "b"]))
    with pytest.raises(DataError, match="labels between 0 and 1") as info:
        load_data(path)
    assert "label_names" in info.value.fix


def test_classes_that_the_data_does_not_have():
    with pytest.raises(DataError, match="did you mean 'cat'"):
        load_data((np.zeros((4, 3)), np.array(["cat", "dog", "cat", "dog"])), classes=["cat", "cta"])


# -- duplicates across splits ---------------------------------------------------------------------------------

def test_the_same_image_in_train_and_test(tmp_path):
    root = tmp_path / "pics"
    for k, (split, cls, i) in enumerate((s, c, i) for s in ("train", "test") for c in "ab" for i in range(2)):
        _image(root / split / cls / f"{i}.png", seed=k)
    copy = root / "test" / "b" / "copy.png"
    copy.write_bytes((root / "train" / "a" / "1.png").read_bytes())
    data = load_data(root)  # a warning: the load goes on
    problem = _problem(data.spec, "duplicate_across_splits")
    assert problem.severity == "warning"
    assert problem.items == (f"{copy} = {root / 'train' / 'a' / '1.png'}",)
    assert data.spec.splits == (("train", 4), ("test", 5))


def test_the_same_sample_in_train_and_test_of_an_archive(tmp_path):
    rng = np.random.default_rng(0)
    x_train, x_test = rng.normal(size=(6, 4, 4)), rng.normal(size=(3, 4, 4))
    x_test[1] = x_train[4]
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x_train, y_train=np.arange(6) % 2, x_test=x_test, y_test=np.arange(3) % 2)
    problem = _problem(describe_data(path), "duplicate_across_splits")
    assert problem.items == ("test[1] = train[4]",)


# -- file lists and tables ------------------------------------------------------------------------------------

@pytest.fixture
def listed_images(tmp_path):
    for cls in ("a", "b"):
        for i in range(2):
            _image(tmp_path / "img" / cls / f"{i}.png", seed=i + (cls == "b") * 10)
    rows = [f"img/{c}/{i}.png,{c}" for c in "ab" for i in range(2)]
    return tmp_path, rows


def test_a_list_naming_missing_files(listed_images):
    root, rows = listed_images
    path = root / "list.csv"
    path.write_text("path,label\n" + "\n".join(rows + ["img/a/gone.png,a", "nowhere/x.png,b"]) + "\n")
    problem = _problem(describe_data(path), "missing_file")
    assert problem.severity == "error"
    assert _named(problem.items, [root / "img" / "a" / "gone.png", root / "nowhere" / "x.png"])
    with pytest.raises(DataError, match="missing_file") as info:
        load_data(path)
    assert "gone.png" in str(info.value)
    data = load_data(path, on_error="skip")
    assert data.spec.num_samples == 4 and len(data.spec.skipped) == 2
    _check_loaded(data)


def test_a_list_whose_files_are_all_missing(tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("path,label\na.png,x\n" + "b" * 400 + ".png,y\n,z\n")  # a name too long for the disk, an empty cell
    with pytest.raises(DataError, match="at least one existing file"):
        load_data(path)
    with pytest.raises(DataError, match="at least one existing file"):
        describe_data(path)


def test_a_list_with_a_bad_split_value(listed_images):
    root, rows = listed_images
    path = root / "list.csv"
    path.write_text("path,label,split\n" + "\n".join(f"{r},{s}" for r, s in zip(rows, ["train", "test", "dev", "train"])))
    with pytest.raises(DataError, match="split values among") as info:
        load_data(path)
    assert "'dev'" in str(info.value)


def test_a_table_with_text_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("size,color,label\n1,red,a\n2,blue,b\n3,red,a\n")
    with pytest.raises(DataError, match="numeric feature columns") as info:
        load_data(path)
    assert "['color']" in str(info.value) and "feature_columns" in info.value.fix
    data = load_data(path, feature_columns=["size"])
    assert data.spec.input_shape == (1,) and data.spec.feature_names == ("size",)


def test_a_table_without_its_label_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,labels\n1,2,x\n3,4,y\n")
    with pytest.raises(DataError, match="a label column 'label'") as info:
        load_data(path)
    assert "did you mean 'labels'" in info.value.fix
    assert load_data(path, label_column="labels").spec.label_names == ("x", "y")


def test_a_table_with_a_split_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,label,split\n1,2,x,train\n3,4,y,train\n5,6,x,test\n7,8,y,TEST\n9,1,x,train\n2,2,y,train\n")
    data = load_data(path)
    assert data.spec.splits == (("train", 4), ("test", 2)) and data.spec.feature_names == ("a", "b")
    assert data["test"].ids == ["t.csv:row 4", "t.csv:row 5"]
    np.testing.assert_array_equal(data.arrays("test")[0], [[5, 6], [7, 8]])
    path.write_text("a,b,label,split\n1,2,x,train\n3,4,y,dev\n")
    with pytest.raises(DataError, match="split values among"):
        load_data(path)


def test_a_table_without_rows(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n")
    with pytest.raises(DataError, match="one sample per row"):
        describe_data(path)


def test_a_table_with_only_a_label_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("label\nx\ny\nx\n")
    with pytest.raises(DataError, match="feature columns besides the label column"):
        load_data(path)


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_table_separators(tmp_path, sep):
    path = tmp_path / "t.txt"
    path.write_text(sep.join(["a", "b", "label"]) + "\n" + "".join(sep.join(["1.5", str(i), "xy"[i % 2]]) + "\n"
                                                                  for i in range(4)))
    spec = describe_data(path)
    assert spec.feature_names == ("a", "b") and spec.label_names == ("x", "y")


def test_an_unreadable_table(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b'a,b,label\n1,2,"x\n')  # an unclosed quote
    with pytest.raises(DataError, match="a readable .csv table"):
        load_data(path)


# -- audio ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    """Two classes of real tones, and one .wav file of garbage bytes."""
    root = tmp_path_factory.mktemp("tones") / "tones"
    for i in range(3):
        _wav(root / "low" / f"{i}.wav", 200 + 20 * i, 0.2 + 0.05 * i)
        _wav(root / "high" / f"{i}.wav", 1500 + 50 * i, 0.3)
    bad = root / "low" / "broken.wav"
    bad.write_bytes(np.random.default_rng(0).bytes(500))
    return root, bad


@QUIET_AUDIO
def test_unreadable_audio_is_listed(tones):
    root, bad = tones
    spec = describe_data(root)
    problem = _problem(spec, "unreadable_audio")
    assert problem.severity == "error" and _named(problem.items, [bad])
    assert spec.input_shape == (1, 40, 101)


@QUIET_AUDIO
def test_unreadable_audio_stops_the_load_or_is_skipped(tones):
    root, bad = tones
    with pytest.raises(DataError, match="unreadable_audio") as info:
        load_data(root)
    assert str(bad) in str(info.value)
    data = load_data(root, on_error="skip", audio=AudioFeatures(kind="mfcc", n_mfcc=13, duration=0.5))
    assert data.spec.num_samples == 6 and _named(data.spec.skipped, [bad])
    assert data.spec.input_shape == (1, 13, 51) and data.spec.label_names == ("high", "low")
    _check_loaded(data)


@QUIET_AUDIO
def test_a_folder_of_unreadable_audio(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / "bad" / cls).mkdir(parents=True)
        (tmp_path / "bad" / cls / "0.wav").write_bytes(b"RIFF\x00\x00garbage")
    spec = describe_data(tmp_path / "bad", audio=AudioFeatures(layout="sequence"))
    assert len(_problem(spec, "unreadable_audio").items) == 2
    assert _problem(spec, "single_class").severity == "error"
    assert spec.num_samples == 0 and spec.input_shape == (40, 101)
    with pytest.raises(DataError, match="single_class"):
        load_data(tmp_path / "bad", on_error="skip")


def test_file_name_labels_with_a_bad_pattern(tmp_path):
    for name in ("cat_1.wav", "dog_2.wav"):
        _wav(tmp_path / "calls" / name, 300)
    with pytest.raises(DataError, match="label_pattern as a regular expression"):
        load_data(tmp_path / "calls", label_pattern="(?P<label[a-z]+")
    with pytest.raises(DataError, match="label group among"):
        load_data(tmp_path / "calls", label_pattern=r"(?P<animal>[a-z]+)_\d", labels="species")
    with pytest.raises(DataError, match="split_of returning one of"):
        load_data(tmp_path / "calls", label_pattern=r"(?P<label>[a-z]+)_(?P<n>\d)", split_of=lambda g: "dev")
    with pytest.raises(DataError, match=r"file names that match .* 1 that do not"):
        load_data(tmp_path / "calls", label_pattern=r"(?P<label>cat)_\d")


# -- folders, paths and options ---------------------------------------------------------------------------------

def test_an_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="one sub-folder per class") as info:
        load_data(tmp_path / "empty")
    assert "0 files" in str(info.value)


def test_class_folders_without_images_or_audio(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / "docs" / cls).mkdir(parents=True)
        (tmp_path / "docs" / cls / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match="image or audio files"):
        load_data(tmp_path / "docs")


def test_a_path_that_does_not_exist(tmp_path):
    (tmp_path / "pictures").mkdir()
    with pytest.raises(DataError, match="does not exist") as info:
        load_data(tmp_path / "picturs")
    assert "did you mean 'pictures'" in info.value.fix


def test_a_wrong_layout_name():
    with pytest.raises(DataError, match="a layout among") as info:
        load_data((np.zeros((4, 8, 8, 3)), np.arange(4) % 2), layout="NWHC")
    assert "'NWHC'" in str(info.value) and "NHWC" in str(info.value)


@pytest.mark.parametrize("val, test, match", [
    (1.5, 0.0, "val_fraction between 0 and 1"),
    (-0.1, 0.0, "val_fraction between 0 and 1"),
    (1.0, 0.0, "val_fraction between 0 and 1"),
    (math.nan, 0.0, "val_fraction between 0 and 1"),
    ("0.2", 0.0, "val_fraction between 0 and 1"),
    (0.0, 2, "test_fraction between 0 and 1"),
    (0.5, 0.5, "val_fraction \\+ test_fraction below 1"),
    (0.01, 0.0, "a val split with at least one sample"),
])
def test_bad_split_fractions(val, test, match):
    with pytest.raises(DataError, match=match):
        load_data((np.zeros((8, 3)), np.arange(8) % 2), val_fraction=val, test_fraction=test)


def test_a_bad_on_error():
    with pytest.raises(DataError, match="on_error 'raise'"):
        load_data((np.zeros((4, 3)), np.arange(4) % 2), on_error="ignore")


@pytest.mark.parametrize("x, y, match", [
    ([[1.0, 2.0], [3.0]], [0, 1], "samples of one shape"),  # ragged lists
    (np.float32(3.0), [0], "an array of samples"),  # a single value
    (np.zeros((4, 3), complex), np.arange(4) % 2, "a numeric array"),
    (np.zeros((4, 3), "m8[s]"), np.arange(4) % 2, "a numeric array"),
    (np.array([["a"] * 3] * 4), np.arange(4) % 2, "a numeric array"),
    (np.zeros((4, 3)), np.eye(4), "one label per sample"),
    (np.zeros((4, 3)), np.arange(3), "as many labels as samples"),
    (np.zeros((4, 1, 2, 3, 4)), np.arange(4) % 2, "2 to 4 axes"),
])
def test_arrays_that_are_not_datasets(x, y, match):
    with pytest.raises(DataError, match=match):
        load_data((x, y))


@pytest.mark.parametrize("arrays, match", [
    ({"x": np.zeros((4, 3)), "y": np.arange(4) % 2, "label_names": np.array("ab")}, "label_names as one name per class"),
    ({"x_train": np.zeros((4, 8, 8)), "y_train": np.arange(4) % 2, "x_test": np.zeros((4, 6, 6)),
      "y_test": np.arange(4) % 2}, r"samples of one shape in every split.*\(1, 6, 6\), \(1, 8, 8\)"),
    ({"x": np.zeros((4, 3)), "y": np.array([0.5, 1, 0, 1])}, "one class per sample"),
    ({"x": np.zeros((4, 3)), "y": np.array([0, 1e300, 0, 1])}, "one class per sample"),
    ({"x": np.zeros((4, 3)), "y": np.array([0, np.inf, 0, 1])}, "one class per sample"),
    ({"x": np.zeros((4, 3))}, "arrays x and y"),
])
def test_archives_that_are_not_datasets(tmp_path, arrays, match):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=match):
        load_data(path)


def test_an_archive_of_objects_is_not_unpickled(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.array([{"a": 1}] * 4, dtype=object), y=np.arange(4) % 2)
    with pytest.raises(DataError, match=r"array 'x' of Python objects \(dtype object\).*does not unpickle"):
        load_data(path)


class _Items(torch.utils.data.Dataset):
    def __init__(self, labels):
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return torch.full((2, 3), float(i)), self.labels[i]


@pytest.mark.parametrize("labels, names", [
    ([0, 1, 1, 0], ("0", "1")),
    ([0.0, 1.0, 2.0, 0.0], ("0", "1", "2")),
    (torch.tensor([1, 0, 1, 0]), ("0", "1")),
    (np.array([2, 0, 1, 1]), ("0", "1", "2")),
])
def test_a_torch_dataset(labels, names):
    data = load_data(_Items(labels))
    assert data.spec.label_names == names and data.spec.input_shape == (2, 3)
    _check_loaded(data)


@pytest.mark.parametrize("labels, match", [
    ([0.5, 1, 0, 1], "not a class index"),  # a regression target is not silently truncated to a class
    (torch.tensor([[0, 1]] * 4), "cannot be converted"),
    (["cat", "dog", "cat", "dog"], "invalid literal"),
])
def test_a_torch_dataset_with_bad_labels(labels, match):
    with pytest.raises(DataError, match=match):
        load_data(_Items(labels))


# -- time series ------------------------------------------------------------------------------------------------

def test_an_unknown_aeon_name():
    with pytest.raises(DataError, match="dataset bundled with aeon") as info:
        load_data("aeon:GunPont")
    assert "did you mean 'GunPoint'" in info.value.fix and "ArrowHead" in info.value.fix


def _ts(path: Path, rows: list[str], univariate: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"@problemName X\n@timeStamps false\n@univariate {str(univariate).lower()}\n"
                    "@equalLength false\n@classLabel true a b\n@data\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("content", ["", "@problemName X\n@data\n", "@data\n\n"])
def test_ts_files_without_series(tmp_path, content):
    path = tmp_path / "x.ts"
    path.write_text(content)
    with pytest.raises(DataError, match="time-series file"):
        load_data(path)


def test_ts_splits_with_different_channels(tmp_path):
    _ts(tmp_path / "X" / "X_TRAIN.ts", ["1,2,3:a", "4,5:b"])
    _ts(tmp_path / "X" / "X_TEST.ts", ["1,2,3:4,5,6:a", "1,2:3,4:b"], univariate=False)
    with pytest.raises(DataError, match="same number of channels in every split") as info:
        load_data(tmp_path / "X")
    assert "[1, 2]" in str(info.value)


@pytest.mark.parametrize("length", [0, -5, 2.5])
def test_a_bad_series_length(length):
    with pytest.raises(DataError, match="length as a positive number of steps"):
        load_data("aeon:ArrowHead", length=length)


def test_a_bad_normalization():
    with pytest.raises(DataError, match="a normalization among"):
        load_data("aeon:ArrowHead", normalize="l2")


def test_ucr_tsv_trailing_nan_is_padding_but_inner_nan_is_a_problem(tmp_path):
    folder = tmp_path / "U"
    folder.mkdir()
    (folder / "U_TRAIN.tsv").write_text("1\t0.1\t0.2\t0.3\t0.4\n"
                                        "2\t0.5\t0.6\tNaN\tNaN\n"  # shorter: padded with NaN (the UCR convention)
                                        "1\t1\tNaN\t3\tNaN\n"  # a missing value inside
                                        "2\t4\t3\t2\t1\n")
    (folder / "U_TEST.tsv").write_text("1\t0.1\t0.2\t0.3\t0.4\n2\t0.5\t0.6\t0.7\tNaN\n")
    spec = describe_data(folder)
    assert spec.lengths == (2, 4) and spec.input_shape == (1, 4)
    assert _problem(spec, "non_finite").items == ("U_TRAIN.tsv:3",)  # only the series with a hole
    data = load_data(folder, on_error="skip", normalize="zscore")
    assert data.spec.splits == (("train", 3), ("test", 2)) and data.spec.skipped == ("U_TRAIN.tsv:3",)
    x, _ = data.arrays("test")
    assert not x[1, 0, 3] and abs(x[1, 0, :3].mean()) < 1e-6  # padded, normalized over the 3 real steps
    _check_loaded(data)


def test_a_tsv_without_series(tmp_path):
    folder = tmp_path / "U"
    folder.mkdir()
    for split in ("TRAIN", "TEST"):
        (folder / f"U_{split}.tsv").write_text("1\n2\n")
    with pytest.raises(DataError, match="time-series file|at least one step"):
        load_data(folder)


# -- Hypothesis: random malformed inputs to every loader ----------------------------------------------------------

FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _try_every_way(source, **options) -> None:
    """load_data (raise and skip) and describe_data: a GraftError, or a consistent result."""
    for on_error in ("raise", "skip"):
        try:
            data = load_data(source, on_error=on_error, **options)
        except GraftError:
            pass
        else:
            _check_loaded(data)
    try:
        spec = describe_data(source, **options)
    except GraftError:
        return
    _check_described(spec)


# where random bytes are written: a file given directly, or a file inside the layout a loader reads
PLACES = ["d.npz", "d.csv", "d.tsv", "d.txt", "d.ts", "d.arff", "D/D_TRAIN.tsv", "D/D_TRAIN.ts", "D/D_TRAIN.arff",
          "f/a/x.png", "f/a/x.jpg", "f/a/x.wav", "fsdd/1_ann_3.wav"]


@QUIET_AUDIO
@FUZZ
@given(place=st.sampled_from(PLACES), data=st.binary(max_size=600), other=st.binary(max_size=200))
def test_random_bytes(tmp_path_factory, place, data, other):
    root = tmp_path_factory.mktemp("bytes")
    path = root / place
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    source = path
    if place.startswith("D/"):  # a UCR pair: the folder, with a TEST file of other bytes
        path.with_name(path.name.replace("TRAIN", "TEST")).write_bytes(other)
        source = path.parent
    elif place.startswith("f/"):  # a class folder with one good file and one of random bytes
        if path.suffix == ".wav":
            _wav(root / "f" / "b" / "ok.wav", 440)
        else:
            _image(root / "f" / "b" / "ok.png")
        source = root / "f"
    elif place.startswith("fsdd/"):
        _wav(root / "fsdd" / "2_bob_7.wav", 440)
        source = root / "fsdd"
    _try_every_way(source)


@st.composite
def _arrays(draw):
    """Samples and labels of random shapes and dtypes: mostly plausible, sometimes absurd."""
    absurd = draw(st.integers(0, 4)) == 0
    dtype = draw(st.sampled_from(["u1", "i2", "i8", "u8", "f2", "f4", "f8", "?", "c8", "U2", "m8[s]"] if absurd
                                 else ["u1", "f4", "f8", "i2"]))
    n = draw(st.integers(0 if absurd else 2, 10))
    shape = (n, *draw(st.lists(st.integers(0 if absurd else 1, 5), min_size=0 if absurd else 1, max_size=4)))
    if absurd and draw(st.booleans()):
        shape = ()  # a single value
    x = draw(hnp.arrays(dtype, shape))
    if absurd or draw(st.booleans()):
        y_dtype = draw(st.sampled_from(["i8", "f8", "U2", "?", "i1"]))
        y = draw(hnp.arrays(y_dtype, draw(st.sampled_from([(n,), (n,), (n + 1,), (n, 2), ()]))))
    else:
        y = np.array(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), np.int64)
    return x, y


OPTIONS = st.fixed_dictionaries({}, optional={
    "label_names": st.sampled_from([["a", "b"], ["a", "b", "c", "d"], [], ["a", "a"], ["", "b"]]),
    "layout": st.sampled_from(["auto", "NCHW", "NHWC", "NL", "NF", "NCL", "NHW"]),
    "val_fraction": st.sampled_from([0.2, 0.5]),
    "classes": st.sampled_from([["0", "1"], ["a"]]),
})


@FUZZ
@given(xy=_arrays(), how=st.sampled_from(["tuple", "npz", "npz-splits"]), options=OPTIONS)
def test_random_arrays(tmp_path_factory, xy, how, options):
    x, y = xy
    if how == "tuple":
        source = (x, y)
    else:
        source = tmp_path_factory.mktemp("arrays") / "d.npz"
        if how == "npz":
            np.savez(source, x=x, y=y)
        else:
            np.savez(source, x_train=x, y_train=y, x_test=x[:2] if x.ndim else x, y_test=y[:2] if y.ndim else y)
    _try_every_way(source, **options)


CELL = st.sampled_from(["1", "0", "2.5", "", "nan", "inf", "-3", "x", "train", "test", '"a,b"', "1e999"])


@FUZZ
@given(columns=st.lists(st.sampled_from(["label", "a", "b", "split", "path"]), max_size=4),
       rows=st.integers(0, 6), sep=st.sampled_from([",", ";", "\t"]), data=st.data())
def test_random_tables(tmp_path_factory, columns, rows, sep, data):
    root = tmp_path_factory.mktemp("table")
    _image(root / "x.png")
    cell = CELL | st.just("x.png") if "path" in columns else CELL
    lines = [sep.join(columns)] + [sep.join(data.draw(cell) for _ in columns) for _ in range(rows)]
    path = root / data.draw(st.sampled_from(["t.csv", "t.tsv", "t.txt"]))
    path.write_text("\n".join(lines) + "\n")
    _try_every_way(path)


@FUZZ
@given(fmt=st.sampled_from(["tsv", "ts"]), data=st.data())
def test_random_series_files(tmp_path_factory, fmt, data):
    folder = tmp_path_factory.mktemp("series") / "S"
    folder.mkdir()
    value = st.floats(-5, 5, width=32).map(lambda v: f"{v:.3g}") | st.sampled_from(["NaN", "inf", "", "x"])
    label = st.sampled_from(["a", "b", "1", "-1"])
    for split in ("TRAIN", "TEST"):
        rows = []
        for _ in range(data.draw(st.integers(0, 4))):
            values = data.draw(st.lists(value, min_size=0, max_size=6))
            rows.append(f"{','.join(values)}:{data.draw(label)}" if fmt == "ts"
                        else "\t".join([data.draw(label), *values]))
        if fmt == "ts":
            _ts(folder / f"S_{split}.ts", rows)
        else:
            (folder / f"S_{split}.tsv").write_text("\n".join(rows) + "\n")
    options = data.draw(st.fixed_dictionaries({}, optional={"normalize": st.sampled_from(["zscore", "minmax"]),
                                                            "length": st.integers(1, 8)}))
    _try_every_way(folder, **options)


@QUIET_AUDIO
@FUZZ
@given(files=st.lists(st.tuples(st.sampled_from(["a", "b"]),
                                st.sampled_from(["tone", "tone", "empty", "short", "stereo", "silent", "garbage"])),
                      max_size=5),
       duration=st.sampled_from([None, 0.5, 0.001]))
def test_random_audio_folders(tmp_path_factory, files, duration):
    root = tmp_path_factory.mktemp("audio") / "clips"
    root.mkdir()
    rng = np.random.default_rng(len(files))
    for i, (cls, kind) in enumerate(files):
        path = root / cls / f"{i}.wav"
        path.parent.mkdir(exist_ok=True)
        if kind == "garbage":
            path.write_bytes(rng.bytes(100))
            continue
        n = {"empty": 0, "short": 7}.get(kind, 2000)
        signal = rng.normal(size=(n, 2) if kind == "stereo" else n).astype(np.float32) * 0.1
        sf.write(path, signal * (kind != "silent"), 8000, subtype="PCM_16")
    _try_every_way(root, audio=AudioFeatures(duration=duration, n_mels=8))


# ---------------------------------------------------------------- gaps closed after the first review

@pytest.mark.parametrize("mode, pixels, expected", [
    ("I", np.array([[0, 256, 65535, 70000]], np.int32), [0, 1, 255, 255]),   # 16-bit range, top 8 bits
    ("F", np.array([[0.0, 0.5, 1.0, 0.25]], np.float32), [0, 128, 255, 64]),  # 0..1 floats, times 255
    ("F", np.array([[0.0, 10.0, 300.0, -4.0]], np.float32), [0, 10, 255, 0]),  # 0..255 floats, clipped
])
def test_32_bit_and_float_images_keep_their_scale(tmp_path, mode, pixels, expected):
    """PIL's convert('L') clips I and F images at 255 (a 16-bit ramp turns white); graft rescales them and warns."""
    for cls in ("a", "b"):
        path = tmp_path / "deep" / cls / "0.tiff"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode).save(path)
    assert Image.open(path).mode == mode
    data = load_data(tmp_path / "deep")
    x, _ = data.arrays()
    np.testing.assert_allclose(x[0, 0, 0] * 255, expected, atol=0.51)
    assert _named(_problem(data.spec, "high_bit_depth").items, sorted((tmp_path / "deep").rglob("*.tiff")))


def test_split_folders_without_train_are_not_read_as_classes(tmp_path):
    for split in ("val", "test"):
        for cls in ("cat", "dog"):
            path = tmp_path / "ds" / split / cls / "0.png"
            path.parent.mkdir(parents=True)
            Image.fromarray(np.full((4, 4), 7, np.uint8)).save(path)
    with pytest.raises(DataError, match="split folders that include train/") as info:
        load_data(tmp_path / "ds")
    assert "['test', 'val']" in str(info.value)
    assert load_data(tmp_path / "ds" / "val").spec.label_names == ("cat", "dog")  # one split alone still reads


@pytest.mark.parametrize("cell", ["", "   "])
def test_rows_without_a_label(tmp_path, cell):
    path = tmp_path / "t.csv"
    path.write_text(f"a,b,label\n1,2,x\n3,4,{cell}\n5,6,y\n7,8,x\n9,9,y\n")
    spec = describe_data(path)
    problem = _problem(spec, "missing_label")
    assert problem.severity == "error" and problem.items == ("t.csv:row 3",)
    with pytest.raises(DataError, match="empty label"):
        load_data(path)
    data = load_data(path, on_error="skip")
    assert data.spec.label_names == ("x", "y") and data["train"].ids == ["t.csv:row 2", "t.csv:row 4", "t.csv:row 5",
                                                                         "t.csv:row 6"]


def test_a_file_list_with_a_missing_label(listed_images):
    root, rows = listed_images
    lst = root / "list.csv"
    first = rows[0].split(",")[0]
    lst.write_text("path,label\n" + "\n".join([f"{first},", *rows[1:]]) + "\n")
    assert _problem(describe_data(lst), "missing_label").items == ("list.csv:row 2",)
    data = load_data(lst, on_error="skip")
    assert data.spec.label_names == ("a", "b") and len(data["train"]) == 3


@pytest.mark.parametrize("option", [{"normalize": "zscore"}, {"length": 10}])
def test_series_options_on_images_are_refused(tmp_path, option):
    for cls in ("a", "b"):
        path = tmp_path / "img" / cls / "0.png"
        path.parent.mkdir(parents=True)
        Image.fromarray(np.full((4, 4), 7, np.uint8)).save(path)
    with pytest.raises(DataError, match="only for time series") as info:
        load_data(tmp_path / "img", **option)
    assert "image source" in str(info.value)
    x = np.zeros((4, 1, 5, 5), np.float32)  # images as arrays
    with pytest.raises(DataError, match="only for time series"):
        load_data((x, np.array([0, 1, 0, 1])), **option)


def test_arrays_n_c_l_are_normalized_per_series():
    rng = np.random.default_rng(0)
    x = rng.normal(5, 3, (6, 2, 50)).astype(np.float32)
    data = load_data((x, np.array([0, 1] * 3)), layout="NCL", normalize="zscore")
    got, _ = data.arrays()
    np.testing.assert_allclose(got.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(got.std(-1), 1, atol=1e-3)
    with pytest.raises(DataError, match="length= only"):
        load_data((x, np.array([0, 1] * 3)), layout="NCL", length=20)
    with pytest.raises(DataError, match="image source"):  # (N, H, W) read as grey images by layout auto
        load_data((x, np.array([0, 1] * 3)), normalize="zscore")


def test_an_archive_keeps_the_order_of_its_label_names(tmp_path):
    """label_names stored with integer labels give the class indices: they must not be re-sorted."""
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((6, 4, 4), np.float32), y=np.array([0, 1, 2, 0, 1, 2]),
             label_names=np.array(["dog", "lizard", "cat"]))
    data = load_data(path)
    assert data.spec.label_names == ("dog", "lizard", "cat")
    assert data.arrays()[1].tolist() == [0, 1, 2, 0, 1, 2]
