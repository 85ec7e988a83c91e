"""The budget as a contract: each command's whole wall time against its ``--budget``, as a user runs it.

Every row is one ``graft`` process (its start, imports, loading, measuring, training, report and exit all
counted, timed from outside), on tasks of every modality from ../shared written to files first: ``fit --strategy
auto``, ``fit --strategy full``, ``compare`` (the default strategies), ``advise`` and ``probe``, each with the same
budget. The contract: within 10 % or 5 s of the budget, whichever is larger (issue 16).

    python bench/budget_contract.py [--shared /work/shared] [--out results.json] [--budget 30] [--tasks 1,2]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CIFAR_RESNETS, MOBILENETV2_FILE, environment, markdown_table, parse_args, write_json  # noqa: E402


def _extra(p):
    p.add_argument("--budget", type=float, default=30.0, help="seconds given to every command")
    p.add_argument("--tasks", help="which tasks (1-based, comma-separated); default all")


def _pick(y, per_class, seed=0):
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]))


def tasks(shared: Path, tmp: Path):
    """(name, model arguments, data arguments): files a user would have."""
    w, d = shared / "weights", shared / "data"
    mnist = np.load(d / "mnist" / "mnist.npz")
    i = _pick(mnist["train_labels"], 200)
    np.savez(tmp / "mnist.npz", x=mnist["train_images"][i], y=mnist["train_labels"][i])
    cifar = np.load(d / "cifar10" / "cifar10_jpg_subset.npz")
    j = _pick(cifar["y_train"], 200)
    np.savez(tmp / "cifar.npz", x=cifar["x_train"][j], y=cifar["y_train"][j])
    coral = ["--arch", "mobilenetv2_100", "--mean", "0.5", "0.5", "0.5", "--std", "0.5", "0.5", "0.5"]
    yield "ResNet-20 -> MNIST 2000", [str(w / CIFAR_RESNETS[20])], ["--data", str(tmp / "mnist.npz")]
    yield ("Coral MobileNetV2 -> CIFAR-10 2000, 96 px", [str(w / MOBILENETV2_FILE), *coral],
           ["--data", str(tmp / "cifar.npz"), "--input-size", "96", "96"])
    yield "ResNet-20 -> FSDD spoken digits", [str(w / CIFAR_RESNETS[20])], ["--data", str(d / "fsdd" / "recordings")]
    yield ("ts_fcn (random) -> UCR MedicalImages", ["ts_fcn", "--random"],
           ["--data", str(d / "ucr" / "MedicalImages"), "--normalize", "zscore"])


COMMANDS = {
    "fit auto": ["fit", "{model}", "{data}", "--strategy", "auto", "--out", "{out}", "--quiet", "--keep-going"],
    "fit full": ["fit", "{model}", "{data}", "--strategy", "full", "--out", "{out}", "--quiet", "--keep-going"],
    "compare": ["compare", "{model}", "{data}", "--out", "{out}"],
    "advise": ["advise", "{model}", "{data}", "--out", "{out}"],
    "probe": ["probe", "{model}", "{data}", "--out", "{out}"],
}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], _extra)
    chosen = {int(t) for t in args.tasks.split(",")} if args.tasks else None
    rows, results = [], {"environment": environment(), "budget": args.budget, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for index, (name, model, data) in enumerate(tasks(Path(args.shared), tmp), 1):
            if chosen and index not in chosen:
                continue
            for label, template in COMMANDS.items():
                out = tmp / f"{index}-{label.replace(' ', '-')}"
                command = []
                for part in template:
                    command += model if part == "{model}" else data if part == "{data}" else [str(out)] \
                        if part == "{out}" else [part]
                command += ["--budget", f"{args.budget:g}s"]
                t0 = time.perf_counter()
                proc = subprocess.run([sys.executable, "-m", "graft", *command], capture_output=True, text=True)
                wall = time.perf_counter() - t0
                ok = wall <= max(1.1 * args.budget, args.budget + 5)
                results["runs"].append({"task": name, "command": label, "seconds": wall, "returncode": proc.returncode,
                                        "within": ok, "stderr_tail": proc.stderr[-400:] if proc.returncode else ""})
                rows.append([name, label, f"{wall:.1f}", f"{wall / args.budget:.2f}", str(proc.returncode),
                             "yes" if ok else "NO"])
                print(" | ".join(rows[-1]), flush=True)
    print(markdown_table(["task", "command", "wall s", "wall / budget", "exit", "within 10 % or 5 s"], rows))
    if args.out:
        write_json(args.out, results)


if __name__ == "__main__":
    main()
