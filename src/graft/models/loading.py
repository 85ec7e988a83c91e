"""``load_network``: any network, from any source, wrapped in the backbone contract (``graft.load_model`` is
``graft.surgery.saving.load_model``, which also rebuilds grafted networks saved by graft, and calls this).

Sources: a timm model name (pretrained from the hub, or with a local weights file), a graft zoo name
(``cifar_resnet20``...), a local checkpoint (``.safetensors``, ``.pt/.pth/.th``; the architecture is read
from graft's metadata, recognized from the key layout, or given with ``arch=``), or any ``nn.Module``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from graft.errors import CheckpointError, GraftError, HubUnavailableError, UnsafeCheckpointError
from graft.models.backbone import Backbone, describe, find_head
from graft.models.checkpoint import Checkpoint, find_state_dict, graft_metadata, read_checkpoint, strip_wrapper_prefixes
from graft.models.weights import load_weights
from graft.models.zoo import ZOO, ZooEntry, detect_architecture
from graft.validation import is_dir, is_file, suggest

CHECKPOINT_SUFFIXES = {".safetensors", ".pt", ".pth", ".th", ".bin", ".ckpt", ".tar"}


def _looks_like_path(source: str) -> bool:
    if source.startswith("hf-hub:") or source.startswith("hf_hub:"):
        return False
    p = Path(source).expanduser()
    return is_file(p) or is_dir(p) or p.suffix.lower() in CHECKPOINT_SUFFIXES or os.sep in source


def _timm_names() -> list[str]:
    import timm

    return timm.list_models()


def _is_timm_name(name: str) -> bool:
    import timm

    return name.startswith(("hf-hub:", "hf_hub:")) or timm.is_model(name)


def _unknown_name(name: str) -> GraftError:
    near = suggest(name, list(ZOO) + _timm_names())
    return GraftError(
        "a timm model name, a graft zoo name, a checkpoint path or an nn.Module",
        f"{name!r}, which is none of these",
        (f"did you mean {near}? " if near else "") + "list names with timm.list_models('*pattern*'); "
        f"graft's zoo has {', '.join(ZOO)}",
    )


def _cfg_value(name: str, key: str) -> Any:
    if name in ZOO:
        return {"classifier": ZOO[name].classifier, "first_conv": ZOO[name].first_conv}.get(key)
    try:
        from timm.models import get_pretrained_cfg_value

        return get_pretrained_cfg_value(name, key)
    except Exception:  # unknown tag or an older timm: fall back to the common names
        return None


def _shape_hints(name: str, state_dict: dict[str, torch.Tensor]) -> dict[str, int]:
    """num_classes and in_chans implied by a state dict for architecture ``name``."""
    hints: dict[str, int] = {}
    head = _cfg_value(name, "classifier") or "classifier"
    for key in (f"{head}.weight", "fc.weight", "head.fc.weight", "head.weight", "linear.weight"):
        if key in state_dict and state_dict[key].ndim >= 2:
            hints["num_classes"] = int(state_dict[key].shape[0])
            break
    first = _cfg_value(name, "first_conv")
    if first and f"{first}.weight" in state_dict and state_dict[f"{first}.weight"].ndim >= 3:
        hints["in_chans"] = int(state_dict[f"{first}.weight"].shape[1])
    return hints


def _fetch_zoo_weights(entry: ZooEntry) -> dict[str, torch.Tensor]:
    if not entry.url:
        raise HubUnavailableError(f"published weights for {entry.name}", "none: this zoo entry has no download URL",
                                  f"pass a local file: graft.load_model({entry.name!r}, weights='path/to/file')")
    from urllib.parse import urlparse

    from graft.models.hub import require_reachable, torch_hub_cached

    if not torch_hub_cached(entry.url):
        require_reachable(urlparse(entry.url).hostname or entry.url, f"the pretrained weights of {entry.name}",
                          f"no network? download {entry.url} elsewhere and pass it: graft.load_model({entry.name!r}, "
                          f"weights='{entry.url.rsplit('/', 1)[-1]}')")
    try:
        obj = torch.hub.load_state_dict_from_url(entry.url, map_location="cpu", weights_only=True, progress=False)
    except Exception as exc:
        if "Weights only load failed" in str(exc):
            raise UnsafeCheckpointError("a download that holds only tensors", f"{entry.url} holds code",
                                        "download it yourself and inspect it") from None
        raise HubUnavailableError(
            f"to download the pretrained weights of {entry.name}",
            f"a failure ({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})",
            f"no network? download {entry.url} elsewhere and pass it: "
            f"graft.load_model({entry.name!r}, weights='{entry.url.rsplit('/', 1)[-1]}')",
        ) from None
    state_dict, _ = find_state_dict(obj, entry.url)
    return strip_wrapper_prefixes(state_dict)[0]


def _pretrained_source(name: str) -> tuple[str | None, str | None]:
    """Where timm would fetch ``name``'s weights: (Hugging Face repo id, URL); timm prefers the repo."""
    import timm

    if name.startswith(("hf-hub:", "hf_hub:")):
        return name.split(":", 1)[1], None
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:  # noqa: BLE001 - an unknown tag: timm's own error follows
        return None, None
    return (getattr(cfg, "hf_hub_id", None) or None), (getattr(cfg, "url", None) or None)


def _require_hub(name: str, fix: str) -> None:
    """Fail within seconds when ``name``'s weights are neither cached nor reachable (graft.models.hub)."""
    from urllib.parse import urlparse

    from graft.models.hub import hf_cached, hf_host, require_reachable, torch_hub_cached

    repo, url = _pretrained_source(name)
    what = f"the pretrained weights of {name!r}"
    if repo:
        if not hf_cached(repo):
            require_reachable(hf_host(), what, fix)
    elif url and not torch_hub_cached(url):
        require_reachable(urlparse(url).hostname or url, what, fix)


def _create_timm(name: str, pretrained: bool, **kwargs) -> nn.Module:
    import timm

    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    _require_hub(name, f"no network? pass a local weights file: graft.load_model({name!r}, weights='path/to/"
                       f"weights.safetensors') (or `graft inspect {name} --weights FILE`); --random (pretrained=False) "
                       "gives random weights")
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except (OSError, ConnectionError, RuntimeError, ValueError) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise HubUnavailableError(
            f"to download the pretrained weights of {name!r} from the Hugging Face hub",
            f"a failure ({type(exc).__name__}: {reason})",
            f"no network? pass a local weights file: graft.load_model({name!r}, weights='path/to/weights.safetensors') "
            f"(or `graft inspect {name} --weights FILE`); pretrained=False gives random weights",
        ) from None


def _stored_build(name: str, build: dict) -> dict:
    """The build arguments a graft file recorded, less those its zoo builder does not take: a file written before
    builders refused them was built without them, so the rebuild leaves them out too."""
    import inspect

    if name not in ZOO or not build:
        return dict(build)
    parameters = inspect.signature(ZOO[name].build).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(build)
    return {k: v for k, v in build.items() if k in parameters}


def _check_build_arguments(name: str, build, kwargs: dict) -> None:
    """Refuse arguments a zoo builder does not take, naming the closest one (a typo must not be dropped)."""
    import inspect

    parameters = inspect.signature(build).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    taken = [p for p in parameters if p not in ("num_classes", "in_chans")]
    unknown = [k for k in kwargs if k not in parameters]
    if unknown:
        hints = "; ".join(f"{k}: did you mean {suggest(k, [*taken, 'num_classes', 'in_chans']) or 'none of them'}?"
                          for k in unknown)
        raise GraftError(f"arguments that {name} takes ({', '.join(taken) or 'only num_classes and in_chans'}; and "
                         "the load options: weights, arch, pretrained, num_classes, label_names, input_size...)",
                         ", ".join(unknown), hints)


def build_architecture(name: str, *, num_classes: int | None = None, in_chans: int | None = None, **kwargs) -> nn.Module:
    """A randomly initialized network of architecture ``name`` (zoo or timm)."""
    if name in ZOO:
        entry = ZOO[name]
        _check_build_arguments(name, entry.build, kwargs)
        module = entry.build(num_classes=num_classes or entry.num_classes, in_chans=in_chans or entry.in_chans, **kwargs)
        module.graft_build_kwargs = dict(kwargs)  # saved with the weights, so that the file rebuilds it
        return module
    if _is_timm_name(name):
        extra = {k: v for k, v in (("num_classes", num_classes), ("in_chans", in_chans)) if v is not None}
        return _create_timm(name, False, **extra, **kwargs)
    raise _unknown_name(name)


def _describe_named(module: nn.Module, name: str, weights: str | None, overrides: dict) -> Backbone:
    entry = ZOO.get(name)
    defaults: dict[str, Any] = {}
    if entry is not None:
        head_rows = module.get_submodule(entry.classifier).weight.shape[0] if entry.classifier else None
        first_in = module.get_submodule(entry.first_conv).weight.shape[1] if entry.first_conv else None
        defaults = {
            "input_size": entry.input_size,
            "mean": entry.mean if entry.mean and first_in in (None, len(entry.mean)) else None,
            "std": entry.std if entry.std and first_in in (None, len(entry.std)) else None,
            "label_names": entry.label_names if head_rows == entry.num_classes else None,
            "head": entry.classifier,
            "first_layer": entry.first_conv,
        }
    merged = {**defaults, **{k: v for k, v in overrides.items() if v is not None}}
    origin = "zoo" if entry is not None else "timm"
    return Backbone(module, describe(module, name=name, origin=origin, weights=weights, **merged))


def load_network(
    source: str | Path | nn.Module | Backbone,
    *,
    weights: str | Path | dict | None = None,
    arch: str | None = None,
    pretrained: bool = True,
    num_classes: int | None = None,
    strict: bool = True,
    label_names: list[str] | None = None,
    input_size: tuple[int, ...] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    blocks: list[str] | None = None,
    taps: list[str] | None = None,
    head: str | None = None,
    first_layer: str | None = None,
    feature_names: list[str] | None = None,
    feature_axis: int | None = None,
    **model_kwargs: Any,
) -> Backbone:
    """Load a network and wrap it in the backbone contract.

    Parameters
    ----------
    source:
        A timm name (``'mobilenetv2_100'``), a graft zoo name (``'cifar_resnet56'``), a checkpoint path, an
        ``nn.Module`` or a :class:`Backbone`.
    weights:
        A local weights file (or state dict) for a named architecture or a module; loaded strictly unless
        ``strict=False``, in which case what fits is loaded and the rest reported (``backbone.load_report``).
    arch:
        The architecture of a plain checkpoint, when graft cannot recognize it from the file.
    pretrained:
        For names without ``weights``: download the published weights (timm hub or the zoo's URL).
    label_names, input_size, mean, std, blocks, taps, head, first_layer:
        Override what the contract derives (see :func:`graft.models.backbone.describe`).
    feature_names, feature_axis:
        Names of the input's features (table columns, sensor channels) along one axis of (C, *size), so
        that new data with other columns is aligned by name.
    """
    overrides = dict(label_names=label_names, input_size=input_size, mean=mean, std=std, blocks=blocks,
                     taps=taps, head=head, first_layer=first_layer, feature_names=feature_names,
                     feature_axis=feature_axis)
    report = None
    if input_size and isinstance(source, str) and source in ZOO and ZOO[source].extra.get("sized"):
        model_kwargs.setdefault("input_size", tuple(input_size))  # a flatten head is built for one size
    if isinstance(source, Backbone):
        source = source.module
    if isinstance(source, nn.Module):
        if weights is not None:
            report = load_weights(source, weights if isinstance(weights, dict) else Path(weights), strict=strict,
                                  head=_head_name(source, head))
        origin = "timm" if getattr(source, "pretrained_cfg", None) else "module"
        spec = describe(source, origin=origin, weights=(report.source or "state dict") if report else None,
                        **{k: v for k, v in overrides.items() if v is not None})
        backbone = Backbone(source, spec)
    elif isinstance(source, (str, Path)) and _looks_like_path(str(source)):
        if weights is not None:
            raise GraftError("either a checkpoint path or weights=, not both", f"{source} and weights={weights}",
                             "pass the architecture name first: load_model('resnet18', weights='file.pth')")
        ckpt = read_checkpoint(source)
        name = arch or graft_metadata(ckpt).get("arch") or detect_architecture(
            set(ckpt.state_dict), {k: tuple(v.shape) for k, v in ckpt.state_dict.items()})
        if name is None:
            raise CheckpointError(
                "a checkpoint whose architecture graft can tell, or arch=...",
                f"a plain state dict ({ckpt.describe()}): it holds weights, not the network's code",
                "pass the architecture: load_model(path, arch='resnet18') (a timm or zoo name), or build the "
                "module yourself and pass it with the file: load_model(my_module, weights=path)",
            )
        meta = graft_metadata(ckpt)
        if meta.get("spec") and not arch:  # written by graft.save_model: its contract and build arguments
            overrides = {**_stored_overrides(meta["spec"]), **{k: v for k, v in overrides.items() if v is not None}}
            model_kwargs = {**_stored_build(name, meta.get("build", {})), **model_kwargs}
        backbone, report = _named_with_weights(name, ckpt, strict, num_classes, overrides, model_kwargs)
    elif isinstance(source, (str, Path)):
        name = str(source)
        if name not in ZOO and not _is_timm_name(name):
            raise _unknown_name(name)
        if weights is not None:
            ckpt = weights if isinstance(weights, Checkpoint) else (
                Checkpoint(dict(weights), "state dict", "dict") if isinstance(weights, dict) else read_checkpoint(weights))
            backbone, report = _named_with_weights(name, ckpt, strict, num_classes, overrides, model_kwargs)
        elif pretrained:
            if name in ZOO:
                state_dict = _fetch_zoo_weights(ZOO[name])
                module = build_architecture(name, num_classes=num_classes, **model_kwargs)
                report = load_weights(module, state_dict, strict=strict, head=_head_name(module, head))
                where = ZOO[name].url
            else:
                module = _create_timm(name, True, **({"num_classes": num_classes} if num_classes else {}), **model_kwargs)
                where = f"timm hub ({getattr(module, 'pretrained_cfg', {}).get('hf_hub_id', name)})"
            backbone = _describe_named(module, name, where, overrides)
        else:
            module = build_architecture(name, num_classes=num_classes, **model_kwargs)
            backbone = _describe_named(module, name, None, overrides)
    else:
        raise GraftError("a model name, a checkpoint path, an nn.Module or a Backbone",
                         f"{type(source).__name__}", "pass for example 'cifar_resnet20' or your nn.Module")
    if report is not None and (not report.complete or report.head_missing):  # what did not load, said by inspect
        from dataclasses import replace

        told = tuple(line for line in report.summary().splitlines()[1:] if not line.startswith("counters"))
        backbone.spec = replace(backbone.spec, notes=(*backbone.spec.notes, *told))
    backbone.load_report = report
    return backbone


def _head_name(module: nn.Module, hint: str | None) -> str | None:
    """The classifier's module name (timm's config, else graft's search), or None when there is none to find."""
    hint = hint or (getattr(module, "pretrained_cfg", None) or {}).get("classifier")
    try:
        return find_head(module, hint)
    except GraftError:
        return None


def _stored_overrides(spec: dict) -> dict:
    """What a graft-written file says about its inputs and classes (input size, normalization, labels)."""
    inp = spec.get("input") or {}
    out = {"input_size": inp.get("size"), "mean": inp.get("mean"), "std": inp.get("std"),
           "label_names": spec.get("label_names"), "feature_names": inp.get("feature_names"),
           "feature_axis": inp.get("feature_axis")}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in out.items() if v is not None}


def _named_with_weights(name, ckpt: Checkpoint, strict, num_classes, overrides, model_kwargs):
    hints = _shape_hints(name, ckpt.state_dict)
    module = build_architecture(name, num_classes=num_classes or hints.get("num_classes"),
                                in_chans=hints.get("in_chans"), **model_kwargs)
    try:
        report = load_weights(module, ckpt.state_dict, strict=strict, head=_head_name(module, overrides.get("head")))
    except GraftError as exc:
        raise type(exc)(f"the weights in {ckpt.path} to fit architecture {name!r}", exc.got,
                        exc.fix) from None
    return _describe_named(module, name, ckpt.path, overrides), report
