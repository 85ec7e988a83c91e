"""Checkpoints that survive interruption: weights and optimizer tensors in safetensors, the rest in JSON.

A checkpoint ``NAME`` is three files in ``run/checkpoints/``: ``NAME.safetensors`` (the model's state dict),
``NAME.optim.safetensors`` (every tensor of the optimizer's state) and ``NAME.json`` (epoch, step, the
optimizer's param groups, RNG states, the trainer's counters). Each file is written to a temporary name and
renamed into place, and the JSON, written last, names the digests of the two tensor files: a reader that
finds a JSON whose tensor files do not match (a crash between two renames, a disk that filled up) refuses it
rather than mixing two epochs. When a write fails, the previous checkpoint is left as it was.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from graft.errors import CheckpointError, GraftError


def _digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise GraftError(f"room to write {path.name}", f"{type(exc).__name__}: {exc.strerror or exc}",
                         "free some disk space; the previous checkpoint was left untouched") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _atomic_write(path, lambda tmp: save_file(clean, tmp))


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def save_checkpoint(folder: Path, name: str, module: nn.Module, optimizer: torch.optim.Optimizer | None,
                    state: dict) -> None:
    """Write checkpoint ``name`` (see the module docstring); ``state`` must be JSON-serializable."""
    folder = Path(folder)
    weights, optim = folder / f"{name}.safetensors", folder / f"{name}.optim.safetensors"
    _save_tensors(module.state_dict(), weights)
    meta = {**state, "files": {weights.name: _digest(weights)}}
    if optimizer is not None:
        tensors, rest = _optimizer_tensors(optimizer)
        _save_tensors(tensors, optim)
        meta["optimizer"] = rest
        meta["files"][optim.name] = _digest(optim)
    meta["torch_rng"] = base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()
    text = json.dumps(meta)
    _atomic_write(folder / f"{name}.json", lambda tmp: Path(tmp).write_text(text))


def read_checkpoint_state(folder: Path, name: str) -> dict | None:
    """The JSON state of checkpoint ``name`` when it and its tensor files are complete and match; else None."""
    path = Path(folder) / f"{name}.json"
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    for file, digest in meta.get("files", {}).items():
        tensor_file = Path(folder) / file
        if not tensor_file.is_file() or _digest(tensor_file) != digest:
            return None
    return meta


def load_checkpoint(folder: Path, name: str, module: nn.Module, optimizer: torch.optim.Optimizer | None) -> dict:
    """Restore weights, optimizer state and the torch RNG from checkpoint ``name``; returns its JSON state."""
    from safetensors.torch import load_file

    meta = read_checkpoint_state(folder, name)
    if meta is None:
        raise CheckpointError(f"a complete checkpoint {name!r} in {folder}", "none, or one whose files do not match",
                              "start the run afresh (without --resume)")
    module.load_state_dict(load_file(str(Path(folder) / f"{name}.safetensors")), strict=True)
    if optimizer is not None and "optimizer" in meta:
        tensors = load_file(str(Path(folder) / f"{name}.optim.safetensors"))
        state: dict = {}
        for key, value in tensors.items():
            index, field = key.split(".", 1)
            state.setdefault(int(index), {})[field] = value
        for key, value in meta["optimizer"]["scalars"].items():
            index, field = key.split(".", 1)
            state.setdefault(int(index), {})[field] = value
        optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
    rng = base64.b64decode(meta["torch_rng"])
    torch.set_rng_state(torch.frombuffer(bytearray(rng), dtype=torch.uint8))
    return meta
