"""The history store survives SIGKILL at any moment of its batched writes.

A child process (``tests/support/history_writer.py``) writes numbered batches through the
operator's own path (``enqueue`` + ``flush``: one transaction each) and prints each number once
committed. The test kills it with SIGKILL at a random moment — while it imports, opens and
migrates the store, or in the middle of its writes and checkpoints — again and again on the same
file. After every kill: SQLite's ``PRAGMA integrity_check`` passes on a plain connection, the
store opens through its own path without moving the file aside, and every batch acknowledged
before the kill is there, whole (no batch is ever half written).

WAL with ``synchronous = NORMAL`` is enough for this: a commit is in the WAL file (the OS's page
cache) before ``COMMIT`` returns, and a killed process loses nothing the kernel holds. Only a
power cut could lose the last commits, which ``FULL`` would keep; history is not worth an fsync
per batch (see docs/security.md and the store's module docstring).

``make test`` runs 20 kills; the ``chaos`` variant runs ``$RINGRIFT_CHAOS_KILLS`` (default 100).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ringrift_operator.state.history import HistoryStore
from tests_support import poll

WRITER = Path(__file__).resolve().parents[2] / "support" / "history_writer.py"
ROWS = 40  # history_writer.ROWS
METRIC = "crash_test"


@dataclass
class Round:
    acked: list[int]
    killed_after_s: float
    mode: str


class Writer:
    """The child process and a thread collecting the batch numbers it acknowledges."""

    def __init__(self, db: Path, first: int) -> None:
        self.acked: list[int] = []
        self.process = subprocess.Popen(
            [sys.executable, str(WRITER), str(db), str(first)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.endswith(b"\n"):
                self.acked.append(int(line))

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self._reader.join(timeout=10)
        assert self.process.returncode == -signal.SIGKILL, self.stderr()

    def stderr(self) -> str:
        assert self.process.stderr is not None
        return self.process.stderr.read().decode(errors="replace")[-2000:]


def kill_at_random(db: Path, first: int, rng: random.Random) -> Round:
    """Start a writer and SIGKILL it at a random moment: during start-up (import, open,
    migrations) one time in five, else a random time after its first committed batch."""
    writer = Writer(db, first)
    started = time.monotonic()
    if rng.random() < 0.2:
        mode = "start-up"
        delay = rng.uniform(0.0, 1.0)
    else:
        mode = "writing"
        poll(lambda: writer.acked, until=bool, timeout=30, what="the writer's first batch",
             interval=0.01)  # fmt: skip
        delay = rng.uniform(0.0, 0.4)
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline and writer.process.poll() is None:
        time.sleep(0.002)
    assert writer.process.poll() is None, f"the writer exited by itself:\n{writer.stderr()}"
    writer.kill()
    return Round(acked=writer.acked, killed_after_s=time.monotonic() - started, mode=mode)


def batches_on_disk(db: Path) -> tuple[str, dict[int, int], str | None]:
    """A plain SQLite connection's integrity check, rows per batch, and the last-batch key."""
    conn = sqlite3.connect(db)
    try:
        check = "; ".join(str(r[0]) for r in conn.execute("PRAGMA integrity_check"))
        has_tables = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE name = 'metrics_history'"
        ).fetchone()[0]
        if not has_tables:  # killed before the first migration committed
            return check, {}, None
        counts = dict(
            conn.execute(
                "SELECT CAST(json_extract(labels, '$.batch') AS INTEGER), count(*) "
                "FROM metrics_history WHERE name = ? GROUP BY 1",
                (METRIC,),
            ).fetchall()
        )
        last = conn.execute("SELECT value FROM state WHERE key = 'last-batch'").fetchone()
        return check, counts, last[0] if last else None
    finally:
        conn.close()


async def run_kills(tmp_path: Path, kills: int, caplog: pytest.LogCaptureFixture) -> None:
    seed = int(os.environ.get("RINGRIFT_CHAOS_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    db = tmp_path / "history.db"
    acked_total: set[int] = set()
    next_batch = 0
    modes: dict[str, int] = {}
    for i in range(kills):
        what = f"kill {i + 1}/{kills} (seed {seed})"
        round_ = kill_at_random(db, next_batch, rng)
        modes[round_.mode] = modes.get(round_.mode, 0) + 1
        acked_total.update(round_.acked)

        # 1. SQLite itself, before the store could move or repair anything.
        check, counts, last = batches_on_disk(db)
        assert check == "ok", f"{what}: integrity_check: {check}"
        # 2. Every acknowledged batch is there, and every batch there is whole.
        missing = sorted(acked_total - counts.keys())
        assert not missing, f"{what}: acknowledged batches lost: {missing[:20]}"
        partial = {b: n for b, n in counts.items() if n != ROWS}
        assert not partial, f"{what}: half-written batches: {partial}"
        # At most one batch more than acknowledged: committed, killed before it printed.
        unacked = sorted(counts.keys() - acked_total)
        assert len(unacked) <= 1, (what, unacked)
        assert all(b >= next_batch for b in unacked), (what, unacked)
        acked_total.update(unacked)
        newest = max(counts, default=None)
        assert last == (None if newest is None else str(newest)), (what, last, newest)
        # 3. The store's own open path: no recovery, a clean full check, reads work.
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            async with HistoryStore.open(db) as store:
                assert store.recovered_from is None, what
                assert (await store.integrity_check()).ok, what
                state = await store.load_state(key="last-batch")
                assert (state.value if state else None) == last, what
        assert not [r for r in caplog.records if "corrupt" in r.getMessage()], what
        next_batch = (newest + 1) if newest is not None else next_batch
    assert not [p for p in os.listdir(tmp_path) if ".corrupt-" in p]
    print(
        f"\n{kills} SIGKILLs survived (seed {seed}; {modes}), {len(acked_total)} batches "
        f"acknowledged, 0 lost, 0 half-written, integrity_check ok every time"
    )
    # The random moments covered both phases, and the writes really were under way.
    assert len(acked_total) >= kills


async def test_sigkill_during_batched_writes_loses_nothing_acknowledged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await run_kills(tmp_path, 20, caplog)


@pytest.mark.chaos
async def test_many_sigkills_during_batched_writes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await run_kills(tmp_path, int(os.environ.get("RINGRIFT_CHAOS_KILLS", "100")), caplog)
