"""The trainer's passes without gradients: evaluation, the features a solved head is fit on, and AdaBN.

A mixin of :class:`graft.training.engine.Trainer` (it uses the trainer's module, data, runtime and notes). Under
torchrun each rank runs its shard of a split (``rank::world``) and the results are reduced or gathered, so every
rank holds what one process would (graft.distributed); a pass that runs out of device memory halves its batch.
"""

from __future__ import annotations

import time

import torch
from torch import nn

import graft.distributed as distributed
from graft.devices import is_out_of_memory
from graft.errors import GraftError
from graft.progress import track
from graft.strategy.spec import Phase
from graft.surgery.plan import run_size


class Passes:
    """Evaluation and the other passes of the Trainer that compute no gradients (see the module docstring)."""

    def _shard(self, split: str) -> range | None:
        """This rank's samples of ``split`` under torchrun (``rank::world``); None in one process."""
        if not self.runtime.distributed:
            return None
        return range(self.runtime.rank, len(self.data[split]), self.runtime.world_size)

    def _head(self) -> nn.Module | None:
        try:
            return self.module.get_submodule(self.backbone.spec.head.name)
        except AttributeError:
            return None

    @torch.no_grad()
    def _head_inputs(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """What the head receives for every sample of ``split`` (one pass, eval mode), and the labels."""
        head, seen = self._head(), []
        handle = head.register_forward_hook(lambda _m, args, _out: seen.append(args[0].detach().flatten(1).float()))
        was_training, labels = self.module.training, []
        self.module.eval()
        rows = self._shard(split)
        try:
            loader = self.data.loader(split, self._inference_batch(split), shuffle=False, rows=rows,
                                      pin_memory=self.runtime.pin_memory)
            with torch.inference_mode(), self.runtime.autocast():
                for x, y in track(loader, "features for the linear probe", total=len(loader), min_items=20):
                    self.module(self.prep.batch(self.runtime.to(x)))
                    labels.append(y)
        finally:
            handle.remove()
            self.module.train(was_training)
        x, y = torch.cat(seen).clone(), torch.cat(labels).to(self.device)
        if rows is not None:  # each rank its shard: every rank gets all of them, in order, as one process would
            total = len(self.data[split])
            x = distributed.gather_shards(self.runtime, x, total, "the linear probe's features")
            y = distributed.gather_shards(self.runtime, y, total, "the linear probe's features")
        return x, y

    def _solve_head(self, epoch: int, phase: Phase) -> dict:
        """A solved phase (linear, lp-ft's first): the Linear head fit to convergence on the frozen body's
        features (:func:`graft.training.solve.solve_linear_head`; its strength chosen on ``val``, never on test)."""
        from graft.training.solve import solve_linear_head

        t0 = time.perf_counter()
        head = self._head()
        adapted = self._adapt_batchnorm() if phase.adapt_batchnorm and self.strategy.batchnorm == "frozen" else 0
        if adapted:  # the same statistics on every rank (each ran the whole pass; rank 0's are the ones saved)
            distributed.broadcast_tensors(self.runtime, list(self.module.buffers()), "the adapted BatchNorm")
        x, y = self._head_inputs("train")
        x_val = y_val = None
        if self.eval_split == "val":
            x_val, y_val = self._head_inputs("val")
        solved = solve_linear_head(x, y, head.weight.detach(), head.bias.detach() if head.bias is not None else None,
                                   x_val=x_val, y_val=y_val, label_smoothing=self.strategy.label_smoothing)
        with torch.no_grad():
            head.weight.copy_(solved.weight.to(head.weight.device))
            if head.bias is not None:
                head.bias.copy_(solved.bias.to(head.bias.device))
        distributed.broadcast_tensors(self.runtime, list(head.parameters()), "the solved head")  # one head for all
        return {"epoch": epoch + 1, "phase": phase.name, "trainable_groups": len(self.trainable),
                "loss": solved.train_loss, "train_accuracy": solved.train_accuracy,
                "lr": {str(g["graft_group"]): g["lr"] for g in self.optimizer.param_groups},
                "seconds": round(time.perf_counter() - t0, 3), "cached_prefix": False,
                "lbfgs_iterations": solved.iterations, "head_c": solved.c, "batchnorm_adapted": adapted}

    @torch.no_grad()
    def _adapt_batchnorm(self) -> int:
        """AdaBN (Li et al., 2016): replace the source statistics of every BatchNorm that will train in batch mode
        (not the folded ones) by their average over one pass of the training data in the trainer's batches.
        Without it, lp-ft solves its head on features normalized by the source's statistics, and its first
        fine-tuning step, which normalizes by batch statistics, hands that head different features: a loss spike
        that can undo the solve. Returns the number of layers re-estimated."""
        layers = [m for name, m in self.module.named_modules()
                  if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
                  and name not in self.folded_bn]
        if not layers:
            return 0
        was_training, momenta = self.module.training, [m.momentum for m in layers]
        self.module.eval()
        for m in layers:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the pass
            m.train()
        try:
            loader = self.data.loader("train", self.batch_size, shuffle=False)
            for x, _ in track(loader, "BatchNorm statistics of the new data", total=len(loader), min_items=20):
                self.module(self.prep.batch(self.runtime.to(x)))  # every rank the whole pass: the same statistics
        finally:
            for m, momentum in zip(layers, momenta):
                m.momentum = momentum
            self.module.train(was_training)
        return len(layers)

    def _out_of_memory(self, what: str, batch: int) -> GraftError:
        device = self.device
        room = ""
        if device.type == "cuda":
            room = f" ({torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB)"
        return GraftError(f"memory on {device}{room} for {what} with a batch of {batch}",
                          f"out of memory at a batch of {batch} ({self.runtime.precision})",
                          f"pass --batch-size {max(1, batch // 2)}" + (
                              ", or --precision bf16 (half the activations)" if self.runtime.precision == "fp32"
                              and device.type == "cuda" else ""))

    def _inference_batch(self, split: str) -> int:
        """The batch of a pass without gradients over ``split``, sized by the size the network runs at (or the
        halved one, after a pass ran out of device memory)."""
        size = self.data.inference_batch_size(split, self.device, run_size(self.backbone))
        return min(size, getattr(self, "_eval_batch", size))

    def evaluate(self, split: str) -> dict:
        """Accuracy and mean loss on ``split`` (under torchrun each rank its shard, the sums reduced). A batch that
        runs out of device memory is halved and the pass run again, said in the notes."""
        batch = self._inference_batch(split)
        while True:
            try:
                right, total, seen = self._evaluate(split, batch)
                break
            except Exception as exc:
                if not is_out_of_memory(exc) or batch <= 1 or self.runtime.distributed:
                    if is_out_of_memory(exc):
                        raise self._out_of_memory(f"evaluating {split}", batch) from None
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                self.notes.append(f"evaluating {split} ran out of memory on {self.device} at a batch of {batch}: "
                                  f"evaluated at {batch // 2}")
                batch //= 2
                self._eval_batch = batch
        right, total, seen = distributed.sum_values(self.runtime, [right, total, seen], f"evaluating {split}")
        return {"accuracy": right / max(seen, 1), "loss": total / max(seen, 1)}

    @torch.inference_mode()
    def _evaluate(self, split: str, batch: int) -> tuple[int, float, int]:
        self.module.eval()
        right = seen = 0
        total = 0.0
        loss_fn = nn.CrossEntropyLoss()
        rows = self._shard(split)
        for x, y in self.data.loader(split, batch, shuffle=False, rows=rows, pin_memory=self.runtime.pin_memory):
            with self.runtime.autocast():
                out = self.module(self.prep.batch(self.runtime.to(x)))
            out = out.float()
            total += float(loss_fn(out, self.runtime.to(y))) * len(y)
            right += int((out.argmax(1).cpu() == y).sum())
            seen += len(y)
        return right, total, seen

    # ------------------------------------------------------------------ the run
