"""graft on the device it is started on: extraction and training against the bare PyTorch loop there, in fp32 and in
mixed precision, and the speed-up of a 2-process torchrun fit over one process.

Runs wherever it is started (``--device auto``: CUDA, then MPS, then the CPU). Every ratio is bare / graft, both
timed in this process, interleaved, on the same device, network, batches and precision:

1. Extraction: ``graft.extract_features(layers="last", batchnorm=False)`` (one tap, a first call: its cache is
   emptied before) against ``with torch.inference_mode(): for x, _ in loader: model(normalize(resize(x)))``.
   graft extracts in fp32 on every device (the measures compare fp32 features), so this is fp32 only.
2. Training: one epoch of the Trainer's ``full`` strategy (the epoch alone: no evaluation, no checkpoint) against
   ``for x, y in loader: opt.zero_grad(); with autocast: loss = F.cross_entropy(model(normalize(x)), y);
   loss.backward(); opt.step()`` with the same AdamW groups, in fp32 and in bf16 autocast (fp16 with a gradient
   scaler on CUDA when bf16 is missing). Reported as images/s and the ratio.
3. Data-parallel: ``torchrun --standalone --nproc_per_node=2 -m graft fit`` against ``python -m graft fit`` with
   the same data, strategy, epochs and global batch; the training seconds each run.json records (start-up and
   imports excluded). On the CPU the two processes share the cores (one thread each, against two threads in one
   process); on a machine with 2 GPUs each rank takes one. Skipped on a machine with one GPU.

Cases: on CUDA, MobileNetV2 1.0 (ImageNet weights, ../shared/weights) at 224 px on CIFAR-10 images upsampled,
batch 64; on the CPU, where that runs at about 18 images/s, CIFAR ResNet-20 at 32 px on 2000 CIFAR-10 images,
batch 64 (``--case`` chooses). Medians of ``--repeats`` rounds after one warm-up round.

    python bench/device.py [--shared /work/shared] [--device auto] [--case auto] [--repeats 3] [--out results.json]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CIFAR_RESNETS, MOBILENETV2_FILE, environment, markdown_table, parse_args, write_json  # noqa: E402

import graft  # noqa: E402
from graft.devices import Runtime  # noqa: E402
from graft.strategy import parse_strategy  # noqa: E402
from graft.training import Trainer  # noqa: E402
from train_speed import _cifar  # noqa: E402  (the same CIFAR-10 draw as the trainer benchmark)

BATCH = 64


def _extra(p):
    p.add_argument("--device", default="auto")
    p.add_argument("--case", default="auto", choices=["auto", "mobilenetv2", "resnet20"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-ddp", action="store_true", help="skip the torchrun comparison")


def _case(shared: Path, name: str):
    """(label, weights path, load options, data, images)"""
    if name == "mobilenetv2":
        coral = {"arch": "mobilenetv2_100", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
        return "MobileNetV2 1.0 at 224 px", shared / "weights" / MOBILENETV2_FILE, coral, _cifar(shared, 1280, 224)
    return "CIFAR ResNet-20 at 32 px", shared / "weights" / CIFAR_RESNETS[20], {}, _cifar(shared, 2000)


def _grafted(path, data, runtime, **kw):
    backbone = graft.load_model(path, **kw)
    net = graft.plan_surgery(backbone, data=data, keep_rows="never").apply(backbone)
    runtime.place(net.module)
    return net


def _sync(runtime):
    if runtime.torch_device.type == "cuda":
        torch.cuda.synchronize()


def extraction(path, options, data, runtime, repeats) -> dict:
    net = _grafted(path, data, runtime, **options)
    inp = net.spec.input
    mean = torch.tensor(inp.mean, device=runtime.torch_device).view(1, -1, 1, 1)
    std = torch.tensor(inp.std, device=runtime.torch_device).view(1, -1, 1, 1)
    loader = data.loader("train", BATCH, shuffle=False, pin_memory=runtime.pin_memory)
    times = {"bare": [], "graft": []}
    for _ in range(repeats + 1):
        for kind in ("bare", "graft"):
            _sync(runtime)
            t0 = time.perf_counter()
            if kind == "bare":
                net.module.eval()
                with torch.inference_mode():
                    for x, _ in loader:
                        net.module((runtime.to(x) - mean) / std)
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    graft.extract_features(net, data, layers="last", batch_size=BATCH, cache_dir=tmp,
                                           progress=False)
            _sync(runtime)
            times[kind].append(time.perf_counter() - t0)
    n = len(data["train"])
    bare, mine = (statistics.median(v[1:]) for v in times.values())
    return {"images": n, "bare_images_s": n / bare, "graft_images_s": n / mine, "ratio": bare / mine, "times_s": times}


def training(path, options, data, runtime, repeats) -> dict:
    times = {"bare": [], "graft": []}
    for _ in range(repeats + 1):
        for kind in ("bare", "graft"):
            torch.manual_seed(0)
            net = _grafted(path, data, runtime, **options)
            with tempfile.TemporaryDirectory() as tmp:
                trainer = Trainer(net, data, parse_strategy("full", warmup_epochs=0), tmp, epochs=1, batch_size=BATCH,
                                  eval_split=None, cache_prefix=False, progress=False, runtime=runtime)
                _, phase, _ = trainer._phase_at(0)
                trainer._set_trainable(phase, phase.trainable)
                _sync(runtime)
                t0 = time.perf_counter()
                if kind == "graft":
                    trainer._epoch(0, time.perf_counter())
                else:
                    module, opt, prep, scaler = trainer.module, trainer.optimizer, trainer.prep, runtime.scaler()
                    module.train()
                    for x, y in data.loader("train", BATCH, shuffle=True, seed=0, pin_memory=runtime.pin_memory):
                        x, y = runtime.to(x), runtime.to(y)
                        opt.zero_grad(set_to_none=True)
                        with runtime.autocast():
                            loss = F.cross_entropy(module(prep.batch(x)), y)
                        runtime.step(loss, opt, scaler)
                _sync(runtime)
                times[kind].append(time.perf_counter() - t0)
    n = len(data["train"])
    bare, mine = (statistics.median(v[1:]) for v in times.values())
    return {"images": n, "bare_images_s": n / bare, "graft_images_s": n / mine, "ratio": bare / mine, "times_s": times}


def data_parallel(path, options, data, runtime, repeats) -> dict | None:
    """Training seconds of ``graft fit`` in one process and under torchrun with 2, from each run.json."""
    if runtime.torch_device.type == "cuda" and torch.cuda.device_count() < 2:
        return {"skipped": f"one GPU ({torch.cuda.get_device_name(0)}): a 2-process run needs two"}
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        return {"skipped": "torchrun is not installed"}
    seconds = {"one process": [], "torchrun, 2 processes": []}
    with tempfile.TemporaryDirectory() as tmp:
        x, y = data.arrays("train")
        np.savez(Path(tmp) / "d.npz", x=x, y=y)
        extra = []
        for k, v in options.items():
            extra += [f"--{k}", *(map(str, v) if isinstance(v, tuple) else [str(v)])]
        args = ["fit", str(path), *extra, "--data", str(Path(tmp) / "d.npz"), "--strategy", "full", "--epochs", "2",
                "--batch-size", str(BATCH), "--val", "0", "--quiet", "--device", "auto" if runtime.torch_device.type
                == "cuda" else "cpu", "--precision", runtime.precision]
        for r in range(repeats):
            for label in seconds:
                out = Path(tmp) / f"run-{label[:3]}-{r}"
                cmd = ([sys.executable, "-m", "graft"] if label == "one process" else
                       [torchrun, "--standalone", "--nproc_per_node=2", "-m", "graft"])
                env = {**os.environ, "OMP_NUM_THREADS": "1" if label != "one process" else "2"}
                done = subprocess.run([*cmd, *args, "--out", str(out)], capture_output=True, text=True, env=env)
                if done.returncode:
                    return {"failed": label, "output": (done.stdout + done.stderr)[-2000:]}
                seconds[label].append(json.loads((out / "run.json").read_text())["seconds"])
    one, two = (statistics.median(v) for v in seconds.values())
    return {"seconds": seconds, "one_s": one, "two_s": two, "speedup": one / two, "epochs": 2}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], _extra)
    shared = Path(args.shared)
    if not (shared / "data" / "cifar10" / "cifar10_jpg_subset.npz").is_file():
        print("skipped: the CIFAR-10 subset is absent")
        return
    fp32 = Runtime.resolve(args.device, "fp32")
    device = fp32.torch_device
    if device.type == "cpu":
        torch.set_num_threads(2)
    mixed_name = "bf16" if device.type != "cuda" or torch.cuda.is_bf16_supported() else "fp16"
    mixed = Runtime.resolve(args.device, mixed_name)
    case = args.case if args.case != "auto" else ("mobilenetv2" if device.type == "cuda" else "resnet20")
    label, path, options, data = _case(shared, case)
    print(f"{label} on {fp32.describe()}", flush=True)
    results = {"environment": environment(), "device": fp32.to_dict(), "case": label, "repeats": args.repeats}
    results["extraction_fp32"] = extraction(path, options, data, fp32, args.repeats)
    results["training_fp32"] = training(path, options, data, fp32, args.repeats)
    results[f"training_{mixed_name}"] = training(path, options, data, mixed, args.repeats)
    rows = [["extraction, fp32, one tap", *(f"{results['extraction_fp32'][k]:.1f}" for k in
                                             ("bare_images_s", "graft_images_s")),
             f"{results['extraction_fp32']['ratio']:.3f}"]]
    for name in ("fp32", mixed_name):
        r = results[f"training_{name}"]
        rows.append([f"training step, {name}", f"{r['bare_images_s']:.1f}", f"{r['graft_images_s']:.1f}",
                     f"{r['ratio']:.3f}"])
    print(markdown_table(["what", "bare images/s", "graft images/s", "ratio bare / graft"], rows), flush=True)
    if not args.no_ddp:
        results["data_parallel"] = data_parallel(path, options, data, fp32, args.repeats)
        print(json.dumps({k: v for k, v in results["data_parallel"].items() if k != "seconds"}))
    write_json(args.out, results)


if __name__ == "__main__":
    main()
