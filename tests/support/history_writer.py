"""A child process for the history store's crash test: writes numbered batches until killed.

``python history_writer.py DB FIRST`` opens the store at ``DB`` and writes batch ``FIRST``,
``FIRST + 1``, … forever, each through the operator's own path (``enqueue`` then ``flush``: one
transaction). After a batch is committed it prints its number on a line of its own: a printed
number is a batch the store acknowledged, which must survive a SIGKILL at any later moment.

Each batch holds ``ROWS`` metric samples labelled with the batch number, a job attempt, a node
event and the ``last-batch`` state key, so that a batch spans several tables and pages.
"""

from __future__ import annotations

import asyncio
import sys

from ringrift_operator.state.history import HistoryStore
from ringrift_operator.state.rows import (
    JobAttempt,
    MetricSample,
    NodeEvent,
    NodeEventKind,
    StateEntry,
)

ROWS = 40
METRIC = "crash_test"


def batch(n: int) -> list[object]:
    at = float(n)
    rows: list[object] = [
        MetricSample(METRIC, float(i), at=at, labels={"batch": str(n), "pad": "x" * 64})
        for i in range(ROWS)
    ]
    rows.append(
        JobAttempt(
            kind="SelfplayJob",
            namespace="crash",
            name=f"job-{n}",
            uid=f"uid-{n}",
            attempt=1,
            phase="Complete",
            started_at=at,
            epoch=1,
        )
    )
    rows.append(NodeEvent(node=f"node-{n % 7}", kind=NodeEventKind.SUCCESS, at=at))
    rows.append(StateEntry(key="last-batch", value=str(n), updated_at=at))
    return rows


async def main(path: str, first: int) -> None:
    store = await HistoryStore.open(path)
    n = first
    while True:
        store.enqueue(*batch(n))  # type: ignore[arg-type]
        await store.flush()
        sys.stdout.write(f"{n}\n")
        sys.stdout.flush()
        n += 1


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
