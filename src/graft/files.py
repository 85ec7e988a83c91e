"""Writing files so that nothing is ever half-written: the one atomic write, and the one JSON style.

``write_atomic`` writes to a temporary file in the same folder, flushes and fsyncs it, renames it over the
target (``os.replace``: atomic on POSIX and Windows), then fsyncs the folder where the platform allows, so a
crash leaves either the old file or the new one, never a torn one. Every JSON file graft writes goes through
``write_json``: two-space indentation, keys in the order given, a final newline.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

JSON_INDENT = 2


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (text is UTF-8) to ``path`` atomically; the parent folder is created. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)
    return path


def _sync_folder(folder: Path) -> None:
    """fsync a folder so the rename itself is durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def json_text(obj: Any) -> str:
    """``obj`` in graft's JSON style (objects with ``to_dict`` are converted first)."""
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        obj = obj.to_dict()
    return json.dumps(obj, indent=JSON_INDENT) + "\n"


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as JSON to ``path``, atomically, in graft's one style."""
    return write_atomic(path, json_text(obj))
