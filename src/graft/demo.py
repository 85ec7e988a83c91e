"""``graft demo``: the main job on the embedded default, end to end.

A real CIFAR-10 ResNet-20 (3 x 32 x 32 colour objects, 10 classes) is taken to 2000 real MNIST digits
(1 x 28 x 28 grey, 10 other classes): load, describe the data, plan the surgery, apply it, run the result on
every digit, save it as a run folder and reload it to check the file alone rebuilds the same network.
Later stages (probing, training, the advisor, the report) extend this same command.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import Progress

from graft.api import load_model, plan_surgery, save_model
from graft.data import describe_dataset, load_arrays
from graft.models.trace import eval_mode

ASSETS = "assets/demo"


@dataclass(frozen=True)
class DemoResult:
    run_dir: Path
    num_samples: int
    logits_shape: tuple[int, ...]
    forward_seconds: float
    reload_max_abs_diff: float
    total_seconds: float


def asset(name: str) -> Path:
    """Path of an embedded demo asset."""
    return Path(str(resources.files("graft").joinpath(f"{ASSETS}/{name}")))


def _logits(net, x: torch.Tensor, progress: Progress | None, batch: int = 250) -> torch.Tensor:
    outs = []
    task = progress.add_task("running the grafted network", total=len(x)) if progress else None
    with eval_mode(net), torch.inference_mode():
        for i in range(0, len(x), batch):
            outs.append(net(x[i:i + batch]))
            if progress:
                progress.advance(task, len(x[i:i + batch]))
    return torch.cat(outs)


def run_demo(out: str | Path = "runs/demo", console: Console | None = None) -> DemoResult:
    """Run the demo; write the run folder ``out``; return what was measured."""
    con = console or Console()
    start = time.perf_counter()
    run_dir = Path(out)
    model_file, data_file = asset("cifar_resnet20.safetensors"), asset("mnist_2000.npz")

    con.rule("[b]graft demo[/b]: a CIFAR-10 ResNet-20 taken to 2000 MNIST digits")
    con.print("[b]1. the network[/b] (embedded: akamaster's CIFAR-10 ResNet-20, BSD-2-Clause)")
    backbone = load_model(model_file)
    con.print(backbone.spec.render(width=con.width))
    con.print(f"  {backbone.load_report.summary()}")

    con.print("\n[b]2. the new data[/b] (embedded: 2000 MNIST training digits, 200 per class)")
    data = describe_dataset(data_file)
    con.print(f"  {data.num_samples} samples, shape {'x'.join(map(str, data.input_shape))}, "
              f"{len(data.label_names)} classes ({', '.join(data.label_names)}), {min(data.class_counts)}-"
              f"{max(data.class_counts)} per class")

    con.print("\n[b]3. the plan[/b]")
    plan = plan_surgery(backbone, data=data)
    con.print(plan.render(width=con.width))

    con.print("\n[b]4. the surgery[/b]")
    grafted = plan.apply(backbone)
    x, y, _ = load_arrays(data_file)
    mean = torch.tensor(grafted.spec.input.mean).view(1, -1, 1, 1)
    std = torch.tensor(grafted.spec.input.std).view(1, -1, 1, 1)
    xt = (torch.from_numpy(x).float() / 255.0 - mean) / std
    t0 = time.perf_counter()
    with Progress(console=con, transient=True) as progress:
        logits = _logits(grafted.module, xt, progress)
    forward = time.perf_counter() - t0
    con.print(f"  the grafted network ran on all {len(xt)} digits: logits {tuple(logits.shape)} in {forward:.2f} s "
              f"({len(xt) / forward:,.0f} samples/s)")
    con.print(f"  [dim](its new head is untrained: {100 * float((logits.argmax(1).numpy() == y).mean()):.1f} % "
              "accuracy, chance level; training comes with `graft fit`)[/dim]")

    con.print("\n[b]5. the evidence[/b]")
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = save_model(grafted, run_dir / "model.safetensors")
    (run_dir / "plan.json").write_text(plan.to_json())
    (run_dir / "backbone.json").write_text(grafted.spec.to_json())
    (run_dir / "dataset.json").write_text(data.to_json())
    reloaded = load_model(saved)
    diff = float((_logits(reloaded.module, xt, None) - logits).abs().max())
    con.print(f"  wrote {run_dir}/: model.safetensors (weights + plan), plan.json, backbone.json, dataset.json")
    con.print(f"  reloaded {saved.name} from the file alone: max |logit difference| = {diff:.2e}")
    total = time.perf_counter() - start
    summary = {"samples": len(xt), "logits_shape": list(logits.shape), "forward_seconds": forward,
               "reload_max_abs_diff": diff, "total_seconds": total}
    (run_dir / "demo.json").write_text(json.dumps(summary, indent=2))
    con.rule(f"done in {total:.1f} s")
    return DemoResult(run_dir, len(xt), tuple(logits.shape), forward, diff, total)

