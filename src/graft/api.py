"""The public verbs of graft. The single-stage ones are here; the ones that chain whole stages (``probe``,
``advise``, ``compare``, ``fine_tune``) are thin layers over one :class:`graft.workflow.Workflow`.

Every verb takes a network as a Backbone or anything :func:`load_model` takes (with ``load_options``: a
:class:`~graft.models.options.LoadOptions` or a dict of its fields), and data as a Data or anything
:func:`load_data` takes (with ``data_options``: a :class:`~graft.data.options.DataOptions` or a dict).
``graft.cli`` calls exactly one of them per subcommand.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from graft.data import Data, DatasetSpec, load_data
from graft.data import describe_data as _describe_data
from graft.data.options import DataOptions
from graft.data.problems import Problem
from graft.data.transforms import BatchPreprocess, Preprocess
from graft.errors import GraftError
from graft.export import export_run
from graft.features import FeatureSet
from graft.features import extract_features as _extract_features
from graft.files import write_atomic, write_json
from graft.measures.summary import Measures
from graft.models import Backbone, BackboneSpec
from graft.models.audit import FileAudit
from graft.models.audit import audit as _audit
from graft.models.options import LoadOptions
from graft.strategy.advisor import Advice
from graft.surgery import SurgeryPlan, Target
from graft.surgery import plan_surgery as _plan_surgery
from graft.surgery.plan import run_size
from graft.surgery.saving import load_model, save_model
from graft.training.compare import Comparison
from graft.training.run import RunRecord, load_run
from graft.workflow import PROBE_SAMPLES, Workflow, as_backbone, as_data, target_from_data

__all__ = ["advise", "audit", "compare", "describe_data", "describe_model", "export_run", "extract_features", "fine_tune",
           "load_data", "load_model", "load_run", "plan_surgery", "predict", "preprocessing", "pretrain", "probe",
           "save_model", "target_from_data", "write_report"]


def audit(path: str | Path) -> list[FileAudit]:
    """What a weights file or a run folder holds (tensors, shapes, dtypes, metadata, the globals a pickle would
    import), read without executing anything in it; ``graft audit`` prints it (graft.models.audit)."""
    return _audit(path)


def describe_model(source, load_options: LoadOptions | dict | None = None, **fields) -> BackboneSpec:
    """The backbone contract of ``source`` (what ``graft inspect`` prints)."""
    return load_model(source, load_options, **fields).spec


def plan_surgery(model, target: Target | None = None, *, data: Data | DatasetSpec | str | Path | None = None,
                 load_options: LoadOptions | dict | None = None, data_options: DataOptions | dict | None = None,
                 **target_fields) -> SurgeryPlan:
    """Plan the surgery that takes ``model`` to ``target``, or to the shape and classes of ``data``.

    ``model`` is a Backbone or anything :func:`load_model` accepts (with ``load_options``); the target is a
    :class:`Target`, its fields as keyword arguments, or a dataset (read with ``data_options`` when it is a path)
    whose fields the keywords override.
    """
    backbone = as_backbone(model, load_options)
    if data is not None:
        if target is not None:
            raise GraftError("a target or a dataset, not both", "both", "pass data=... and override fields by name")
        if not isinstance(data, (Data, DatasetSpec)):
            data = as_data(data, data_options)
        target = target_from_data(data, **target_fields)
        target_fields = {}
    return _plan_surgery(backbone, target, **target_fields)


def describe_data(source, options: DataOptions | dict | None = None, *, model=None,
                  load_options: LoadOptions | dict | None = None, **fields) -> DatasetSpec:
    """What graft sees in ``source`` (see :func:`graft.data.load_data`), every problem listed; with ``model``,
    also whether a surgery plan can take that network to this data (``model_mismatch`` when none can)."""
    spec = _describe_data(source, options, **fields)
    if model is None:
        return spec
    try:
        plan_surgery(model, data=spec, load_options=load_options)
    except GraftError as exc:
        problem = Problem("model_mismatch", "error", f"no surgery plan takes the network to this data: expected "
                          f"{exc.expected}; got {exc.got}", exc.fix or "see graft plan", (str(model),))
        spec = replace(spec, problems=(*spec.problems, problem))
    return spec


def extract_features(model, data, *, split: str = "train", layers=None, load_options: LoadOptions | dict | None = None,
                     data_options: DataOptions | dict | None = None, **options) -> FeatureSet:
    """Pooled features of ``data[split]`` at several layers of ``model`` (every block by default), from one
    pass, cached on disk; see :func:`graft.features.extract_features` for the options."""
    return _extract_features(as_backbone(model, load_options), as_data(data, data_options), split=split,
                             layers=layers, **options)


def probe(model, data, *, split: str = "train", eval_split: str | None = "auto", layers=None,
          out: str | Path | None = None, plot: bool = False, source_data=None, source_split: str = "train",
          input_size: tuple[int, ...] | None = None, batch_size: int | None = None, folds: int = 5, seed: int = 0,
          max_samples: int | None = None, load_options: LoadOptions | dict | None = None,
          data_options: DataOptions | dict | None = None, cache_dir: str | Path | None = None, log=None,
          choose_c: str = "cv", multilayer=True, budget=None, started: float | None = None,
          refine: bool | None = None, device: str = "auto") -> Measures:
    """Measure how well each layer of ``model`` transfers to ``data``: linear-probe accuracy, LogME, H-score and
    similarity to the source per layer, LEEP and NCE of the source head; the best layer and why.

    One extraction pass per split (cached). The probe trains on ``split`` and is evaluated on ``eval_split``
    (``"auto"``: ``test``, else ``val``, else cross-validation on ``split``; ``None``: cross-validation).
    Similarity uses the BatchNorm statistics the network stored, or, with ``source_data`` (a dataset of the
    source's kind, e.g. a few hundred source images), the Fréchet distance between feature distributions.
    ``max_samples`` caps every split (a stratified, seeded draw) to keep the measures quick on large data.
    ``choose_c="eval"`` chooses the probe's regularization on ``eval_split`` instead of by cross-validation on
    ``split`` (5x faster; for a validation split only, as ``graft advise`` does). ``multilayer``: also probe
    every layer at once with feature selection (:func:`graft.measures.multilayer.multilayer_probe`); a callable
    decides from the per-layer measures (see :func:`graft.measures.summary.measure_layers`).
    ``budget`` ("1m", seconds, counted from ``started``, a ``time.perf_counter()`` value, or from the call): the
    samples are drawn so the extraction fits, and the layers probed best-first until it is spent (the notes say
    which were left out). ``refine`` (default: with a budget): probe only the layers that can hold the best
    (:func:`graft.measures.summary.bounded`). With ``out``, writes ``out/measures.json`` (and ``out/measures.png``
    with ``plot=True``). ``device``: where the network runs (``auto``: CUDA, then MPS, then the CPU); extraction
    is in fp32 on it.
    """
    workflow = Workflow(model, data, load_options=load_options, data_options=data_options, seed=seed, log=log,
                        budget=budget, started=started, device=device, precision="fp32")
    return workflow.probe(out, split=split, eval_split=eval_split, layers=layers, plot=plot, source_data=source_data,
                          source_split=source_split, input_size=input_size, batch_size=batch_size, folds=folds,
                          max_samples=max_samples, cache_dir=cache_dir, choose_c=choose_c, multilayer=multilayer,
                          refine=refine)


def advise(model, data, *, out: str | Path | None = None, target: dict | None = None,
           max_samples: int = PROBE_SAMPLES, load_options: LoadOptions | dict | None = None,
           data_options: DataOptions | dict | None = None, seed: int = 0, log=None, multilayer: bool | str = "auto",
           margin: float = 0.05, budget=None, started: float | None = None, device: str = "auto",
           precision: str = "auto") -> Advice:
    """Probe ``model`` (grafted to ``data``) layer by layer on the training data, evaluated on ``val`` (never on
    test), and advise a strategy with its reasons. With ``out``: measures.json, measures.png, advice.json.
    ``multilayer``: also probe every layer at once, which makes ``multilayer`` a candidate; ``"auto"``: only when
    the per-layer measures leave a strategy that needs it a chance
    (:func:`graft.strategy.advisor.measure_skip_reason`). ``margin``: candidates scoring this close to the best
    are ambiguous (trials settle them in ``fine_tune(strategy="auto")``). ``budget`` (counted from ``started`` or
    the call): the measuring is planned to fit in it (graft.training.budget.plan_measuring). ``device`` and
    ``precision``: where it measures, and the precision the step times are timed in (graft.devices)."""
    workflow = Workflow(model, data, load_options=load_options, data_options=data_options, target=target, seed=seed,
                        log=log, budget=budget, started=started, device=device, precision=precision)
    return workflow.advise(out, max_samples=max_samples, multilayer=multilayer, margin=margin)


def compare(model, data, out: str | Path, *, strategies=None, budget="15m", seeds=(0,),
            batch_size: int = 32, max_epochs: int = 30, target: dict | None = None,
            load_options: LoadOptions | dict | None = None, data_options: DataOptions | dict | None = None, log=None,
            report: bool = True, started: float | None = None, device: str = "auto", precision: str = "auto",
            **strategy_options) -> Comparison:
    """Run ``strategies`` (default: the registry's default comparison, graft.strategy.default_comparison()) on the
    same splits with equal shares of ``budget`` (the whole call's, from ``started`` or the call: loading, timing and
    the report are set aside first); comparison.json, plots, report.html. ``device`` and ``precision``: where and
    how every run trains (graft.devices)."""
    seeds = tuple(seeds)
    workflow = Workflow(model, data, load_options=load_options, data_options=data_options, target=target,
                        budget=budget, batch_size=batch_size, seed=seeds[0] if seeds else 0, log=log, started=started,
                        device=device, precision=precision)
    return workflow.compare(out, strategies=strategies, seeds=seeds, max_epochs=max_epochs, report=report,
                            **strategy_options)


def fine_tune(model, data, out: str | Path, *, strategy="full", epochs: int | None = None, budget=None,
              batch_size: int = 32, seed: int = 0, resume: bool = False, patience: int | None = None,
              plateau: int | None = None, load_options: LoadOptions | dict | None = None,
              data_options: DataOptions | dict | None = None, target: dict | None = None, log=None, messages=None,
              progress=True, report: bool = True, keep_going: bool = False, started: float | None = None,
              device: str = "auto", precision: str = "auto", **strategy_options) -> RunRecord:
    """Adapt ``model`` to ``data`` and train it with ``strategy`` into the run folder ``out``.

    The surgery is planned from the data (``target`` overrides fields: ``keep_rows``, ``size_mode``...), applied
    to a copy, and written to ``out/plan.json``; then :func:`graft.training.run.fine_tune` trains it
    (strategies: any registered one, ``graft.strategy.strategy_names()``; ``lr=``, ``layer_decay=``,
    ``batchnorm=``, ``l2sp=``... tune them). ``resume=True`` continues an interrupted run; ``model`` may be a
    finished run folder, to continue training it (on new data: the plan keeps the head rows of classes it already
    knows, by name). ``strategy="auto"``: the advisor decides, and short trials settle an ambiguous advice
    (``out/advice.json``). ``log`` receives each epoch's record (a dict), ``messages`` what the advisor and the
    trials have to say (strings). The run folder gets ``report.html`` (``report=False``: not).

    ``budget`` is a contract for the whole call (loading, measuring, trials, training, report), counted from
    ``started`` (a ``time.perf_counter()`` value) or the call. A budget that affords fewer epochs than the strategy
    needs to adapt soundly is refused, and ``"auto"`` fits only a strategy that is sound in the time left; a result
    below a linear head on the same features carries a warning (``record.warnings``). ``keep_going=True`` fits
    what fits anyway.

    ``device`` (``auto``: CUDA, then MPS, then the CPU; ``cpu``, ``cuda``, ``cuda:N``, ``mps``) and ``precision``
    (``auto``: bf16 autocast on a GPU that supports it, else fp32; ``fp32``, ``bf16``, ``fp16`` with a gradient
    scaler) say where and how it trains; ``config.json`` records them. Started under ``torchrun``, it trains
    data-parallel (DistributedDataParallel) and rank 0 writes the run folder.
    """
    workflow = Workflow(model, data, load_options=load_options, data_options=data_options, target=target,
                        budget=budget, batch_size=batch_size, seed=seed, log=messages, started=started,
                        device=device, precision=precision)
    return workflow.fit(out, strategy=strategy, epochs=epochs, resume=resume, patience=patience, plateau=plateau,
                        epoch_log=log, progress=progress, report=report, keep_going=keep_going, **strategy_options)


def write_report(run_dir: str | Path) -> Path:
    """(Re)build ``run_dir/report.html`` from the run folder alone."""
    from graft.report.html import write_report as _write

    return _write(run_dir)


def preprocessing(backbone: Backbone, *, resize: bool = False) -> Preprocess:
    """The normalization the network was trained with (timm's pretrained_cfg, the zoo entry, or the
    preprocessing stored in a graft checkpoint), as a per-sample transform; ``resize=True`` also scales
    inputs to the size the network was trained at (otherwise the surgery plan decides about size)."""
    inp = backbone.spec.input
    return Preprocess(inp.mean, inp.std, inp.size if resize and inp.size else None)


def pretrain(arch: str, data: Data | str | Path, out: str | Path, *, epochs: int = 20, lr: float = 1e-3,
             batch_size: int = 64, seed: int = 0, log=None, data_options: DataOptions | dict | None = None,
             device: str = "auto", precision: str = "auto", **model_kwargs) -> tuple[Backbone, list[dict]]:
    """Train a fresh ``arch`` (zoo or timm name) on ``data`` and save it to ``out/model.safetensors`` with
    its classes, input spec and feature names, so it can be the source of a transfer.

    ``data_options`` say how to read ``data`` when it is a path. Writes ``out/dataset.json``,
    ``out/splits.json`` and ``out/history.jsonl`` next to the weights. Evaluation uses the ``val`` split, else
    ``test``. (It runs graft.training.fit, not the Trainer: that module says why.) ``device`` and ``precision``:
    where and how it trains (graft.devices); the saved weights are device-free.
    """
    import json

    import torch

    import graft.distributed as distributed
    from graft.devices import Runtime
    from graft.training import fit
    from graft.training.parallel import RankLoader

    runtime = Runtime.resolve(device, precision)
    distributed.initialize(runtime)

    data = as_data(data, data_options)
    spec = data.spec
    torch.manual_seed(seed)
    backbone = load_model(arch, pretrained=False, num_classes=len(spec.label_names), in_chans=spec.channels,
                          input_size=spec.size or None, label_names=list(spec.label_names),
                          feature_names=spec.feature_names, feature_axis=spec.feature_axis, **model_kwargs)
    out = Path(out)
    main = runtime.is_main  # under torchrun rank 0 alone writes the folder
    if main:
        out.mkdir(parents=True, exist_ok=True)
    eval_split = "val" if "val" in data.splits else ("test" if "test" in data.splits else None)
    history_file = out / "history.jsonl"
    if main:
        history_file.write_text("")

    def record(entry: dict) -> None:
        if not main:
            return
        with history_file.open("a") as f:
            f.write(json.dumps(entry) + "\n")
        if log is not None:
            log(entry)

    evaluation = data.loader(eval_split, data.inference_batch_size(eval_split, runtime.torch_device), shuffle=False,
                             pin_memory=runtime.pin_memory) if eval_split else None
    train = RankLoader(data, "train", batch_size, seed, runtime) if runtime.distributed else \
        data.loader("train", batch_size, seed=seed, pin_memory=runtime.pin_memory)
    result = fit(backbone.module, train, evaluation, epochs=epochs, lr=lr, seed=seed, eval_split=eval_split,
                 log=record, runtime=runtime)
    backbone.spec = replace(backbone.spec, weights=str(out / "model.safetensors"),
                            notes=(*backbone.spec.notes, f"pretrained by graft on {spec.name} for {epochs} epochs"
                                   + (f" ({runtime.world_size} processes)" if runtime.distributed else "")))
    if main:
        save_model(backbone, out / "model.safetensors")
        write_json(out / "dataset.json", spec)
        data.write_splits(out)
    distributed.barrier(runtime, "the pretrained model")
    return backbone, result.history


def predict(run, data, *, split: str | None = None, data_options: DataOptions | dict | None = None,
            out: str | Path | None = None, device: str = "auto", precision: str = "auto"):
    """Predictions of a finished run (or a Backbone) on ``data[split]`` (default: test, else the only split).

    Returns ``(ids, predicted names, probabilities (N, C), Metrics or None)``; the metrics are computed when
    the data's classes are the run's. With ``out``, writes a CSV of id, prediction and probability. ``device``
    and ``precision``: where and how the network runs (graft.devices); the probabilities are float32.
    """
    from graft.devices import Runtime

    runtime = Runtime.resolve(device, precision)
    if runtime.distributed:
        raise GraftError("graft predict in one process", f"a torchrun launch of {runtime.world_size} processes",
                         "run graft predict without torchrun (--device cuda takes one GPU)")
    import csv
    import io

    import numpy as np
    import torch

    from graft.training.metrics import classification_report

    backbone = run if isinstance(run, Backbone) else load_run(run)
    data = as_data(data, data_options)
    split = split or ("test" if "test" in data.splits else list(data.splits)[0])
    names = list(backbone.spec.label_names or [])
    inp = backbone.spec.input
    module = torch.nn.Sequential(BatchPreprocess(Preprocess(inp.mean, inp.std, None)),
                                 runtime.place(backbone.module)).eval()
    probs = []
    size = data.inference_batch_size(split, runtime.torch_device, input_size=run_size(backbone))
    with torch.inference_mode():
        for x, _ in data.loader(split, size, shuffle=False, pin_memory=runtime.pin_memory):
            with runtime.autocast():
                logits = module(runtime.to(x))
            probs.append(torch.softmax(logits.float(), 1).cpu().numpy())
    p = np.concatenate(probs) if probs else np.zeros((0, len(names)))
    pred = p.argmax(1)
    ids = list(getattr(data[split], "ids", range(len(p))))
    labels = [names[i] if i < len(names) else str(i) for i in pred]
    metrics = None
    if tuple(data.spec.label_names) == tuple(names) and len(p):
        metrics = classification_report(np.asarray(data[split].y), pred, names)
    if out is not None:
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(["id", "prediction", "probability"])
        for i, lab, row in zip(ids, labels, p):
            writer.writerow([i, lab, f"{row.max():.4f}"])
        write_atomic(out, text.getvalue())
    return ids, labels, p, metrics
