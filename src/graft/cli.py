"""The ``graft`` command. Each subcommand calls exactly one public function of graft.api / graft.demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from graft import __version__
from graft.errors import GraftError


def _labels(value: str | None) -> list[str] | None:
    """Comma-separated names, or a text file with one name per line."""
    if value is None:
        return None
    p = Path(value)
    if p.is_file():
        return [line.strip() for line in p.read_text().splitlines() if line.strip()]
    return [v.strip() for v in value.split(",")]


def _label_map(value: str | None) -> dict[str, str] | None:
    if not value:
        return None
    pairs = [item.split("=", 1) for item in value.split(",")]
    bad = [p[0] for p in pairs if len(p) != 2]
    if bad:
        raise GraftError("--label-map as new=old,new2=old2", value, "separate each new and old name with '='")
    return {a.strip(): b.strip() for a, b in pairs}


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="timm or zoo name (cifar_resnet56, mobilenetv2_100) or a checkpoint file")
    p.add_argument("--weights", help="local weights file for a named architecture (.safetensors, .pth, .th)")
    p.add_argument("--arch", help="architecture of a plain checkpoint, when graft cannot tell it")
    p.add_argument("--source-size", nargs="+", type=int, metavar="N", help="input size the network was trained at")
    p.add_argument("--source-labels", help="the network's class names: a,b,c or a file with one per line")
    p.add_argument("--mean", nargs="+", type=float, help="per-channel input mean the network expects")
    p.add_argument("--std", nargs="+", type=float, help="per-channel input std the network expects")
    p.add_argument("--head", help="name of the classifier module, when graft cannot find it")
    p.add_argument("--source-features", help="names of the network's input features (columns, sensors): a,b,c or a file")
    p.add_argument("--feature-axis", type=int, help="axis of (C, *size) the feature names label (0 = channels)")
    p.add_argument("--random", action="store_true", help="a randomly initialized network of that architecture "
                   "(no weights; for architectures without published weights, e.g. ts_fcn)")
    p.add_argument("--json", action="store_true", help="print JSON for machines")


def _load_kwargs(a: argparse.Namespace) -> dict:
    kw = dict(weights=a.weights, arch=a.arch, input_size=tuple(a.source_size) if a.source_size else None,
              label_names=_labels(a.source_labels), mean=tuple(a.mean) if a.mean else None,
              std=tuple(a.std) if a.std else None, head=a.head, feature_names=_labels(a.source_features),
              feature_axis=a.feature_axis, pretrained=False if a.random else None)
    return {k: v for k, v in kw.items() if v is not None}


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="a folder (class sub-folders, UCR set, audio), .npz, .csv/.parquet, .ts/.tsv/.arff, "
                   "or aeon:NAME")
    p.add_argument("--label-from", dest="label_from", help="which file-name group or table column holds the label "
                   "(FSDD: digit or speaker)")
    p.add_argument("--classes", help="keep only these classes: a,b,c")
    p.add_argument("--val", type=float, default=0.0, help="fraction of train to hold out for validation (stratified)")
    p.add_argument("--test", type=float, default=0.0, help="fraction of train to hold out for test, when not given")
    p.add_argument("--seed", type=int, default=0, help="seed of the splits")
    p.add_argument("--normalize", default="none", choices=["none", "zscore", "minmax"],
                   help="time series: per series and channel")
    p.add_argument("--audio", default="logmel", choices=["logmel", "mfcc"], help="audio features")
    p.add_argument("--audio-layout", default="image", choices=["image", "sequence"],
                   help="audio as (1, bands, frames) images or (bands, frames) sequences")
    p.add_argument("--skip-bad", action="store_true", help="drop bad samples (corrupt files, NaN) and list them")


def _data_kwargs(a: argparse.Namespace) -> dict:
    from graft.data import AudioFeatures

    return dict(labels=a.label_from, classes=_labels(a.classes), val_fraction=a.val, test_fraction=a.test,
                seed=a.seed, normalize=a.normalize, audio=AudioFeatures(kind=a.audio, layout=a.audio_layout),
                on_error="skip" if a.skip_bad else "raise")


def train_data_args(p: argparse.ArgumentParser) -> None:
    """The model and data options of the commands that train (fit, compare, advise)."""
    _model_args(p)
    p.add_argument("--data", required=True, help="the new dataset (any source graft data reads)")
    p.add_argument("--label-from", dest="label_from", help="which file-name group or table column holds the label")
    p.add_argument("--classes", help="keep only these classes: a,b,c")
    p.add_argument("--val", type=float, default=0.1, help="fraction of train held out for validation (default 0.1; "
                   "used for the best checkpoint and early stopping)")
    p.add_argument("--test", type=float, default=0.0, help="fraction of train held out for the final test, when "
                   "the data has no test split")
    p.add_argument("--normalize", default="none", choices=["none", "zscore", "minmax"])
    p.add_argument("--audio", default="logmel", choices=["logmel", "mfcc"])
    p.add_argument("--audio-layout", default="image", choices=["image", "sequence"])
    p.add_argument("--skip-bad", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graft", description="Take a trained network to a new dataset.")
    parser.add_argument("--version", action="version", version=f"graft {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run the main job on the embedded default (ResNet-20 -> MNIST digits)")
    d.add_argument("--out", default="runs/demo", help="run folder to write (default: runs/demo)")

    i = sub.add_parser("inspect", help="blocks, taps, head, input spec and parameter counts of a network")
    _model_args(i)

    dd = sub.add_parser("data", help="what graft sees in a dataset: shapes, classes, splits, every problem")
    _data_args(dd)
    dd.add_argument("--model", help="also check that a surgery plan can take this network (name or file) to the data")
    dd.add_argument("--random", action="store_true", help="with --model: a randomly initialized architecture")
    dd.add_argument("--json", action="store_true", help="print JSON for machines")

    pt = sub.add_parser("pretrain", help="train a fresh zoo/timm network on a dataset, to transfer it later")
    pt.add_argument("arch", help="architecture: ts_fcn, ts_resnet, audio_cnn, sensor_cnn, cifar_resnet20, a timm name")
    _data_args(pt)
    pt.add_argument("--out", required=True, help="run folder: model.safetensors, history.jsonl, splits.json")
    pt.add_argument("--epochs", type=int, default=20)
    pt.add_argument("--lr", type=float, default=1e-3)
    pt.add_argument("--batch-size", type=int, default=64)
    pt.add_argument("--width", type=int, help="width of a zoo network (filters of its first block)")

    pr = sub.add_parser("probe", help="per-layer transferability: probe accuracy, LogME, similarity; the best layer")
    _model_args(pr)
    pr.add_argument("--data", required=True, help="the new dataset (any source graft data reads)")
    pr.add_argument("--label-from", dest="label_from", help="which file-name group or table column holds the label")
    pr.add_argument("--classes", help="keep only these classes: a,b,c")
    pr.add_argument("--val", type=float, default=0.0, help="fraction of train to hold out for validation")
    pr.add_argument("--test", type=float, default=0.0, help="fraction of train to hold out to evaluate the probe, "
                    "when the data has no test split (default: cross-validation)")
    pr.add_argument("--seed", type=int, default=0, help="seed of the splits, the subsample and the probe's folds")
    pr.add_argument("--normalize", default="none", choices=["none", "zscore", "minmax"],
                    help="time series: per series and channel")
    pr.add_argument("--audio", default="logmel", choices=["logmel", "mfcc"], help="audio features")
    pr.add_argument("--audio-layout", default="image", choices=["image", "sequence"])
    pr.add_argument("--skip-bad", action="store_true", help="drop bad samples (corrupt files, NaN) and list them")
    pr.add_argument("--layers", help="layers to tap: a,b,c (names or indices), 'last', or every block (default)")
    pr.add_argument("--split", default="train", help="split the probe is trained on (default train)")
    pr.add_argument("--eval-split", default="auto",
                    help="split the probe is evaluated on: test, val, cv (cross-validation); default: test, else "
                    "val, else cv")
    pr.add_argument("--max-samples", type=int, help="at most this many samples per split (stratified draw)")
    pr.add_argument("--input-size", nargs="+", type=int, metavar="N", help="resize inputs to H W (or L) first")
    pr.add_argument("--batch-size", type=int, default=None, help="samples per forward pass (default: chosen from the input size)")
    pr.add_argument("--source-data", help="a sample of the source's data, for similarity when the network's "
                    "BatchNorm layers hold no statistics")
    pr.add_argument("--out", help="run folder for measures.json (and measures.png with --plot)")
    pr.add_argument("--plot", action="store_true", help="write measures.png: the per-layer curves")
    pr.add_argument("--no-multilayer", action="store_true",
                    help="skip the probe over every layer at once (selected features; the slowest measure)")

    f = sub.add_parser("fit", help="adapt a network to a dataset and train it with a strategy; resumable")
    train_data_args(f)
    f.add_argument("--strategy", default="full", help="linear, partial:K, lp-ft, full, two-phase, gradual, scratch, "
                   "adapter-warmup, multilayer (a solved head on selected features of every layer), or auto "
                   "(the advisor decides; short trials when it is unsure) (default full)")
    f.add_argument("--epochs", type=int, help="epochs (default 10, or what fits in --budget)")
    f.add_argument("--budget", help="time budget: 90s, 10m, 1.5h")
    f.add_argument("--lr", type=float, help="peak learning rate of the head (default 1e-3)")
    f.add_argument("--batch-size", type=int, default=32)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--layer-decay", type=float, help="learning-rate factor per block going down (default 0.7)")
    f.add_argument("--batchnorm", choices=["frozen", "adapt"], help="BatchNorm of frozen blocks (default frozen)")
    f.add_argument("--l2sp", type=float, help="L2-SP strength (pull towards the pretrained weights; default 0)")
    f.add_argument("--patience", type=int, help="stop after this many epochs without a better validation accuracy")
    f.add_argument("--plateau", type=int, help="divide the learning rate by 10 after this many epochs without progress")
    f.add_argument("--keep-rows", default="auto", choices=["auto", "require", "never"],
                   help="keep head rows of classes matched by name (never: new head)")
    f.add_argument("--size-mode", default="auto",
                   choices=["auto", "native", "resize", "pad", "crop", "global_pool", "adapter"])
    f.add_argument("--out", required=True, help="run folder (runs/NAME)")
    f.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    f.add_argument("--quiet", action="store_true", help="no per-epoch lines")

    from graft.cli_evidence import add_parsers

    add_parsers(sub)

    pd = sub.add_parser("predict", help="predictions of a finished run on a dataset (accuracy when labelled)")
    pd.add_argument("run", help="a run folder written by graft fit")
    pd.add_argument("--data", required=True)
    pd.add_argument("--split", help="which split (default test, else the only one)")
    pd.add_argument("--label-from", dest="label_from")
    pd.add_argument("--out", help="write predictions as CSV (id, prediction, probability)")

    ex = sub.add_parser("export", help="export a run's network to ONNX or TorchScript, verified by running the file")
    ex.add_argument("run", help="a run folder written by graft fit")
    ex.add_argument("--format", default="onnx", choices=["onnx", "torchscript"])
    ex.add_argument("--out", help="file to write (default RUN/model.onnx or RUN/model.pt)")
    ex.add_argument("--input-size", nargs="+", type=int, metavar="N", help="input size, when the run has none")

    p = sub.add_parser("plan", help="what surgery would change, tensor by tensor, and why")
    _model_args(p)
    p.add_argument("--data", help="the new dataset (any source graft data reads)")
    p.add_argument("--features", help="feature names of the new data (columns, sensors): a,b,c or a file")
    p.add_argument("--label-from", dest="label_from", help="with --data: the file-name group or column of the label")
    p.add_argument("--classes", help="with --data: keep only these classes: a,b,c")
    p.add_argument("--num-classes", type=int, help="classes of the new task")
    p.add_argument("--labels", help="class names of the new task: a,b,c or a file with one per line")
    p.add_argument("--in-chans", type=int, help="input channels of the new data")
    p.add_argument("--input-size", nargs="+", type=int, metavar="N", help="input size of the new data: H W, or L")
    p.add_argument("--truncate-at", help="keep blocks up to this one (name or index) and put a new head on top")
    p.add_argument("--size-mode", default="auto",
                   choices=["auto", "native", "resize", "pad", "crop", "global_pool", "adapter"])
    p.add_argument("--pad-value", type=float, default=0.0, help="sentinel value written where padding adds positions")
    p.add_argument("--mask-channel", action=argparse.BooleanOptionalAction, default=None,
                   help="append a channel marking real data (1) vs padding (0); default: on when padding")
    p.add_argument("--keep-rows", default="auto", choices=["auto", "require", "never"],
                   help="keep head rows of classes matched by name (require: fail if none match)")
    p.add_argument("--label-map", help="renamed classes: new=old,new2=old2")
    p.add_argument("--verbose", action="store_true", help="list every reused tensor too")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out, err = Console(), Console(stderr=True)
    try:
        if args.command == "demo":
            from graft.demo import run_demo

            run_demo(args.out, console=out)
        elif args.command == "inspect":
            from graft.api import describe_model

            spec = describe_model(args.model, **_load_kwargs(args))
            print(spec.to_json() if args.json else spec.render(width=out.width))
        elif args.command == "data":
            from graft.api import describe_data

            spec = describe_data(args.data, model=args.model, **_data_kwargs(args),
                                 load_options={"pretrained": False} if args.random else None)
            print(spec.to_json() if args.json else spec.render())
            return 1 if any(p.severity == "error" for p in spec.problems) else 0
        elif args.command == "pretrain":
            from graft.api import pretrain

            def show(r: dict) -> None:
                acc = f", eval accuracy {r['eval_accuracy']:.3f}" if "eval_accuracy" in r else ""
                out.print(f"epoch {r['epoch']:>3}: loss {r['loss']:.4f}, train accuracy {r['train_accuracy']:.3f}{acc} "
                          f"({r['seconds']:.1f} s)", highlight=False)

            extra = {"width": args.width} if args.width else {}
            backbone, history = pretrain(args.arch, args.data, args.out, epochs=args.epochs, lr=args.lr,
                                         batch_size=args.batch_size, seed=args.seed, log=show,
                                         data_options=_data_kwargs(args), **extra)
            out.print(f"saved {backbone.spec.weights} ({backbone.spec.num_params:,} parameters, "
                      f"{len(backbone.spec.label_names or ())} classes)", highlight=False)
        elif args.command == "probe":
            from graft.api import probe

            if args.plot and not args.out:
                raise GraftError("--out RUN_FOLDER with --plot", "--plot alone", "add --out runs/NAME")
            layers = args.layers
            if layers and layers != "last":
                layers = [int(v) if v.strip().lstrip("-").isdigit() else v.strip() for v in layers.split(",")]
            eval_split = None if args.eval_split == "cv" else args.eval_split
            measures = probe(args.model, args.data, split=args.split, eval_split=eval_split, layers=layers,
                             out=args.out, plot=args.plot, source_data=args.source_data,
                             input_size=tuple(args.input_size) if args.input_size else None,
                             batch_size=args.batch_size, seed=args.seed, max_samples=args.max_samples,
                             multilayer=not args.no_multilayer,
                             load_options=_load_kwargs(args), data_options=_data_kwargs(args),
                             log=None if args.json else (lambda m: err.print(m, highlight=False)))
            print(measures.to_json() if args.json else measures.render(width=out.width))
            if args.out and not args.json:
                written = "measures.json" + (" and measures.png" if args.plot else "")
                out.print(f"wrote {written} in {args.out}", highlight=False)
        elif args.command == "fit":
            from graft.api import fine_tune

            def show(r: dict) -> None:
                val = next((f", {k} {v:.3f}" for k, v in r.items() if k.endswith("_accuracy") and k != "train_accuracy"), "")
                out.print(f"epoch {r['epoch']:>3} [{r['phase']}]: loss {r['loss']:.4f}, train {r['train_accuracy']:.3f}"
                          f"{val} ({r['seconds']:.1f} s)", highlight=False, markup=False)

            data_options = {**_data_kwargs(args), "val_fraction": args.val, "test_fraction": args.test, "seed": args.seed}
            options = dict(lr=args.lr, layer_decay=args.layer_decay, batchnorm=args.batchnorm, l2sp=args.l2sp)
            common = dict(epochs=args.epochs, budget=args.budget, batch_size=args.batch_size, seed=args.seed,
                          resume=args.resume, patience=args.patience, plateau=args.plateau,
                          load_options=_load_kwargs(args), data_options=data_options, progress=not args.quiet,
                          target={"keep_rows": args.keep_rows, "size_mode": args.size_mode},
                          **{k: v for k, v in options.items() if v is not None})
            record = fine_tune(args.model, args.data, args.out, strategy=args.strategy,
                               log=lambda m: out.print(m, highlight=False, markup=False),
                               epoch_log=None if args.quiet else show, **common)
            final = (f"{record.final_split} accuracy {record.final_accuracy:.3f}, macro-F1 {record.final_macro_f1:.3f}"
                     if record.final_accuracy is not None else "no held-out split to evaluate")
            out.print(f"{record.strategy}: {record.epochs_run} epochs{' (' + record.stopped + ')' if record.stopped else ''}"
                      f" in {record.seconds:.1f} s; {final}; {record.trainable_params:,} of {record.total_params:,} "
                      f"parameters trained", highlight=False)
            out.print(f"run folder: {record.run_dir} (graft predict {record.run_dir} --data ...); report: "
                      f"{Path(record.run_dir) / 'report.html'}", highlight=False)
        elif args.command in ("compare", "advise", "report"):
            from graft.cli_evidence import run_command

            return run_command(args, out)
        elif args.command == "predict":
            from graft.api import predict

            ids, labels, probs, metrics = predict(args.run, args.data, split=args.split,
                                                  data_options={"labels": args.label_from}, out=args.out)
            if metrics is not None:
                print(metrics.render(width=out.width))
            else:
                for i, lab, row in list(zip(ids, labels, probs))[:20]:
                    out.print(f"{i}: {lab} ({row.max():.3f})", highlight=False)
                if len(ids) > 20:
                    out.print(f"... {len(ids) - 20} more" + (f" in {args.out}" if args.out else " (--out FILE.csv)"))
            if args.out:
                out.print(f"wrote {args.out}", highlight=False)
        elif args.command == "export":
            from graft.api import export_run

            report = export_run(args.run, args.format, args.out,
                                input_size=tuple(args.input_size) if args.input_size else None)
            out.print(report.render(), highlight=False)
        elif args.command == "plan":
            from graft.api import plan_surgery

            fields = dict(num_classes=args.num_classes, label_names=_labels(args.labels), in_chans=args.in_chans,
                          input_size=tuple(args.input_size) if args.input_size else None,
                          truncate_at=args.truncate_at, size_mode=args.size_mode, pad_value=args.pad_value,
                          mask_channel=args.mask_channel, keep_rows=args.keep_rows,
                          label_map=_label_map(args.label_map), feature_names=_labels(args.features))
            fields = {k: v for k, v in fields.items() if v is not None}
            asked = {"num_classes", "label_names", "in_chans", "input_size", "truncate_at"} & set(fields)
            if not args.data and not asked and args.size_mode == "auto":
                raise GraftError("what to adapt to: --data PATH, or --num-classes/--labels/--in-chans/--input-size",
                                 "none of them", "for example: graft plan cifar_resnet20 --num-classes 15")
            data = args.data
            if data and (args.label_from or args.classes):
                from graft.api import load_data

                data = load_data(data, labels=args.label_from, classes=_labels(args.classes))
            plan = plan_surgery(args.model, data=data, load_options=_load_kwargs(args), **fields)
            print(plan.to_json() if args.json else plan.render(verbose=args.verbose, width=out.width))
    except GraftError as exc:
        err.print(f"[bold red]error:[/bold red] {exc}", highlight=False, markup=True)
        return 2
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
