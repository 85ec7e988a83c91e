"""Checkpoints that survive interruption: weights and optimizer tensors in safetensors, the rest in JSON.

A checkpoint ``NAME`` is three files in ``run/checkpoints/``: ``NAME-<n>.safetensors`` (the model's state
dict), ``NAME-<n>.optim.safetensors`` (every tensor of the optimizer's state) and ``NAME.json`` (epoch, step,
the optimizer's param groups, RNG states, the trainer's counters, and the names and digests of the two tensor
files). Each file is written to a temporary name and renamed into place; the JSON is replaced last, and a
reader refuses a JSON whose tensor files are missing or do not match their digests. When a write fails (a
full disk), the previous checkpoint is left whole.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path

import torch
from torch import nn

from graft.errors import CheckpointError, GraftError
from graft.files import json_text, replacing


def _digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write(path: Path, write) -> None:
    """``write(tmp)`` to a temporary file, fsynced and renamed over ``path`` (graft.files.replacing); a full disk
    is a clear error and leaves the previous checkpoint untouched."""
    try:
        with replacing(path) as tmp:
            write(str(tmp))
    except OSError as exc:
        raise GraftError(f"room to write {path.name}", f"{type(exc).__name__}: {exc.strerror or exc}",
                         "free some disk space; the previous checkpoint was left untouched") from None


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
    """Write checkpoint ``name`` (see the module docstring); ``state`` must be JSON-serializable.

    The tensor files get a fresh name each time (``NAME-<n>.safetensors``) and the JSON, replaced last, points
    to them; the files of the previous checkpoint are removed only after that. So a failure at any point
    leaves the previous checkpoint whole.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tag = time.time_ns()
    weights, optim = folder / f"{name}-{tag}.safetensors", folder / f"{name}-{tag}.optim.safetensors"
    written = []
    try:
        _save_tensors(module.state_dict(), weights)
        written.append(weights)
        meta = {**state, "weights": weights.name, "files": {weights.name: _digest(weights)}}
        if optimizer is not None:
            tensors, rest = _optimizer_tensors(optimizer)
            _save_tensors(tensors, optim)
            written.append(optim)
            meta["optimizer"] = rest
            meta["optimizer_file"] = optim.name
            meta["files"][optim.name] = _digest(optim)
        meta["torch_rng"] = base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()
        text = json_text(meta)
        _atomic_write(folder / f"{name}.json", lambda tmp: Path(tmp).write_text(text))
    except BaseException:
        for path in written:  # the new files are not referenced: drop them, keep the previous checkpoint
            path.unlink(missing_ok=True)
        raise
    keep = set(meta["files"])
    for old in folder.glob(f"{name}-*.safetensors"):
        if old.name not in keep:
            old.unlink(missing_ok=True)


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
    module.load_state_dict(load_file(str(Path(folder) / meta["weights"])), strict=True)
    if optimizer is not None and "optimizer" in meta:
        tensors = load_file(str(Path(folder) / meta["optimizer_file"]))
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
