"""The feature cache on disk: one folder per key, written atomically, verified before use, memory-mapped.

A key is a digest of everything that changes the bytes of the features (see :func:`cache_key`). An entry is a
folder ``<root>/<key>/`` with ``meta.json`` (what was computed, from what, and a digest of every file) and
``.npy`` arrays. It is written under a temporary name and renamed into place in one step, so a reader never
sees half an entry; a later reader re-hashes every file against ``meta.json`` and recomputes the entry when
anything differs (a truncated or edited file, a different graft version), rather than using it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from graft.errors import GraftError
from graft.files import json_text, remove_orphans
from graft.fingerprint import file_digest, graft_version

FORMAT = 1  # bump when the layout of an entry changes: older entries then no longer match their key


def default_root() -> Path:
    """``$GRAFT_CACHE/features``, else ``$XDG_CACHE_HOME/graft/features``, else ``~/.cache/graft/features``."""
    if os.environ.get("GRAFT_CACHE"):
        return Path(os.environ["GRAFT_CACHE"]) / "features"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "graft" / "features"


def cache_key(material: dict) -> str:
    """The key of an entry: a digest of ``material`` (JSON) plus the entry format and graft's version."""
    payload = json.dumps({**material, "format": FORMAT, "graft": graft_version()}, sort_keys=True, default=str)
    return hashlib.blake2b(payload.encode(), digest_size=20).hexdigest()


class EntryWriter:
    """A cache entry being written: arrays go into a temporary folder next to the final one.

    ``commit(meta)`` records each file's size and digest in ``meta.json`` and renames the folder into place;
    leaving the ``with`` block without committing (an error, Ctrl-C) removes the temporary folder.
    """

    def __init__(self, root: Path, key: str):
        self.root, self.key = Path(root), key
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            remove_orphans(self.root)  # what killed writers left: their pid is in the name
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{key}.{os.getpid()}.", dir=self.root))
        except OSError as exc:
            raise GraftError("a writable folder for the feature cache", f"{self.root} ({exc.strerror})",
                             "pass cache_dir= a folder you can write to (or set GRAFT_CACHE)") from None
        self.final = self.root / key

    def __enter__(self) -> EntryWriter:
        return self

    def __exit__(self, *exc) -> None:
        if self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)

    def array(self, name: str, shape: tuple[int, ...], dtype=np.float32) -> np.memmap:
        """A new ``.npy`` file in the entry, memory-mapped for writing row by row (bounded memory)."""
        return np.lib.format.open_memmap(self.tmp / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)

    def save(self, name: str, array: np.ndarray) -> None:
        np.save(self.tmp / f"{name}.npy", np.asarray(array))

    def commit(self, meta: dict) -> Path:
        files = sorted(p for p in self.tmp.iterdir() if p.is_file() and p.name != "meta.json")
        meta = {**meta, "key": self.key, "format": FORMAT, "graft": graft_version(),
                "files": {p.name: {"bytes": p.stat().st_size, "blake2b": file_digest(p)} for p in files}}
        with open(self.tmp / "meta.json", "w") as f:  # inside the entry's folder, which is renamed as a whole
            f.write(json_text(meta))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.replace(self.tmp, self.final)
        except OSError:  # another process wrote the same entry first: keep theirs (same key, same bytes)
            shutil.rmtree(self.tmp, ignore_errors=True)
        return self.final


class EntryLock:
    """Held while one process computes entry ``key``: a second process that wants the same entry waits for it
    (``waited`` says it did) and then reads what the first wrote, instead of computing it again. Where the
    platform has no ``fcntl`` (Windows), nothing is held and both compute (each entry is still written whole)."""

    def __init__(self, root: Path, key: str):
        self.handle, self.waited = None, False
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return
        try:
            Path(root).mkdir(parents=True, exist_ok=True)
            self.handle = open(Path(root) / f".{key}.lock", "a+")
        except OSError:  # a read-only cache: EntryWriter says so
            return
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.waited = True
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)  # another process computes it: wait for it

    def release(self) -> None:
        if self.handle is not None:
            import fcntl

            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


def read_entry(root: Path, key: str) -> tuple[dict | None, str | None]:
    """The entry's meta when it is complete and every file matches its digest; else (None, why)."""
    entry = Path(root) / key
    if not entry.is_dir():
        return None, None
    try:
        meta = json.loads((entry / "meta.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return None, f"meta.json unreadable ({type(exc).__name__})"
    if meta.get("key") != key or meta.get("format") != FORMAT or meta.get("graft") != graft_version():
        return None, "written for another key, format or graft version"
    for name, info in meta.get("files", {}).items():
        path = entry / name
        if not path.is_file():
            return None, f"{name} is missing"
        if path.stat().st_size != info["bytes"]:
            return None, f"{name} has {path.stat().st_size} bytes, {info['bytes']} were written"
        if file_digest(path) != info["blake2b"]:
            return None, f"{name} does not match its digest (changed or corrupted)"
    return meta, None


def remove_entry(root: Path, key: str) -> None:
    shutil.rmtree(Path(root) / key, ignore_errors=True)


def clear(root: str | Path | None = None, keys: Iterable[str] | None = None) -> int:
    """Remove cache entries (all of them, or ``keys``); returns how many were removed."""
    root = Path(root) if root is not None else default_root()
    if not root.is_dir():
        return 0
    targets = [root / k for k in keys] if keys is not None else [p for p in root.iterdir() if p.is_dir()]
    removed = 0
    for path in targets:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed
