"""The option groups of the ``graft`` command, each defined once and shared by the subcommands that take it, and
the functions that turn parsed arguments into the public option objects.

Groups: the network (:func:`add_model_options` -> :func:`load_options`, a LoadOptions), the data
(:func:`add_data_options` -> :func:`data_options`, a DataOptions), training (:func:`add_training_options`), the
surgery target (:func:`add_target_options` -> :func:`target`) and the output (:func:`add_output_options`). A
command passes its own defaults (``--val`` is 0 for ``graft data``, 0.1 for ``graft fit``); the names and help
never differ between commands.

Nothing here imports torch or numpy when the parser is built (``graft --help`` stays fast): the conversions
import graft.models and graft.data when a command runs, and the strategy list of ``graft fit --help`` is read
from the registry only when that help is shown (:class:`RegistryHelpFormatter`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from pathlib import Path

from rich.console import Console

from graft.errors import GraftError

SIZE_MODES = ("auto", "native", "resize", "pad", "crop", "global_pool", "adapter")
KEEP_ROWS = ("auto", "require", "never")
STRATEGIES = "{strategies}"  # in a help text: the registered strategies (RegistryHelpFormatter fills it in)
DEFAULT_COMPARISON = "{default_comparison}"  # in a help text: the registry's default comparison


# -- values ------------------------------------------------------------------------------------------------

def name_list(value: str | None) -> list[str] | None:
    """Comma-separated names, or a text file with one name per line."""
    if value is None:
        return None
    path = Path(value)
    if path.is_file():
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return [v.strip() for v in value.split(",")]


def label_map(value: str | None) -> dict[str, str] | None:
    """``new=old,new2=old2`` as {new: old}."""
    if not value:
        return None
    pairs = [item.split("=", 1) for item in value.split(",")]
    if any(len(p) != 2 for p in pairs):
        raise GraftError("--label-map as new=old,new2=old2", value, "separate each new and old name with '='")
    return {a.strip(): b.strip() for a, b in pairs}


def size(value: list[int] | None) -> tuple[int, ...] | None:
    return tuple(value) if value else None


# -- the network -------------------------------------------------------------------------------------------

MODEL_HELP = "timm or zoo name (cifar_resnet56, mobilenetv2_100), a checkpoint file, or a run folder of graft fit"


def add_model_options(p: argparse.ArgumentParser, *, optional: str | None = None) -> None:
    """The network and how to load it: a ``model`` positional, or ``--model`` with the help ``optional``."""
    g = p.add_argument_group("network", "which network, and how to load it")
    if optional is None:
        g.add_argument("model", help=MODEL_HELP)
    else:
        g.add_argument("--model", help=f"{optional}: {MODEL_HELP}")
    g.add_argument("--weights", help="local weights file for a named architecture (.safetensors, .pth, .th)")
    g.add_argument("--arch", help="architecture of a plain checkpoint, when graft cannot tell it")
    g.add_argument("--source-size", nargs="+", type=int, metavar="N", help="input size the network was trained at")
    g.add_argument("--source-labels", help="the network's class names: a,b,c or a file with one per line")
    g.add_argument("--mean", nargs="+", type=float, help="per-channel input mean the network expects")
    g.add_argument("--std", nargs="+", type=float, help="per-channel input std the network expects")
    g.add_argument("--head", help="name of the classifier module, when graft cannot find it")
    g.add_argument("--source-features", help="names of the network's input features (columns, sensors): a,b,c or a "
                   "file")
    g.add_argument("--feature-axis", type=int, help="axis of (C, *size) the feature names label (0 = channels)")
    g.add_argument("--random", action="store_true", help="a randomly initialized network of that architecture "
                   "(no weights; for architectures without published weights, e.g. ts_fcn)")
    g.add_argument("--partial-weights", action="store_true", help="load the tensors of the file that fit and keep "
                   "the rest at their initial values (reported), instead of refusing a file that does not fit exactly")


def load_options(args: argparse.Namespace):
    """The network options of ``args`` as a :class:`graft.models.options.LoadOptions`."""
    from graft.models.options import LoadOptions

    return LoadOptions(weights=args.weights, arch=args.arch, pretrained=False if args.random else None,
                       label_names=name_list(args.source_labels), input_size=size(args.source_size),
                       mean=size(args.mean), std=size(args.std), head=args.head,
                       feature_names=name_list(args.source_features), feature_axis=args.feature_axis,
                       strict=not getattr(args, "partial_weights", False))


# -- the data ----------------------------------------------------------------------------------------------

DATA_HELP = ("the dataset: a folder (class sub-folders, UCR set, audio), .npz, .csv/.parquet, .ts/.tsv/.arff, or "
             "aeon:NAME")


def add_data_options(p: argparse.ArgumentParser, *, positional: bool = False, required: bool = True,
                     val: float = 0.0) -> None:
    """The dataset (a ``data`` positional, or ``--data``) and how to read and split it; ``val``: the default
    of ``--val``."""
    g = p.add_argument_group("data", "which dataset, and how to read and split it")
    if positional:
        g.add_argument("data", help=DATA_HELP)
    else:
        g.add_argument("--data", required=required, help=DATA_HELP)
    g.add_argument("--label-from", dest="label_from", help="which file-name group or table column holds the label "
                   "(FSDD: digit or speaker)")
    g.add_argument("--classes", help="keep only these classes: a,b,c")
    g.add_argument("--val", type=float, default=val, help="fraction of train held out for validation, when the data "
                   "has no val split (stratified; default %(default)s)")
    g.add_argument("--test", type=float, default=0.0, help="fraction of train held out for test, when the data has "
                   "no test split (stratified; default %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="seed of the splits, and of what the command draws: "
                   "training order, subsamples, the probe's folds (default %(default)s)")
    g.add_argument("--normalize", default="none", choices=["none", "zscore", "minmax"],
                   help="time series: per series and channel (default %(default)s)")
    g.add_argument("--audio", default="logmel", choices=["logmel", "mfcc"], help="audio features (default %(default)s)")
    g.add_argument("--audio-layout", default="image", choices=["image", "sequence"],
                   help="audio as (1, bands, frames) images or (bands, frames) sequences (default %(default)s)")
    g.add_argument("--skip-bad", action="store_true", help="drop bad samples (corrupt files, NaN) and list them")


def data_options(args: argparse.Namespace):
    """The data options of ``args`` as a :class:`graft.data.options.DataOptions`."""
    from graft.data.audio import AudioFeatures
    from graft.data.options import DataOptions

    return DataOptions(labels=args.label_from, classes=name_list(args.classes), val_fraction=args.val,
                       test_fraction=args.test, seed=args.seed, normalize=args.normalize,
                       audio=AudioFeatures(kind=args.audio, layout=args.audio_layout),
                       on_error="skip" if args.skip_bad else "raise")


# -- training ----------------------------------------------------------------------------------------------

# option -> (add_argument keywords, help, what None means or None)
TRAINING = {
    "epochs": (dict(type=int), "epochs", "10, or what fits in --budget"),
    "budget": (dict(), "time budget of the whole command (loading, measuring, training, report): 90s, 10m, 1.5h",
               None),
    "lr": (dict(type=float), "peak learning rate of the head", "1e-3"),
    "batch-size": (dict(type=int), "samples per training step", None),
    "layer-decay": (dict(type=float), "learning-rate factor per block going down", "0.7"),
    "batchnorm": (dict(choices=["frozen", "adapt"]), "BatchNorm of frozen blocks", "frozen"),
    "l2sp": (dict(type=float), "L2-SP strength: the pull towards the pretrained weights", "0"),
    "patience": (dict(type=int), "stop after this many epochs without a better validation accuracy", None),
    "plateau": (dict(type=int), "divide the learning rate by 10 after this many epochs without progress", None),
}


def add_training_options(p: argparse.ArgumentParser, names: Iterable[str] = tuple(TRAINING), **defaults) -> None:
    """The training options ``names`` (keys of TRAINING), with the command's ``defaults`` by dest
    (``batch_size=64``)."""
    g = p.add_argument_group("training")
    for name in names:
        kwargs, text, unset = TRAINING[name]
        default = defaults.pop(name.replace("-", "_"), None)
        shown = default if default is not None else unset
        g.add_argument(f"--{name}", default=default, help=text + (f" (default {shown})" if shown is not None else ""),
                       **kwargs)
    if defaults:
        raise TypeError(f"defaults for options not added: {sorted(defaults)}")


# -- where it runs ------------------------------------------------------------------------------------------

def add_device_options(p: argparse.ArgumentParser, *, precision: bool = True):
    """``--device`` and ``--precision`` (graft.devices); the group."""
    g = p.add_argument_group("device", "where the network runs (under torchrun, each rank takes its LOCAL_RANK's GPU)")
    g.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then the CPU), cpu, cuda, cuda:N or mps "
                   "(default %(default)s)")
    if precision:
        g.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                       help="auto: bf16 autocast on a GPU that supports it, fp32 elsewhere; fp16 trains with a "
                       "gradient scaler, on CUDA only (default %(default)s)")
    return g


def device_options(args: argparse.Namespace) -> dict:
    """The ``device=`` and ``precision=`` keywords of ``args``."""
    return {"device": args.device, "precision": getattr(args, "precision", "fp32")}


# -- the surgery target ------------------------------------------------------------------------------------

def add_target_options(p: argparse.ArgumentParser, *, size_mode: bool = True, run_size: bool = True):
    """How the surgery treats the head (``--keep-rows``) and the input size (``--size-mode``, ``--input-size``); the
    group, for a command's own surgery options."""
    g = p.add_argument_group("surgery")
    g.add_argument("--keep-rows", default="auto", choices=KEEP_ROWS, help="keep the head rows of classes matched by "
                   "name (require: fail if none match; never: a new head; default %(default)s)")
    if size_mode:
        g.add_argument("--size-mode", default="auto", choices=SIZE_MODES,
                       help="how the network takes the new input size (default %(default)s: the planner chooses)")
    if run_size:
        g.add_argument("--input-size", nargs="+", type=int, metavar="N", help="run the network at H W (or L): the "
                       "inputs are resized to it in a parameter-free input layer (e.g. 32 px images at 96 px)")
    return g


def target(args: argparse.Namespace) -> dict:
    """The surgery target fields of ``args`` that the verbs take as ``target=``."""
    fields = {"keep_rows": args.keep_rows}
    if hasattr(args, "size_mode"):
        fields["size_mode"] = args.size_mode
    if getattr(args, "input_size", None):
        fields["run_size"] = tuple(args.input_size)
    return fields


# -- output ------------------------------------------------------------------------------------------------

JSON_HELP = "print JSON for machines (stdout holds nothing else)"


def add_output_options(p: argparse.ArgumentParser, *, out: str | None = None, required: bool = False,
                       default: str | None = None, json: bool = False, quiet: bool = False):
    """``--out`` (with the help ``out``: what the command writes there), ``--json``, ``--quiet``; the group."""
    g = p.add_argument_group("output")
    if out is not None:
        g.add_argument("--out", required=required, default=default, help=out)
    if json:
        g.add_argument("--json", action="store_true", help=JSON_HELP)
    if quiet:
        g.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return g


def human_console(args: argparse.Namespace, console: Console) -> Console:
    """Where the lines for people go: ``console`` (stdout), or stderr with ``--json`` (stdout holds the JSON)."""
    from graft.text import console as text_console

    return text_console(stderr=True) if getattr(args, "json", False) else console


def printer(console: Console) -> Callable[[str], None]:
    """A ``log=`` callable that prints plain messages (no markup, no highlighting) on ``console``."""
    return lambda message: console.print(message, highlight=False, markup=False)


# -- the registered strategies in help ---------------------------------------------------------------------

def strategy_help() -> str:
    """Every registered strategy with its description, and ``auto``."""
    from graft.strategy import registered_strategies, strategy_names

    described = [f"{name} ({d.description})" for name, d in zip(strategy_names(), registered_strategies().values())]
    text = "how to train, a registered strategy: " + "; ".join(described) + "; or auto (the advisor decides; short trials settle an ambiguous advice)"
    return text.replace("%", "%%")  # argparse %-formats help texts


class RegistryHelpFormatter(argparse.HelpFormatter):
    """Fills STRATEGIES in a help text from the strategy registry, only when the help is shown: graft.strategy
    is torch-free but loads numpy, which parsing a command line does not need."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        if text and STRATEGIES in text:
            text = text.replace(STRATEGIES, strategy_help())
        if text and DEFAULT_COMPARISON in text:
            from graft.strategy import default_comparison

            text = text.replace(DEFAULT_COMPARISON, ",".join(default_comparison()))
        return text
