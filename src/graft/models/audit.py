"""What a weights file or a run folder holds, read without executing anything in it (``graft audit``).

A safetensors file is a JSON header and raw bytes: the header gives every tensor's name, dtype and shape, and the
metadata. A PyTorch pickle (``torch.save``'s zip archive, or the legacy format) is *scanned*, never loaded:
:mod:`pickletools` walks its opcodes, and every global it would import (``GLOBAL`` / ``STACK_GLOBAL``) is listed
with whether ``torch.load(weights_only=True)`` allows it. A pickle that names anything else would run code when
loaded without ``weights_only``: graft refuses to load it, and the audit says what it would have called.
A run folder is audited file by file: its weights, its checkpoints (and whether their digests match), its JSON.
"""

from __future__ import annotations

import io
import json
import pickletools
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from graft.errors import GraftError
from graft.jsonable import JsonSerializable

__all__ = ["FileAudit", "audit"]

# globals a weights-only unpickler allows (torch's own rebuild functions and storages, plain containers)
SAFE_MODULES = ("torch", "collections", "numpy.core.multiarray", "numpy._core.multiarray", "numpy", "_codecs",
                "builtins")
SAFE_BUILTINS = {"set", "frozenset", "bytearray", "slice", "complex", "bool", "int", "float", "str", "tuple",
                 "list", "dict", "object"}
MAX_LISTED = 40


@dataclass(frozen=True)
class FileAudit(JsonSerializable):
    """What one file holds."""

    path: str
    kind: str  # safetensors, torch-zip, torch-legacy, json, run-folder entry ...
    bytes: int
    tensors: int = 0
    parameters: int = 0
    dtypes: dict = field(default_factory=dict)  # dtype -> count of tensors
    examples: tuple = ()  # a few (name, dtype, shape)
    metadata: dict = field(default_factory=dict)
    globals: tuple = ()  # (module.name, "allowed" | "UNSAFE") the pickle would import
    verdict: str = ""
    problems: tuple = ()

    @property
    def safe(self) -> bool:
        return not self.problems and all(kind == "allowed" for _, kind in self.globals)

    def render(self) -> str:
        lines = [f"{self.path}: {self.kind}, {self.bytes:,} bytes; {self.verdict}"]
        if self.tensors:
            dtypes = ", ".join(f"{n} {d}" for d, n in sorted(self.dtypes.items()))
            lines.append(f"  {self.tensors} tensors, {self.parameters:,} values ({dtypes})")
            lines += [f"    {name}: {dtype} {tuple(shape)}" for name, dtype, shape in self.examples]
            if self.tensors > len(self.examples):
                lines.append(f"    ... {self.tensors - len(self.examples)} more")
        for key, value in self.metadata.items():
            text = str(value)
            lines.append(f"  metadata {key}: {text[:200]}{' ...' if len(text) > 200 else ''}")
        unsafe = [name for name, kind in self.globals if kind != "allowed"]
        if self.globals:
            lines.append(f"  the pickle imports {len(self.globals)} globals"
                         + (f"; {len(unsafe)} beyond what weights_only allows: {', '.join(unsafe[:12])}" if unsafe
                            else ", all allowed by torch.load(weights_only=True)"))
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)


def _allowed(module: str, name: str) -> bool:
    if module == "builtins":
        return name in SAFE_BUILTINS
    if module in ("collections",):
        return name in ("OrderedDict", "defaultdict", "deque", "Counter")
    if module in ("_codecs",):
        return name == "encode"
    if module.startswith(("numpy",)):
        return name in ("_reconstruct", "ndarray", "dtype", "scalar")
    return module == "torch" or module.startswith("torch.")


def _pickle_globals(data: bytes) -> tuple[list[tuple[str, str]], str | None]:
    """The globals a pickle would import, read from its opcodes (nothing is executed); and a problem, if any."""
    found: list[tuple[str, str]] = []
    strings: list[str] = []  # the last string constants pushed: STACK_GLOBAL takes the module and name from them
    try:
        for opcode, arg, _ in pickletools.genops(io.BytesIO(data)):
            if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8", "SHORT_BINSTRING",
                               "BINSTRING", "STRING"):
                strings.append(str(arg))
            elif opcode.name == "GLOBAL":
                module, _, name = str(arg).partition(" ")
                found.append((module, name))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append((strings[-2], strings[-1]))
            elif opcode.name in ("MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT", "BINGET", "LONG_BINGET", "GET"):
                continue
            elif opcode.name == "STOP":
                break
    except Exception as exc:  # noqa: BLE001 - a damaged or truncated pickle: say where the scan stopped
        problem = f"the pickle could not be read to the end ({type(exc).__name__}: {str(exc)[:120]})"
        return _unique(found), problem
    return _unique(found), None


def _unique(found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for module, name in found:
        seen.setdefault(f"{module}.{name}", "allowed" if _allowed(module, name) else "UNSAFE")
    return list(seen.items())


def _audit_safetensors(path: Path, size: int) -> FileAudit:
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > size - 8:
            return FileAudit(str(path), "safetensors", size, verdict="damaged",
                             problems=(f"its header claims {length:,} bytes, more than the file holds",))
        header = json.loads(f.read(length))
    if not isinstance(header, dict):
        raise ValueError(f"a safetensors header is a JSON object, not {type(header).__name__}")
    metadata = header.pop("__metadata__", {}) or {}
    dtypes: dict[str, int] = {}
    values = 0
    problems = []
    end = 0
    for info in header.values():
        dtypes[info["dtype"]] = dtypes.get(info["dtype"], 0) + 1
        count = 1
        for d in info["shape"]:
            count *= d
        values += count
        end = max(end, info["data_offsets"][1])
    if 8 + length + end > size:
        problems.append(f"truncated: the tensors need {8 + length + end:,} bytes, the file has {size:,}")
    examples = tuple((name, info["dtype"], info["shape"]) for name, info in list(header.items())[:8])
    meta = {k: (json.loads(v) if k == "graft" and v.startswith("{") else v) for k, v in metadata.items()}
    if "graft" in meta and isinstance(meta["graft"], dict):  # graft's own: say what it is, not every field
        spec = meta["graft"].get("spec", {})
        meta["graft"] = (f"a graft model: {spec.get('name', '?')}, {len(spec.get('label_names') or [])} classes, "
                         f"plan of {len((meta['graft'].get('plan') or {}).get('steps', []))} steps")
    return FileAudit(str(path), "safetensors", size, len(header), values, dtypes, examples, meta,
                     verdict="damaged" if problems else "tensors and metadata only: nothing in it can run",
                     problems=tuple(problems))


def _audit_pickle(path: Path, size: int) -> FileAudit:
    problems = []
    if zipfile.is_zipfile(path):
        kind = "torch-zip"
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith(".pkl")]
            if not pickles:
                problems.append("a zip archive without a pickle in it: not a torch.save file")
            found, records = [], len(archive.namelist())
            for name in pickles:
                globals_, problem = _pickle_globals(archive.read(name))
                found += globals_
                if problem:
                    problems.append(f"{name}: {problem}")
        extra = {"records": records}
    else:
        kind = "torch-legacy"
        found, problem = _pickle_globals(path.read_bytes())
        if problem:
            problems.append(problem)
        extra = {}
    found = list(dict(found).items())
    unsafe = [name for name, verdict in found if verdict != "allowed"]
    verdict = (f"a pickle that would call {len(unsafe)} function(s) beyond tensors when loaded: graft refuses it"
               if unsafe else "a pickle of tensors and plain containers: torch.load(weights_only=True) reads it")
    return FileAudit(str(path), kind, size, metadata=extra, globals=tuple(found[:MAX_LISTED]), verdict=verdict,
                     problems=tuple(problems))


def audit_file(path: Path) -> FileAudit:
    """One file: safetensors, a torch pickle, JSON, or anything else (said, not opened). Never raises on what the
    file holds: a file that cannot be parsed is reported as damaged, with why."""
    try:
        return _audit_file(path)
    except (OSError, ValueError, KeyError, TypeError, IndexError, struct.error, zipfile.BadZipFile) as exc:
        size = path.stat().st_size if path.is_file() else 0
        return FileAudit(str(path), "unknown", size, verdict="damaged",
                         problems=(f"cannot be parsed ({type(exc).__name__}: {str(exc)[:160]})",))


def _audit_file(path: Path) -> FileAudit:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{" and 0 < struct.unpack("<Q", head[:8])[0] < 100_000_000:
        return _audit_safetensors(path, size)
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return _audit_pickle(path, size)
    if path.suffix in (".json", ".jsonl"):
        try:
            lines = path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]
            for line in lines:
                if line.strip():
                    json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            return FileAudit(str(path), "json", size, verdict="unreadable", problems=(f"not valid JSON ({exc})",))
        return FileAudit(str(path), "json", size, verdict="data only")
    return FileAudit(str(path), "other", size, verdict="not a weights file (left unread)")


def _checkpoint_problems(folder: Path) -> list[str]:
    """The checkpoints of a run folder whose tensor files are missing or do not match their digests."""
    import hashlib

    problems = []
    for state in sorted(folder.glob("*.json")):
        try:
            meta = json.loads(state.read_text())
        except (OSError, ValueError):
            problems.append(f"{state.name}: unreadable")
            continue
        for name, digest in (meta.get("files") or {}).items():
            tensor = folder / name
            if not tensor.is_file():
                problems.append(f"{state.name}: {name} is missing")
                continue
            h = hashlib.blake2b(digest_size=16)
            with open(tensor, "rb") as f:
                while chunk := f.read(1 << 22):
                    h.update(chunk)
            if h.hexdigest() != digest:
                problems.append(f"{state.name}: {name} does not match its digest")
    return problems


def audit(path: str | Path) -> list[FileAudit]:
    """Audit a weights file, or every file of a run folder (its checkpoints' digests checked too); nothing in
    them is executed. See the module docstring."""
    path = Path(path)
    if not path.exists():
        raise GraftError("a weights file or a run folder to audit", f"{path}, which does not exist",
                         "pass a .safetensors/.pt file or a folder graft fit wrote")
    if path.is_file():
        return [audit_file(path)]
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise GraftError("a run folder with files in it", f"{path}, which is empty", "pass the folder graft fit wrote")
    results = [audit_file(p) for p in files]
    for folder in sorted({p.parent for p in files if p.parent.name == "checkpoints"}):
        problems = _checkpoint_problems(folder)
        results.append(FileAudit(str(folder), "checkpoints", 0, verdict="digests match" if not problems else
                                 "damaged", problems=tuple(problems)))
    return results
