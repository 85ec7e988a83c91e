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
import os
import sys
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


class Stopped(BaseException):
    """SIGTERM under torchrun: the launcher ends the other ranks when one fails."""


def _stop_on_sigterm() -> None:
    import signal

    def stop(_signum, _frame):
        raise Stopped()

    signal.signal(signal.SIGTERM, stop)


def _rank() -> int:
    """This process's rank under torchrun (0 outside it)."""
    text = os.environ.get("RANK", "0")
    return int(text) if text.isdigit() else 0


def main(argv: list[str] | None = None) -> int:
    """Run ``graft ARGV`` (default: the process's arguments); the exit status. Under torchrun, rank 0 prints; the
    other ranks print only their errors, prefixed with their rank."""
    started = time.perf_counter()  # a command's --budget counts from here
    args = build_parser().parse_args(argv)
    args.started = started
    threads, rank = None, _rank()
    prefix = f"rank {rank}: " if rank else ""
    launched = os.environ.get("WORLD_SIZE", "1") not in ("", "1")  # by torchrun, with other ranks
    if launched:
        _stop_on_sigterm()
    try:
        if args.command in NETWORK_COMMANDS:  # torch's threads fitted to the cores other processes leave free
            from graft.threads import fit_threads

            notes: list[str] = []
            threads = fit_threads(log=notes.append)
            args.threads_note = notes[0] if notes else None  # graft demo says it (and graft plan --verbose)
            if notes and getattr(args, "verbose", False):
                console(stderr=True).print(notes[0], style="dim")
        if rank:  # the other ranks of a torchrun launch: rank 0 speaks for them
            import contextlib

            from rich.console import Console

            with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
                return args.handler(args, Console(file=quiet))
        return args.handler(args, console())
    except GraftError as exc:
        console(stderr=True).print(styled((f"{prefix}error:", "bold red"), " ", str(exc)))
        return 2
    except Stopped:
        out = getattr(args, "out", None)
        console(stderr=True).print(f"{prefix}stopped by torchrun, which ends every rank when one fails (its error is in "
                                   "torchrun's report)" + (f"; {out} keeps its last whole checkpoint: run the same "
                                                           "torchrun command with --resume" if out else ""))
        return 143
    except KeyboardInterrupt:
        console(stderr=True).print(f"{prefix}interrupted")
        return 130
    finally:
        if "graft.distributed" in sys.modules:  # a torchrun launch: leave its process group
            sys.modules["graft.distributed"].shutdown()
        if launched:  # done: torchrun's SIGTERM now ends it quietly
            import signal

            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if threads is not None:  # main() called in a process that goes on (tests, notebooks): its threads back
            import torch

            torch.set_num_threads(threads)
