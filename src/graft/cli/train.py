"""The commands that train: ``graft pretrain`` (a fresh network, to transfer later) and ``graft fit`` (adapt a
network to a dataset and train it with a strategy)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from graft.cli.options import (
    STRATEGIES,
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
    target,
)


def add_pretrain(sub) -> None:
    p = sub.add_parser("pretrain", help="train a fresh zoo/timm network on a dataset, to transfer it later")
    p.add_argument("arch", help="architecture: ts_fcn, ts_resnet, audio_cnn, sensor_cnn, cifar_resnet20, a timm name")
    p.add_argument("--width", type=int, help="width of a zoo network (filters of its first block)")
    add_data_options(p, positional=True)
    add_training_options(p, ("epochs", "lr", "batch-size"), epochs=20, lr=1e-3, batch_size=64)
    add_device_options(p)
    add_output_options(p, out="run folder: model.safetensors, history.jsonl, splits.json", required=True)
    p.set_defaults(handler=pretrain)


def pretrain(args: argparse.Namespace, console: Console) -> int:
    from graft.api import pretrain as train

    def show(r: dict) -> None:
        acc = f", eval accuracy {r['eval_accuracy']:.3f}" if "eval_accuracy" in r else ""
        console.print(f"epoch {r['epoch']:>3}: loss {r['loss']:.4f}, train accuracy {r['train_accuracy']:.3f}{acc} "
                      f"({r['seconds']:.1f} s)", highlight=False)

    extra = {"width": args.width} if args.width else {}
    backbone, _ = train(args.arch, args.data, args.out, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                        seed=args.seed, log=show, data_options=data_options(args), **device_options(args), **extra)
    console.print(f"saved {backbone.spec.weights} ({backbone.spec.num_params:,} parameters, "
                  f"{len(backbone.spec.label_names or ())} classes)", highlight=False)
    return 0


def add_fit(sub) -> None:
    p = sub.add_parser("fit", help="adapt a network to a dataset and train it with a strategy; resumable",
                       formatter_class=RegistryHelpFormatter)
    add_model_options(p)
    add_data_options(p, val=0.1)
    g = p.add_argument_group("strategy")
    g.add_argument("--strategy", default="full", help=f"{STRATEGIES} (default %(default)s)")
    g.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    g.add_argument("--keep-going", action="store_true", help="fit even when the budget affords fewer epochs than "
                   "the strategy needs, and exit 0 on a result below a linear head (default: refuse, exit 3)")
    add_training_options(p, batch_size=32)
    add_device_options(p)
    add_target_options(p)
    add_output_options(p, out="run folder (runs/NAME)", required=True, json=True, quiet=True)
    p.set_defaults(handler=fit)


def fit(args: argparse.Namespace, console: Console) -> int:
    """The RunRecord as JSON on stdout with ``--json`` (and every line for people on stderr)."""
    from graft.api import fine_tune

    human = human_console(args, console)

    def show(r: dict) -> None:
        val = next((f", {k} {v:.3f}" for k, v in r.items() if k.endswith("_accuracy") and k != "train_accuracy"), "")
        human.print(f"epoch {r['epoch']:>3} [{r['phase']}]: loss {r['loss']:.4f}, train {r['train_accuracy']:.3f}"
                    f"{val} ({r['seconds']:.1f} s)", highlight=False, markup=False)

    tuning = dict(lr=args.lr, layer_decay=args.layer_decay, batchnorm=args.batchnorm, l2sp=args.l2sp)
    record = fine_tune(args.model, args.data, args.out, strategy=args.strategy, epochs=args.epochs, budget=args.budget,
                       batch_size=args.batch_size, seed=args.seed, resume=args.resume, patience=args.patience,
                       plateau=args.plateau, load_options=load_options(args), data_options=data_options(args),
                       target=target(args), messages=printer(human), log=None if args.quiet else show,
                       progress=not args.quiet, keep_going=args.keep_going, started=args.started,
                       **device_options(args),
                       **{k: v for k, v in tuning.items() if v is not None})
    final = (f"{record.final_split} accuracy {record.final_accuracy:.3f}, macro-F1 {record.final_macro_f1:.3f}"
             if record.final_accuracy is not None else "no held-out split to evaluate")
    if record.final_accuracy is not None and record.final_split != "test":
        final += " (optimistic: no test split, and this split chose the best epoch; --test 0.2 holds one out)"
    stopped = f" ({record.stopped})" if record.stopped else ""
    human.print(f"{record.strategy}: {record.epochs_run} epochs{stopped} in {record.seconds:.1f} s; {final}; "
                f"{record.trainable_params:,} of {record.total_params:,} parameters trained", highlight=False)
    human.print(f"run folder: {record.run_dir} (graft predict {record.run_dir} --data ...); report: "
                f"{Path(record.run_dir) / 'report.html'}", highlight=False)
    if args.json:
        print(record.to_json())
    for warning in record.warnings:
        human.print(f"warning: {warning}", highlight=False, markup=False)
    if record.warnings and not args.keep_going:
        human.print("the run folder keeps the model; exit status 3 (pass --keep-going to accept it)", highlight=False)
        return 3
    return 0
