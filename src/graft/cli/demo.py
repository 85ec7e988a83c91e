"""``graft demo``: the main job on the embedded default network and data."""

from __future__ import annotations

import argparse

from rich.console import Console

from graft.cli.options import add_device_options, add_output_options, device_options


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="run the main job on the embedded default (ResNet-20 -> MNIST digits)")
    add_output_options(p, out="run folder to write (default: runs/demo)", default="runs/demo")
    p.add_argument("--budget", default=None, help="seconds (or 2m) for the whole demo; every stage is planned to "
                   "this machine's speed (default 120s)")
    add_device_options(p)
    p.set_defaults(handler=demo)


def demo(args: argparse.Namespace, console: Console) -> int:
    from graft.demo import DEMO_BUDGET, run_demo

    if getattr(args, "threads_note", None):
        console.print(args.threads_note, style="dim")

    run_demo(args.out, console=console, budget=args.budget or DEMO_BUDGET, started=getattr(args, "started", None),
             **device_options(args))
    return 0
