"""A network that classifies from several of its layers at once: the ``multilayer`` strategy's model.

:class:`MultilayerModel` runs the network once, truncated after the deepest layer it needs (torch.fx through
timm's ``create_feature_extractor``: everything the selected layers do not depend on is pruned from the graph,
so the blocks above them and the old head never run). Each tapped output is pooled as ``graft.extract_features``
pools it, narrowed as :func:`graft.measures.multilayer.narrow` narrows it, the selected features are gathered
and a Linear head (standardization folded in) gives the logits. It is an ordinary ``nn.Module``: it trains,
saves (:func:`graft.surgery.saving.save_model`), reloads from its file, and exports (``graft export``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from graft.errors import GraftError
from graft.models.pooling import pool_output


def narrow_tensor(x: torch.Tensor, width: int) -> torch.Tensor:
    """(N, D) -> (N, width): the mean of each run of ``ceil(D / width)`` contiguous columns (the last run may be
    shorter), as :func:`graft.measures.multilayer.narrow` computes it; ``width`` is the narrowed width."""
    d = x.shape[1]
    group = math.ceil(d / width) if width < d else 1
    if group == 1:
        return x
    full = d // group
    parts = [x[:, :full * group].reshape(x.shape[0], full, group).mean(-1)]
    if d % group:
        parts.append(x[:, full * group:].mean(1, keepdim=True))
    return torch.cat(parts, 1)


class MultilayerHead(nn.Module):
    """Pooled, narrowed, selected features of several layers -> logits."""

    def __init__(self, widths: Sequence[Sequence[int]], keep: torch.Tensor, classes: int, pool: str = "avg",
                 spatial_dims: int = 2):
        super().__init__()
        self.widths = [tuple(int(v) for v in w) for w in widths]
        self.pool, self.spatial_dims = pool, spatial_dims
        self.register_buffer("keep", torch.as_tensor(keep, dtype=torch.int64))
        self.linear = nn.Linear(len(self.keep), classes)

    def forward(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        pooled = [narrow_tensor(pool_output(o, self.pool, self.spatial_dims).float(), w[1])
                  for o, w in zip(outputs, self.widths)]
        return self.linear(torch.cat(pooled, 1).index_select(1, self.keep))


class MultilayerModel(nn.Module):
    """``body`` (a network) truncated to ``layers`` (module names, in network order) and a :class:`MultilayerHead`.

    The truncated graph is the ``extractor`` submodule (it shares ``body``'s modules, so ``state_dict`` holds only
    what runs: the tapped part of the body, then ``head.``); ``body`` stays reachable (:meth:`full_body`) for
    saving, since a grafted network is rebuilt whole from its plan.
    """

    def __init__(self, body: nn.Module, layers: Sequence[str], head: MultilayerHead):
        super().__init__()
        from timm.layers import create_feature_extractor

        self.layers = list(layers)
        if not self.layers:
            raise GraftError("at least one layer for the multilayer head", "none", "select at least one layer")
        modules = dict(body.named_modules())
        unknown = [name for name in self.layers if name not in modules or not name]
        if unknown:
            raise GraftError("layers of the network", f"unknown: {unknown[:5]}", "use names from graft inspect")
        try:
            self.extractor = create_feature_extractor(body, {name: name for name in self.layers})
        except Exception as exc:  # torch.fx cannot trace every network (data-dependent control flow)
            raise GraftError("a network torch.fx can trace (the multilayer model runs it truncated)",
                             f"{type(body).__name__}: {type(exc).__name__}: {str(exc)[:200]}",
                             "use another strategy (linear, partial:K, full) for this network") from None
        self.head = head
        object.__setattr__(self, "_body", body)  # not a submodule: its parameters are the extractor's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = self.extractor(x)
        return self.head([outputs[name] for name in self.layers])

    def full_body(self) -> nn.Module:
        return self._body

    def config(self) -> dict:
        return {"layers": self.layers, "widths": [list(w) for w in self.head.widths], "pool": self.head.pool,
                "spatial_dims": self.head.spatial_dims, "classes": self.head.linear.out_features,
                "kept": len(self.head.keep)}

    def head_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().contiguous().cpu() for k, v in self.head.state_dict().items()}


def build_multilayer(body: nn.Module, config: dict, state: dict[str, torch.Tensor] | None = None,
                     keep=None, weight=None, bias=None) -> MultilayerModel:
    """A :class:`MultilayerModel` from its ``config`` and either a head ``state`` (keep, linear.weight,
    linear.bias) or the arrays ``keep``, ``weight``, ``bias`` from :func:`graft.measures.multilayer.multilayer_head`."""
    keep = state["keep"] if state is not None else torch.as_tensor(keep)
    head = MultilayerHead(config["widths"], keep, int(config["classes"]), config.get("pool", "avg"),
                          int(config.get("spatial_dims", 2)))
    with torch.no_grad():
        if state is not None:
            head.load_state_dict(state, strict=True)
        else:
            head.linear.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
            head.linear.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return MultilayerModel(body, config["layers"], head)


HEAD_PREFIX = "graft_multilayer."  # the head's tensors in a saved file, beside the whole body's


def as_backbone(backbone, model: MultilayerModel):
    """``backbone`` (the body's contract, plan and label names) with ``model`` as its module and its head."""
    from dataclasses import replace

    from graft.models import Backbone
    from graft.models.backbone import HeadSpec

    spec = replace(backbone.spec, head=HeadSpec("head.linear", "linear", len(model.head.keep),
                                                model.head.linear.out_features))
    wrapped = Backbone(model, spec)
    for attr in ("plan", "plans", "load_report"):
        if getattr(backbone, attr, None) is not None:
            setattr(wrapped, attr, getattr(backbone, attr))
    return wrapped
