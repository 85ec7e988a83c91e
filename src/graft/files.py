"""Writing files so that nothing is ever half-written: the one atomic write, and the one JSON style.

``write_atomic`` writes to a temporary file in the same folder, flushes and fsyncs it, renames it over the
target (``os.replace``: atomic on POSIX and Windows), then fsyncs the folder where the platform allows, so a
crash leaves either the old file or the new one, never a torn one. A temporary name carries the writer's pid, so
what a killed writer left behind is recognised and removed later (:func:`remove_orphans`). Every JSON file graft
writes goes through ``write_json``: two-space indentation, keys in the order given, a final newline.

``folder_lock`` keeps two graft processes out of one run folder: the second is told which process holds it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from graft.errors import GraftError

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
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())  # mkstemp makes it private; what graft writes is an ordinary file
        os.replace(tmp, path)
    except Exception as exc:
        if isinstance(exc, OSError) or type(exc).__name__ == "SafetensorError":  # a full disk, a quota, no access
            raise _write_error(path, exc) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)
    _sync_folder(path.parent)


def _write_error(path: Path, exc: Exception) -> GraftError:
    """A failed write as one message: a full disk (ENOSPC, a file-size limit, a quota) or a folder not writable."""
    reason = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[0][:200] or type(exc).__name__
    return GraftError(f"room to write {path.name} in {path.parent}", f"{type(exc).__name__}: {reason}",
                      f"free some disk space (or write elsewhere); {path.name} was not written, and what was "
                      "there before is as it was")


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


# a temporary file or folder graft writes: ".<name>.<pid>.<random>[.tmp]"
_TEMPORARY = re.compile(r"^\..+\.(\d+)\.[A-Za-z0-9_]+(\.tmp)?$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # it exists (another user's), or this platform cannot tell: keep its files
        return True
    return True


def remove_orphans(folder: str | Path) -> list[str]:
    """Remove the temporary files and folders that killed graft processes left in ``folder`` (their pid names a
    process that is gone); the names removed."""
    folder = Path(folder)
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match is None or _alive(int(match.group(1))):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry.name)
    return removed


LOCK_NAME = ".graft.lock"
_held: dict[Path, list] = {}  # this process's locks: folder -> [open file, depth] (a lock is re-entrant)


@contextmanager
def folder_lock(folder: str | Path, what: str = "run folder") -> Iterator[Path]:
    """Hold ``folder`` (created) for this process while the block runs; another process that asks for it gets a
    GraftError naming the pid and command that hold it. Re-entrant within a process. Where the platform has no
    ``fcntl`` (Windows), nothing is locked."""
    folder = Path(folder)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file of that name, no permission, a read-only disk
        raise GraftError(f"a {what} graft can create or write", f"{folder} ({type(exc).__name__}: "
                         f"{exc.strerror or exc})", "pass another --out (a folder you can write to)") from None
    key = folder.resolve()
    if key in _held:
        _held[key][1] += 1
        try:
            yield folder
        finally:
            _held[key][1] -= 1
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield folder
        return
    path = folder / LOCK_NAME
    handle = open(path, "a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise GraftError(f"a {what} that no other graft process is using", f"{folder}, in use by {holder}",
                         "wait for that process to finish (or stop it), or pass another --out") from None
    import sys

    command = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv[:4]))[:120]
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()} ({command or 'python'}, since {time.strftime('%H:%M:%S')})\n")
    handle.flush()
    _held[key] = [handle, 1]
    try:
        yield folder
    finally:
        _held.pop(key)
        handle.seek(0)
        handle.truncate()
        if created and [p.name for p in folder.iterdir()] == [LOCK_NAME]:  # a refused command leaves nothing
            path.unlink(missing_ok=True)
            folder.rmdir()
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()
