"""Micro-benchmark of sync planning: how long ``plan_sync`` takes over a million manifest entries.

Run from the repository root: ``.venv/bin/python bench/micro_syncplan.py [--nodes 10]
[--files 100000] [--targets 2] [--repeat 3]``. Prints one line per scenario with the best planning
time of ``--repeat`` runs (building the manifests is not timed). The budget is 2 s for 1,000,000
entries.

Scenarios, all with ``--nodes`` manifests of ``--files`` entries each:

- ``cold``: every node holds only the games it produced; the targets lack almost everything.
- ``steady``: every node holds the same files; nothing to send (the common case).
- ``mixed``: each node holds a random part of a shared pool, some copies outdated, one peer
  unhealthy; a realistic day.
"""

from __future__ import annotations

import argparse
import functools
import random
import time
from collections.abc import Callable

from ringrift_operator.managers.syncplanning import FileEntry, Manifest, SyncPlan, plan_sync

NOW = 1_800_000_000.0
CONFIGS = ("square8_2p", "square8_4p", "hex8_2p", "square19_2p", "hexagonal_3p")


def _sha(i: int, version: int = 0) -> str:
    return f"{i:056x}{version:08x}"


def _path(i: int) -> str:
    return f"games/{CONFIGS[i % len(CONFIGS)]}/g{i:09d}.jsonl"


def build_cold(nodes: int, files: int) -> list[Manifest]:
    manifests = []
    for n in range(nodes):
        entries = {}
        for i in range(n * files, (n + 1) * files):
            path = _path(i)
            entries[path] = FileEntry(path, 4096 + i % 1000, NOW - 3600 + i % 600, _sha(i))
        manifests.append(Manifest(f"node-{n}", entries, NOW - 10))
    return manifests


def build_steady(nodes: int, files: int) -> list[Manifest]:
    shared = {}
    for i in range(files):
        path = _path(i)
        shared[path] = FileEntry(path, 4096, NOW - 3600, _sha(i))
    return [Manifest(f"node-{n}", dict(shared), NOW - 10) for n in range(nodes)]


def build_mixed(nodes: int, files: int) -> list[Manifest]:
    rng = random.Random(7)
    pool = files * 3
    manifests = []
    for n in range(nodes):
        entries = {}
        for i in rng.sample(range(pool), files):
            path = _path(i)
            outdated = rng.random() < 0.05
            mtime = NOW - 3600 - (600 if outdated else 0)
            entries[path] = FileEntry(path, 4096 + i % 1000, mtime, _sha(i, int(outdated)))
        manifests.append(Manifest(f"node-{n}", entries, NOW - 10))
    return manifests


def _best_of(repeat: int, plan: Callable[[], SyncPlan]) -> tuple[float, SyncPlan]:
    best = float("inf")
    result = plan()
    for _ in range(repeat):
        start = time.perf_counter()
        result = plan()
        best = min(best, time.perf_counter() - start)
    return best, result


def _calibrate() -> float:
    """The speed of this interpreter on this machine, to compare figures across machines."""
    table = {str(i): i for i in range(1_000_000)}
    get = table.get
    start = time.perf_counter()
    for key in table:
        get(key)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--files", type=int, default=100_000, help="entries per node")
    parser.add_argument("--targets", type=int, default=2, help="nodes to supply")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    targets = [f"node-{n}" for n in range(args.targets)]
    entries = args.nodes * args.files
    print(f"{args.nodes} nodes x {args.files} files = {entries:,} entries, {args.targets} targets")
    print(f"  machine: a bare loop of 1,000,000 dict lookups takes {_calibrate():.3f} s")
    for name, build in (("cold", build_cold), ("steady", build_steady), ("mixed", build_mixed)):
        manifests = build(args.nodes, args.files)
        elapsed, plan = _best_of(
            args.repeat,
            functools.partial(
                plan_sync,
                manifests,
                targets=targets,
                now=NOW,
                unhealthy={f"node-{args.nodes - 1}"},
            ),
        )
        print(
            f"  {name:<7} {elapsed:6.3f} s   {len(plan.transfers):>7,} transfers"
            f"  {plan.total_files:>9,} files  {plan.total_bytes / 1e9:6.2f} GB"
            f"  missing {sum(plan.missing.values()):,}"
        )


if __name__ == "__main__":
    main()
