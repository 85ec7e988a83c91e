"""Export a trained network to ONNX or TorchScript, and prove the file computes what the network computes.

:func:`export_model` writes the file to a temporary name in the target folder, loads it back with the
runtime that will serve it (onnxruntime for ONNX, ``torch.jit.load`` for TorchScript), compares its outputs
with the network's on the example input and on a second random input with a different batch size, and
only then renames it to ``path``. A file that cannot be written or does not reproduce the network's outputs
is removed: nothing half-written or wrong is ever left at ``path``.

ONNX is written by the ``torch.export``-based exporter (``torch.onnx.export(..., dynamo=True)``, the
default and recommended exporter since PyTorch 2.9; it needs ``onnxscript``), with the batch dimension
marked dynamic. The legacy TorchScript-based exporter (``dynamo=False``) still runs in PyTorch 2.15 but
warns that it will be removed, and it silently freezes Python branches on tensor values into whichever
branch the example took; ``torch.export`` refuses such code with an error that points at the line, which
graft reports. Timings on 2 CPU cores (tiny conv nets / timm mobilenetv2_100): new exporter 0.5-2 s /
~7 s, legacy 0.1 s / ~3 s; both reproduce the outputs to ~1e-7 / ~1e-5.

:func:`load_exported` loads either format as a callable: tensor or array in, numpy array out.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import re
import time
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from graft.errors import GraftError, ShapeError
from graft.files import replacing
from graft.jsonable import JsonSerializable
from graft.validation import existing_file

FORMATS = ("onnx", "torchscript")
SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".pth": "torchscript", ".ts": "torchscript",
            ".torchscript": "torchscript", ".jit": "torchscript"}
INSTALL = 'pip install "graft-ml[export]"'
META_FILE = "graft_export.json"
SECOND_INPUT_SEED = 0


class ExportError(GraftError):
    """A network that cannot be exported, or whose exported file does not reproduce its outputs."""


@dataclass(frozen=True)
class ExportReport(JsonSerializable):
    """What :func:`export_model` wrote and how closely the file reproduces the network.

    Attributes
    ----------
    path: the exported file.
    format: ``onnx`` or ``torchscript``.
    input_shape: the example input's shape (the batch dimension is dynamic unless a note says otherwise).
    max_abs_diff: the largest absolute difference between the file's outputs and the network's, over every
        input compared (None when not verified).
    verified: whether the outputs were compared (and matched within ``atol``/``rtol``).
    opset: the ONNX opset of the file (None for TorchScript).
    seconds: time spent exporting and verifying.
    notes: what else the user should know (batch sizes checked, exporter warnings).
    """

    path: str
    format: str
    input_shape: tuple[int, ...]
    max_abs_diff: float | None
    verified: bool
    opset: int | None
    seconds: float
    notes: tuple[str, ...] = ()

    def render(self) -> str:
        check = (f"verified, max |difference| {self.max_abs_diff:.2e}" if self.verified else "not verified")
        opset = f", opset {self.opset}" if self.opset is not None else ""
        lines = [f"exported {self.format}{opset} to {self.path} (input {tuple(self.input_shape)}): {check}, "
                 f"{self.seconds:.1f} s"]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


class ExportedModel:
    """An exported network loaded for inference: ``model(x)`` takes a tensor or array, returns a numpy array."""

    def __init__(self, path: Path, format: str, run: Callable[[np.ndarray], np.ndarray], input_dtype: np.dtype | None,
                 input_shape: tuple[int | str | None, ...] | None):
        self.path, self.format, self._run = path, format, run
        self.input_dtype, self.input_shape = input_dtype, input_shape

    def __call__(self, x: Any) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        arr = np.asarray(x)
        if self.input_dtype is not None and arr.dtype != self.input_dtype:
            if not (np.issubdtype(arr.dtype, np.number) and np.issubdtype(self.input_dtype, np.number)):
                raise GraftError(f"an input of dtype {self.input_dtype}", str(arr.dtype), "pass a numeric array")
            arr = arr.astype(self.input_dtype)
        if self.input_shape is not None:
            fixed = [(i, d) for i, d in enumerate(self.input_shape) if isinstance(d, int)]
            if arr.ndim != len(self.input_shape) or any(arr.shape[i] != d for i, d in fixed):
                want = tuple(d if isinstance(d, int) else "N" for d in self.input_shape)
                raise ShapeError(f"an input of shape {want} for {self.path.name}", f"shape {arr.shape}",
                                 "pass a batch shaped like the example the network was exported with")
        try:
            return self._run(np.ascontiguousarray(arr))
        except Exception as exc:  # the runtimes raise many types; say which file and why, in one line
            raise ExportError(f"{self.path.name} to run on an input of shape {arr.shape}", _one_line(exc),
                              "pass a batch shaped like the example the network was exported with") from None

    def __repr__(self) -> str:
        return f"ExportedModel({str(self.path)!r}, format={self.format!r})"


def export_model(module: nn.Module, example_input: Any, path: str | Path, format: str = "onnx", *,
                 atol: float = 1e-4, rtol: float = 1e-3, check_inputs: Sequence[Any] = (),
                 verify: bool = True) -> ExportReport:
    """Export ``module`` to ``path`` as ONNX or TorchScript and check that the file reproduces its outputs.

    ``example_input`` is one batch (N, ...) the network accepts. The file is compared with the network (in
    eval mode) on that batch, on a standard-normal batch of size N + 1 (of size N when the network only
    takes N), and on every batch of ``check_inputs`` (e.g. real data, to exercise data-dependent paths);
    outputs must agree within ``|file - net| <= atol + rtol * |net|``. ``verify=False`` skips the check.

    Raises :class:`ExportError` (a :class:`GraftError`) when the network cannot be exported or the file's
    outputs differ; nothing is left at ``path`` then (an existing file there is kept unchanged).
    """
    start = time.perf_counter()
    if format not in FORMATS:
        raise GraftError(f"format in {FORMATS}", repr(format), "pass format='onnx' or format='torchscript'")
    if not isinstance(module, nn.Module):
        raise GraftError("a torch.nn.Module to export", type(module).__name__, "pass the network (backbone.module)")
    for name, value in (("atol", atol), ("rtol", rtol)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise GraftError(f"{name} >= 0", repr(value), f"pass for example {name}=1e-4")
    path = Path(path).expanduser()
    suffix_format = SUFFIXES.get(path.suffix.lower())
    if suffix_format is not None and suffix_format != format:
        raise GraftError(f"a path whose suffix matches format={format!r}", f"{path.name} (a {suffix_format} suffix)",
                         f"pass format={suffix_format!r}, or name the file {path.with_suffix(_suffix(format)).name}")
    if path.is_dir():
        raise GraftError("a file path to export to", f"a folder: {path}", f"pass {path / ('model' + _suffix(format))}")
    if format == "onnx":
        _require_onnx()
    example = _as_tensor(example_input, "example_input")
    checks = [_as_tensor(c, f"check_inputs[{i}]") for i, c in enumerate(check_inputs)]
    notes: list[str] = []

    if any(t.device.type != "cpu" for t in (*module.parameters(), *module.buffers())):
        module = copy.deepcopy(module).cpu()
        notes.append("exported from a CPU copy of the network")
    was_training = module.training
    module.eval()
    try:
        with replacing(path) as tmp, torch.no_grad():  # a verified file, or none: never half of one
            try:
                # (input, the network's output); outputs of check_inputs are computed when verifying
                cases = [(example, _forward(module, example, "the example input"))]
                if verify:
                    cases += [_second_input(module, example, notes), *[(c, None) for c in checks]]
                if format == "onnx":
                    opset = _export_onnx(module, example, tmp, notes)
                else:
                    opset = _export_torchscript(module, example, tmp, notes)
                max_diff = None
                if verify:
                    max_diff = _verify(module, tmp, format, cases, atol, rtol, notes)
                else:
                    notes.append("not verified (verify=False): the file was not run")
            finally:  # an exporter's external-data file beside the temporary one: not part of what is kept
                Path(f"{tmp}.data").unlink(missing_ok=True)
    finally:
        module.train(was_training)
    return ExportReport(path=str(path), format=format, input_shape=tuple(int(s) for s in example.shape),
                        max_abs_diff=max_diff, verified=verify, opset=opset,
                        seconds=round(time.perf_counter() - start, 3), notes=tuple(dict.fromkeys(notes)))


def load_exported(path: str | Path) -> ExportedModel:
    """Load an ONNX or TorchScript file (told apart by content) as a callable: tensor/array in, numpy out.

    ONNX files run on onnxruntime's CPU provider; TorchScript files on torch, on the CPU, in inference mode.
    """
    path = existing_file(path, "an exported network (.onnx or TorchScript .pt)")
    if zipfile.is_zipfile(path):
        return _load_torchscript(path)
    return _load_onnx(path)


# -- exporting -----------------------------------------------------------------------------------------

def _export_onnx(module: nn.Module, example: torch.Tensor, tmp: Path, notes: list[str]) -> int | None:
    """Write ``tmp`` with torch.export's ONNX exporter, batch dimension dynamic; return the file's opset."""
    batch = torch.export.Dim("batch", min=1)
    chatter = io.StringIO()
    try:
        with _quiet_torch(), contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            torch.onnx.export(module, (example,), str(tmp), dynamo=True, input_names=["input"],
                              output_names=["output"], dynamic_shapes=({0: batch},), external_data=False,
                              verbose=False)
    except Exception as exc:  # the exporter raises many types; report its reason in one line
        reason = _one_line(exc)
        if "data-dependent" in reason or "GuardOnDataDependent" in reason:
            reason, fix = (f"forward branches on a tensor's value, which one exported graph cannot hold ({reason})",
                           "compute both branches and pick with torch.where(condition, a, b), or export with "
                           "format='torchscript' if the branch is always the same at inference")
        elif "No ONNX function" in reason:
            reason, fix = (f"an operation that has no ONNX translation ({reason})",
                           "replace that operation in forward with a supported one, or export with "
                           "format='torchscript'")
        else:
            fix = "see https://pytorch.org/docs/stable/generated/exportdb/index.html for what torch.export supports"
        raise ExportError("a network that torch.onnx.export (torch.export) can convert", reason, fix) from None
    if not tmp.exists() or tmp.stat().st_size == 0:
        raise ExportError("torch.onnx.export to write an ONNX file", "no file was written",
                          "check the folder is writable and has space")
    dims, opset = _onnx_info(tmp)
    if dims and not isinstance(dims[0], str):
        notes.append(f"the ONNX file has a fixed batch size of {dims[0]} (the network's code fixes it)")
    return opset


def _export_torchscript(module: nn.Module, example: torch.Tensor, tmp: Path, notes: list[str]) -> None:
    """Trace and save ``tmp`` (with the input's dtype and shape as an extra file); tracer warnings go to notes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            traced = torch.jit.trace(module, (example,), check_trace=False)
            meta = {"input_dtype": str(example.dtype).removeprefix("torch."),
                    "input_shape": ["N", *[int(s) for s in example.shape[1:]]]}
            torch.jit.save(traced, str(tmp), _extra_files={META_FILE: json.dumps(meta)})
        except Exception as exc:  # tracing and saving raise RuntimeError and others; keep the reason only
            raise ExportError("a network that torch.jit.trace can record and save", _one_line(exc),
                              "remove Python function calls (custom autograd Functions, numpy) from forward, "
                              "or use format='onnx'") from None
    for w in caught:
        if issubclass(w.category, torch.jit.TracerWarning):
            notes.append(f"tracer: {_first_line(str(w.message)).split('. ')[0]}")
        elif issubclass(w.category, (FutureWarning, DeprecationWarning)) and "jit" in str(w.message):
            notes.append("PyTorch deprecates TorchScript (torch.jit); ONNX is the format that will last")


@contextlib.contextmanager
def _quiet_torch():
    """Silence torch's loggers (torch.export dumps graphs and guards there) while exporting."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


# -- verifying -----------------------------------------------------------------------------------------

def _verify(module: nn.Module, tmp: Path, format: str, cases: list[tuple[torch.Tensor, torch.Tensor | None]],
            atol: float, rtol: float, notes: list[str]) -> float:
    exported = _load_onnx(tmp) if format == "onnx" else _load_torchscript(tmp)
    max_diff = 0.0
    for i, (x, out) in enumerate(cases):
        what = "the example input" if i == 0 else f"a batch of shape {tuple(x.shape)}"
        want = (out if out is not None else _forward(module, x, what)).float().numpy()
        try:
            got = exported._run(np.ascontiguousarray(x.numpy()))
        except Exception as exc:  # any runtime failure means the file is not usable
            fixed = i > 0 and x.shape[0] != cases[0][0].shape[0]
            raise ExportError(f"the exported {format} file to run on {what} as the network does",
                              _one_line(exc),
                              "the network's code fixes the batch size during export (e.g. a reshape to a "
                              "constant); use x.shape[0] or flatten(1)" if fixed else
                              "check that the network runs on this input") from None
        tracer = [n for n in notes if n.startswith("tracer:")]
        branch_hint = (f"the {format} file computes something else on this input ({tracer[0]}); make forward free "
                       "of Python branches on tensor values and of numpy calls (use torch ops, torch.where)"
                       if tracer else None)
        if got.shape != want.shape:
            raise ExportError(f"the exported {format} file's output to have the network's shape {want.shape} on "
                              f"{what}", f"shape {got.shape}; the file was not kept",
                              branch_hint or "check forward for sizes computed in Python from the example")
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        worst = float(np.nanmax(diff)) if diff.size and not np.isnan(diff).all() else 0.0
        max_diff = max(max_diff, worst)
        ok = np.isclose(got, want, atol=atol, rtol=rtol, equal_nan=True)
        if not ok.all():
            hint = branch_hint or (f"raise atol/rtol if a difference of {worst:.3g} is acceptable; else check "
                                   "forward for branches on tensor values or numpy calls")
            raise ExportError(f"the exported {format} file to reproduce the network's outputs within atol={atol:g}, "
                              f"rtol={rtol:g}",
                              f"a max |difference| of {worst:.3g} on {what} ({int((~ok).sum())} of {ok.size} values "
                              "out of tolerance); the file was not kept", hint)
    return max_diff


def _second_input(module: nn.Module, example: torch.Tensor, notes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """A standard-normal batch of size N + 1 (N when the network only takes N), seeded, and the network's output."""
    gen = torch.Generator().manual_seed(SECOND_INPUT_SEED)
    n = example.shape[0]

    def random(batch: int) -> torch.Tensor:
        shape = (batch, *example.shape[1:])
        if example.dtype.is_floating_point:
            return torch.randn(shape, generator=gen).to(example.dtype)
        low, high = int(example.min()), int(example.max()) + 1
        return torch.randint(low, high, shape, generator=gen).to(example.dtype)

    bigger = random(n + 1)
    try:
        return bigger, _forward(module, bigger, f"a batch of {n + 1}")
    except GraftError:  # the network itself refuses batch N + 1: check at N only
        notes.append(f"the network only takes batches of {n}: the file was checked at that size")
        same = random(n)
        return same, _forward(module, same, f"a batch of {n}")


def _forward(module: nn.Module, x: torch.Tensor, what: str) -> torch.Tensor:
    try:
        out = module(x)
    except Exception as exc:  # the user's network failing on its own example: say so in one line
        raise GraftError(f"a network that runs on {what} (shape {tuple(x.shape)})", _one_line(exc),
                         "pass an example batch the network accepts") from None
    if not isinstance(out, torch.Tensor):
        raise GraftError("a network whose forward returns one tensor", type(out).__name__,
                         "wrap it in a module that returns the logits tensor only")
    return out.detach().cpu()


# -- loading -------------------------------------------------------------------------------------------

def _load_onnx(path: Path) -> ExportedModel:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise GraftError("onnxruntime to run ONNX files", f"it is not installed ({exc})", INSTALL) from None
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's errors are its own types
        raise GraftError("an ONNX file onnxruntime can load", f"{path.name}: {_one_line(exc)}",
                         "export the network again with graft.training.export.export_model") from None
    first = session.get_inputs()[0]
    dtype = _DTYPES.get(first.type.removeprefix("tensor(").removesuffix(")"))
    shape = tuple(d if isinstance(d, int) else "N" for d in first.shape)

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {first.name: x})[0])

    return ExportedModel(path, "onnx", run, dtype, shape)


def _load_torchscript(path: Path) -> ExportedModel:
    extra = {META_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scripted = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:  # a zip that is not TorchScript (e.g. a torch.save checkpoint)
        raise GraftError("a TorchScript file (torch.jit.save)", f"{path.name}: {_one_line(exc)}",
                         "load plain checkpoints with graft's checkpoint readers, or export with export_model") from None
    scripted.eval()
    meta = json.loads(extra[META_FILE]) if extra[META_FILE] else {}  # absent from files graft did not write
    dtype = _DTYPES.get(meta.get("input_dtype"))
    shape = tuple(meta["input_shape"]) if "input_shape" in meta else None

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = scripted(torch.from_numpy(x))
        return out.detach().cpu().numpy()

    return ExportedModel(path, "torchscript", run, dtype, shape)


# torch's and onnxruntime's names of input dtypes -> numpy ("float" and "double" are ONNX's)
_DTYPES = {name: np.dtype(kind) for kind, names in {"float32": ("float32", "float"), "float64": ("float64", "double"),
           "float16": ("float16",), "int64": ("int64",), "int32": ("int32",)}.items() for name in names}


# -- helpers -------------------------------------------------------------------------------------------

def _require_onnx() -> None:
    missing = []
    for name in ("onnx", "onnxruntime", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise GraftError("onnx, onnxruntime and onnxscript to export to ONNX", f"{', '.join(missing)} not installed",
                         f"{INSTALL}, or export with format='torchscript'")


def _onnx_info(path: Path) -> tuple[list[int | str | None], int | None]:
    """The first input's dimensions (ints, or names for dynamic ones) and the default-domain opset."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    dims = model.graph.input[0].type.tensor_type.shape.dim if model.graph.input else []
    shape = [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else None)
             for d in dims]
    return shape, next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _as_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise GraftError(f"{name} as a torch tensor or numpy array (one batch)", type(value).__name__,
                         "pass for example torch.randn(2, 3, 224, 224)")
    if value.ndim < 1 or value.shape[0] < 1:
        raise ShapeError(f"{name} as a batch (N, ...) with N >= 1", f"shape {tuple(value.shape)}",
                         "add a batch dimension: x.unsqueeze(0)")
    return value.detach().cpu()


def _suffix(format: str) -> str:
    return ".onnx" if format == "onnx" else ".pt"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_USER_CALL = re.compile(r'The following call raised this error:\s*\n\s*File "([^"]+)", line (\d+), in (\w+)\s*\n\s*(.+)')


def _first_line(text: str) -> str:
    lines = [s.strip() for s in _ANSI.sub("", text).splitlines() if s.strip()]
    return lines[0][:300] if lines else ""


def _one_line(exc: BaseException) -> str:
    """The innermost cause's first line (exporters wrap the real reason several times), plus the user's line."""
    chain, seen = [exc], {id(exc)}
    while (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None and id(nxt) not in seen:
        chain.append(nxt)
        seen.add(id(nxt))
    reason = next((f"{type(e).__name__}: {_first_line(str(e))}" for e in reversed(chain) if _first_line(str(e))),
                  type(exc).__name__)
    for e in chain:
        match = _USER_CALL.search(_ANSI.sub("", str(e)))
        if match:
            file, line, func, code = match.groups()
            reason += f" (at {Path(file).name}:{line} in {func}: {code.strip()})"
            break
    return reason
