"""load_data / describe_data on real data: MNIST and CIFAR-10 archives, folders and lists of real CIFAR images,
the Free Spoken Digit Dataset, UCR .tsv files (all from ../shared, skipped when absent) and aeon's bundled
UCR/UEA sets (shipped with aeon, so always run)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from graft.data import AudioFeatures, describe_data, load_data
from tests.conftest import shared_file

CIFAR = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")


def _check_splits(data) -> None:
    """Every split's samples have the spec's shape and labels within the classes."""
    spec = data.spec
    assert dict(spec.splits) == {k: len(v) for k, v in data.splits.items()}
    assert sum(n for _, n in spec.splits) == spec.num_samples == sum(spec.class_counts)
    for split in data.splits:
        x, y = data.arrays(split)
        assert x.shape[1:] == spec.input_shape, split
        assert x.dtype == np.float32 and np.isfinite(x).all()
        assert len(y) == 0 or (0 <= y.min() and y.max() < len(spec.label_names))


# -- MNIST (.npz with train_images/train_labels, test_images/test_labels) -------------------------------------

@pytest.mark.shared
def test_mnist_npz_gives_its_train_and_test_splits():
    path = shared_file("data", "mnist", "mnist.npz")
    data = load_data(path)
    spec = data.spec
    assert spec.splits == (("train", 60000), ("test", 10000))
    assert spec.input_shape == (1, 28, 28) and spec.channels == 1 and spec.size == (28, 28)
    assert spec.modality == "image" and spec.name == "mnist"
    assert spec.label_names == tuple(str(d) for d in range(10))
    assert len(spec.class_counts) == 10 and min(spec.class_counts) > 6000
    assert spec.problems == () and spec.skipped == ()
    with np.load(path) as z:
        test_images, test_labels = z["test_images"], z["test_labels"]
    np.testing.assert_array_equal(data["test"].y, test_labels)  # the original order, labels as indices
    x, y = data["test"][7]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and y == int(test_labels[7])
    np.testing.assert_allclose(x[0].numpy(), test_images[7] / 255.0, atol=1e-6)  # uint8 -> [0, 1]


# -- CIFAR-10 JPEG subset (.npz with x_train/y_train/x_test/y_test, channels last) -----------------------------

@pytest.fixture(scope="module")
def cifar_npz() -> Path:
    return shared_file("data", "cifar10", "cifar10_jpg_subset.npz")


@pytest.mark.shared
def test_cifar_with_label_names_and_a_stratified_val_split(cifar_npz, tmp_path):
    data = load_data(cifar_npz, label_names=CIFAR, val_fraction=0.2, seed=3)
    spec = data.spec
    assert spec.label_names == CIFAR
    assert spec.input_shape == (3, 32, 32)  # channels last in the archive, channels first here
    assert spec.splits == (("train", 8000), ("val", 2000), ("test", 2000))
    assert spec.class_counts == (1200,) * 10
    train_counts = np.bincount(data["train"].y, minlength=10)
    val_counts = np.bincount(data["val"].y, minlength=10)
    # stratified: every class gives its share to val (1000 train images per class -> 200 each, within 1)
    assert np.all(np.abs(val_counts - 0.2 * (train_counts + val_counts)) <= 1), val_counts
    assert val_counts.max() - val_counts.min() <= 1
    # val is carved out of train, nothing lost or shared; the given test split is untouched
    train_ids, val_ids = set(data["train"].ids), set(data["val"].ids)
    assert not train_ids & val_ids and len(train_ids | val_ids) == 10000
    assert all(i.startswith("train[") for i in val_ids)
    assert data["test"].ids == [f"test[{i}]" for i in range(2000)]
    with np.load(cifar_npz) as z:
        x_train, y_train = z["x_train"], z["y_train"]
    first = int(data["val"].ids[0][len("train["):-1])
    x, y = data["val"][0]
    assert y == int(y_train[first])
    np.testing.assert_allclose(x.numpy(), np.moveaxis(x_train[first], -1, 0) / 255.0, atol=1e-6)
    record = json.loads(data.write_splits(tmp_path).read_text())
    assert record["seed"] == 3 and record["val_fraction"] == 0.2 and record["stratified"] is True
    assert sorted(record["ids"]["val"]) == sorted(val_ids)


@pytest.mark.shared
def test_cifar_val_split_is_seeded(cifar_npz):
    a = load_data(cifar_npz, val_fraction=0.1, seed=0)
    b = load_data(cifar_npz, val_fraction=0.1, seed=0)
    c = load_data(cifar_npz, val_fraction=0.1, seed=1)
    assert a["val"].ids == b["val"].ids
    assert a["val"].ids != c["val"].ids
    assert a.spec.label_names == tuple(str(i) for i in range(10))  # no names given: indices as names


# -- folders and lists of real CIFAR images ---------------------------------------------------------------

@pytest.fixture(scope="module")
def cifar_pictures(tmp_path_factory, cifar_npz):
    """40 real CIFAR images (4 per class: 3 from train, 1 from test), half PNG (lossless) and half JPEG, in
    three layouts: class folders, train/ and test/ folders of class folders, and a CSV list."""
    with np.load(cifar_npz) as z:
        x_train, y_train, x_test, y_test = z["x_train"], z["y_train"], z["x_test"], z["y_test"]
    base = tmp_path_factory.mktemp("cifar_pictures")
    flat, split_root = base / "flat", base / "split"
    rows, pixels = [], {}
    for c, name in enumerate(CIFAR):
        picks = [("train", x_train[i]) for i in np.flatnonzero(y_train == c)[:3]]
        picks.append(("test", x_test[np.flatnonzero(y_test == c)[0]]))
        for k, (split, pixels_k) in enumerate(picks):
            suffix = "png" if k % 2 == 0 else "jpg"
            file = f"{name}_{k}.{suffix}"
            for folder in (flat / name, split_root / split / name):
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels_k).save(folder / file, quality=95)
            rows.append((f"flat/{name}/{file}", name, split))
            pixels[f"{name}/{file}"] = pixels_k
    with open(base / "list.csv", "w", newline="") as f:
        csv.writer(f).writerows([("path", "label", "split"), *rows])
    with open(base / "list_nosplit.csv", "w", newline="") as f:
        csv.writer(f).writerows([("path", "label"), *[r[:2] for r in rows]])
    return {"flat": flat, "split": split_root, "list": base / "list.csv", "list_nosplit": base / "list_nosplit.csv",
            "pixels": pixels}


@pytest.mark.shared
def test_real_images_in_class_folders(cifar_pictures):
    data = load_data(cifar_pictures["flat"])
    spec = data.spec
    assert spec.modality == "image" and spec.name == "flat"
    assert spec.input_shape == (3, 32, 32)
    assert spec.label_names == CIFAR  # sorted class folder names (CIFAR's order is alphabetical)
    assert spec.class_counts == (4,) * 10 and spec.splits == (("train", 40),)
    assert spec.problems == ()
    _check_splits(data)
    ds = data["train"]
    for i, path in enumerate(ds.paths):
        key = f"{Path(path).parent.name}/{Path(path).name}"
        x, y = ds[i]
        assert CIFAR[y] == Path(path).parent.name
        want = np.moveaxis(cifar_pictures["pixels"][key], -1, 0) / 255.0
        if path.endswith(".png"):
            np.testing.assert_allclose(x.numpy(), want, atol=1e-6)  # lossless: the same pixels
        else:
            assert np.abs(x.numpy() - want).mean() < 0.03  # JPEG at quality 95: close


@pytest.mark.shared
def test_real_images_in_train_and_test_folders(cifar_pictures):
    data = load_data(cifar_pictures["split"])
    spec = data.spec
    assert spec.splits == (("train", 30), ("test", 10))
    assert spec.label_names == CIFAR and spec.class_counts == (4,) * 10
    assert np.bincount(data["test"].y, minlength=10).tolist() == [1] * 10
    assert all("/test/" in p for p in data["test"].paths)
    assert not [p for p in spec.problems if p.kind == "duplicate_across_splits"]
    _check_splits(data)


@pytest.mark.shared
def test_real_images_in_a_csv_list_with_splits(cifar_pictures):
    data = load_data(cifar_pictures["list"])
    spec = data.spec
    assert spec.name == "list" and spec.source == str(cifar_pictures["list"])
    assert spec.splits == (("train", 30), ("test", 10))
    assert spec.label_names == CIFAR and spec.input_shape == (3, 32, 32)
    for split in ("train", "test"):
        ds = data[split]
        for path, y in zip(ds.paths, ds.y):
            assert Path(path).is_absolute() and Path(path).parent.name == CIFAR[y]  # relative to the list's folder
    _check_splits(data)


@pytest.mark.shared
def test_real_images_in_a_csv_list_with_a_val_fraction(cifar_pictures):
    data = load_data(cifar_pictures["list_nosplit"], val_fraction=0.25, seed=0)
    assert data.spec.splits == (("train", 30), ("val", 10))
    assert np.bincount(data["val"].y, minlength=10).tolist() == [1] * 10  # stratified: one per class
    _check_splits(data)


@pytest.mark.shared
def test_real_images_resized_and_grey_on_request(cifar_pictures):
    data = load_data(cifar_pictures["flat"], image_size=(20, 24), image_mode="L")
    assert data.spec.input_shape == (1, 20, 24)
    x, _ = data.arrays()
    assert x.shape == (40, 1, 20, 24) and 0 <= x.min() and x.max() <= 1


# -- FSDD: audio files labelled by their names ----------------------------------------------------------------

@pytest.fixture(scope="module")
def fsdd_subset(tmp_path_factory) -> Path:
    """Takes 0-1 (official test) and 5-6 (train) of every digit and speaker: 240 of the 3000 recordings."""
    source = shared_file("data", "fsdd", "recordings")
    dest = tmp_path_factory.mktemp("fsdd") / "recordings"
    dest.mkdir()
    for f in source.glob("*.wav"):
        if int(f.stem.split("_")[2]) in (0, 1, 5, 6):
            shutil.copy(f, dest / f.name)
    assert len(list(dest.iterdir())) == 240
    return dest


@pytest.fixture(scope="module")
def fsdd_digits(fsdd_subset):
    return load_data(fsdd_subset)


@pytest.mark.shared
def test_fsdd_digits_with_the_official_split(fsdd_digits):
    spec = fsdd_digits.spec
    assert spec.modality == "audio"
    assert spec.label_names == tuple(str(d) for d in range(10))
    assert spec.splits == (("train", 120), ("test", 120)) and spec.class_counts == (24,) * 10
    assert spec.input_shape == (1, 40, 101)  # log-mel image: 40 bands, 1 s at a 10 ms hop
    assert all(int(Path(p).stem.split("_")[2]) < 5 for p in fsdd_digits["test"].ids)
    assert all(int(Path(p).stem.split("_")[2]) >= 5 for p in fsdd_digits["train"].ids)
    for split in ("train", "test"):
        ds = fsdd_digits[split]
        assert [int(Path(p).name.split("_")[0]) for p in ds.ids] == ds.y.tolist()
    lo, hi = spec.lengths
    assert 10 < lo < hi <= 101
    assert any("official split" in n for n in spec.notes) and any("log-mel" in n for n in spec.notes)
    assert spec.problems == ()
    _check_splits(fsdd_digits)


@pytest.mark.shared
def test_fsdd_features_are_normalized_and_padding_is_zero(fsdd_digits):
    x, _ = fsdd_digits.arrays("train")
    ids = fsdd_digits["train"].ids
    short = int(np.argmin([(x[i, 0] != 0).any(0).sum() for i in range(len(x))]))
    frames = (x[short, 0] != 0).any(0)
    n = int(frames.sum())
    assert n < x.shape[-1], f"{ids[short]} fills every frame"
    assert not frames[n:].any(), "padding only at the end"
    real = x[short, 0, :, :n]
    np.testing.assert_allclose(real.mean(1), 0, atol=1e-4)  # per utterance and band, over the real frames
    assert np.all((real.std(1) > 0.99) | (real.std(1) < 1e-6))


@pytest.mark.shared
def test_fsdd_speakers(fsdd_subset):
    data = load_data(fsdd_subset, labels="speaker")
    assert data.spec.label_names == SPEAKERS
    assert data.spec.class_counts == (40,) * 6
    assert [Path(p).name.split("_")[1] for p in data["test"].ids] == [SPEAKERS[y] for y in data["test"].y]


@pytest.mark.shared
def test_fsdd_keeps_only_the_classes_asked_for(fsdd_subset):
    four = ["theo", "george", "lucas", "jackson"]
    data = load_data(fsdd_subset, labels="speaker", classes=four)
    spec = data.spec
    assert spec.label_names == tuple(four)  # in the order asked for: the head's rows follow it
    assert spec.class_counts == (40,) * 4 and spec.splits == (("train", 80), ("test", 80))
    assert {Path(p).name.split("_")[1] for p in data["train"].ids} == set(four)
    assert any("classes kept" in n for n in spec.notes)
    _check_splits(data)


@pytest.mark.shared
def test_fsdd_mfcc_sequences(fsdd_subset):
    data = load_data(fsdd_subset, audio=AudioFeatures(kind="mfcc", layout="sequence"))
    assert data.spec.input_shape == (20, 101)
    x, _ = data.arrays("test")
    assert x.shape == (120, 20, 101)
    assert any("MFCC, 20 coefficients" in n for n in data.spec.notes)


@pytest.mark.shared
def test_fsdd_without_a_fixed_duration_pads_every_split_to_the_same_longest_clip(fsdd_subset):
    data = load_data(fsdd_subset, audio=AudioFeatures(duration=None, n_mels=16))
    spec = data.spec
    assert spec.input_shape[:2] == (1, 16) and spec.input_shape[2] == spec.lengths[1] > 101
    _check_splits(data)  # train and test share one number of frames


@pytest.mark.slow
@pytest.mark.shared
def test_fsdd_full_folder():
    data = describe_data(shared_file("data", "fsdd", "recordings"), labels="speaker")
    assert data.num_samples == 3000 and data.splits == (("train", 2700), ("test", 300))
    assert data.label_names == SPEAKERS and data.class_counts == (500,) * 6
    assert data.problems == ()


# -- UCR .tsv -------------------------------------------------------------------------------------------------

@pytest.mark.shared
def test_ucr_folder_gives_the_official_split():
    folder = shared_file("data", "ucr", "GunPoint")
    data = load_data(folder)
    spec = data.spec
    assert spec.modality == "timeseries" and spec.name == "GunPoint"
    assert spec.input_shape == (1, 150) and spec.label_names == ("1", "2")
    assert spec.splits == (("train", 50), ("test", 150)) and spec.lengths is None
    table = np.loadtxt(folder / "GunPoint_TEST.tsv", delimiter="\t")
    x, y = data.arrays("test")
    np.testing.assert_allclose(x[:, 0], table[:, 1:], rtol=1e-6)
    assert [spec.label_names[i] for i in y] == [str(int(v)) for v in table[:, 0]]
    _check_splits(data)


@pytest.mark.shared
def test_ucr_single_train_file(tmp_path):
    source = shared_file("data", "ucr", "GunPoint", "GunPoint_TRAIN.tsv")
    both = load_data(source)  # next to its _TEST file: the pair
    assert both.spec.splits == (("train", 50), ("test", 150)) and both.spec.name == "GunPoint"
    alone = tmp_path / "GunPoint_TRAIN.tsv"
    shutil.copy(source, alone)
    data = load_data(alone, normalize="minmax")
    assert data.spec.splits == (("train", 50),) and data.spec.input_shape == (1, 150)
    x, _ = data.arrays()
    np.testing.assert_allclose(x.min(-1), 0, atol=1e-6)
    np.testing.assert_allclose(x.max(-1), 1, atol=1e-6)


# -- aeon's bundled sets (shipped with aeon: no ../shared needed) -------------------------------------------

def _aeon_raw(name: str, split: str) -> list[np.ndarray]:
    """The series as aeon reads them, without graft, for comparison."""
    import aeon
    from aeon.datasets import load_from_ts_file

    path = Path(aeon.__file__).parent / "datasets" / "data" / name / f"{name}_{split.upper()}.ts"
    X, _ = load_from_ts_file(str(path))
    return [np.asarray(s, dtype=np.float64) for s in X]


def test_aeon_japanese_vowels_variable_length_is_padded_and_masked():
    data = load_data("aeon:JapaneseVowels")
    spec = data.spec
    assert spec.input_shape == (12, 29) and spec.lengths == (7, 29)
    assert spec.label_names == tuple(str(i) for i in range(1, 10))
    assert spec.splits == (("train", 270), ("test", 370))
    assert any("padded" in n for n in spec.notes)
    raw = _aeon_raw("JapaneseVowels", "train")
    x, _ = data.arrays("train")
    for i, s in enumerate(raw):
        n = s.shape[-1]
        np.testing.assert_allclose(x[i, :, :n], s, rtol=1e-5, atol=1e-6)
        assert not x[i, :, n:].any()  # padded at the end with 0
    _check_splits(data)


def test_aeon_zscore_is_per_series_and_channel_over_real_steps():
    data = load_data("aeon:JapaneseVowels", normalize="zscore")
    raw = _aeon_raw("JapaneseVowels", "test")
    x, _ = data.arrays("test")
    for i, s in enumerate(raw):
        n = s.shape[-1]
        real = x[i, :, :n].astype(np.float64)
        np.testing.assert_allclose(real.mean(-1), 0, atol=1e-4)
        np.testing.assert_allclose(real.std(-1), 1, atol=1e-3)
        np.testing.assert_allclose(real, (s - s.mean(-1, keepdims=True)) / s.std(-1, keepdims=True), atol=1e-4)
        assert not x[i, :, n:].any()  # padding stays 0 (not normalized)


def test_aeon_basic_motions_multichannel():
    data = load_data("aeon:BasicMotions", normalize="zscore")
    spec = data.spec
    assert spec.input_shape == (6, 100) and spec.lengths is None
    assert spec.label_names == ("badminton", "running", "standing", "walking")
    assert spec.splits == (("train", 40), ("test", 40)) and spec.class_counts == (20,) * 4
    x, _ = data.arrays("train")
    np.testing.assert_allclose(x.mean(-1), 0, atol=1e-4)
    np.testing.assert_allclose(x.std(-1), 1, atol=1e-3)
    _check_splits(data)


def test_aeon_arrow_head_with_a_val_split():
    data = load_data("aeon:ArrowHead", val_fraction=0.25, seed=0)
    spec = data.spec
    assert spec.input_shape == (1, 251) and spec.label_names == ("0", "1", "2")
    assert spec.splits == (("train", 27), ("val", 9), ("test", 175))
    assert np.bincount(data["val"].y, minlength=3).tolist() == [3, 3, 3]  # 12 of each class in train
    _check_splits(data)


def test_aeon_length_crops_or_pads():
    short = load_data("aeon:ArrowHead", length=100)
    long = load_data("aeon:ArrowHead", length=300)
    full = load_data("aeon:ArrowHead")
    assert short.spec.input_shape == (1, 100) and long.spec.input_shape == (1, 300)
    xs, xl, xf = short.arrays()[0], long.arrays()[0], full.arrays()[0]
    np.testing.assert_array_equal(xs, xf[..., :100])
    np.testing.assert_array_equal(xl[..., :251], xf)
    assert not xl[..., 251:].any()
