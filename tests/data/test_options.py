"""DataOptions: how to read a dataset, as one validated object that round-trips through JSON and reads the
same data as the keyword arguments of load_data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from graft.data import AudioFeatures, DataOptions, load_data
from graft.errors import DataError, LabelError


def _source():
    """40 real samples of two classes (20 each), as an (x, y) tuple of arrays."""
    rng = np.random.default_rng(0)
    return rng.normal(size=(40, 6)).astype(np.float32), np.arange(40) % 2


# -- JSON -----------------------------------------------------------------------------------------------------

def test_json_round_trip_with_audio_settings_and_tuples():
    opts = DataOptions(labels="speaker", label_names=["a", "b", "c"], classes=("c", "a"), val_fraction=0.2,
                       test_fraction=0.1, seed=7, on_error="skip", image_size=[20, 24], image_mode="L",
                       audio=AudioFeatures(kind="mfcc", n_mfcc=13, duration=0.5, layout="sequence"),
                       label_pattern=r"(?P<digit>\d+)_(?P<speaker>[a-z]+)_(?P<take>\d+)",
                       feature_names=["x", "y"], feature_axis=0, name="clips")
    assert opts.label_names == ("a", "b", "c") and opts.image_size == (20, 24)  # lists stored as tuples
    text = opts.to_json()
    back = DataOptions.from_json(text)
    assert back == opts
    assert isinstance(back.audio, AudioFeatures) and back.audio.kind == "mfcc" and back.audio.duration == 0.5
    assert isinstance(back.label_names, tuple) and isinstance(back.classes, tuple)
    assert isinstance(back.image_size, tuple) and isinstance(back.feature_names, tuple)
    assert json.loads(text)["audio"]["n_mfcc"] == 13  # plain JSON data, nested


def test_json_round_trip_of_the_defaults():
    opts = DataOptions()
    back = DataOptions.from_json(opts.to_json())
    assert back == opts and back.audio == AudioFeatures() and back.val_fraction == 0.0


def test_numpy_scalars_become_plain_numbers():
    opts = DataOptions(val_fraction=np.float32(0.25), seed=np.int64(3), image_size=np.int64(16),
                       feature_axis=np.int64(1))
    assert type(opts.val_fraction) is float and opts.val_fraction == 0.25
    assert type(opts.seed) is int and opts.seed == 3
    assert opts.image_size == (16, 16) and all(type(v) is int for v in opts.image_size)
    assert type(opts.feature_axis) is int
    assert DataOptions.from_json(opts.to_json()) == opts  # json.dumps refuses numpy scalars


def test_split_of_is_dropped_from_the_dict():
    opts = DataOptions(label_pattern=r"(?P<label>[a-z]+)_(?P<n>\d)", split_of=lambda groups: "train")
    data = opts.to_dict()
    assert "split_of" not in data and data["label_pattern"] == opts.label_pattern
    back = DataOptions.from_dict(json.loads(json.dumps(data)))
    assert back.split_of is None
    assert back == opts  # split_of is not compared: it is not data


def test_an_audio_dict_becomes_audio_features():
    assert DataOptions(audio={"kind": "mfcc", "n_mfcc": 13}).audio == AudioFeatures(kind="mfcc", n_mfcc=13)
    assert DataOptions(audio=None).audio == AudioFeatures()


# -- coerce ---------------------------------------------------------------------------------------------------

def test_coerce_from_none_a_dict_and_an_object_with_overrides():
    assert DataOptions.coerce(None) == DataOptions()
    assert DataOptions.coerce(None, seed=4) == DataOptions(seed=4)
    from_dict = DataOptions.coerce({"val_fraction": 0.2, "label_names": ["x", "y"]}, seed=3)
    assert from_dict == DataOptions(val_fraction=0.2, label_names=("x", "y"), seed=3)
    base = DataOptions(val_fraction=0.2, seed=1, audio=AudioFeatures(n_mels=16))
    over = DataOptions.coerce(base, seed=9, on_error="skip")
    assert over == DataOptions(val_fraction=0.2, seed=9, on_error="skip", audio=AudioFeatures(n_mels=16))
    assert base.seed == 1, "the object given is not changed"
    assert DataOptions.coerce(base) == base


def test_coerce_validates_the_dict_and_the_overrides():
    with pytest.raises(DataError, match="on_error 'raise' or 'skip'"):
        DataOptions.coerce({"on_error": "ignore"})
    with pytest.raises(DataError, match="val_fraction between 0 and 1"):
        DataOptions.coerce(DataOptions(), val_fraction=2.0)


@pytest.mark.parametrize("options, overrides, unknown, hint", [
    ({"val_fracton": 0.2}, {}, "val_fracton", "did you mean 'val_fraction'"),
    (None, {"lable_names": ["a"]}, "lable_names", "did you mean 'label_names'"),
    (DataOptions(), {"normalise": "zscore"}, "normalise", "did you mean 'normalize'"),
])
def test_an_unknown_field_is_refused_with_a_hint(options, overrides, unknown, hint):
    with pytest.raises(DataError, match="data options that load_data knows") as info:
        DataOptions.coerce(options, **overrides)
    assert info.value.got == unknown
    assert f"{unknown}: {hint}" in info.value.fix


def test_an_unknown_field_without_a_close_name_lists_the_known_ones():
    with pytest.raises(DataError) as info:
        DataOptions.coerce({"zzzzzz": 1})
    assert "one of " in info.value.fix and "val_fraction" in info.value.fix


def test_coerce_refuses_other_objects():
    with pytest.raises(DataError, match=r"DataOptions\(...\) or a dict") as info:
        DataOptions.coerce([("val_fraction", 0.2)])
    assert info.value.got == "list"


def test_load_data_refuses_an_unknown_keyword():
    with pytest.raises(DataError, match="did you mean 'val_fraction'"):
        load_data(_source(), val_fracton=0.2)


# -- bad values -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields, match", [
    ({"val_fraction": 1.0}, "val_fraction between 0 and 1 \\(exclusive\\); got 1.0"),
    ({"val_fraction": -0.1}, "val_fraction between 0 and 1"),
    ({"val_fraction": math.nan}, "val_fraction between 0 and 1"),
    ({"val_fraction": "0.2"}, "val_fraction between 0 and 1 \\(exclusive\\); got '0.2'"),
    ({"val_fraction": True}, "val_fraction between 0 and 1"),
    ({"test_fraction": 3}, "test_fraction between 0 and 1"),
    ({"val_fraction": 0.6, "test_fraction": 0.4}, "val_fraction \\+ test_fraction below 1; got 0.6 \\+ 0.4"),
    ({"on_error": "ignore"}, "on_error 'raise' or 'skip'; got 'ignore'"),
    ({"normalize": "l2"}, "a normalization among \\('none', 'zscore', 'minmax'\\); got 'l2'"),
    ({"normalize": None}, "a normalization among"),
    ({"label_names": "cat"}, "label_names as a list of names; got the string 'cat'"),
    ({"classes": "cat"}, "classes as a list of names; got the string 'cat'"),
    ({"label_names": 5}, "label_names as a list of names; got int: 5"),
    ({"label_names": []}, "at least one name in label_names"),
    ({"classes": []}, "at least one class in classes"),
    ({"seed": -1}, "seed as an integer between 0 and 2\\*\\*32 - 1; got -1"),
    ({"seed": 1.5}, "seed as an integer"),
    ({"seed": "1"}, "seed as an integer"),
    ({"image_size": (0, 5)}, "image_size as \\(height, width\\)"),
    ({"image_size": 32.5}, "image_size as \\(height, width\\)"),
    ({"image_size": (32,)}, "image_size as \\(height, width\\)"),
    ({"audio": "mfcc"}, "audio as AudioFeatures"),
    ({"layout": "NWHC"}, "a layout among .*; got 'NWHC'"),
    ({"feature_axis": "channels"}, "feature_axis as an integer"),
])
def test_bad_values_are_refused(fields, match):
    with pytest.raises(DataError, match=match) as info:
        DataOptions(**fields)
    assert info.value.fix, "every refusal says how to fix it"


def test_a_string_for_label_names_says_how_to_pass_a_list():
    with pytest.raises(DataError) as info:
        DataOptions(label_names="cat")
    assert info.value.fix == "pass label_names=['cat', ...]"


def test_bad_audio_settings_are_refused():
    with pytest.raises(DataError, match="audio features 'logmel' or 'mfcc'"):
        DataOptions(audio={"kind": "mel"})


def test_a_bad_seed_stops_load_data_before_the_split():
    with pytest.raises(DataError, match="seed as an integer"):  # not scikit-learn's InvalidParameterError
        load_data(_source(), val_fraction=0.25, seed=-1)


def test_duplicate_label_names_are_refused_by_load_data():
    with pytest.raises(LabelError, match="all different"):
        load_data(_source(), DataOptions(label_names=["a", "a"]))


# -- load_data takes the object as it takes the keywords -------------------------------------------------------

def test_load_data_with_options_gives_the_same_splits_as_keywords():
    source = _source()
    with_object = load_data(source, DataOptions(val_fraction=0.25, seed=1))
    with_keywords = load_data(source, val_fraction=0.25, seed=1)
    assert with_object.spec == with_keywords.spec
    assert with_object.spec.splits == (("train", 30), ("val", 10))
    for split in ("train", "val"):
        assert with_object[split].ids == with_keywords[split].ids
        np.testing.assert_array_equal(with_object.arrays(split)[0], with_keywords.arrays(split)[0])
        np.testing.assert_array_equal(with_object.arrays(split)[1], with_keywords.arrays(split)[1])
    assert with_object.split_record == with_keywords.split_record
    assert np.bincount(with_object["val"].y).tolist() == [5, 5]  # stratified
    other_seed = load_data(source, DataOptions(val_fraction=0.25, seed=2))
    assert other_seed["val"].ids != with_object["val"].ids, "the seed reaches the split"


def test_keywords_override_the_options_object():
    source = _source()
    data = load_data(source, DataOptions(val_fraction=0.25, seed=1), seed=2, test_fraction=0.25)
    expected = load_data(source, val_fraction=0.25, seed=2, test_fraction=0.25)
    assert data.spec.splits == (("train", 20), ("val", 10), ("test", 10))
    for split in ("train", "val", "test"):
        assert data[split].ids == expected[split].ids


def test_load_data_takes_a_dict_and_a_round_tripped_object():
    source = _source()
    opts = DataOptions(val_fraction=0.25, seed=1, label_names=["neg", "pos"], name="toy")
    reference = load_data(source, opts)
    assert reference.spec.label_names == ("neg", "pos") and reference.spec.name == "toy"
    for again in (DataOptions.from_json(opts.to_json()), opts.to_dict()):
        data = load_data(source, again)
        assert data.spec == reference.spec and data["val"].ids == reference["val"].ids
