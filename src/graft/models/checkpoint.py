"""Reading weights from files safely: safetensors, or PyTorch pickles with ``weights_only=True``.

Users bring checkpoints in every shape: a bare state dict, ``{'state_dict': ...}``, ``{'model': ...}``,
keys prefixed ``module.`` by DataParallel or ``_orig_mod.`` by ``torch.compile``, tensors saved on a CUDA
device. :func:`read_checkpoint` finds the state dict in all of them and says where it found it. It never
unpickles code: a pickle that holds anything but tensors and plain containers is refused with the reason.
"""

from __future__ import annotations

import json
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from graft.errors import CheckpointError, UnsafeCheckpointError
from graft.validation import existing_file

#: Keys under which training scripts commonly nest the state dict, most specific first.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "module", "params",
                "weights", "model_ema", "state_dict_ema", "ema")
#: Prefixes that wrappers add to every key and that carry no meaning for the architecture.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")

_PICKLE_SUFFIXES = {".pt", ".pth", ".th", ".bin", ".ckpt", ".tar", ".pkl"}


@dataclass(frozen=True)
class Checkpoint:
    """A state dict read from a file, and how it was found there."""

    state_dict: dict[str, torch.Tensor]
    path: str
    format: str  # "safetensors" or "torch"
    found_under: tuple[str, ...] = ()  # nested keys walked to reach the state dict
    stripped_prefix: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        where = "/".join(self.found_under) or "top level"
        strip = f", prefix {self.stripped_prefix!r} stripped" if self.stripped_prefix else ""
        return f"{len(self.state_dict)} tensors from {self.path} ({self.format}, {where}{strip})"


def _sniff(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(9)
    if head[:4] == b"PK\x03\x04":
        return "torch"  # zip archive: torch.save's default format
    if head[:1] == b"\x80":
        return "torch"  # legacy pickle
    if len(head) == 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 0 < n < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    return "unknown"


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        tensors: dict[str, torch.Tensor] = {}
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    except Exception as exc:  # safetensors raises its own SafetensorError / OSError
        raise CheckpointError("a valid .safetensors file", f"{path} which cannot be read ({exc})",
                              "the file may be truncated or not safetensors at all; export it again") from None
    return tensors, metadata


_SAFE_GLOBALS = ("torch._utils.", "collections.OrderedDict", "torch.", "builtins.set", "_codecs.encode")


def pickle_globals(path: Path) -> list[str]:
    """The callables a pickle would import when loaded, read from its opcodes (nothing is executed)."""
    import pickletools
    import zipfile

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith("data.pkl")]
            data = z.read(names[0]) if names else b""
    else:
        data = path.read_bytes()
    found, strings = [], []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(str(arg))
            elif op.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # a damaged stream: report what was read so far
        pass
    return sorted({g for g in found if not g.startswith(_SAFE_GLOBALS)})


def _unsafe_reason(path: Path, message: str) -> str:
    names = pickle_globals(path)
    if names:
        return f"it would call {', '.join(names[:5])}"
    for line in message.splitlines():
        if "GLOBAL" in line or "Unsupported" in line:
            return line.strip()
    return message.strip().splitlines()[0] if message.strip() else "unknown reason"


def _read_pickle(path: Path) -> Any:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        if "Weights only load failed" in msg or "GLOBAL" in msg or "Unsupported" in msg:
            raise UnsafeCheckpointError(
                "a checkpoint that holds only tensors and plain containers",
                f"{path}, which asks to run Python code or build objects when unpickled ({_unsafe_reason(path, msg)})",
                "graft never unpickles code. If you trust the file, load it yourself "
                "(torch.load(path, weights_only=False)) and pass the module or its state_dict() to graft, "
                "or re-save it as tensors only: torch.save(model.state_dict(), 'weights.pt')",
            ) from None
        raise CheckpointError("a PyTorch checkpoint", f"{path}, which is not one ({msg.splitlines()[0][:120]})",
                              "pass a file written by torch.save or safetensors") from None
    except Exception as exc:  # torch raises RuntimeError, EOFError, KeyError... for non-checkpoints
        first = (str(exc).splitlines() or ["unreadable"])[0][:160]
        raise CheckpointError("a PyTorch checkpoint", f"{path}, which cannot be read ({first})",
                              "the file may be truncated or in another format; pass a file written by "
                              "torch.save or safetensors") from None


def _tensor_items(obj: dict) -> dict[str, torch.Tensor]:
    return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _count_tensors(obj: Any, depth: int = 4) -> int:
    if isinstance(obj, torch.Tensor):
        return 1
    if isinstance(obj, dict) and depth > 0:
        return sum(_count_tensors(v, depth - 1) for v in obj.values())
    return 0


def find_state_dict(obj: Any, path: str = "checkpoint") -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    """Walk a loaded checkpoint to its state dict; return it and the keys walked."""
    if not isinstance(obj, dict):
        raise CheckpointError("a state dict (a dict of tensors), or a dict that holds one",
                              f"{type(obj).__name__} in {path}",
                              "save the weights with torch.save(model.state_dict(), path)")
    for key in WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, dict) and inner:
            try:
                found, walked = find_state_dict(inner, path)
            except CheckpointError:
                continue
            return found, (key, *walked)
    tensors = _tensor_items(obj)
    nested = {k: v for k, v in obj.items() if isinstance(v, dict) and _count_tensors(v)}
    if nested and len(tensors) <= 2:  # e.g. {'weights': {...}, 'best_acc': tensor(..)}
        key = max(nested, key=lambda k: _count_tensors(nested[k]))
        found, walked = find_state_dict(nested[key], path)
        return found, (str(key), *walked)
    if not tensors:
        keys = ", ".join(map(str, list(obj)[:8]))
        raise CheckpointError("a state dict (a dict of tensors), or a dict that holds one",
                              f"a dict without tensors in {path} (keys: {keys})",
                              "save the weights with torch.save(model.state_dict(), path)")
    return tensors, ()


def strip_wrapper_prefixes(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """Remove ``module.`` / ``_orig_mod.`` when every key carries it (repeatedly); return the prefix removed."""
    removed = ""
    changed = True
    while changed and state_dict:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state_dict):
                state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
                removed += prefix
                changed = True
    return state_dict, removed


def _scalar_metadata(obj: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (int, float, str, bool)):
                out[str(k)] = str(v)
            elif isinstance(v, torch.Tensor) and v.numel() == 1:
                out[str(k)] = str(v.item())
    return out


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read the state dict in ``path`` (.safetensors, .pt/.pth/.th/.bin/.ckpt), safely.

    Raises :class:`CheckpointError` for files that are not checkpoints and :class:`UnsafeCheckpointError`
    for pickles that would run code.
    """
    p = existing_file(path, "a checkpoint file (.safetensors, .pt, .pth, .th)")
    kind = "safetensors" if p.suffix == ".safetensors" else _sniff(p)
    if kind == "unknown" and p.suffix.lower() in _PICKLE_SUFFIXES:
        kind = "torch"
    if kind == "unknown":
        raise CheckpointError("a checkpoint file (.safetensors, or a .pt/.pth/.th written by torch.save)",
                              f"{p}, whose first bytes are neither", "pass the weights file itself")
    if kind == "safetensors":
        tensors, metadata = _read_safetensors(p)
        state_dict, stripped = strip_wrapper_prefixes(tensors)
        if not state_dict:
            raise CheckpointError("a checkpoint with at least one tensor", f"an empty safetensors file: {p}",
                                  "export the weights again")
        return Checkpoint(state_dict, str(p), "safetensors", (), stripped, metadata)
    obj = _read_pickle(p)
    if isinstance(obj, torch.nn.Module):  # cannot happen with weights_only=True, kept for clarity
        obj = obj.state_dict()
    state_dict, walked = find_state_dict(obj, str(p))
    state_dict, stripped = strip_wrapper_prefixes(state_dict)
    state_dict = {k: v.detach().cpu() for k, v in state_dict.items()}
    return Checkpoint(state_dict, str(p), "torch", walked, stripped, _scalar_metadata(obj))


def graft_metadata(ckpt: Checkpoint) -> dict[str, Any]:
    """The JSON metadata graft stores in the safetensors files it writes (empty for other files)."""
    raw = ckpt.metadata.get("graft")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise CheckpointError("graft metadata in JSON", f"unreadable metadata in {ckpt.path}",
                              "the file was modified; write it again with graft.save_model") from None
    return data if isinstance(data, dict) else {}
