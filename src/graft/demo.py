"""``graft demo``: the main job on the embedded default, end to end.

A real CIFAR-10 ResNet-20 (3 x 32 x 32 colour objects, 10 classes) is taken to 2000 real MNIST digits
(1 x 28 x 28 grey, 10 other classes), the whole pipeline: plan the surgery, measure every layer, advise a
strategy, compare strategies on a short budget, fit with the advice, write report.html, and reload the result
from its folder alone.

The demo has one budget (``DEMO_BUDGET``, ``graft demo --budget``) and keeps it on any machine: each stage is
planned from the machine's measured speed (the measuring to a quarter of it, the comparison to ``COMPARE_SHARE``
or less, so that the fit of the advice keeps what it needs, the fit to the rest), and a stage that does not fit
is skipped with the reason; it always ends with report.html.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import Progress

from graft.api import load_model, load_run
from graft.errors import GraftError
from graft.files import write_atomic, write_json
from graft.models.trace import eval_mode
from graft.text import console as text_console
from graft.text import styled
from graft.training.run import parse_budget
from graft.workflow import Workflow

ASSETS = "assets/demo"


COMPARED = ("linear", "partial:1", "lp-ft", "full", "multilayer", "scratch")
DEMO_BUDGET = 120.0  # seconds for the whole demo (about 2 minutes on 2 idle CPU cores)
COMPARE_SHARE = 0.4  # of the budget, the comparison's at most (the measuring takes at most a quarter, the fit the rest)


@dataclass(frozen=True)
class DemoResult:
    run_dir: Path
    num_samples: int
    logits_shape: tuple[int, ...]
    forward_seconds: float
    reload_max_abs_diff: float
    total_seconds: float
    advice: str
    best_compared: str | None
    test_accuracy: float | None


def asset(name: str) -> Path:
    """Path of an embedded demo asset."""
    return Path(str(resources.files("graft").joinpath(f"{ASSETS}/{name}")))


def _logits(net, x: torch.Tensor, progress: Progress | None, batch: int = 250) -> torch.Tensor:
    outs = []
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    task = progress.add_task("running the grafted network", total=len(x)) if progress else None
    with eval_mode(net), torch.inference_mode():
        for i in range(0, len(x), batch):
            outs.append(net(x[i:i + batch].to(device)).float().cpu())
            if progress:
                progress.advance(task, len(x[i:i + batch]))
    return torch.cat(outs)


STARTED = ".graft-demo"  # written first: marks a folder as the demo's, even when a run of it stopped half-way


def _fresh(run_dir: Path, con: Console) -> None:
    """The demo writes into an empty folder, or replaces its own earlier output (finished, or left half-done by a
    failed or interrupted run: it marks the folder first); anything else is refused."""
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return
    if not (run_dir / "demo.json").is_file() and not (run_dir / STARTED).is_file():
        raise GraftError("an empty folder (or an earlier graft demo's) for the demo", f"{run_dir}, which holds "
                         "other files", "pass another --out, e.g. graft demo --out runs/demo2")
    import shutil

    con.print(f"replacing the earlier demo in {run_dir}", style="dim")
    shutil.rmtree(run_dir)


def run_demo(out: str | Path = "runs/demo", console: Console | None = None, budget=DEMO_BUDGET,
             started: float | None = None, device: str = "auto", precision: str = "auto") -> DemoResult:
    """Run the demo within ``budget`` (seconds, or "2m"), counted from ``started`` (a ``time.perf_counter()``
    value; default: now; the CLI passes the moment the command started); write the run folder ``out``; return what
    was measured. ``device`` and ``precision``: where and how it runs (graft.devices; the CPU on a machine without a
    GPU)."""
    con = console or text_console()
    start = time.perf_counter() if started is None else started
    seconds = parse_budget(budget)
    run_dir = Path(out)
    _fresh(run_dir, con)
    write_atomic(run_dir / STARTED, "written by graft demo: a later graft demo may replace this folder\n")
    model_file, data_file = asset("cifar_resnet20.safetensors"), asset("mnist_2000.npz")
    say = lambda message: con.print(f"  {message}", style="dim")  # noqa: E731

    con.rule(styled(("graft demo", "bold"), f": a CIFAR-10 ResNet-20 taken to 2000 MNIST digits, in {seconds:.0f} s"))
    con.print(styled(("1. the network", "bold"), " (embedded: akamaster's CIFAR-10 ResNet-20, BSD-2-Clause)"))
    wf = Workflow(model_file, data_file, data_options=dict(val_fraction=0.2, test_fraction=0.2, seed=0),
                  budget=seconds, log=say, started=start, device=device, precision=precision)
    wf.one_process("graft demo")
    backbone, data = wf.backbone, wf.data
    con.print(backbone.spec.render(width=con.width))
    con.print(f"  {backbone.load_report.summary()}")

    con.print(styled(("\n2. the new data", "bold"), " (embedded: 2000 MNIST training digits, 200 per class)"))
    spec = data.spec
    con.print(f"  {spec.num_samples} samples, shape {'x'.join(map(str, spec.input_shape))}, {len(spec.label_names)} "
              f"classes ({', '.join(spec.label_names)}), {min(spec.class_counts)}-{max(spec.class_counts)} per class; "
              f"split {', '.join(f'{k} {len(v)}' for k, v in data.splits.items())} (stratified, seed 0)")

    con.print("\n3. the plan", style="bold")
    con.print(wf.plan.render(width=con.width))
    grafted = wf.grafted
    x, y = data.arrays("test")
    mean = torch.tensor(grafted.spec.input.mean).view(1, -1, 1, 1)
    std = torch.tensor(grafted.spec.input.std).view(1, -1, 1, 1)
    xt = (torch.from_numpy(x).float() - mean) / std
    t0 = time.perf_counter()
    with Progress(console=con, transient=True) as progress:
        logits = _logits(grafted.module, xt, progress)
    forward = time.perf_counter() - t0
    con.print(f"  the grafted network runs on the {len(xt)} test digits ({len(xt) / forward:,.0f} samples/s); its "
              f"new head is untrained: {100 * float((logits.argmax(1).numpy() == y).mean()):.1f} % accuracy")

    con.print(styled(("\n4. measure every layer, then advise", "bold"), " (planned to this machine's speed)"))
    advice = wf.advise(run_dir, budgeted=True)
    if (run_dir / "measures.json").is_file():
        from graft.measures.summary import Measures

        con.print(Measures.from_json((run_dir / "measures.json").read_text()).render(width=con.width))
    con.print(advice.render(), highlight=False, markup=False)

    reserve = wf.reserve(advice.strategy)  # the comparison leaves the fit of the advice what it needs to be sound
    share = max(0.0, min(COMPARE_SHARE * seconds, (wf.left() or 0.0) - reserve))
    con.print(styled(("\n5. compare strategies", "bold"), f" ({', '.join(COMPARED)}; at most {share:.0f} s in all, same splits, "
              f"leaving {reserve:.0f} s for fitting {advice.strategy})"))
    result = None
    try:
        result = wf.compare(run_dir, strategies=COMPARED, max_epochs=15, report=False, budget=share)
    except GraftError as exc:  # a machine too slow for even one epoch of each in the share: said, and skipped
        say(f"comparison skipped: {exc}")
    if result is not None:
        for row in result.table():
            con.print("  " + "  ".join(f"{c:>9}" for c in [row[0].ljust(12), *row[1:4], row[5]]), highlight=False)
        con.print(f"  best on validation: {result.best}; the advice was {advice.strategy}")

    left = wf.for_training() or 0.0
    chosen = wf.affordable(advice, left, keep_going=True)
    con.print(styled(("\n6. fit with the advice", "bold"), f" ({chosen.strategy}, the {left:.0f} s left for training)"))
    record = wf.fit(run_dir, strategy=chosen.strategy, progress=True, keep_going=True, **chosen.options)
    con.print(f"  {record.epochs_run} epochs in {record.seconds:.1f} s: test accuracy {record.final_accuracy:.3f}, "
              f"macro-F1 {record.final_macro_f1:.3f}; {record.trainable_params:,} of {record.total_params:,} "
              "parameters trained")
    for warning in record.warnings:
        con.print(styled("  ", ("note:", "yellow"), f" {warning}"))

    con.print("\n7. the evidence", style="bold")
    write_json(run_dir / "backbone.json", grafted.spec)
    write_json(run_dir / "dataset.json", spec)
    reloaded = load_run(run_dir)
    fitted = load_model(run_dir / "model.safetensors")
    diff = float((_logits(reloaded.module, xt, None) - _logits(fitted.module, xt, None)).abs().max())
    con.print(f"  reloaded model.safetensors from the file alone: max |logit difference| = {diff:.2e}")
    total = time.perf_counter() - start
    best = result.best if result is not None else None
    summary = {"samples": spec.num_samples, "logits_shape": list(logits.shape), "forward_seconds": forward,
               "reload_max_abs_diff": diff, "total_seconds": total, "budget_seconds": seconds,
               "advice": advice.strategy, "fitted": chosen.strategy, "best_compared": best,
               "test_accuracy": record.final_accuracy}
    write_json(run_dir / "demo.json", summary)
    con.print(styled("  report: ", (str(run_dir / "report.html"), "bold"), " (plan, layer measures, advice, comparison, "
                      "training, metrics, model card; opens offline)"))
    con.rule(f"done in {total:.1f} s of the {seconds:.0f} s budget")
    return DemoResult(run_dir, spec.num_samples, tuple(logits.shape), forward, diff, total, advice.strategy, best,
                      record.final_accuracy)
