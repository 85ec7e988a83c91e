"""The commands about a network: ``graft inspect`` (its contract), ``graft audit`` (what a file holds, nothing run)
and ``graft plan`` (what surgery would change)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from graft.cli.options import (
    add_data_options,
    add_model_options,
    add_output_options,
    add_target_options,
    data_options,
    label_map,
    load_options,
    name_list,
    size,
)
from graft.errors import GraftError


def add_inspect(sub) -> None:
    p = sub.add_parser("inspect", help="blocks, taps, head, input spec and parameter counts of a network")
    add_model_options(p)
    add_output_options(p, json=True)
    p.set_defaults(handler=inspect)


def add_audit(sub) -> None:
    p = sub.add_parser("audit", help="what a weights file or run folder holds (tensors, metadata, the code a pickle "
                       "would call), executing nothing")
    p.add_argument("path", help="a .safetensors/.pt/.pth file, or a run folder")
    add_output_options(p, json=True)
    p.set_defaults(handler=audit)


def audit(args: argparse.Namespace, console: Console) -> int:
    """Exit 0 when everything is safe and whole, 1 when a file would run code or is damaged."""
    import json

    from graft.api import audit as _audit

    found = _audit(args.path)
    if args.json:
        print(json.dumps([f.to_dict() for f in found], indent=2))
    else:
        for entry in found:
            console.print(entry.render())
    bad = [f for f in found if not f.safe]
    if not args.json:
        console.print(f"{len(found)} entries audited: " + ("all safe and whole" if not bad else
                      f"{len(bad)} would run code or are damaged: {', '.join(Path(f.path).name for f in bad[:6])}"))
    return 1 if bad else 0


def inspect(args: argparse.Namespace, console: Console) -> int:
    from graft.api import describe_model

    spec = describe_model(args.model, load_options(args))
    print(spec.to_json() if args.json else spec.render(width=console.width))
    return 0


def add_plan(sub) -> None:
    p = sub.add_parser("plan", help="what surgery would change, tensor by tensor, and why")
    add_model_options(p)
    add_data_options(p, required=False)
    g = p.add_argument_group("the new task", "what to adapt to, without --data or overriding what it says")
    g.add_argument("--features", help="feature names of the new data (columns, sensors): a,b,c or a file")
    g.add_argument("--num-classes", type=int, help="classes of the new task")
    g.add_argument("--labels", help="class names of the new task: a,b,c or a file with one per line")
    g.add_argument("--in-chans", type=int, help="input channels of the new data")
    g.add_argument("--input-size", nargs="+", type=int, metavar="N", help="input size of the new data: H W, or L")
    g.add_argument("--truncate-at", help="keep blocks up to this one (name or index) and put a new head on top")
    g.add_argument("--label-map", help="renamed classes: new=old,new2=old2")
    g = add_target_options(p, run_size=False)
    g.add_argument("--pad-value", type=float, default=0.0, help="sentinel value written where padding adds positions")
    g.add_argument("--mask-channel", action=argparse.BooleanOptionalAction, default=None,
                   help="append a channel marking real data (1) vs padding (0); default: on when padding")
    g = add_output_options(p, json=True)
    g.add_argument("--verbose", action="store_true", help="list every reused tensor too")
    p.set_defaults(handler=plan)


def plan(args: argparse.Namespace, console: Console) -> int:
    from graft.api import plan_surgery

    fields = dict(num_classes=args.num_classes, label_names=name_list(args.labels), in_chans=args.in_chans,
                  input_size=size(args.input_size), truncate_at=args.truncate_at, size_mode=args.size_mode,
                  pad_value=args.pad_value, mask_channel=args.mask_channel, keep_rows=args.keep_rows,
                  label_map=label_map(args.label_map), feature_names=name_list(args.features))
    fields = {k: v for k, v in fields.items() if v is not None}
    asked = {"num_classes", "label_names", "in_chans", "input_size", "truncate_at"} & set(fields)
    if not args.data and not asked and args.size_mode == "auto":
        raise GraftError("what to adapt to: --data PATH, or --num-classes/--labels/--in-chans/--input-size",
                         "none of them", "for example: graft plan cifar_resnet20 --num-classes 15")
    result = plan_surgery(args.model, data=args.data, load_options=load_options(args),
                          data_options=data_options(args), **fields)
    print(result.to_json() if args.json else result.render(verbose=args.verbose, width=console.width))
    return 0
