"""Microbenchmark of the NodeSelector: rank 5,000 GPU nodes for a 1-GPU training job.

Not a test. Run from the repository root: ``.venv/bin/python bench/micro_ranking.py``.
Prints the median and best wall time in milliseconds of a few cases; the target is ≤ 10 ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

from ringrift_operator.managers.nodes import (
    GIB,
    LABEL_ARCH,
    LABEL_GPU_COMPUTE_MAJOR,
    LABEL_GPU_COMPUTE_MINOR,
    LABEL_GPU_COUNT,
    LABEL_GPU_MEMORY,
    LABEL_GPU_PRODUCT,
    NodeInfo,
    Taint,
    TaintEffect,
)
from ringrift_operator.managers.ranking import (
    TRAINING_DEMAND,
    best_gpu_node_for_training,
    rank_gpu_nodes,
)

# (product, memory MiB, compute, arch, GPUs per node), as GPU Feature Discovery reports them.
SHAPES = (
    ("NVIDIA-H100-80GB-HBM3", 81559, "9.0", "amd64", 8),
    ("NVIDIA-GH200-480GB", 97871, "9.0", "arm64", 1),
    ("NVIDIA-A100-SXM4-80GB", 81920, "8.0", "amd64", 8),
    ("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", 4864, "8.0", "amd64", 56),
    ("NVIDIA-L40S", 46068, "8.9", "amd64", 4),
    ("NVIDIA-GeForce-RTX-4090", 24564, "8.9", "amd64", 2),
    ("NVIDIA-GeForce-RTX-3090", 24576, "8.6", "amd64", 2),
    ("NVIDIA-L4", 23034, "8.9", "amd64", 4),
    ("Tesla-T4", 15360, "7.5", "amd64", 1),
)


def make_nodes(count: int, *, seed: int) -> list[NodeInfo]:
    rng = random.Random(seed)
    nodes = []
    for i in range(count):
        product, memory, compute, arch, gpus = rng.choice(SHAPES)
        major, minor = compute.split(".")
        labels = {
            LABEL_GPU_PRODUCT: product,
            LABEL_GPU_MEMORY: str(memory),
            LABEL_GPU_COMPUTE_MAJOR: major,
            LABEL_GPU_COMPUTE_MINOR: minor,
            LABEL_GPU_COUNT: str(gpus),
            LABEL_ARCH: arch,
        }
        nodes.append(
            NodeInfo(
                name=f"node-{i:05d}",
                labels=labels,
                gpu_allocatable=gpus,
                gpu_in_use=rng.randint(0, gpus),
                cpu_millis=64_000,
                cpu_in_use_millis=rng.randint(0, 64_000),
                memory_bytes=rng.choice((4, 256, 512)) * GIB,
                ready=rng.random() > 0.02,
                unschedulable=rng.random() < 0.01,
                taints=(Taint("nvidia.com/gpu", TaintEffect.NO_SCHEDULE),)
                if rng.random() < 0.5
                else (),
                recent_failures=rng.choice((0, 0, 0, 0, 1, 3)),
            )
        )
    return nodes


def timed(run: Callable[[], object], *, repeat: int) -> tuple[float, float]:
    """(median, best) wall time of ``run`` in milliseconds."""
    run()  # warm the product-score cache
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    mixed = make_nodes(args.nodes, seed=1)
    healthy = [
        replace(n, ready=True, unschedulable=False, taints=(), recent_failures=0, gpu_in_use=0)
        for n in mixed
    ]
    any_arch = replace(TRAINING_DEMAND, allowed_archs=frozenset({"amd64", "arm64"}))
    accepted = len(rank_gpu_nodes(mixed, demand=TRAINING_DEMAND).scored)
    cases: list[tuple[str, Callable[[], object]]] = [
        (
            f"rank, mixed cluster ({accepted} accepted)",
            lambda: rank_gpu_nodes(mixed, demand=TRAINING_DEMAND),
        ),
        (
            "best node for training, mixed cluster",
            lambda: best_gpu_node_for_training(mixed).chosen,
        ),
        (
            "rank + read all RankedNodes, mixed cluster",
            lambda: rank_gpu_nodes(mixed, demand=TRAINING_DEMAND).ranked,
        ),
        (
            "rank, every node accepted",
            lambda: rank_gpu_nodes(healthy, demand=any_arch),
        ),
        (
            "rank + read all RankedNodes, every node accepted",
            lambda: rank_gpu_nodes(healthy, demand=any_arch).ranked,
        ),
    ]
    print(f"{args.nodes} nodes, {args.repeat} runs each (target: <= 10 ms)")
    for title, run in cases:
        median, best = timed(run, repeat=args.repeat)
        print(f"  {title:<52} median {median:6.2f} ms   best {best:6.2f} ms")


if __name__ == "__main__":
    main()
