"""The commands that gather evidence: ``graft probe`` (per-layer transferability), ``graft compare`` (strategies
side by side), ``graft advise`` (measure, then recommend) and ``graft report`` (report.html from a folder)."""

from __future__ import annotations

import argparse
import json

from rich.console import Console

from graft.cli.options import (
    DEFAULT_COMPARISON,
    RegistryHelpFormatter,
    add_data_options,
    add_device_options,
    add_model_options,
    add_output_options,
    add_target_options,
    add_training_options,
    data_options,
    device_options,
    human_console,
    load_options,
    printer,
    size,
    target,
)
from graft.errors import GraftError
from graft.text import console as text_console


def add_probe(sub) -> None:
    p = sub.add_parser("probe", help="per-layer transferability: probe accuracy, LogME, similarity; the best layer")
    add_model_options(p)
    add_data_options(p)
    g = p.add_argument_group("probe")
    g.add_argument("--layers", help="layers to tap: a,b,c (names or indices), 'last', or every block (default)")
    g.add_argument("--split", default="train", help="split the probe is trained on (default train)")
    g.add_argument("--eval-split", default="auto", help="split the probe is evaluated on: test, val, cv "
                   "(cross-validation); default: test, else val, else cv")
    g.add_argument("--max-samples", type=int, help="at most this many samples per split (stratified draw)")
    g.add_argument("--input-size", nargs="+", type=int, metavar="N", help="resize inputs to H W (or L) first")
    g.add_argument("--batch-size", type=int, default=None,
                   help="samples per forward pass (default: chosen from the input size)")
    g.add_argument("--source-data", help="a sample of the source's data, for similarity when the network's "
                   "BatchNorm layers hold no statistics")
    g.add_argument("--no-multilayer", action="store_true",
                   help="skip the probe over every layer at once (selected features; the slowest measure)")
    g.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None,
                   help="probe only the layers that can hold the best (the probes on either side of a layer below "
                   "the best's interval leave it out); default: with --budget")
    add_training_options(p, ("budget",))
    add_device_options(p, precision=False)
    g = add_output_options(p, out="run folder for measures.json (and measures.png with --plot)", json=True)
    g.add_argument("--plot", action="store_true", help="write measures.png: the per-layer curves")
    p.set_defaults(handler=probe)


def probe(args: argparse.Namespace, console: Console) -> int:
    from graft.api import probe as measure

    if args.plot and not args.out:
        raise GraftError("--out RUN_FOLDER with --plot", "--plot alone", "add --out runs/NAME")
    layers = args.layers
    if layers and layers != "last":
        layers = [int(v) if v.strip().lstrip("-").isdigit() else v.strip() for v in layers.split(",")]
    measures = measure(args.model, args.data, split=args.split, eval_split=None if args.eval_split == "cv" else
                       args.eval_split, layers=layers, out=args.out, plot=args.plot, source_data=args.source_data,
                       input_size=size(args.input_size), batch_size=args.batch_size, seed=args.seed,
                       max_samples=args.max_samples, multilayer=not args.no_multilayer, refine=args.refine,
                       load_options=load_options(args), data_options=data_options(args), budget=args.budget,
                       started=args.started, log=None if args.json else printer(text_console(stderr=True)),
                       device=args.device)
    print(measures.to_json() if args.json else measures.render(width=console.width))
    if args.out and not args.json:
        written = "measures.json" + (" and measures.png" if args.plot else "")
        console.print(f"wrote {written} in {args.out}", highlight=False)
    return 0


def add_compare(sub) -> None:
    p = sub.add_parser("compare", help="run several strategies on the same splits and time budget; a table, plots "
                       "and report.html", formatter_class=RegistryHelpFormatter)
    add_model_options(p)
    add_data_options(p, val=0.1)
    g = p.add_argument_group("strategies")
    g.add_argument("--strategies", default=None,
                   help=f"comma-separated registered strategies (default: {DEFAULT_COMPARISON})")
    g.add_argument("--seeds", type=int, default=1, help="runs per strategy (mean and spread; default 1)")
    g.add_argument("--max-epochs", type=int, default=30, help="at most this many epochs per run (default 30)")
    add_training_options(p, ("budget", "lr", "batch-size"), budget="15m", batch_size=32)
    add_device_options(p)
    add_target_options(p, size_mode=False)
    add_output_options(p, out="folder: comparison.json, runs/, plots, report.html", required=True, json=True)
    p.set_defaults(handler=compare)


def compare(args: argparse.Namespace, console: Console) -> int:
    """The Comparison as JSON on stdout with ``--json`` (and the table and messages on stderr)."""
    from rich.table import Table

    from graft.api import compare as run_side_by_side

    human = human_console(args, console)
    say = printer(human)
    result = run_side_by_side(args.model, args.data, args.out, strategies=args.strategies, budget=args.budget,
                              seeds=tuple(range(args.seed, args.seed + args.seeds)), batch_size=args.batch_size,
                              max_epochs=args.max_epochs, target=target(args), load_options=load_options(args),
                              data_options=data_options(args), log=say, started=args.started,
                              **device_options(args),
                              **({"lr": args.lr} if args.lr else {}))
    table = Table(title=f"{result.model} -> {result.data}: {result.budget_seconds:.0f} s in all")
    for name in ("strategy", "val", result.split or "test", "F1", "epochs", "s", "trained", "ms"):
        table.add_column(name, justify="left" if name == "strategy" else "right", no_wrap=True)
    for row in result.table():
        table.add_row(*row)
    human.print(table)
    for d in result.dropped:
        say(f"dropped {d['strategy']}: {d['why']}")
    if result.best:
        say(f"val/test: accuracy; F1: macro-F1; s: training seconds; trained: trainable parameters; ms: inference "
            f"per sample (batch 1, CPU)\nbest on validation: {result.best} (*); report: {args.out}/report.html")
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    return 0


def add_advise(sub) -> None:
    p = sub.add_parser("advise", help="measure, then recommend a strategy, the blocks to unfreeze and why")
    add_model_options(p)
    add_data_options(p, val=0.1)
    g = p.add_argument_group("probe")
    g.add_argument("--max-samples", type=int, default=2000, help="the probe's sample per split (default 2000)")
    g.add_argument("--no-multilayer", action="store_true",
                   help="skip the probe over every layer at once, and with it the multilayer candidate")
    add_training_options(p, ("budget",))
    add_device_options(p)
    add_target_options(p, size_mode=False)
    add_output_options(p, out="folder for measures.json, measures.png, advice.json", json=True)
    p.set_defaults(handler=advise)


def advise(args: argparse.Namespace, console: Console) -> int:
    from graft.api import advise as recommend

    say = printer(console)
    advice = recommend(args.model, args.data, out=args.out, target=target(args), max_samples=args.max_samples,
                       load_options=load_options(args), data_options=data_options(args),
                       log=None if args.json else say, multilayer=False if args.no_multilayer else "auto",
                       budget=args.budget, started=args.started, **device_options(args))
    if args.json:
        print(advice.to_json())
    else:
        say(advice.render())
    return 0


def add_report(sub) -> None:
    p = sub.add_parser("report", help="(re)build report.html of a run or comparison folder from its files alone")
    p.add_argument("run", help="a folder written by graft fit or graft compare")
    p.set_defaults(handler=report)


def report(args: argparse.Namespace, console: Console) -> int:
    from graft.api import write_report

    printer(console)(f"wrote {write_report(args.run)}")
    return 0
