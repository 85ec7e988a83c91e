"""Data-parallel runs under PyTorch's launcher: ``torchrun --nproc_per_node=N -m graft fit ...``.

torchrun starts N processes and tells each its ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (environment variables);
:func:`world` reads them, :func:`initialize` joins the process group (NCCL on GPUs, gloo on CPUs), and the few
collective steps graft needs are here: sums of counters, an agreed stop, a broadcast, and gathering the shards of a
pass so every rank holds what one process would. Every rank runs the same code; rank 0 alone writes the run folder.

A rank that dies ends the others: torchrun stops the group when one process fails, and a collective that waits
longer than ``GRAFT_DIST_TIMEOUT`` seconds (default 600) raises in the ranks still alive. Either way the run folder
keeps its last whole checkpoint (written atomically by rank 0 at the end of each epoch), and the same torchrun
command with ``--resume`` continues it.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch

from graft.errors import GraftError

TIMEOUT_ENV = "GRAFT_DIST_TIMEOUT"


def _int_env(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise GraftError(f"{name} as an integer (torchrun sets it)", repr(text),
                         "start graft with torchrun, or unset the variable") from None


def world() -> tuple[int, int, int]:
    """(rank, world size, local rank) of this process: torchrun's environment, or (0, 1, 0)."""
    size = _int_env("WORLD_SIZE", 1)
    rank, local = _int_env("RANK", 0), _int_env("LOCAL_RANK", 0)
    if size < 1 or not 0 <= rank < size:
        raise GraftError("RANK in 0..WORLD_SIZE-1", f"RANK={rank}, WORLD_SIZE={size}", "start graft with torchrun")
    return rank, size, local


def local_world_size() -> int:
    """The processes of this launch on this machine (torchrun's ``LOCAL_WORLD_SIZE``; 1 outside it)."""
    return max(1, _int_env("LOCAL_WORLD_SIZE", 1))


def timeout_seconds() -> float:
    text = os.environ.get(TIMEOUT_ENV, "600")
    try:
        value = float(text)
    except ValueError:
        raise GraftError(f"{TIMEOUT_ENV} in seconds", repr(text), f"for example {TIMEOUT_ENV}=600") from None
    if value <= 0:
        raise GraftError(f"{TIMEOUT_ENV} above 0 seconds", repr(text), f"for example {TIMEOUT_ENV}=600")
    return value


def initialize(runtime) -> None:
    """Join the process group of a torchrun launch (``runtime.world_size > 1``); once per process."""
    import torch.distributed as dist

    if not runtime.distributed or dist.is_initialized():
        return
    device = runtime.torch_device
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_seconds()))
    except (RuntimeError, ValueError) as exc:
        raise GraftError(f"the {runtime.world_size} processes of a torchrun launch to meet",
                         f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}",
                         "start every rank with the same torchrun command (--rdzv-endpoint reachable from all "
                         "nodes, the same --nnodes and --nproc-per-node)") from None


def active(runtime) -> bool:
    import torch.distributed as dist

    return runtime.distributed and dist.is_available() and dist.is_initialized()


def peer_stopped(exc: BaseException, what: str) -> GraftError:
    """The GraftError of a collective step that failed because another rank died or timed out."""
    import re

    rank = world()[0]
    reason = re.sub(r"\[[^\]]*\.(cc|cpp):\d+\]\s*", "", str(exc).strip().splitlines()[0])  # its C++ source
    return GraftError(f"every rank of the torchrun launch alive at {what}",
                      f"rank {rank}: another rank stopped ({type(exc).__name__}: {reason[:160]})",
                      "see the first rank that failed in torchrun's output; the run folder keeps its last "
                      "checkpoint: run the same torchrun command with --resume")


PEER_FAILURES = ("connection closed", "connection reset", "remote worker", "nccl", "timed out", "broken pipe")


def is_peer_failure(exc: BaseException) -> bool:
    """Whether ``exc``, raised inside a step that communicates (DDP's gradient all-reduce in ``backward``), is a
    peer that stopped: gloo's and NCCL's errors for a closed connection or a timeout."""
    return isinstance(exc, RuntimeError) and any(p in str(exc).lower() for p in PEER_FAILURES)


def _collective(what: str, call):
    """Run a collective step; a peer that died or timed out becomes one clear GraftError."""
    try:
        return call()
    except (RuntimeError, ValueError) as exc:  # gloo/NCCL: connection reset, timeout
        raise peer_stopped(exc, what) from None


def sum_values(runtime, values: list[float], what: str = "a reduction") -> list[float]:
    """``values`` summed over every rank (itself in one process)."""
    if not active(runtime):
        return list(values)
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=_comm_device(runtime))
    _collective(what, lambda: dist.all_reduce(tensor))
    return tensor.cpu().tolist()


def barrier(runtime, what: str = "a barrier") -> None:
    if active(runtime):
        import torch.distributed as dist

        _collective(what, dist.barrier)


def broadcast_tensors(runtime, tensors, what: str = "a broadcast") -> None:
    """Rank 0's values of ``tensors`` copied into every rank's, in place."""
    if not active(runtime):
        return
    import torch.distributed as dist

    for t in tensors:
        _collective(what, lambda t=t: dist.broadcast(t.data, 0))


def broadcast_object(runtime, obj, what: str = "a broadcast"):
    """Rank 0's ``obj`` (anything picklable that graft made itself: never data from a file)."""
    if not active(runtime):
        return obj
    import torch.distributed as dist

    box = [obj]
    _collective(what, lambda: dist.broadcast_object_list(box, 0))
    return box[0]


def gather_shards(runtime, shard: torch.Tensor, total: int, what: str = "gathering a pass") -> torch.Tensor:
    """The rows of a pass split as ``rows[rank::world]`` (this rank's ``shard``), put back in order on every rank:
    what one process computing all ``total`` rows would hold."""
    if not active(runtime):
        return shard
    import torch.distributed as dist

    size = runtime.world_size
    longest = -(-total // size)
    padded = shard.new_zeros((longest, *shard.shape[1:]))
    padded[:len(shard)] = shard
    parts = [torch.empty_like(padded) for _ in range(size)]
    _collective(what, lambda: dist.all_gather(parts, padded))
    out = shard.new_empty((total, *shard.shape[1:]))
    for rank, part in enumerate(parts):
        count = len(range(rank, total, size))
        out[rank::size] = part[:count]
    return out


def _comm_device(runtime) -> torch.device:
    return runtime.torch_device if runtime.torch_device.type == "cuda" else torch.device("cpu")


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


__all__ = ["barrier", "broadcast_object", "broadcast_tensors", "gather_shards", "initialize", "shutdown",
           "sum_values", "world"]
