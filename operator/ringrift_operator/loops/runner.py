"""The loop runner: the leader's background loops as asyncio tasks (the seed's LoopManager).

``cli`` builds one :class:`LoopRunner` with every loop once the operator leads, calls
:meth:`LoopRunner.start_all`, serves :meth:`LoopRunner.health` on ``/status`` and calls
:meth:`LoopRunner.stop_all` when leadership or the process ends. The decisions (start order,
backoff, health) are pure functions in ``managers.looping``; this module only owns the tasks.

Each loop runs ``run_once()`` every ``interval`` seconds. A run that raises is recorded and followed
by an exponential backoff instead of the interval; it never ends the loop or the runner. A loop
starts once every loop it depends on has completed a first successful run, or after
``dependency_timeout`` seconds, whichever comes first. The clock (``monotonic``) and ``sleep`` are
injected so that tests drive time themselves.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from ringrift_operator.managers.looping import (
    DEFAULT_BACKOFF,
    DEFAULT_HEALTH_POLICY,
    BackoffConfig,
    HealthPolicy,
    HealthReport,
    LoopSnapshot,
    LoopState,
    LoopStats,
    RandomSource,
    build_health_report,
    describe_error,
    next_delay,
    order_loops,
    record_failure,
    record_success,
)

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_DEPENDENCY_TIMEOUT = 60.0
DEFAULT_STOP_TIMEOUT = 30.0


class Loop(Protocol):
    """A background loop: what the runner needs of it. :class:`LoopSpec` is the ready-made one."""

    @property
    def name(self) -> str: ...

    @property
    def interval(self) -> float: ...  # seconds between the end of a run and the next one

    @property
    def depends_on(self) -> Sequence[str]: ...

    @property
    def enabled(self) -> bool: ...

    @property
    def initial_delay(self) -> float: ...  # seconds before the first run, once started

    async def run_once(self) -> None: ...


@dataclass(frozen=True, slots=True)
class LoopSpec:
    """A loop made of a coroutine function: ``LoopSpec("elo-sync", 300, sync_elo)``."""

    name: str
    interval: float
    run: Callable[[], Awaitable[None]]
    depends_on: tuple[str, ...] = ()
    enabled: bool = True
    initial_delay: float = 0.0

    async def run_once(self) -> None:
        await self.run()


@dataclass(frozen=True, slots=True)
class StopResult:
    """What :meth:`LoopRunner.stop_all` achieved within its timeout."""

    stopped: tuple[str, ...]
    timed_out: tuple[str, ...]  # still running when the timeout passed

    @property
    def clean(self) -> bool:
        return not self.timed_out


@dataclass(slots=True)
class _Slot:
    """The runner's mutable record of one loop."""

    loop: Loop
    state: LoopState = LoopState.PENDING
    stats: LoopStats = field(default_factory=LoopStats)
    first_success: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class LoopRunner:
    """Starts, runs, watches and stops a fixed set of loops, once.

    A runner is not restarted: a leader that loses and regains the lease builds a new one.
    """

    def __init__(
        self,
        loops: Sequence[Loop],
        *,
        backoff: BackoffConfig = DEFAULT_BACKOFF,
        health_policy: HealthPolicy = DEFAULT_HEALTH_POLICY,
        dependency_timeout: float = DEFAULT_DEPENDENCY_TIMEOUT,
        monotonic: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: RandomSource | None = None,
    ) -> None:
        """Check the loops (unique names, positive intervals, satisfiable dependencies)."""
        slots: dict[str, _Slot] = {}
        for loop in loops:
            if loop.name in slots:
                raise ValueError(f"two loops named {loop.name!r}")
            if loop.interval <= 0:
                raise ValueError(f"loop {loop.name!r}: interval must be positive")
            if loop.initial_delay < 0:
                raise ValueError(f"loop {loop.name!r}: initial_delay must not be negative")
            slots[loop.name] = _Slot(loop=loop)
        self._order = order_loops({name: s.loop.depends_on for name, s in slots.items()})
        self._slots = slots
        self._backoff = backoff
        self._policy = health_policy
        self._dependency_timeout = dependency_timeout
        self._monotonic = monotonic
        self._sleep = sleep
        self._rng: RandomSource = rng if rng is not None else random.Random()
        self._started = False
        self._stopping = False

    @property
    def order(self) -> tuple[str, ...]:
        """Loop names in start order."""
        return tuple(self._order)

    async def start_all(self) -> list[str]:
        """Start every enabled loop's task, in dependency order; the names started.

        Returns at once: each task waits for its dependencies itself.
        """
        if self._started:
            raise RuntimeError("the loops were already started")
        self._started = True
        started = []
        for name in self._order:
            slot = self._slots[name]
            if not slot.loop.enabled:
                slot.state = LoopState.DISABLED
                continue
            slot.state = LoopState.WAITING
            slot.task = asyncio.create_task(self._run(slot), name=f"loop:{name}")
            slot.task.add_done_callback(functools.partial(self._on_done, slot))
            started.append(name)
        logger.info("started loops: %s", ", ".join(started) or "none")
        return started

    # The seed's signature. A caller's asyncio.timeout would not do: it would cut the cleanup short.
    async def stop_all(
        self,
        *,
        timeout: float = DEFAULT_STOP_TIMEOUT,
    ) -> StopResult:
        """Cancel every loop and wait up to ``timeout`` seconds (real time) for them to end."""
        self._stopping = True
        pending = []
        for slot in self._slots.values():
            if slot.task is not None and not slot.task.done():
                slot.state = LoopState.STOPPING
                slot.task.cancel()
                pending.append(slot.task)
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        stopped: list[str] = []
        timed_out: list[str] = []
        for name in self._order:
            task = self._slots[name].task
            if task is not None:
                (stopped if task.done() else timed_out).append(name)
        if timed_out:
            logger.warning("loops still running after %.1fs: %s", timeout, ", ".join(timed_out))
        return StopResult(stopped=tuple(stopped), timed_out=tuple(timed_out))

    def stats(self, name: str) -> LoopStats:
        return self._slots[name].stats

    def state(self, name: str) -> LoopState:
        return self._slots[name].state

    def snapshots(self) -> list[LoopSnapshot]:
        """Every loop as plain data, in start order."""
        return [
            LoopSnapshot(
                name=name,
                interval=slot.loop.interval,
                state=slot.state,
                stats=slot.stats,
                depends_on=tuple(slot.loop.depends_on),
            )
            for name, slot in ((n, self._slots[n]) for n in self._order)
        ]

    def health(self) -> HealthReport:
        """Health of every loop and overall; ``.as_dict()`` is the ``/status`` JSON."""
        return build_health_report(self.snapshots(), now=self._monotonic(), policy=self._policy)

    # --- the tasks -----------------------------------------------------------------------------

    async def _run(self, slot: _Slot) -> None:
        loop = slot.loop
        await self._wait_for_dependencies(slot)
        slot.state = LoopState.RUNNING
        if loop.initial_delay > 0:
            slot.stats = replace(slot.stats, next_run_at=self._monotonic() + loop.initial_delay)
            await self._sleep(loop.initial_delay)
        while not self._stopping:  # also ends a loop that swallowed its cancellation
            started_at = self._monotonic()
            try:
                await loop.run_once()
            except Exception as error:  # CancelledError is not an Exception: it propagates
                finished_at = self._monotonic()
                slot.stats = record_failure(
                    slot.stats,
                    started_at=started_at,
                    finished_at=finished_at,
                    error=describe_error(error),
                )
                logger.warning(
                    "loop %s failed (%d in a row): %s",
                    loop.name,
                    slot.stats.consecutive_failures,
                    slot.stats.last_error,
                )
            else:
                finished_at = self._monotonic()
                slot.stats = record_success(
                    slot.stats, started_at=started_at, finished_at=finished_at
                )
                slot.first_success.set()
            if self._stopping:
                return
            delay = next_delay(
                consecutive_failures=slot.stats.consecutive_failures,
                interval=loop.interval,
                config=self._backoff,
                rng=self._rng,
            )
            slot.stats = replace(slot.stats, next_run_at=finished_at + delay)
            await self._sleep(delay)

    async def _wait_for_dependencies(self, slot: _Slot) -> None:
        """Until every enabled dependency has succeeded once, or the dependency timeout."""
        events = [
            self._slots[dep].first_success
            for dep in slot.loop.depends_on
            if self._slots[dep].loop.enabled and not self._slots[dep].first_success.is_set()
        ]
        if not events:
            return
        waiters = {asyncio.ensure_future(event.wait()) for event in events}
        timer = asyncio.ensure_future(self._sleep(self._dependency_timeout))
        pending = set(waiters)
        try:
            while pending and not timer.done():
                done, _ = await asyncio.wait({*pending, timer}, return_when=asyncio.FIRST_COMPLETED)
                pending -= done
        finally:
            for waiter in (*waiters, timer):
                waiter.cancel()
        if pending:
            waiting_for = [
                d for d in slot.loop.depends_on if not self._slots[d].first_success.is_set()
            ]
            logger.warning(
                "loop %s starts without waiting any longer for: %s",
                slot.loop.name,
                ", ".join(waiting_for),
            )

    def _on_done(self, slot: _Slot, task: asyncio.Task[None]) -> None:
        error = None if task.cancelled() else task.exception()  # retrieved: asyncio won't log it
        if self._stopping:
            slot.state = LoopState.STOPPED
            return
        # Nobody asked this loop to stop: it was cancelled from elsewhere or died of a
        # BaseException the runner does not catch.
        slot.state = LoopState.CRASHED
        reason = "cancelled" if error is None else describe_error(error)
        slot.stats = replace(slot.stats, last_error=reason)
        logger.error("loop %s stopped unexpectedly: %s", slot.loop.name, reason)
