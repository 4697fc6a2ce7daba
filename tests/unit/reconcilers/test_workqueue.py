"""The work queue: priorities, then the order keys were added; de-duplication; a key added
while it is being reconciled comes back once it is done."""

from __future__ import annotations

import asyncio

from ringrift_operator.reconcilers.workqueue import WorkQueue


async def drain(queue: WorkQueue[str]) -> list[str]:
    out = []
    while len(queue):
        key = await asyncio.wait_for(queue.get(), timeout=1)
        queue.done(key)
        out.append(key)
    return out


async def test_without_priorities_keys_come_out_in_the_order_added_once_each() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "c", "b"):
        queue.add(key)
    assert await drain(queue) == ["a", "b", "c"]


async def test_a_better_priority_comes_first_and_keeps_the_order_among_equals() -> None:
    urgent = {"p1", "p2"}
    queue: WorkQueue[str] = WorkQueue(priority=lambda k: 0 if k in urgent else 1)
    for key in ("s1", "p1", "s2", "p2", "s3"):
        queue.add(key)
    assert await drain(queue) == ["p1", "p2", "s1", "s2", "s3"]


async def test_a_key_added_again_with_a_better_priority_moves_up_and_comes_out_once() -> None:
    urgent: set[str] = set()
    queue: WorkQueue[str] = WorkQueue(priority=lambda k: 0 if k in urgent else 1)
    for key in ("a", "b", "c"):
        queue.add(key)
    urgent.add("c")
    queue.add("c")
    urgent.clear()
    queue.add("c")  # a worse priority than queued: no change
    assert await drain(queue) == ["c", "a", "b"]


async def test_a_key_added_while_active_is_queued_again_when_done() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    key = await queue.get()
    queue.add("a")
    assert len(queue) == 0  # not handed to a second worker meanwhile
    queue.done(key)
    assert await drain(queue) == ["a"]


async def test_it_counts_the_keys_waiting_with_each_priority() -> None:
    urgent = {"p1", "p2"}
    queue: WorkQueue[str] = WorkQueue(priority=lambda k: 0 if k in urgent else 1)
    for key in ("s1", "p1", "p2", "s2"):
        queue.add(key)
    assert (queue.queued_with(0), queue.queued_with(1)) == (2, 2)
    urgent.add("s2")
    queue.add("s2")  # moves up
    assert (queue.queued_with(0), queue.queued_with(1)) == (3, 1)
    await drain(queue)
    assert (queue.queued_with(0), queue.queued_with(1)) == (0, 0)
