"""Computing a frozen prefix once: ``partial:K`` then only runs the blocks that train, every epoch.

When the lower blocks are frozen (and BatchNorm in them keeps the source's statistics) and no random
augmentation is applied, their output for a sample is the same in every epoch. :class:`PrefixCache` runs the
prefix once over the training split (eval mode, ``inference_mode``) and keeps the output of the last frozen
block in memory. During training, the frozen blocks are swapped for placeholders: each returns a zero-cost
tensor of its usual output shape (``expand`` of a scalar), except the last one, which returns the cached
outputs of the batch. So the network's own ``forward`` still runs (whatever it does between blocks), but the
frozen convolutions do not. The batches follow the permutation a shuffled ``DataLoader`` with the same
generator would draw, so cached and uncached training see the same batches in the same order.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


class _Placeholder(nn.Module):
    """Stands in for a frozen block: returns a tensor of the block's output shape, or the cached batch."""

    def __init__(self, shape: tuple[int, ...], dtype: torch.dtype, source=None):
        super().__init__()
        self.shape, self.dtype, self.source = shape, dtype, source

    def forward(self, *args, **kwargs):
        if self.source is not None:
            return self.source()
        first = next((a for a in args if isinstance(a, torch.Tensor)), None)
        n, device = (first.shape[0], first.device) if first is not None else (1, None)
        return torch.zeros((), dtype=self.dtype, device=device).expand(n, *self.shape)


def _set(module: nn.Module, name: str, new: nn.Module) -> nn.Module:
    parent_name, _, child = name.rpartition(".")
    parent = module.get_submodule(parent_name) if parent_name else module
    old = getattr(parent, child)
    setattr(parent, child, new)
    return old


def prefix_limit() -> int:
    """How large a frozen-prefix cache may grow: 2 GiB, or a quarter of the memory available when that is less
    (a cgroup's limit counts: :func:`graft.memory.available_memory`)."""
    from graft.memory import available_memory

    return min(2 * 2**30, available_memory() // 4)


class PrefixCache:
    """The outputs of the frozen blocks ``frozen`` (names, in execution order) for every training sample."""

    def __init__(self, module: nn.Module, frozen: list[str], inputs, batch_size: int, prep, device,
                 total: int | None = None, limit: float | None = None):
        """``total`` samples expected and a ``limit`` in bytes: when the first batch shows that the outputs of
        all of them would pass it, the pass stops there (``self.projected`` says how large they would be) and
        nothing is kept, so the cache never takes more memory than the limit."""
        self.module, self.frozen = module, list(frozen)
        self.projected = 0
        self.shapes: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
        outputs = []
        last = module.get_submodule(self.frozen[-1])
        handles = [module.get_submodule(n).register_forward_hook(self._shape_hook(n)) for n in self.frozen]

        def stop(_m, _a, out):
            raise _Done(out)

        handles.append(last.register_forward_hook(stop))
        was_training = module.training
        module.eval()
        filled, store = 0, None  # with ``total``, one tensor filled in place: never the list and its concatenation
        try:
            with torch.inference_mode():
                for x, _ in inputs:
                    try:
                        module(prep.batch(x.to(device)))
                    except _Done as done:
                        out = done.output.detach()
                        if store is None and total:
                            self.projected = out[:1].numel() * out.element_size() * total
                            if limit is not None and self.projected > limit:
                                break
                            store = torch.empty((total, *out.shape[1:]), dtype=out.dtype)  # host memory, whatever the device
                        if store is not None and filled + len(out) <= len(store):
                            store[filled:filled + len(out)] = out
                        else:
                            outputs.append(out.cpu().clone())
                        filled += len(out)
        finally:
            for h in handles:
                h.remove()
            module.train(was_training)
        if store is not None and filled == len(store) and not outputs:
            self.outputs = store
        else:  # no total, or a loader that gave another number of samples than announced
            parts = ([store[:min(filled, len(store))]] if store is not None else []) + outputs
            self.outputs = torch.cat(parts) if parts and filled else torch.zeros(0)
        if limit is not None and self.projected > limit:
            self.outputs = torch.zeros(0)
        elif not self.projected:
            self.projected = self.nbytes()
        outputs = [self.outputs] if len(self.outputs) else []
        self.input_shape = tuple(x.shape[1:]) if outputs else ()
        self.batch: torch.Tensor | None = None

    def _shape_hook(self, name):
        def hook(_m, _a, out):
            if name not in self.shapes and isinstance(out, torch.Tensor):
                self.shapes[name] = (tuple(out.shape[1:]), out.dtype)
        return hook

    def nbytes(self) -> int:
        return self.outputs.numel() * self.outputs.element_size()

    @contextmanager
    def swapped(self):
        """Within: the frozen blocks are placeholders; ``self.batch`` is what the last one returns."""
        originals = {}
        try:
            for name in self.frozen:
                shape, dtype = self.shapes[name]
                source = (lambda: self.batch) if name == self.frozen[-1] else None
                originals[name] = _set(self.module, name, _Placeholder(shape, dtype, source))
            yield self
        finally:
            for name, old in originals.items():
                _set(self.module, name, old)

    def dummy_input(self, n: int) -> torch.Tensor:
        device = self.batch.device if self.batch is not None else None
        return torch.zeros((), device=device).expand(n, *self.input_shape)


class _Done(Exception):
    def __init__(self, output):
        self.output = output
