"""What the trainer does differently under torchrun: each rank's part of every global batch, and the DDP wrapper.

**Same result as one process.** The global batches are the ones a single process draws (the same seeded
permutation as its shuffled loader), each split between the ranks in order (``numpy.array_split``); a rank's loss
is the *sum* over its part divided by the global batch's size and multiplied by the world size, so DDP's average
of the gradients is exactly the gradient of the global batch's mean loss, also for a last batch that does not
divide evenly. A rank whose part of a short last batch is empty runs the global batch with its loss multiplied
by 0 (every rank must take part in each all-reduce). So ``torchrun --nproc_per_node=2`` reaches the weights one
process reaches with the same ``--batch-size``, within float tolerance, for networks whose normalization does not
depend on the batch. BatchNorm layers that train in batch mode normalize by their rank's part of the batch (what
DDP, timm and Lightning do by default), so there the two differ by that much.

**Phase changes.** DDP's reducer knows only the parameters that required gradients when it was built, so a block
that unfreezes (a new phase, or a step of gradual unfreezing) would train without its gradients synchronized.
The trainer builds a fresh wrapper whenever the trainable set changes (:func:`wrap`); ``find_unused_parameters``
cannot add parameters to a built reducer and pays a traversal of the graph on every step instead.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def global_order(n: int, seed: int) -> torch.Tensor:
    """The permutation a shuffled ``DataLoader`` seeded ``seed`` draws over ``n`` samples (its base seed first)."""
    g = torch.Generator().manual_seed(seed)
    torch.empty((), dtype=torch.int64).random_(generator=g)  # what a DataLoader draws first (its base seed)
    return torch.randperm(n, generator=g)


def rank_batches(order: torch.Tensor, batch_size: int, rank: int, world: int) -> list[tuple[np.ndarray, int, bool]]:
    """This rank's part of each global batch of ``order``: (sample indices, the global batch's size, whether the
    part is a stand-in whose loss counts 0)."""
    out = []
    index = order.numpy()
    for start in range(0, len(index), batch_size):
        whole = index[start:start + batch_size]
        part = np.array_split(whole, world)[rank]
        out.append((whole, len(whole), True) if len(part) == 0 else (part, len(whole), False))
    return out


def wrap(module: nn.Module, runtime) -> nn.Module:
    """``module`` in a DistributedDataParallel wrapper over its parameters that require gradients now."""
    import warnings

    from torch.nn.parallel import DistributedDataParallel

    # a weight with a dimension of 1 (depthwise convolutions) has two valid stride layouts; the reducer warns
    # that its copy takes the other one, which costs nothing measurable here
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    device = runtime.torch_device
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


class RankLoader:
    """This rank's part of every batch a shuffled ``data.loader(split, batch_size, seed=seed)`` gives one process,
    epoch after epoch: its generator is drawn once per epoch, as a DataLoader's is (a base seed, then the order).
    Yields (x, y, loss factor) batches (see :func:`rank_batches`)."""

    def __init__(self, data, split: str, batch_size: int, seed: int, runtime):
        self.data, self.split, self.batch_size, self.runtime = data, split, batch_size, runtime
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.data[self.split]) // self.batch_size)

    def __iter__(self):
        rt = self.runtime
        from torch.utils.data import RandomSampler

        torch.empty((), dtype=torch.int64).random_(generator=self.generator)  # the DataLoader's base seed
        # the sampler itself, run to its end: what it draws after the order (torch draws once more) is drawn too
        order = torch.tensor(list(RandomSampler(range(len(self.data[self.split])), generator=self.generator)))
        parts = rank_batches(order, self.batch_size, rt.rank, rt.world_size)
        loader = self.data.loader(self.split, batches=[index for index, _, _ in parts], pin_memory=rt.pin_memory)
        for (x, y), (_, size, dummy) in zip(loader, parts):
            yield x, y, 0.0 if dummy else rt.world_size / size
