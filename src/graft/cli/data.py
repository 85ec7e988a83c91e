"""``graft data``: what graft sees in a dataset, and whether a network can be grafted to it."""

from __future__ import annotations

import argparse

from rich.console import Console

from graft.cli.options import add_data_options, add_model_options, add_output_options, data_options, load_options


def add_data(sub) -> None:
    p = sub.add_parser("data", help="what graft sees in a dataset: shapes, classes, splits, every problem")
    add_data_options(p, positional=True)
    add_model_options(p, optional="also check that a surgery plan can take this network to the data")
    add_output_options(p, json=True)
    p.set_defaults(handler=data)


def data(args: argparse.Namespace, console: Console) -> int:
    """Exit 1 when the data has a problem of severity ``error``."""
    from graft.api import describe_data

    spec = describe_data(args.data, data_options(args), model=args.model, load_options=load_options(args))
    print(spec.to_json() if args.json else spec.render())
    return 1 if any(p.severity == "error" for p in spec.problems) else 0
