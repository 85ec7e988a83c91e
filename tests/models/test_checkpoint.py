"""Reading checkpoints safely, in every shape users bring them."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from graft.errors import CheckpointError, GraftError, UnsafeCheckpointError
from graft.models.checkpoint import read_checkpoint
from tests.conftest import TinyPooledCNN, shared_file


@pytest.fixture
def state_dict():
    torch.manual_seed(0)
    return TinyPooledCNN().state_dict()


@pytest.mark.parametrize(
    "wrap, walked",
    [
        (lambda sd: sd, ()),
        (lambda sd: {"state_dict": sd, "epoch": 3, "best_prec1": torch.tensor(91.7)}, ("state_dict",)),
        (lambda sd: {"model": sd, "optimizer": {"lr": 0.1}}, ("model",)),
        (lambda sd: {"checkpoint": {"model_state_dict": sd}}, ("model_state_dict",)),
        (lambda sd: {"weights": sd, "acc": 0.9}, ("weights",)),
    ],
    ids=["bare", "state_dict", "model", "nested", "other-key"],
)
@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.", "module._orig_mod."])
def test_torch_checkpoints_in_every_wrapping(tmp_path, state_dict, wrap, walked, prefix):
    obj = wrap({prefix + k: v for k, v in state_dict.items()})
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    ckpt = read_checkpoint(path)
    assert set(ckpt.state_dict) == set(state_dict)
    for k, v in state_dict.items():
        assert torch.equal(ckpt.state_dict[k], v)
    assert ckpt.stripped_prefix == prefix
    assert ckpt.found_under[-len(walked):] == walked if walked else ckpt.found_under == ()


def test_safetensors_with_metadata(tmp_path, state_dict):
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path), metadata={"source": "test"})
    ckpt = read_checkpoint(path)
    assert ckpt.format == "safetensors" and ckpt.metadata["source"] == "test"
    assert all(torch.equal(ckpt.state_dict[k], v) for k, v in state_dict.items())


def test_format_is_sniffed_whatever_the_suffix(tmp_path, state_dict):
    path = tmp_path / "weights.data"
    torch.save(state_dict, path)
    assert read_checkpoint(path).format == "torch"


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on protocol 4, expected here
@pytest.mark.parametrize("writer", ["torch.save", "pickle-protocol-2", "pickle-protocol-4"])
def test_a_pickle_with_code_is_refused_and_never_run(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    obj = {"state_dict": {"w": torch.zeros(2)}, "payload": _Evil(marker)}
    if writer == "torch.save":
        torch.save(obj, path)
    else:
        with path.open("wb") as f:
            pickle.dump(obj, f, protocol=int(writer[-1]))
    with pytest.raises(UnsafeCheckpointError) as info:
        read_checkpoint(path)
    assert not marker.exists(), "the pickle's code ran"
    msg = str(info.value)
    assert "never unpickles code" in msg and "system" in msg and "weights_only=False" in msg


def test_a_module_pickled_whole_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(TinyPooledCNN(), path)
    with pytest.raises(UnsafeCheckpointError, match="state_dict"):
        read_checkpoint(path)


@pytest.mark.parametrize(
    "content, name, match",
    [
        (b"hello, I am a text file\n", "notes.pt", "cannot be read|not one"),
        (b"\x00\x01\x02\x03" * 10, "blob.weights", "neither"),
        (b"\x10\x00\x00\x00\x00\x00\x00\x00{\"bad json", "broken.safetensors", "safetensors"),
    ],
    ids=["text-as-pt", "unknown-bytes", "truncated-safetensors"],
)
def test_files_that_are_not_checkpoints(tmp_path, content, name, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        read_checkpoint(path)


def test_paths_that_are_not_files(tmp_path):
    (tmp_path / "resnet20.th").write_bytes(b"x")
    with pytest.raises(GraftError, match="(?s)does not exist.*did you mean 'resnet20.th'"):
        read_checkpoint(tmp_path / "resnet21.th")
    with pytest.raises(GraftError, match="a folder"):
        read_checkpoint(tmp_path)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(GraftError, match="empty file"):
        read_checkpoint(tmp_path / "empty.pt")


@pytest.mark.parametrize("checkpoint_kind", ["dict-without-tensors", "list"])
def test_pickles_without_a_state_dict(tmp_path, checkpoint_kind):
    path = tmp_path / "x.pt"
    torch.save({"epoch": 3, "lr": 0.1} if checkpoint_kind == "dict-without-tensors" else [1, 2, 3], path)
    with pytest.raises(CheckpointError, match="state dict"):
        read_checkpoint(path)


@pytest.mark.shared
def test_the_real_messy_cifar_checkpoint():
    ckpt = read_checkpoint(shared_file("weights", "resnet20-12fca82f.th"))
    assert len(ckpt.state_dict) == 97
    assert ckpt.found_under == ("state_dict",) and ckpt.stripped_prefix == "module."
    assert ckpt.state_dict["conv1.weight"].shape == (16, 3, 3, 3)
    assert ckpt.state_dict["conv1.weight"].device.type == "cpu"
    assert float(ckpt.metadata["best_prec1"]) > 90
