"""LoadOptions: how to load a network, as one validated object that round-trips through JSON and builds the
same network as the keyword arguments of graft.load_model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import graft
from graft.errors import GraftError
from graft.models import LoadOptions


# -- JSON -----------------------------------------------------------------------------------------------------

def test_json_round_trip():
    opts = LoadOptions(weights=Path("weights") / "resnet20.th", arch="cifar_resnet20", pretrained=False,
                       num_classes=4, strict=False, label_names=["a", "b", "c", "d"], input_size=[28, 28],
                       mean=[0.5], std=(0.25,), blocks=["layer1", "layer2"], taps=["layer2"], head="linear",
                       first_layer="conv1", feature_names=["grey"], feature_axis=0, build={"width": 16})
    assert opts.weights == str(Path("weights") / "resnet20.th"), "a path is stored as text"
    assert opts.label_names == ("a", "b", "c", "d") and opts.input_size == (28, 28) and opts.mean == (0.5,)
    text = opts.to_json()
    back = LoadOptions.from_json(text)
    assert back == opts
    assert isinstance(back.input_size, tuple) and isinstance(back.mean, tuple) and isinstance(back.blocks, tuple)
    assert back.build == {"width": 16} and json.loads(text)["build"] == {"width": 16}


def test_json_round_trip_of_the_defaults():
    opts = LoadOptions()
    assert LoadOptions.from_json(opts.to_json()) == opts
    assert opts.strict is True and opts.pretrained is None and opts.build == {}


def test_numpy_scalars_become_plain_numbers():
    opts = LoadOptions(num_classes=np.int64(4), input_size=(np.int64(32), 32), mean=np.array([0.5, 0.25]),
                       feature_axis=np.int32(0))
    assert type(opts.num_classes) is int and opts.num_classes == 4
    assert opts.input_size == (32, 32) and all(type(v) is int for v in opts.input_size)
    assert opts.mean == (0.5, 0.25) and all(type(v) is float for v in opts.mean)
    assert type(opts.feature_axis) is int
    assert LoadOptions.from_json(opts.to_json()) == opts  # json.dumps refuses numpy scalars


def test_one_integer_input_size_is_a_length():
    assert LoadOptions(input_size=128).input_size == (128,)
    assert LoadOptions(input_size=np.int64(64)).input_size == (64,)


# -- coerce ---------------------------------------------------------------------------------------------------

def test_coerce_from_none_a_dict_and_an_object_with_overrides():
    assert LoadOptions.coerce(None) == LoadOptions()
    assert LoadOptions.coerce({"num_classes": 3, "build": {"width": 8}}, pretrained=False) == LoadOptions(
        num_classes=3, build={"width": 8}, pretrained=False)
    base = LoadOptions(num_classes=3, strict=False)
    assert LoadOptions.coerce(base, num_classes=5) == LoadOptions(num_classes=5, strict=False)
    assert base.num_classes == 3, "the object given is not changed"


@pytest.mark.parametrize("options, overrides, unknown, hint", [
    ({"num_clases": 3}, {}, "num_clases", "did you mean 'num_classes'"),
    (None, {"pretrianed": False}, "pretrianed", "did you mean 'pretrained'"),
    (LoadOptions(), {"input_sise": (32, 32)}, "input_sise", "did you mean 'input_size'"),
])
def test_an_unknown_field_is_refused_with_a_hint(options, overrides, unknown, hint):
    with pytest.raises(GraftError, match=r"load options that load_model knows \(architecture arguments go in build") \
            as info:
        LoadOptions.coerce(options, **overrides)
    assert info.value.got == unknown
    assert f"{unknown}: {hint}" in info.value.fix


def test_coerce_refuses_other_objects():
    with pytest.raises(GraftError, match=r"LoadOptions\(...\) or a dict") as info:
        LoadOptions.coerce("cifar_resnet20")
    assert info.value.got == "str"


def test_load_model_refuses_an_unknown_field_in_its_options():
    with pytest.raises(GraftError, match="did you mean 'num_classes'"):
        graft.load_model("cifar_resnet20", {"pretrained": False, "num_clases": 4})


# -- bad values -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields, match", [
    ({"input_size": (0, 32)}, r"input_size as positive integers \(H, W\) or \(L,\); got \(0, 32\)"),
    ({"input_size": (32.0, 32)}, "input_size as positive integers"),
    ({"input_size": 32.5}, r"input_size as positive integers \(H, W\) or \(L,\); got 32.5"),
    ({"input_size": ()}, "input_size as positive integers"),
    ({"input_size": (True, 32)}, "input_size as positive integers"),
    ({"input_size": "32"}, "input_size as positive integers"),
    ({"num_classes": 0}, "num_classes as a positive integer; got 0"),
    ({"num_classes": -3}, "num_classes as a positive integer"),
    ({"num_classes": 2.0}, "num_classes as a positive integer; got 2.0"),
    ({"num_classes": True}, "num_classes as a positive integer; got True"),
    ({"num_classes": "10"}, "num_classes as a positive integer; got '10'"),
    ({"label_names": "cat"}, "label_names as a list of names; got the string 'cat'"),
    ({"blocks": "layer1"}, "blocks as a list of names"),
    ({"mean": 0.5}, r"mean as one number per input channel; got 0.5"),
    ({"std": ["a"]}, "std as one number per input channel"),
    ({"strict": "no"}, "strict as True or False; got 'no'"),
    ({"pretrained": "yes"}, r"pretrained as True or False \(or None\)"),
    ({"feature_axis": "0"}, "feature_axis as an integer"),
    ({"build": ["width", 16]}, "build as a dict of architecture arguments; got list"),
    ({"num_classes": 3, "build": {"num_classes": 5}}, r"build keys that are load options: \['num_classes'\]"),
])
def test_bad_values_are_refused(fields, match):
    with pytest.raises(GraftError, match=match) as info:
        LoadOptions(**fields)
    assert info.value.fix, "every refusal says how to fix it"


# -- load_arguments -------------------------------------------------------------------------------------------

def test_load_arguments_drop_unset_fields_and_spread_build():
    opts = LoadOptions(pretrained=False, num_classes=4, label_names=("a", "b", "c", "d"), input_size=(28, 28),
                       build={"width": 16, "in_chans": 1})
    assert opts.load_arguments() == {"pretrained": False, "num_classes": 4, "label_names": ["a", "b", "c", "d"],
                                     "input_size": (28, 28), "width": 16, "in_chans": 1}


def test_load_arguments_of_the_defaults_are_empty():
    assert LoadOptions().load_arguments() == {}, "strict=True is load_model's own default; None means unset"


def test_load_arguments_keep_strict_false_and_pretrained_false():
    args = LoadOptions(strict=False, pretrained=False, weights="w.pth").load_arguments()
    assert args == {"strict": False, "pretrained": False, "weights": "w.pth"}


# -- load_model takes the object as it takes the keywords ------------------------------------------------------

def _state(backbone) -> dict:
    return {k: v.clone() for k, v in backbone.module.state_dict().items()}


def test_load_model_with_options_builds_the_same_network_as_keywords():
    torch.manual_seed(0)
    with_object = graft.load_model("cifar_resnet20", LoadOptions(pretrained=False, num_classes=4))
    torch.manual_seed(0)
    with_keywords = graft.load_model("cifar_resnet20", pretrained=False, num_classes=4)
    assert with_object.spec.head.num_classes == 4 and with_object.spec.weights is None
    assert with_object.spec == with_keywords.spec
    a, b = _state(with_object), _state(with_keywords)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # same seed: same initial weights
    with_object.module.eval()
    with torch.no_grad():
        out = with_object.module(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 4)


def test_load_model_keywords_override_the_options():
    backbone = graft.load_model("cifar_resnet20", LoadOptions(pretrained=False, num_classes=4), num_classes=6)
    assert backbone.spec.head.num_classes == 6


def test_load_model_with_a_dict_and_label_names():
    names = ["cat", "dog", "eel"]
    backbone = graft.load_model("cifar_resnet20", {"pretrained": False, "num_classes": 3, "label_names": names})
    assert backbone.spec.head.num_classes == 3 and backbone.spec.label_names == tuple(names)
    again = graft.load_model("cifar_resnet20", LoadOptions.from_json(
        LoadOptions(pretrained=False, num_classes=3, label_names=names).to_json()))
    assert again.spec == backbone.spec
