"""The commands that gather evidence: ``graft compare``, ``graft advise``, ``graft report``."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table


def add_parsers(sub) -> None:
    from graft.cli import train_data_args

    c = sub.add_parser("compare", help="run several strategies on the same splits and time budget; a table, plots "
                       "and report.html")
    train_data_args(c)
    c.add_argument("--strategies", default="linear,partial:1,partial:2,lp-ft,full,scratch",
                   help="comma-separated (default linear,partial:1,partial:2,lp-ft,full,scratch)")
    c.add_argument("--budget", default="15m", help="time for all of them, split equally (default 15m)")
    c.add_argument("--seeds", type=int, default=1, help="runs per strategy (mean and spread; default 1)")
    c.add_argument("--max-epochs", type=int, default=30, help="at most this many epochs per run (default 30)")
    c.add_argument("--batch-size", type=int, default=32)
    c.add_argument("--seed", type=int, default=0, help="seed of the splits and the first run")
    c.add_argument("--lr", type=float, help="peak learning rate of the head (default 1e-3)")
    c.add_argument("--keep-rows", default="auto", choices=["auto", "require", "never"])
    c.add_argument("--out", required=True, help="folder: comparison.json, runs/, plots, report.html")

    a = sub.add_parser("advise", help="measure, then recommend a strategy, the blocks to unfreeze and why")
    train_data_args(a)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--max-samples", type=int, default=2000, help="the probe's sample per split (default 2000)")
    a.add_argument("--keep-rows", default="auto", choices=["auto", "require", "never"])
    a.add_argument("--out", help="folder for measures.json, measures.png, advice.json")
    a.add_argument("--no-multilayer", action="store_true",
                   help="skip the probe over every layer at once, and with it the multilayer candidate")

    r = sub.add_parser("report", help="(re)build report.html of a run or comparison folder from its files alone")
    r.add_argument("run", help="a folder written by graft fit or graft compare")


def _data(args: argparse.Namespace) -> dict:
    from graft.cli import _data_kwargs

    return {**_data_kwargs(args), "val_fraction": args.val, "test_fraction": args.test, "seed": args.seed}


def run_command(args: argparse.Namespace, out: Console) -> int:
    from graft.cli import _load_kwargs

    say = lambda message: out.print(message, highlight=False, markup=False)  # noqa: E731
    if args.command == "compare":
        from graft.api import compare

        result = compare(args.model, args.data, args.out, strategies=args.strategies, budget=args.budget,
                         seeds=tuple(range(args.seed, args.seed + args.seeds)), batch_size=args.batch_size,
                         max_epochs=args.max_epochs, target={"keep_rows": args.keep_rows},
                         load_options=_load_kwargs(args), data_options=_data(args), log=say,
                         **({"lr": args.lr} if args.lr else {}))
        table = Table(title=f"{result.model} -> {result.data}: {result.budget_seconds:.0f} s in all")
        for name in ("strategy", "val", result.split or "test", "F1", "epochs", "s", "trained", "ms"):
            table.add_column(name, justify="left" if name == "strategy" else "right", no_wrap=True)
        for row in result.table():
            table.add_row(*row)
        out.print(table)
        for d in result.dropped:
            say(f"dropped {d['strategy']}: {d['why']}")
        if result.best:
            say(f"val/test: accuracy; F1: macro-F1; s: training seconds; trained: trainable parameters; ms: "
                f"inference per sample (batch 1, CPU)\nbest on validation: {result.best} (*); report: "
                f"{args.out}/report.html")
    elif args.command == "advise":
        from graft.api import advise

        advice = advise(args.model, args.data, out=args.out, target={"keep_rows": args.keep_rows},
                        max_samples=args.max_samples, load_options=_load_kwargs(args), data_options=_data(args),
                        log=None if args.json else say, multilayer=False if args.no_multilayer else "auto")
        print(advice.to_json()) if args.json else say(advice.render())
    elif args.command == "report":
        from graft.api import write_report

        say(f"wrote {write_report(args.run)}")
    return 0
