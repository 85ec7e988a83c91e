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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

JSON_INDENT = 2


def _file_mode() -> int:
    """The mode an ordinary new file gets under the process's umask (0o666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for any writer (safetensors, matplotlib, an exporter) to write to; when the
    block ends without an error the file is fsynced and renamed over ``path``, otherwise it is removed and
    ``path`` is left as it was. The parent folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())  # mkstemp makes it private; what graft writes is an ordinary file
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _sync_folder(path.parent)


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (text is UTF-8) to ``path`` atomically; the parent folder is created. Returns the path."""
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    with replacing(path) as tmp:
        tmp.write_bytes(payload)
    return Path(path)


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
