"""What a phase change costs under torchrun: building a DistributedDataParallel wrapper, and a training step with
``find_unused_parameters`` True and False, on CIFAR ResNet-20 (every parameter trainable), batch 32 per rank.

The Trainer builds a new wrapper whenever what trains changes (graft.training.parallel says why). Run on 2 processes:

    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=2 bench/ddp_rewrap.py [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from graft.models.zoo.cifar_resnet import CifarResNet


def _steps(net, model, x, y, count: int = 25) -> float:
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[5:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    model = CifarResNet(20)
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    builds = []
    for _ in range(5):
        t0 = time.perf_counter()
        DistributedDataParallel(model)
        dist.barrier()
        builds.append(time.perf_counter() - t0)
    out: dict = {"build_s": statistics.median(builds)}
    for unused in (False, True, False, True):  # interleaved
        net = DistributedDataParallel(model, find_unused_parameters=unused)
        out.setdefault(f"step_s_unused_{unused}", []).append(_steps(net, model, x, y))
    if dist.get_rank() == 0:
        print(json.dumps(out))
        if args.out:
            Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
