"""Fingerprints: short digests that name exactly what a result was made from (graft's version, a network's
weights, a file's bytes). Cache keys and run folders record them, so a stale entry or a resumed run with other
weights or data is caught instead of used."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 22


def graft_version() -> str:
    """The installed graft's version ("unknown" in a source tree that is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("graft-ml")
    except PackageNotFoundError:
        return "unknown"


def weights_digest(module) -> str:
    """A digest of every parameter and buffer of the ``torch.nn.Module``: names, dtypes, shapes and bytes."""
    import torch

    h = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\n".encode())
        if t.numel():
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def file_digest(path: str | Path) -> str:
    """A digest of a file's bytes (read in 4 MiB chunks)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()
