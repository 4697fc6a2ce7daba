"""Micro-benchmark of the history store's batched writes (a script, not a test).

Writes ROWS rows in batches of BATCH (one transaction and one ``executemany`` per batch) into a
temporary database and prints rows per second, for metric samples (JSON labels) and node events.
Target: at least 50,000 rows/s.

    .venv/bin/python bench/micro_history.py [--rows 100000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ringrift_operator.state.history import HistoryStore
from ringrift_operator.state.rows import HistoryRow, MetricSample, NodeEvent, NodeEventKind


def metric(i: int) -> MetricSample:
    return MetricSample(
        name="gpu_utilization",
        value=float(i % 100) / 100.0,
        at=1_700_000_000.0 + i,
        labels={"node": f"gpu-{i % 64}", "gpu": str(i % 8)},
    )


def node_event(i: int) -> NodeEvent:
    kind = NodeEventKind.FAILURE if i % 7 == 0 else NodeEventKind.SUCCESS
    return NodeEvent(node=f"gpu-{i % 64}", kind=kind, at=1_700_000_000.0 + i, job=f"ns/job-{i}")


async def run(
    path: Path, *, rows: int, batch: int, make: Callable[[int], HistoryRow]
) -> tuple[float, float]:
    """Seconds and rows/s to write ``rows`` rows through ``record_many`` (rows built before)."""
    batches: Sequence[list[HistoryRow]] = [
        [make(i) for i in range(start, min(start + batch, rows))] for start in range(0, rows, batch)
    ]
    async with HistoryStore.open(path) as store:
        started = time.perf_counter()
        for rows_of_batch in batches:
            await store.record_many(rows_of_batch)
        elapsed = time.perf_counter() - started
    return elapsed, rows / elapsed


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for label, make in (("metric samples", metric), ("node events", node_event)):
            elapsed, rate = await run(
                Path(tmp) / f"{label.replace(' ', '_')}.db",
                rows=args.rows,
                batch=args.batch,
                make=make,
            )
            print(
                f"{label:>15}: {args.rows:,} rows in batches of {args.batch:,}: "
                f"{elapsed:.2f} s, {rate:,.0f} rows/s"
            )


if __name__ == "__main__":
    asyncio.run(main())
