"""The commands on a finished run folder: ``graft predict`` (its predictions on a dataset) and ``graft export``
(its network as ONNX or TorchScript)."""

from __future__ import annotations

import argparse

from rich.console import Console

from graft.cli.options import (add_data_options, add_device_options, add_output_options, data_options,
                               device_options, size)


def add_predict(sub) -> None:
    p = sub.add_parser("predict", help="predictions of a finished run on a dataset (accuracy when labelled)")
    p.add_argument("run", help="a run folder written by graft fit")
    add_data_options(p)
    p.add_argument("--split", help="which split (default test, else the only one)")
    add_device_options(p)
    add_output_options(p, out="write predictions as CSV (id, prediction, probability)")
    p.set_defaults(handler=predict)


def predict(args: argparse.Namespace, console: Console) -> int:
    from graft.api import predict as run_on

    ids, labels, probs, metrics = run_on(args.run, args.data, split=args.split, data_options=data_options(args),
                                         out=args.out, **device_options(args))
    if metrics is not None:
        print(metrics.render(width=console.width))
    else:
        for i, label, row in list(zip(ids, labels, probs))[:20]:
            console.print(f"{i}: {label} ({row.max():.3f})", highlight=False)
        if len(ids) > 20:
            console.print(f"... {len(ids) - 20} more" + (f" in {args.out}" if args.out else " (--out FILE.csv)"))
    if args.out:
        console.print(f"wrote {args.out}", highlight=False)
    return 0


def add_export(sub) -> None:
    p = sub.add_parser("export", help="export a run's network to ONNX or TorchScript, verified by running the file")
    p.add_argument("run", help="a run folder written by graft fit")
    p.add_argument("--format", default="onnx", choices=["onnx", "torchscript"])
    p.add_argument("--input-size", nargs="+", type=int, metavar="N", help="input size, when the run has none")
    add_output_options(p, out="file to write (default RUN/model.onnx or RUN/model.pt)")
    p.set_defaults(handler=export)


def export(args: argparse.Namespace, console: Console) -> int:
    from graft.api import export_run

    result = export_run(args.run, args.format, args.out, input_size=size(args.input_size))
    console.print(result.render(), highlight=False)
    return 0
