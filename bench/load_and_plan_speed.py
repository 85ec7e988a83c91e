"""Wall time of graft.load_model, graft.plan_surgery and plan.apply against the bare PyTorch equivalents.

(a) resnet56: bare load (torch.load + ['state_dict'] + strip 'module.' + CifarResNet(56).load_state_dict)
    vs ``graft.load_model(path)`` (reads the file safely, detects the architecture, loads strictly and
    derives the backbone contract with dry runs).
(b) mobilenetv2_100: ``timm.create_model`` + ``safetensors.torch.load_file`` + ``load_state_dict`` vs
    ``graft.load_model('mobilenetv2_100', weights=FILE)``.
(c) ``graft.plan_surgery`` and ``plan.apply`` for resnet56 -> 15 classes, 1 channel, 28x28 and
    mobilenetv2_100 -> 3 classes, 1 channel, 124x124, each expressed in units of one bare forward pass of
    the source network (eval mode, inference_mode, batch 1, 3 channels at the target size).

Every figure is the median of ``--repeats`` runs (default 5) timed with time.perf_counter, after one
untimed warm-up run. Run on an otherwise idle machine.

    python bench/load_and_plan_speed.py [--shared /work/shared] [--out results.json] [--repeats 5]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    CIFAR_RESNETS,
    MOBILENETV2_FILE,
    bare_cifar_resnet,
    bare_mobilenetv2,
    environment,
    markdown_table,
    median_time,
    parse_args,
    write_json,
)

import graft  # noqa: E402

FORWARD_REPEATS = 25  # a forward pass at batch 1 takes milliseconds: more runs for a stable median


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f}"


def _forward_time(model: torch.nn.Module, shape: tuple[int, ...], repeats: int) -> float:
    model.eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))

    def run():
        with torch.inference_mode():
            model(x)

    return median_time(run, repeats=repeats, warmup=2)[0]


def _load_stages(path: str, name: str, reps: int) -> dict[str, float]:
    """Median time of each call graft.load_model(path or name, weights=path) makes, timed separately."""
    from graft.models.loading import _describe_named, _shape_hints, build_architecture
    from graft.models.weights import load_weights

    ckpt = graft.read_checkpoint(path)
    hints = _shape_hints(name, ckpt.state_dict)
    module = build_architecture(name, **hints)
    load_weights(module, ckpt.state_dict, strict=True)
    stages = {
        "read_checkpoint (safe read, find state dict, strip prefix)": lambda: graft.read_checkpoint(path),
        "build the architecture (random init)": lambda: build_architecture(name, **hints),
        "load_weights(strict=True)": lambda: load_weights(module, ckpt.state_dict, strict=True),
        "describe: backbone contract with dry runs": lambda: _describe_named(module, name, path, {}),
    }
    return {label: median_time(fn, reps)[0] for label, fn in stages.items()}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], lambda p: p.add_argument(
        "--repeats", type=int, default=5, help="timed runs per measurement; the median is reported (default 5)"))
    reps = args.repeats
    weights = Path(args.shared) / "weights"
    r56 = weights / CIFAR_RESNETS[56]
    mnv2 = weights / MOBILENETV2_FILE
    env = environment()
    print(f"torch {env['torch']}, {env['torch_threads']} threads, {env['cpu_count']} CPUs, "
          f"CUDA {'yes' if env['cuda_available'] else 'no'}; median of {reps} runs after 1 warm-up; "
          f"load average before: {env['load_average_1_5_15min']}\n", flush=True)

    # (a) and (b): loading ------------------------------------------------------------------------
    load_rows = []
    cases = [
        ("resnet56 (.th, akamaster)", lambda: bare_cifar_resnet(r56, 56), lambda: graft.load_model(str(r56)),
         "torch.load + strip 'module.' + CifarResNet(56).load_state_dict", "graft.load_model(path)"),
        ("mobilenetv2_100 (.safetensors)", lambda: bare_mobilenetv2(mnv2),
         lambda: graft.load_model("mobilenetv2_100", weights=str(mnv2)),
         "timm.create_model + safetensors load_file + load_state_dict",
         "graft.load_model('mobilenetv2_100', weights=FILE)"),
    ]
    for name, bare_fn, graft_fn, bare_desc, graft_desc in cases:
        t_bare, runs_bare = median_time(bare_fn, reps)
        t_graft, runs_graft = median_time(graft_fn, reps)
        load_rows.append({"model": name, "bare": bare_desc, "graft": graft_desc, "bare_s": t_bare,
                          "graft_s": t_graft, "ratio": t_graft / t_bare, "bare_runs_s": runs_bare,
                          "graft_runs_s": runs_graft})
        print(f"load {name}: bare {_ms(t_bare)} ms, graft {_ms(t_graft)} ms", flush=True)

    # graft.load_model split into its stages, the calls load_model makes (each stage timed on its own)
    breakdown = {"resnet56": _load_stages(str(r56), "cifar_resnet56", reps),
                 "mobilenetv2_100": _load_stages(str(mnv2), "mobilenetv2_100", reps)}

    # (c): surgery ---------------------------------------------------------------------------------
    surgery_cases = [
        ("resnet56", graft.load_model(str(r56)), bare_cifar_resnet(r56, 56),
         dict(num_classes=15, in_chans=1, input_size=(28, 28))),
        ("mobilenetv2_100", graft.load_model("mobilenetv2_100", weights=str(mnv2)), bare_mobilenetv2(mnv2),
         dict(num_classes=3, in_chans=1, input_size=(124, 124))),
    ]
    surgery_rows = []
    for name, backbone, bare, target in surgery_cases:
        size = target["input_size"]
        t_fwd = _forward_time(bare, (1, 3, *size), max(reps, FORWARD_REPEATS))
        t_plan, runs_plan = median_time(lambda b=backbone, t=target: graft.plan_surgery(b, **t), reps)
        plan = graft.plan_surgery(backbone, **target)
        t_apply, runs_apply = median_time(lambda p=plan, b=backbone: p.apply(b), reps)
        grafted = plan.apply(backbone)
        with torch.inference_mode():
            out_shape = tuple(grafted.module.eval()(torch.zeros(1, target["in_chans"], *size)).shape)
        surgery_rows.append({"model": name, "target": {**target, "input_size": list(size)},
                             "forward_s": t_fwd, "plan_s": t_plan, "apply_s": t_apply,
                             "plan_in_forwards": t_plan / t_fwd, "apply_in_forwards": t_apply / t_fwd,
                             "plan_runs_s": runs_plan, "apply_runs_s": runs_apply,
                             "result_output_shape": list(out_shape)})
        print(f"surgery {name}: forward {_ms(t_fwd)} ms, plan {_ms(t_plan)} ms, apply {_ms(t_apply)} ms", flush=True)

    print("\nLoading (median ms)\n")
    print(markdown_table(
        ["model", "bare load", "graft.load_model", "graft / bare", "graft / bare (fastest runs)"],
        [[r["model"], _ms(r["bare_s"]), _ms(r["graft_s"]), f"{r['ratio']:.1f}x",
          f"{min(r['graft_runs_s']) / min(r['bare_runs_s']):.1f}x"] for r in load_rows]))
    print("\nWhere graft.load_model spends its time (median ms, each stage timed alone)\n")
    labels = list(next(iter(breakdown.values())))
    print(markdown_table(["stage", *breakdown], [[lab, *(_ms(breakdown[m][lab]) for m in breakdown)] for lab in labels]))
    print("\nSurgery (median ms; 'forwards' = time / one bare forward pass, batch 1, 3 channels, target size)\n")
    print(markdown_table(
        ["model -> target", "1 bare forward", "plan_surgery", "= forwards", "plan.apply", "= forwards"],
        [[f"{r['model']} -> {r['target']['num_classes']} classes, {r['target']['in_chans']} ch, "
          f"{r['target']['input_size'][0]}x{r['target']['input_size'][1]}",
          _ms(r["forward_s"]), _ms(r["plan_s"]), f"{r['plan_in_forwards']:.1f}", _ms(r["apply_s"]),
          f"{r['apply_in_forwards']:.1f}"] for r in surgery_rows]))
    load_after = [round(v, 2) for v in os.getloadavg()]
    print(f"\nload average (1, 5, 15 min) before: {env['load_average_1_5_15min']}, after: {load_after} "
          f"(other processes on the machine inflate the times)")
    write_json(args.out, {"benchmark": "load_and_plan_speed", "environment": env, "load_average_after": load_after,
                          "repeats": reps, "warmup": 1, "forward_repeats": max(reps, FORWARD_REPEATS),
                          "load": load_rows, "load_breakdown_s": breakdown, "surgery": surgery_rows})


if __name__ == "__main__":
    main()
