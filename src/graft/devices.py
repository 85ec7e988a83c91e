"""Where a run's tensors live and in which precision: :class:`Runtime`, resolved once per run and read by every stage.

Devices are a property of the run, not of the code: the workflow resolves ``--device`` and ``--precision`` into a
Runtime (``auto``: CUDA, then MPS, then the CPU; bf16 autocast on a GPU that supports it, fp32 elsewhere), and
every stage that touches tensors (extraction, the cached prefix, training, solved heads, evaluation, prediction)
takes its device and autocast from it. Under ``torchrun`` the Runtime also carries the rank and the world size
(graft.distributed), and each rank takes the GPU of its ``LOCAL_RANK``. What graft writes (checkpoints, models)
is always saved from the CPU, so any run folder loads on a machine without a GPU.

Every refusal says what was asked, what this machine has, and what to pass (:func:`machine_devices`).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass

import torch

from graft.errors import GraftError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def machine_devices() -> str:
    """What this machine offers, in words: ``"the CPU (2 cores); no CUDA device; no MPS"``."""
    parts = [f"the CPU ({os.cpu_count() or 1} cores)"]
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        parts.append(f"{len(names)} CUDA device{'s' if len(names) != 1 else ''} ({', '.join(names)})")
    else:
        built = torch.version.cuda
        parts.append("no CUDA device" + (f" (torch is built for CUDA {built}, but no GPU or driver is visible)"
                                         if built else " (this torch is built without CUDA)"))
    parts.append("MPS" if _mps_available() else "no MPS")
    return "; ".join(parts)


def resolve_device(value: str | torch.device | None = "auto", local_rank: int = 0) -> torch.device:
    """``value`` as a torch device this machine has; ``"auto"`` (or None): CUDA (the ``local_rank``-th GPU under
    torchrun), else MPS, else the CPU. A device the machine lacks or a string torch does not know is a GraftError."""
    if isinstance(value, torch.device):
        value = str(value)
    text = "auto" if value is None else str(value).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise GraftError(f"a device: {DEVICE_CHOICES}", repr(value), "for example --device auto") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise GraftError("a CUDA device, as --device asked", f"{value!r} on a machine with {machine_devices()}",
                             "pass --device cpu (or auto, which takes what the machine has)")
        count = torch.cuda.device_count()
        index = local_rank if device.index is None else device.index
        if index >= count:
            raise GraftError(f"a CUDA device index below {count} (this machine has {count})", repr(value),
                             f"pass --device cuda:0 ... cuda:{count - 1}, or --device cuda")
        return torch.device("cuda", index)
    if device.type == "mps":
        if not _mps_available():
            raise GraftError("an MPS device (Apple silicon), as --device asked",
                             f"{value!r} on a machine with {machine_devices()}", "pass --device cpu or --device auto")
        return torch.device("mps")
    raise GraftError(f"a device graft runs on: {DEVICE_CHOICES}", repr(value), "for example --device auto")


def bf16_supported(device: torch.device) -> bool:
    """Native bfloat16 arithmetic: Ampere (compute capability 8.0) or later on CUDA (``is_bf16_supported`` counts
    emulation on older GPUs, which is slower than fp16), the CPU and MPS."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    return device.type in ("cpu", "mps")


def resolve_precision(value: str | None, device: torch.device) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for ``device``; ``"auto"``: bf16 on a GPU that supports it, else fp32 (on the
    CPU, autocast to bf16 is usually slower than fp32; ask for it with ``bf16``)."""
    text = "auto" if value is None else str(value).strip().lower()
    if text not in PRECISIONS:
        raise GraftError(f"a precision: {', '.join(PRECISIONS)}", repr(value), "for example --precision auto")
    if text == "auto":
        return "bf16" if device.type == "cuda" and bf16_supported(device) else "fp32"
    if text == "fp16" and device.type != "cuda":
        raise GraftError(f"a precision the {device.type.upper()} trains in: fp32 or bf16",
                         f"--precision fp16 on {device} (fp16 training needs a CUDA GPU's gradient scaling)",
                         "pass --precision bf16, or fp32 (auto chooses)")
    if text == "bf16" and not bf16_supported(device):
        raise GraftError(f"a precision {torch.cuda.get_device_name(device)} supports: fp32 or fp16",
                         "--precision bf16 (this GPU has no bfloat16 arithmetic)", "pass --precision fp16, or fp32")
    return text


@dataclass(frozen=True)
class Runtime:
    """Where and how one run computes (see the module docstring). ``device`` is a torch device string; ``rank``,
    ``world_size`` and ``local_rank`` are torchrun's (0, 1, 0 in one process)."""

    device: str = "cpu"
    precision: str = "fp32"
    channels_last: bool = False
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def resolve(cls, device: str | torch.device | None = "auto", precision: str | None = "auto",
                channels_last: bool | None = None) -> Runtime:
        """The runtime of ``device`` and ``precision`` on this machine (and under torchrun, this process's rank).
        ``channels_last`` (default: on CUDA) stores convolution inputs and weights as NHWC, which tensor cores
        run faster; on the CPU it is off unless asked."""
        if isinstance(device, Runtime):
            return device
        from graft.distributed import world

        rank, world_size, local_rank = world()
        if world_size > 1 and device is not None and ":" in str(device):
            raise GraftError("--device cuda (or auto) under torchrun: each rank takes the GPU of its LOCAL_RANK",
                             f"--device {device} for {world_size} processes", "pass --device cuda or --device auto")
        resolved = resolve_device(device, local_rank)
        chosen = resolve_precision(precision, resolved)
        last = resolved.type == "cuda" if channels_last is None else bool(channels_last)
        return cls(str(resolved), chosen, last, rank, world_size, local_rank)

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run folder (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def pin_memory(self) -> bool:
        """Page-locked host batches, copied to the GPU without blocking."""
        return self.torch_device.type == "cuda"

    def autocast(self):
        """The autocast context of this precision (a no-op context in fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.torch_device.type, dtype=_DTYPES[self.precision])

    def scaler(self) -> torch.amp.GradScaler | None:
        """A gradient scaler for fp16 (bf16 and fp32 need none)."""
        return torch.amp.GradScaler(self.torch_device.type) if self.precision == "fp16" else None

    @staticmethod
    def step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
        """``loss.backward()`` and ``optimizer.step()``, through ``scaler`` when there is one (fp16)."""
        if scaler is None:
            loss.backward()
            optimizer.step()
            return
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def to(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` on this device (non-blocking from pinned memory)."""
        return x.to(self.torch_device, non_blocking=self.pin_memory)

    def place(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` moved to this device (and to channels-last when that is on and it has 2-d convolutions)."""
        module.to(self.torch_device)
        if self.channels_last and any(isinstance(m, torch.nn.Conv2d) for m in module.modules()):
            module.to(memory_format=torch.channels_last)
        return module

    def describe(self) -> str:
        """``"cuda:0 (NVIDIA H200), bf16"``, ``"cpu (2 threads), fp32"``, with the ranks under torchrun."""
        device = self.torch_device
        if device.type == "cuda":
            where = f"{device} ({torch.cuda.get_device_name(device)})"
        elif device.type == "cpu":
            where = f"cpu ({torch.get_num_threads()} threads)"
        else:
            where = str(device)
        text = f"{where}, {self.precision}" + (", channels-last" if self.channels_last else "")
        return text + (f", rank {self.rank} of {self.world_size}" if self.distributed else "")

    def to_dict(self) -> dict:
        """What the run folder records (config.json's ``runtime``): the device, its name, precision and ranks."""
        device = self.torch_device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        return {**asdict(self), "device_name": name, "torch": torch.__version__}


CPU = Runtime()


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a device running out of memory (CUDA's OutOfMemoryError, or MPS's RuntimeError)."""
    if isinstance(exc, getattr(torch, "OutOfMemoryError", ())) or isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


__all__ = ["CPU", "PRECISIONS", "Runtime", "bf16_supported", "is_out_of_memory", "machine_devices",
           "resolve_device", "resolve_precision"]
