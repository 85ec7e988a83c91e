"""How much memory there is, and arrays that live on disk when it would not be enough.

graft keeps a dataset larger than memory on disk and reads it as it goes: a memory-mapped array is indexed, never
copied whole (:mod:`graft.data`), and whatever graft must build from it (a torch ``Dataset`` read into one array,
normalized series) is written to a *spill file*: a memory-mapped temporary ``.npy`` that is unlinked as soon as
it is open, so it disappears with the process whatever way the process ends.

``available_memory`` is the memory this process may still take: the smaller of the machine's ``MemAvailable``
and what its cgroup (v2 ``memory.max`` or v1 ``memory.limit_in_bytes``) leaves, so a container's limit counts;
``$GRAFT_MEMORY`` caps it further.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from pathlib import Path

import numpy as np

SPILL_DIR_ENV = "GRAFT_SPILL_DIR"
MEMORY_ENV = "GRAFT_MEMORY"


def _read_int(path: str | Path) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except (OSError, ValueError):
        return None
    return int(text) if text.isdigit() else None


def _stat(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def _cgroup_room() -> int | None:
    """Bytes the process's cgroup still allows (limit less usage), or None when it sets no limit."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    rooms = []
    for line in lines:
        _, controllers, where = (line.split(":", 2) + ["", ""])[:3]
        where = where.lstrip("/")
        if controllers == "":  # v2
            base = Path("/sys/fs/cgroup") / where
            limit, usage = _read_int(base / "memory.max"), _read_int(base / "memory.current")
            cache = _stat(base / "memory.stat", "inactive_file")
        elif "memory" in controllers.split(","):  # v1
            base = Path("/sys/fs/cgroup/memory") / where
            limit, usage = _read_int(base / "memory.limit_in_bytes"), _read_int(base / "memory.usage_in_bytes")
            cache = _stat(base / "memory.stat", "total_inactive_file")
        else:
            continue
        if limit is not None and limit < 2**60:  # v1 says "no limit" with a huge number, v2 with "max"
            # the working set, as container runtimes count it: usage less the file cache the kernel can drop
            rooms.append(max(0, limit - max(0, (usage or 0) - cache)))
    return min(rooms) if rooms else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def parse_bytes(text: str, what: str = MEMORY_ENV) -> int:
    """'512M', '4G', '1.5GiB', '1000000' -> bytes."""
    from graft.errors import GraftError

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise GraftError(f"{what} as a size: a number of bytes, or one with K, M, G or T", repr(text),
                         f"for example {what}=4G")
    return int(float(m.group(1)) * 1024 ** "bkmgt".index((m.group(2) or "b").lower()))


def available_memory() -> int:
    """Bytes this process can still take without swapping or being killed: the machine's available memory and its
    cgroup's room, whichever is smaller (8 GiB where neither can be read, as on macOS and Windows). ``$GRAFT_MEMORY``
    (for example ``4G``) caps it, for a machine shared with other jobs."""
    found = [v for v in (_meminfo_available(), _cgroup_room()) if v is not None]
    if os.environ.get(MEMORY_ENV):
        found.append(parse_bytes(os.environ[MEMORY_ENV]))
    return min(found) if found else 8 * 2**30


def in_memory_limit() -> int:
    """The largest array graft builds in memory; larger ones are spilled to disk (a quarter of what is available,
    at least 256 MiB)."""
    return max(256 * 2**20, available_memory() // 4)


def bytes_text(nbytes: int) -> str:
    """2.2 GiB, 23 MiB: a size as people read it."""
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.0f} MiB"


def spill_dir() -> Path:
    """Where spill files go: ``$GRAFT_SPILL_DIR`` when set, else the system's temporary folder."""
    return Path(os.environ.get(SPILL_DIR_ENV) or tempfile.gettempdir())


def spill_array(shape: tuple[int, ...], dtype=np.float32) -> np.memmap:
    """A writable memory-mapped array on disk whose file is already unlinked: it is freed when the last
    reference to it goes, and nothing is left behind if the process is killed."""
    from graft.errors import GraftError

    folder = spill_dir()
    need = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    try:
        fd, name = tempfile.mkstemp(prefix="graft-spill-", suffix=".npy", dir=folder)
        os.close(fd)
        try:
            array = np.lib.format.open_memmap(name, mode="w+", dtype=dtype, shape=tuple(shape))
            _reserve(name)
        finally:
            os.unlink(name)
    except OSError as exc:
        raise GraftError(f"room in {folder} for a {bytes_text(need)} spill file (data too large for memory)",
                         f"{type(exc).__name__}: {exc}", f"free space there, or point {SPILL_DIR_ENV} at a disk "
                         "with room") from None
    return array


def _reserve(name: str) -> None:
    """Allocate a sparse file's blocks now: a full disk is then an OSError here, not a SIGBUS on a later write."""
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(name, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system without fallocate: written as it goes
            raise
    finally:
        os.close(fd)


def is_mapped(a: np.ndarray) -> bool:
    """Whether ``a`` (or the array it is a view of) is memory-mapped from a file."""
    import mmap

    while a is not None:
        if isinstance(a, np.memmap):
            return True
        base = a.base
        if isinstance(base, mmap.mmap):
            return True
        a = base if isinstance(base, np.ndarray) else None
    return False
