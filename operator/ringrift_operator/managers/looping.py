"""The loop runner's decisions, as pure functions: start order, backoff, stats, health.

The seed's LoopManager minus the asyncio: ``loops.runner.LoopRunner`` owns the tasks and calls in
here to order loops by their dependencies (:func:`order_loops`), to choose the wait after a run
(:func:`next_delay`, :func:`backoff_delay`), to record runs (:func:`record_success`,
:func:`record_failure`) and to judge health (:func:`classify_loop`, :func:`build_health_report`).
Times are the runner's monotonic clock, passed in as ``now``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

ERROR_TEXT_LIMIT = 500  # characters of an exception kept in stats and /status


# --- start order -------------------------------------------------------------------------------


class LoopDependencyError(ValueError):
    """The loops' ``depends_on`` cannot be satisfied: an unknown name or a cycle."""


def order_loops(dependencies: Mapping[str, Sequence[str]]) -> list[str]:
    """Loop names in an order where every loop comes after the loops it depends on.

    ``dependencies`` maps each loop to the names it depends on, in registration order; that order
    is kept wherever dependencies allow it. Raises :class:`LoopDependencyError` naming the loops at
    fault: an unknown dependency, or every loop of a cycle.
    """
    for name, deps in dependencies.items():
        unknown = [d for d in deps if d not in dependencies]
        if unknown:
            raise LoopDependencyError(
                f"loop {name!r} depends on unknown loop(s): {', '.join(map(repr, unknown))}"
            )
    order: list[str] = []
    placed: set[str] = set()
    remaining = list(dependencies)
    while remaining:
        ready = [n for n in remaining if all(d in placed for d in dependencies[n])]
        if not ready:
            cycle = _find_cycle(dependencies, remaining)
            raise LoopDependencyError(f"loop dependency cycle: {' -> '.join(cycle)}")
        order.append(ready[0])  # earliest registered first
        placed.add(ready[0])
        remaining.remove(ready[0])
    return order


def _find_cycle(dependencies: Mapping[str, Sequence[str]], stuck: list[str]) -> list[str]:
    """One cycle among loops that cannot be placed, closed: ``[a, b, a]``."""
    stuck_set = set(stuck)
    path: list[str] = []
    node = stuck[0]
    while node not in path:
        path.append(node)
        node = next(d for d in dependencies[node] if d in stuck_set)
    return [*path[path.index(node) :], node]


# --- backoff -----------------------------------------------------------------------------------


class RandomSource(Protocol):
    """What the backoff needs of ``random.Random``: a float in [0, 1)."""

    def random(self) -> float: ...


@dataclass(frozen=True, slots=True)
class BackoffConfig:
    """Exponential backoff after failed runs: initial, initial*multiplier, ... up to maximum."""

    initial: float = 1.0  # seconds after the first failure
    maximum: float = 60.0  # no wait is ever longer, jitter included
    multiplier: float = 2.0
    jitter: float = 0.1  # each wait is scaled by a random factor in [1 - jitter, 1 + jitter]

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial:
            raise ValueError(f"need 0 < initial <= maximum, got {self.initial}, {self.maximum}")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be at least 1, got {self.multiplier}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")


DEFAULT_BACKOFF = BackoffConfig()


def backoff_delay(consecutive_failures: int, *, config: BackoffConfig, rng: RandomSource) -> float:
    """Seconds to wait after ``consecutive_failures`` failures in a row (0 failures: 0).

    The wait is ``initial * multiplier ** (failures - 1)``, scaled by the jitter and capped at
    ``maximum`` so that a herd of failing loops does not retry in step.
    """
    if consecutive_failures <= 0:
        return 0.0
    exponent = min(consecutive_failures - 1, 1024)
    try:
        base = config.initial * config.multiplier**exponent
    except OverflowError:
        base = config.maximum
    factor = 1.0 + config.jitter * (2.0 * rng.random() - 1.0)
    return min(config.maximum, min(base, config.maximum) * factor)


def next_delay(
    *, consecutive_failures: int, interval: float, config: BackoffConfig, rng: RandomSource
) -> float:
    """The wait before the next run: the interval after a success, the backoff after a failure."""
    if consecutive_failures == 0:
        return interval
    return backoff_delay(consecutive_failures, config=config, rng=rng)


# --- stats -------------------------------------------------------------------------------------


class LoopState(StrEnum):
    """Where a loop's task is in its life."""

    PENDING = "pending"  # registered, not started
    WAITING = "waiting"  # started, waiting for its dependencies' first successful run
    RUNNING = "running"  # running every interval
    STOPPING = "stopping"  # cancelled, not finished yet
    STOPPED = "stopped"  # stopped on request
    CRASHED = "crashed"  # its task ended while nobody asked it to stop
    DISABLED = "disabled"  # never started: switched off


ACTIVE_STATES = frozenset({LoopState.WAITING, LoopState.RUNNING})


@dataclass(frozen=True, slots=True)
class LoopStats:
    """Counters and times of one loop; times are the runner's monotonic clock."""

    runs: int = 0
    successes: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_duration: float | None = None  # seconds the last run took
    last_error: str | None = None  # text of the last failure, kept after later successes
    last_run_at: float | None = None  # when the last run finished
    next_run_at: float | None = None  # when the next run is due


def record_success(stats: LoopStats, *, started_at: float, finished_at: float) -> LoopStats:
    """Stats after a run that returned."""
    return replace(
        stats,
        runs=stats.runs + 1,
        successes=stats.successes + 1,
        consecutive_failures=0,
        last_duration=max(0.0, finished_at - started_at),
        last_run_at=finished_at,
    )


def record_failure(
    stats: LoopStats, *, started_at: float, finished_at: float, error: str
) -> LoopStats:
    """Stats after a run that raised."""
    return replace(
        stats,
        runs=stats.runs + 1,
        failures=stats.failures + 1,
        consecutive_failures=stats.consecutive_failures + 1,
        last_duration=max(0.0, finished_at - started_at),
        last_error=error,
        last_run_at=finished_at,
    )


def describe_error(error: BaseException) -> str:
    """``Type: message``, cut to :data:`ERROR_TEXT_LIMIT` characters."""
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if len(text) > ERROR_TEXT_LIMIT:
        return text[: ERROR_TEXT_LIMIT - 1] + "…"
    return text


# --- health ------------------------------------------------------------------------------------


class Health(StrEnum):
    """Health of one loop and of the runner; ordered from best to worst."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    FAILING = "failing"


_SEVERITY = {Health.HEALTHY: 0, Health.DEGRADED: 1, Health.FAILING: 2}


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """When a loop stops being healthy."""

    failing_after: int = 3  # consecutive failures that make a loop failing (fewer: degraded)
    # A run that has not started by next_run_at + grace makes the loop degraded (overdue), where
    # grace = max(interval * overdue_grace_factor, overdue_min_grace).
    overdue_grace_factor: float = 1.0
    overdue_min_grace: float = 5.0

    def __post_init__(self) -> None:
        if self.failing_after < 1:
            raise ValueError(f"failing_after must be at least 1, got {self.failing_after}")
        if self.overdue_grace_factor < 0 or self.overdue_min_grace < 0:
            raise ValueError("overdue grace must not be negative")


DEFAULT_HEALTH_POLICY = HealthPolicy()


@dataclass(frozen=True, slots=True)
class LoopSnapshot:
    """What the runner knows about one loop at one moment."""

    name: str
    interval: float
    state: LoopState
    stats: LoopStats
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LoopReport:
    """One loop's health, for ``/status``."""

    name: str
    state: LoopState
    health: Health
    reason: str  # why, in a few words; "" when healthy
    interval: float
    depends_on: tuple[str, ...]
    runs: int
    successes: int
    failures: int
    consecutive_failures: int
    last_duration_seconds: float | None
    last_error: str | None
    last_run_age_seconds: float | None  # seconds since the last run finished
    next_run_in_seconds: float | None  # negative: overdue by that much

    def as_dict(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "health": self.health.value,
            "reason": self.reason,
            "interval_seconds": self.interval,
            "depends_on": list(self.depends_on),
            "runs": self.runs,
            "successes": self.successes,
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "last_duration_seconds": self.last_duration_seconds,
            "last_error": self.last_error,
            "last_run_age_seconds": self.last_run_age_seconds,
            "next_run_in_seconds": self.next_run_in_seconds,
        }


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The runner's health, like the seed's ``health_check()``; :meth:`as_dict` is the JSON."""

    status: Health
    loops_running: int  # loops whose task is alive (waiting for dependencies or running)
    total_loops: int
    failing_loops: tuple[str, ...]
    degraded_loops: tuple[str, ...]
    loops: tuple[LoopReport, ...]

    @property
    def healthy(self) -> bool:
        return self.status is Health.HEALTHY

    def as_dict(self) -> dict[str, object]:
        return {
            "status": self.status.value,
            "healthy": self.healthy,
            "loops_running": self.loops_running,
            "total_loops": self.total_loops,
            "failing_loops": list(self.failing_loops),
            "degraded_loops": list(self.degraded_loops),
            "loops": {loop.name: loop.as_dict() for loop in self.loops},
        }


def classify_loop(
    snapshot: LoopSnapshot, *, now: float, policy: HealthPolicy = DEFAULT_HEALTH_POLICY
) -> tuple[Health, str]:
    """One loop's health and the reason for it.

    Failing: it crashed, or failed ``failing_after`` times in a row. Degraded: it failed the last
    time, or a run is overdue beyond the grace (stuck in a long run, or starved). A loop that is
    pending, waiting, stopped on request or disabled is healthy: nothing is wrong with it.
    """
    stats = snapshot.stats
    last = f" (last: {stats.last_error})" if stats.last_error else ""
    if snapshot.state is LoopState.CRASHED:
        return Health.FAILING, f"stopped unexpectedly{last}"
    failures = stats.consecutive_failures
    if failures >= policy.failing_after:
        return Health.FAILING, f"{failures} consecutive failures{last}"
    if failures > 0:
        return Health.DEGRADED, f"{failures} consecutive failure(s){last}"
    if snapshot.state is LoopState.RUNNING and stats.next_run_at is not None:
        late = now - stats.next_run_at
        grace = max(policy.overdue_min_grace, snapshot.interval * policy.overdue_grace_factor)
        if late > grace:
            return Health.DEGRADED, f"overdue by {late:.1f}s"
    return Health.HEALTHY, ""


def build_health_report(
    snapshots: Sequence[LoopSnapshot], *, now: float, policy: HealthPolicy = DEFAULT_HEALTH_POLICY
) -> HealthReport:
    """Every loop's report and the overall status: the worst of the loops' (healthy if none)."""
    reports = []
    for snap in snapshots:
        health, reason = classify_loop(snap, now=now, policy=policy)
        stats = snap.stats
        reports.append(
            LoopReport(
                name=snap.name,
                state=snap.state,
                health=health,
                reason=reason,
                interval=snap.interval,
                depends_on=snap.depends_on,
                runs=stats.runs,
                successes=stats.successes,
                failures=stats.failures,
                consecutive_failures=stats.consecutive_failures,
                last_duration_seconds=stats.last_duration,
                last_error=stats.last_error,
                last_run_age_seconds=None if stats.last_run_at is None else now - stats.last_run_at,
                next_run_in_seconds=None if stats.next_run_at is None else stats.next_run_at - now,
            )
        )
    status = max((r.health for r in reports), key=_SEVERITY.__getitem__, default=Health.HEALTHY)
    return HealthReport(
        status=status,
        loops_running=sum(1 for r in reports if r.state in ACTIVE_STATES),
        total_loops=len(reports),
        failing_loops=tuple(r.name for r in reports if r.health is Health.FAILING),
        degraded_loops=tuple(r.name for r in reports if r.health is Health.DEGRADED),
        loops=tuple(reports),
    )
