"""A deduplicating work queue of resource keys with delayed requeues, drained by workers.

The operator's reconcile loop: watch events, pod and node changes and the periodic resync all
``add`` keys; a key queued twice is reconciled once; a key being reconciled is never handed to a
second worker at the same time (changes that arrive meanwhile requeue it once it is done).

Keys come out by priority (``priority(key)``, read when the key is added; lower first), then in
the order they were added. The operator uses it to serve jobs waiting for a node before the
status writes of jobs already placed. A key added again with a better priority moves up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, priority: Callable[[K], int] | None = None) -> None:
        self._priority = priority
        self._queue: asyncio.PriorityQueue[tuple[int, int, K]] = asyncio.PriorityQueue()
        self._queued: dict[K, int] = {}  # key -> the priority it is queued with
        self._counts: Counter[int] = Counter()  # priority -> keys queued with it
        self._added = itertools.count()
        self._active: set[K] = set()
        self._dirty: set[K] = set()
        self._timers: dict[K, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self._queued)

    def add(self, key: K) -> None:
        if key in self._active:
            self._dirty.add(key)
            return
        priority = self._priority(key) if self._priority is not None else 0
        queued = self._queued.get(key)
        if queued is not None and queued <= priority:
            return
        # New, or moving up: the entry with the worse priority is skipped when it comes out.
        if queued is not None:
            self._counts[queued] -= 1
        self._counts[priority] += 1
        self._queued[key] = priority
        self._queue.put_nowait((priority, next(self._added), key))

    def add_after(self, key: K, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds (an earlier pending timer wins)."""
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        due = loop.time() + delay
        if existing is not None and existing.when() <= due:
            return
        if existing is not None:
            existing.cancel()
        self._timers[key] = loop.call_at(due, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> K:
        while True:
            priority, _, key = await self._queue.get()
            if self._queued.get(key) == priority:
                break
        del self._queued[key]
        self._counts[priority] -= 1
        self._active.add(key)
        return key

    def queued_with(self, priority: int) -> int:
        """How many keys wait with ``priority``."""
        return self._counts[priority]

    def done(self, key: K) -> None:
        self._active.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def forget(self, key: K) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()


async def run_workers(
    queue: WorkQueue[K],
    reconcile: Callable[[K], Awaitable[float | None]],
    *,
    workers: int,
    on_duration: Callable[[float, bool], None] | None = None,
) -> None:
    """Run ``workers`` tasks reconciling keys until cancelled. A reconcile returns the seconds
    after which to look again (or None); an exception requeues the key with backoff."""
    failures: dict[K, int] = {}

    async def worker() -> None:
        while True:
            key = await queue.get()
            start = time.perf_counter()
            ok = True
            try:
                again = await reconcile(key)
                failures.pop(key, None)
                if again is not None:
                    queue.add_after(key, again)
            except asyncio.CancelledError:
                queue.done(key)
                raise
            except Exception:
                ok = False
                n = failures[key] = failures.get(key, 0) + 1
                delay = min(0.2 * 2**n, 30.0)
                log.exception("reconcile of %s failed (%d in a row); again in %.1fs", key, n, delay)
                queue.add_after(key, delay)
            finally:
                queue.done(key)
                if on_duration is not None:
                    on_duration(time.perf_counter() - start, ok)

    tasks = [asyncio.create_task(worker(), name=f"worker-{i}") for i in range(workers)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
