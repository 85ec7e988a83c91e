"""What the multilayer candidate costs the advisor: ``graft.advise`` with and without the multilayer probe.

On the eight tasks of bench/advisor_regret.py, the same process times three arms in rotating order over
``--repeats`` rounds: ``advise(multilayer=False)`` (the baseline: per-layer probes, LogME, similarity),
``advise(multilayer=True)`` (the same, then every layer at once) and ``advise()`` (the default, ``"auto"``: the
multilayer probe only when the per-layer measures leave its candidate a chance). Reported: the median of each,
the ratios to the baseline, the multilayer probe's own seconds (measures.json) and each arm's advice.

    python bench/advisor_probe_cost.py [--shared /work/shared] [--out results.json] [--repeats 3] [--tasks 1,2]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, markdown_table, parse_args, write_json  # noqa: E402
from advisor_regret import _tasks  # noqa: E402

from graft import advise  # noqa: E402


def _extra(p):
    p.add_argument("--repeats", type=int, default=3, help="timed rounds of each arm (rotating order)")
    p.add_argument("--tasks", help="which tasks (1-based, comma-separated); default all")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], _extra)
    torch.set_num_threads(2)
    chosen = {int(t) for t in args.tasks.split(",")} if args.tasks else None
    results, rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for number, (name, model, load_options, make_data) in enumerate(_tasks(Path(args.shared), tmp), 1):
            if chosen and number not in chosen:
                continue
            model = model() if callable(model) else model
            data = make_data()
            keep = {"keep_rows": "never"} if "ts_fcn" in name else {}
            arms = (False, True, "auto")
            seconds = {arm: [] for arm in arms}
            advice, every, ran = {}, None, None
            for r in range(args.repeats):
                for arm in arms[r % 3:] + arms[:r % 3]:
                    out = tmp / f"a{number}-{r}-{arm}"
                    t0 = time.perf_counter()
                    advice[arm] = advise(model, data, out=out, target=keep, load_options=load_options, multilayer=arm)
                    seconds[arm].append(time.perf_counter() - t0)
                    measured = json.loads((out / "measures.json").read_text())
                    if arm is True:
                        every = measured["seconds"].get("multilayer")
                    elif arm == "auto":
                        ran = measured.get("multilayer") is not None
            base, with_ml, auto = (statistics.median(seconds[a]) for a in arms)
            entry = {"task": name, "seconds": {str(a): seconds[a] for a in arms}, "ratio_with": with_ml / base,
                     "ratio_auto": auto / base, "multilayer_probe_seconds": every, "auto_ran_multilayer": ran,
                     "advice": {str(a): advice[a].strategy for a in arms}}
            results.append(entry)
            print(f"{name}: {base:.1f} s without, {with_ml:.1f} s with the multilayer probe ({with_ml / base:.2f}x), "
                  f"{auto:.1f} s by default ({auto / base:.2f}x, probe {'run' if ran else 'skipped'}); advice "
                  + " / ".join(advice[a].strategy for a in arms), flush=True)
            rows.append([name, f"{base:.1f}", f"{with_ml:.1f} ({with_ml / base:.2f}x)",
                         f"{auto:.1f} ({auto / base:.2f}x)", "run" if ran else "skipped",
                         f"{every:.1f}" if every is not None else "-", " / ".join(advice[a].strategy for a in arms)])
            write_json(args.out, {"environment": environment(), "repeats": args.repeats, "tasks": results})
    print()
    print(markdown_table(["task", "without (s)", "with the multilayer probe (s)", "default, auto (s)",
                          "auto: probe", "multilayer probe alone (s)", "advice: without / with / auto"], rows))


if __name__ == "__main__":
    main()
