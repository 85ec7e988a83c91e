"""The ``graft`` command: a thin layer over graft.api (DESIGN.md).

Each subcommand is one function ``(args, console) -> int`` that calls exactly one public verb of graft.api or
graft.demo; its parser is built by the ``add_*`` function beside it, from the option groups of
:mod:`graft.cli.options`, and registers it as ``handler``. :func:`main` parses, dispatches, and turns a
GraftError into ``error: ...`` on stderr (exit 2) and Ctrl-C into exit 130, in one place.

Building the parser imports neither torch nor numpy: each subcommand imports its verb when it runs, so
``graft --help`` and ``graft --version`` answer at once.
"""

from __future__ import annotations

import argparse
import time

from graft import __version__
from graft.cli import data, demo, evidence, network, runs, train
from graft.errors import GraftError
from graft.text import console, styled

__all__ = ["build_parser", "main"]

# the subcommands, in the order `graft --help` lists them
PARSERS = (demo.add_demo, network.add_inspect, network.add_audit, data.add_data, train.add_pretrain, evidence.add_probe, train.add_fit,
           evidence.add_compare, evidence.add_advise, evidence.add_report, runs.add_predict, runs.add_export,
           network.add_plan)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graft", description="Take a trained network to a new dataset.")
    parser.add_argument("--version", action="version", version=f"graft {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in PARSERS:
        add(sub)
    return parser


NETWORK_COMMANDS = frozenset({"demo", "probe", "compare", "advise", "plan", "predict", "export", "pretrain", "fit"})


def main(argv: list[str] | None = None) -> int:
    """Run ``graft ARGV`` (default: the process's arguments); the exit status."""
    started = time.perf_counter()  # a command's --budget counts from here
    args = build_parser().parse_args(argv)
    args.started = started
    threads = None
    try:
        if args.command in NETWORK_COMMANDS:  # torch's threads fitted to the cores other processes leave free
            from graft.threads import fit_threads

            notes: list[str] = []
            threads = fit_threads(log=notes.append)
            args.threads_note = notes[0] if notes else None  # graft demo says it (and graft plan --verbose)
            if notes and getattr(args, "verbose", False):
                console(stderr=True).print(notes[0], style="dim")
        return args.handler(args, console())
    except GraftError as exc:
        console(stderr=True).print(styled(("error:", "bold red"), " ", str(exc)))
        return 2
    except KeyboardInterrupt:
        console(stderr=True).print("interrupted")
        return 130
    finally:
        if threads is not None:  # main() called in a process that goes on (tests, notebooks): its threads back
            import torch

            torch.set_num_threads(threads)
