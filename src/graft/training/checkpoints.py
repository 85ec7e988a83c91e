"""Checkpoints that survive interruption: weights and optimizer tensors in safetensors, the rest in JSON.

A checkpoint ``NAME`` is three files in ``run/checkpoints/``: ``NAME-<n>.safetensors`` (the model's state
dict), ``NAME-<n>.optim.safetensors`` (every tensor of the optimizer's state) and ``NAME.json`` (epoch, step,
the optimizer's param groups, RNG states, the trainer's counters, and the names and digests of the two tensor
files). Each file is written to a temporary name and renamed into place; the JSON is replaced last, and a
reader refuses a JSON whose tensor files are missing or do not match their digests. When a write fails (a
full disk), the previous checkpoint is left whole. With ``keep_previous`` (the trainer's ``last``) the checkpoint
before is kept too, as ``NAME.previous.json`` with its own tensor files, so a damaged newest checkpoint still
leaves one to resume from (:func:`newest_intact`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path

import torch
from torch import nn

from graft.errors import CheckpointError
from graft.files import json_text, remove_orphans, replacing


def _digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write(path: Path, write) -> None:
    """``write(tmp)`` to a temporary file, fsynced and renamed over ``path`` (graft.files.replacing); a full disk
    is a clear error (a GraftError) and leaves the previous checkpoint untouched."""
    with replacing(path) as tmp:
        write(str(tmp))


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
                    state: dict, keep_previous: bool = False) -> None:
    """Write checkpoint ``name`` (see the module docstring); ``state`` must be JSON-serializable.

    The tensor files get a fresh name each time (``NAME-<n>.safetensors``) and the JSON, replaced last, points
    to them; the files of the previous checkpoint are removed only after that. So a failure at any point
    leaves the previous checkpoint whole.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    remove_orphans(folder)  # temporary files a killed run left behind (their pid is in the name)
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
        if torch.cuda.is_available() and torch.cuda.is_initialized():  # dropout on a GPU draws from its own RNG
            meta["cuda_rng"] = base64.b64encode(torch.cuda.get_rng_state().numpy().tobytes()).decode()
        text = json_text(meta)
        current, previous = folder / f"{name}.json", folder / f"{name}.previous.json"
        if keep_previous and current.is_file():  # the one before stays whole until the new one is
            _atomic_write(previous, lambda tmp: Path(tmp).write_bytes(current.read_bytes()))
        _atomic_write(current, lambda tmp: Path(tmp).write_text(text))
    except BaseException:
        for path in written:  # the new files are not referenced: drop them, keep the previous checkpoint
            path.unlink(missing_ok=True)
        raise
    keep = set(meta["files"])
    if keep_previous and previous.is_file():
        try:
            keep |= set(json.loads(previous.read_text()).get("files", {}))
        except (OSError, json.JSONDecodeError):
            pass
    for old in folder.glob(f"{name}-*.safetensors"):
        if old.name not in keep:
            old.unlink(missing_ok=True)


def checkpoint_problem(folder: Path, name: str) -> str | None:
    """Why checkpoint ``name`` cannot be used (missing, unreadable, a tensor file missing or changed); None when it
    is whole."""
    path = Path(folder) / f"{name}.json"
    if not path.is_file():
        return f"no {path.name}"
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        return f"{path.name} is unreadable ({type(exc).__name__})"
    if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict) or "weights" not in meta:
        return f"{path.name} is not a graft checkpoint"
    for file, digest in meta["files"].items():
        tensor_file = Path(folder) / str(file)
        if not tensor_file.is_file():
            return f"{file} is missing"
        if _digest(tensor_file) != digest:
            return f"{file} does not match its digest (truncated or changed)"
    return None


def read_checkpoint_state(folder: Path, name: str) -> dict | None:
    """The JSON state of checkpoint ``name`` when it and its tensor files are complete and match; else None."""
    if checkpoint_problem(folder, name) is not None:
        return None
    return json.loads((Path(folder) / f"{name}.json").read_text())


def newest_intact(folder: Path, name: str) -> tuple[str | None, list[str]]:
    """The newest whole checkpoint of ``name`` (itself, else the one kept before it, ``NAME.previous``), and why
    each newer one was passed over; (None, reasons) when neither is whole."""
    passed = []
    for candidate in (name, f"{name}.previous"):
        problem = checkpoint_problem(folder, candidate)
        if problem is None:
            return candidate, passed
        if not problem.startswith("no "):
            passed.append(f"{candidate}: {problem}")
    return None, passed


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; anything else (a pickle put in its place, a damaged header) is a
    CheckpointError: nothing in it is run."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"a safetensors file of tensors at {path}", f"a file safetensors cannot read ({exc})",
                              "the checkpoint was replaced or damaged: start a new run (another --out)") from None


def load_checkpoint(folder: Path, name: str, module: nn.Module, optimizer: torch.optim.Optimizer | None) -> dict:
    """Restore weights, optimizer state and the torch RNG from checkpoint ``name``; returns its JSON state."""
    problem = checkpoint_problem(folder, name)
    if problem is not None:
        raise CheckpointError(f"a complete checkpoint {name!r} in {folder}", problem,
                              "start a new run in another folder (another --out)")
    meta = json.loads((Path(folder) / f"{name}.json").read_text())
    module.load_state_dict(load_tensors(Path(folder) / meta["weights"]), strict=True)
    if optimizer is not None and "optimizer" in meta:
        tensors = load_tensors(Path(folder) / meta["optimizer_file"])
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
    if meta.get("cuda_rng") and torch.cuda.is_available():  # a GPU run resumed on a GPU: its dropout goes on
        torch.cuda.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(meta["cuda_rng"])), dtype=torch.uint8))
    return meta
