"""Peak memory of `graft probe` + `graft fit` on a dataset larger than the memory the process may use.

The data: the CIFAR-10 JPEG subset of ../shared (10000 train, 2000 test images), upsampled to ``--size`` px
(bilinear) and stored as uint8, channels first: 2.2 GiB at 256 px. It is written twice:
- ``stored.npz`` with ``np.savez`` (uncompressed): graft memory-maps its large arrays;
- ``packed.npz`` with ``np.savez_compressed``: graft decompresses it into memory (the baseline, as before).

The job, the same for both files: the CIFAR-10 ResNet20 of ../shared run at 32 px (``--input-size 32``):
``graft probe`` (every block, no multilayer probe), then ``graft fit --strategy partial:1 --epochs 2``.

Runs, one after the other, each in fresh processes, each after the page cache is dropped (as root), so that
what a run reads from disk is charged to its own cgroup:
1. stored, inside a memory cgroup limited to ``--limit`` (1.25 GiB, page cache included: a machine with that
   much memory), when the bench runs as root on Linux with cgroup v1 or v2; without one otherwise;
2. packed, without a limit: the dataset is read into memory, as graft did with every archive before;
3. packed, inside the same cgroup: graft sees the cgroup's limit and decompresses to a spill file instead;
4. with ``--before SRC`` (the ``src`` folder of an older checkout), stored, inside the same cgroup, with that
   code: what the same machine did before memory-mapping (killed by the kernel's OOM killer).

For each: exit status, wall time, the peak anonymous resident memory (``RssAnon``: the memory the process
owns; file pages of a memory map are cache the kernel can drop), the peak resident set (``VmHWM``, mapped file
pages included), the cgroup's peak usage (page cache included) and the fit's test accuracy. The ratio is run 1's
peak ``RssAnon`` over run 2's, both in this command.

    sudo python bench/memory.py [--shared /work/shared] [--size 256] [--limit 1.25G] [--before OLD/src]
                                [--out results.json]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CIFAR_RESNETS, environment, markdown_table, parse_args, write_json  # noqa: E402

from graft.memory import parse_bytes  # noqa: E402


def _extra(p):
    p.add_argument("--size", type=int, default=256, help="side of the upsampled images (default 256)")
    p.add_argument("--limit", default="1.25G", help="the cgroup's memory limit (default 1.25G)")
    p.add_argument("--work", default="/tmp/graft-memory-bench", help="folder for the data and the runs")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--before", default=None, help="src folder of an older graft, run on the stored file in the cgroup")


def _data(shared: Path, work: Path, size: int) -> tuple[Path, Path]:
    stored, packed = work / f"stored{size}.npz", work / f"packed{size}.npz"
    if stored.is_file() and packed.is_file():
        return stored, packed
    z = np.load(shared / "data" / "cifar10" / "cifar10_jpg_subset.npz")
    arrays = {}
    for split in ("train", "test"):
        x = z[f"x_{split}"]
        out = np.empty((len(x), 3, size, size), np.uint8)
        for i in range(0, len(x), 500):
            part = torch.from_numpy(x[i:i + 500]).permute(0, 3, 1, 2).float()
            out[i:i + 500] = F.interpolate(part, size=(size, size), mode="bilinear", align_corners=False) \
                .round().clamp(0, 255).to(torch.uint8).numpy()
        arrays[f"x_{split}"], arrays[f"y_{split}"] = out, z[f"y_{split}"].astype(np.int64)
    work.mkdir(parents=True, exist_ok=True)
    print(f"writing {stored.name} and {packed.name} ({sum(a.nbytes for a in arrays.values()) / 2**30:.2f} GiB)",
          flush=True)
    np.savez(stored, **arrays)
    np.savez_compressed(packed, **arrays)
    return stored, packed


class Cgroup:
    """A memory cgroup (v1 or v2) with a limit, or None where this process cannot make one."""

    def __init__(self, limit: int):
        self.limit, self.path, self.v2 = limit, None, False
        if os.geteuid() != 0:
            return
        v2 = Path("/sys/fs/cgroup/cgroup.controllers")
        base = Path("/sys/fs/cgroup") if v2.is_file() and "memory" in v2.read_text() else Path("/sys/fs/cgroup/memory")
        if not base.is_dir():
            return
        path = base / f"graft-bench-{os.getpid()}"
        try:
            path.mkdir()
            self.v2 = base == Path("/sys/fs/cgroup")
            (path / ("memory.max" if self.v2 else "memory.limit_in_bytes")).write_text(str(limit))
            if self.v2:
                (path / "memory.swap.max").write_text("0") if (path / "memory.swap.max").exists() else None
            self.path = path
        except OSError as exc:
            print(f"no cgroup ({exc}): runs without a memory limit", flush=True)

    def enter(self) -> None:  # in the child, before exec
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def reset_peak(self) -> None:
        if self.path is not None and not self.v2:
            (self.path / "memory.max_usage_in_bytes").write_text("0")

    def peak(self) -> int | None:
        if self.path is None:
            return None
        name = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
        f = self.path / name
        return int(f.read_text()) if f.is_file() else None

    def remove(self) -> None:
        if self.path is not None:
            try:
                self.path.rmdir()
            except OSError:
                pass


def _status(pid: int) -> dict[str, int]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return out


def _drop_caches() -> bool:
    """Write dirty pages and drop the page cache (root only): each run then reads its data from disk."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def _run(command: list[str], cgroup: Cgroup | None, src: str | None = None) -> dict:
    """Run ``command``, sampling its memory every 20 ms; the exit status, wall time and peaks."""
    env = {**os.environ, **({"PYTHONPATH": src} if src else {})}
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=cgroup.enter if cgroup is not None and cgroup.path else None)
    peak = {"RssAnon": 0, "RssFile": 0, "VmHWM": 0}
    while proc.poll() is None:
        for k, v in _status(proc.pid).items():
            peak[k] = max(peak[k], v)
        time.sleep(0.02)
    output = proc.stdout.read()
    return {"command": command[2:], "returncode": proc.returncode, "seconds": round(time.perf_counter() - t0, 1),
            "peak_rss_anon": peak["RssAnon"], "peak_rss_file": peak["RssFile"], "peak_hwm": peak["VmHWM"],
            "output_tail": output[-1500:]}


def _job(name: str, data: Path, weights: Path, work: Path, epochs: int, cgroup: Cgroup | None,
         src: str | None = None) -> dict:
    out = work / name.replace(" ", "_").replace(",", "")
    subprocess.run(["rm", "-rf", str(out)], check=True)
    common = ["cifar_resnet20", "--weights", str(weights), "--data", str(data), "--input-size", "32", "32"]
    graft = [sys.executable, "-m", "graft"]
    dropped = _drop_caches()
    if cgroup is not None:
        cgroup.reset_peak()
    steps = [_run([*graft, "probe", *common, "--no-multilayer", "--out", str(out / "probe")], cgroup, src)]
    if steps[0]["returncode"] == 0:
        steps.append(_run([*graft, "fit", *common, "--strategy", "partial:1", "--epochs", str(epochs),
                           "--out", str(out / "fit"), "--quiet"], cgroup, src))
    metrics = out / "fit" / "metrics.json"
    row = {"run": name, "data": data.name, "data_bytes": data.stat().st_size,
           "limit": cgroup.limit if cgroup is not None and cgroup.path else None,
           "returncode": [s["returncode"] for s in steps], "seconds": round(sum(s["seconds"] for s in steps), 1),
           "peak_rss_anon": max(s["peak_rss_anon"] for s in steps), "peak_hwm": max(s["peak_hwm"] for s in steps),
           "cgroup_peak": cgroup.peak() if cgroup is not None else None, "page_cache_dropped": dropped,
           "metrics": json.loads(metrics.read_text()) if metrics.is_file() else None, "steps": steps}
    acc = row["metrics"]["accuracy"] if row["metrics"] else None
    print(f"{name}: exit {row['returncode']}, {row['seconds']} s, peak RssAnon {row['peak_rss_anon'] / 2**20:.0f} MiB, "
          f"peak RSS {row['peak_hwm'] / 2**20:.0f} MiB, cgroup peak "
          f"{(row['cgroup_peak'] or 0) / 2**20:.0f} MiB, accuracy {acc}", flush=True)
    return row


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], _extra)
    shared, work = Path(args.shared), Path(args.work)
    print("load average before:", os.getloadavg(), flush=True)
    stored, packed = _data(shared, work, args.size)
    weights = shared / "weights" / CIFAR_RESNETS[20]
    limit = parse_bytes(args.limit)
    cgroup = Cgroup(limit)
    try:
        runs = [_job("stored: memory-mapped, limited", stored, weights, work, args.epochs, cgroup),
                _job("compressed: in memory, no limit", packed, weights, work, args.epochs, None),
                _job("compressed: spilled to disk, limited", packed, weights, work, args.epochs, cgroup)]
        if args.before:
            runs.append(_job("stored, the code before, limited", stored, weights, work, args.epochs, cgroup,
                             args.before))
    finally:
        cgroup.remove()
    mib = lambda v: f"{v / 2**20:.0f} MiB" if v else "-"  # noqa: E731
    rows = [[r["run"], f"{r['data']} ({r['data_bytes'] / 2**30:.2f} GiB)", mib(r["limit"]),
             "ok" if all(c == 0 for c in r["returncode"]) else f"killed ({r['returncode']})", f"{r['seconds']} s",
             mib(r["peak_rss_anon"]), mib(r["peak_hwm"]), mib(r["cgroup_peak"]),
             f"{r['metrics']['accuracy']:.3f}" if r["metrics"] else "-"] for r in runs]
    print()
    print(markdown_table(["run", "data", "memory limit", "exit", "time", "peak RssAnon", "peak RSS", "cgroup peak",
                          "test accuracy"], rows))
    ratio = runs[0]["peak_rss_anon"] / max(1, runs[1]["peak_rss_anon"])
    print(f"\npeak RssAnon, memory-mapped over in memory: {ratio:.2f}x")
    print("load average after:", os.getloadavg(), flush=True)
    write_json(args.out, {"environment": environment(), "size": args.size, "limit": limit, "epochs": args.epochs,
                          "ratio_rss_anon": round(ratio, 3), "runs": runs})


if __name__ == "__main__":
    main()
