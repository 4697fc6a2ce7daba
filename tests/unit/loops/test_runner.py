"""The loop runner: start order, ticks, failures and backoff, health, stopping.

Time is a :class:`ManualClock`: the runner's sleeps block until the test advances the clock, so
every test decides exactly when each loop may run again. Tests wait for a condition with
:func:`eventually` (a deadline, never a timed sleep).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from ringrift_operator.loops.runner import LoopRunner, LoopSpec, StopResult
from ringrift_operator.managers.looping import (
    BackoffConfig,
    Health,
    LoopDependencyError,
    LoopState,
)

DEADLINE = 5.0  # seconds of real time before a test gives up waiting


async def eventually(condition: Callable[[], bool], *, within: float = DEADLINE) -> None:
    """Yield to the event loop until ``condition()`` holds; fail after ``within`` real seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0)


class ManualClock:
    """A monotonic clock and a sleep that only returns when the test advances the clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []  # every delay asked for, in order
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        item = (self.now + delay, future)
        self._sleepers.append(item)
        try:
            await future
        finally:
            self._sleepers.remove(item)

    @property
    def sleeping(self) -> int:
        return sum(1 for _, f in self._sleepers if not f.done())

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for due, future in self._sleepers:
            if due <= self.now and not future.done():
                future.set_result(None)


@dataclass
class Probe:
    """A loop body that counts its runs and fails while told to."""

    fail_with: BaseException | None = None
    runs: int = 0
    log: list[str] | None = None
    name: str = ""
    takes: float = 0.0  # clock seconds a run takes
    clock: ManualClock | None = None
    gate: asyncio.Event | None = None  # a run blocks until set
    entered: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self) -> None:
        self.runs += 1
        self.entered.set()
        if self.log is not None:
            self.log.append(self.name)
        if self.clock is not None:
            self.clock.advance(self.takes)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with


async def idle(rounds: int = 20) -> None:
    """Give every ready task many chances to run, to show that something does *not* happen."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def settled(probe: Probe, *, runs: int, clock: ManualClock, sleeping: int) -> None:
    """Until ``probe`` has run ``runs`` times and ``sleeping`` loops wait on the clock."""
    await eventually(lambda: probe.runs == runs and clock.sleeping == sleeping)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def runners() -> AsyncIterator[list[LoopRunner]]:
    """Runners the test built; each is stopped at the end, whatever happened."""
    made: list[LoopRunner] = []
    yield made
    for runner in made:
        await runner.stop_all(timeout=DEADLINE)


@pytest.fixture
def make_runner(clock: ManualClock, runners: list[LoopRunner]) -> Callable[..., LoopRunner]:
    def make(*loops: LoopSpec, **kwargs: object) -> LoopRunner:
        options: dict[str, object] = {
            "monotonic": clock.monotonic,
            "sleep": clock.sleep,
            "backoff": BackoffConfig(jitter=0.0),
        }
        options.update(kwargs)
        runner = LoopRunner(loops, **options)  # type: ignore[arg-type]
        runners.append(runner)
        return runner

    return make


def spec(name: str, probe: Callable[[], Awaitable[None]], **kwargs: object) -> LoopSpec:
    options: dict[str, object] = {"interval": 10.0}
    options.update(kwargs)
    return LoopSpec(name, run=probe, **options)  # type: ignore[arg-type]


MakeRunner = Callable[..., LoopRunner]


# --- construction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loops", "error", "message"),
    [
        pytest.param(
            [spec("a", Probe()), spec("a", Probe())], ValueError, "two loops named 'a'", id="dup"
        ),
        pytest.param(
            [spec("a", Probe(), interval=0.0)], ValueError, "interval must be positive", id="zero"
        ),
        pytest.param(
            [spec("a", Probe(), initial_delay=-1.0)], ValueError, "initial_delay", id="negative"
        ),
        pytest.param(
            [spec("a", Probe(), depends_on=("b",)), spec("b", Probe(), depends_on=("a",))],
            LoopDependencyError,
            "cycle: a -> b -> a",
            id="cycle",
        ),
        pytest.param(
            [spec("a", Probe(), depends_on=("nope",))],
            LoopDependencyError,
            "unknown loop(s): 'nope'",
            id="unknown-dependency",
        ),
    ],
)
def test_bad_loop_sets_are_refused(
    loops: list[LoopSpec], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        LoopRunner(loops)
    assert message in str(raised.value)


async def test_loop_spec_runs_its_coroutine_function() -> None:
    probe = Probe()
    await spec("a", probe).run_once()
    assert probe.runs == 1


# --- starting ----------------------------------------------------------------------------------


async def test_start_all_starts_enabled_loops_in_dependency_order(
    make_runner: MakeRunner, clock: ManualClock
) -> None:
    log: list[str] = []
    runner = make_runner(
        spec("sync", Probe(log=log, name="sync"), depends_on=("manifests",)),
        spec("manifests", Probe(log=log, name="manifests")),
        spec("off", Probe(log=log, name="off"), enabled=False),
        spec("reaper", Probe(log=log, name="reaper")),
    )
    assert runner.order == ("manifests", "sync", "off", "reaper")
    assert await runner.start_all() == ["manifests", "sync", "reaper"]
    await eventually(lambda: len(log) == 3)
    assert log.index("manifests") < log.index("sync")
    assert runner.state("off") is LoopState.DISABLED
    assert runner.stats("off").runs == 0


async def test_starting_twice_is_an_error(make_runner: MakeRunner) -> None:
    runner = make_runner(spec("a", Probe()))
    await runner.start_all()
    with pytest.raises(RuntimeError, match="already started"):
        await runner.start_all()


async def test_a_loop_waits_for_its_dependencys_first_success(
    make_runner: MakeRunner, clock: ManualClock
) -> None:
    base = Probe(fail_with=RuntimeError("not yet"))
    child = Probe()
    runner = make_runner(spec("base", base), spec("child", child, depends_on=("base",)))
    await runner.start_all()
    await eventually(lambda: base.runs == 1 and clock.sleeping == 2)  # base's backoff, child's wait
    assert runner.state("child") is LoopState.WAITING
    assert child.runs == 0

    base.fail_with = None
    clock.advance(1.0)  # the backoff after one failure
    await eventually(lambda: child.runs == 1)
    assert base.runs == 2
    assert runner.state("child") is LoopState.RUNNING


async def test_a_loop_stops_waiting_after_the_dependency_timeout(
    make_runner: MakeRunner, clock: ManualClock
) -> None:
    base = Probe(fail_with=RuntimeError("never"))
    child = Probe()
    runner = make_runner(
        spec("base", base),
        spec("child", child, depends_on=("base",)),
        backoff=BackoffConfig(initial=100.0, maximum=100.0, jitter=0.0),
        dependency_timeout=30.0,
    )
    await runner.start_all()
    await eventually(lambda: clock.sleeping == 2)
    clock.advance(29.0)
    await idle()
    assert child.runs == 0
    clock.advance(1.0)
    await eventually(lambda: child.runs == 1)
    assert base.runs == 1


async def test_a_disabled_dependency_does_not_hold_a_loop_back(make_runner: MakeRunner) -> None:
    child = Probe()
    runner = make_runner(
        spec("off", Probe(), enabled=False), spec("child", child, depends_on=("off",))
    )
    await runner.start_all()
    await eventually(lambda: child.runs == 1)


async def test_initial_delay_postpones_the_first_run(
    make_runner: MakeRunner, clock: ManualClock
) -> None:
    probe = Probe()
    runner = make_runner(spec("a", probe, initial_delay=15.0))
    await runner.start_all()
    await eventually(lambda: clock.sleeping == 1)
    assert probe.runs == 0
    assert runner.stats("a").next_run_at == 15.0
    assert runner.state("a") is LoopState.RUNNING
    clock.advance(15.0)
    await eventually(lambda: probe.runs == 1)


# --- ticking -----------------------------------------------------------------------------------


async def test_each_tick_runs_the_loop_exactly_once(
    make_runner: MakeRunner, clock: ManualClock
) -> None:
    probe = Probe()
    runner = make_runner(spec("a", probe, interval=10.0))
    await runner.start_all()
    for tick in range(1, 6):
        await settled(probe, runs=tick, clock=clock, sleeping=1)
        await idle()  # plenty of chances to run a second time if it wrongly would
        assert probe.runs == tick
        assert runner.stats("a").next_run_at == clock.now + 10.0
        clock.advance(10.0)
    assert clock.sleeps == [10.0] * 5


async def test_a_run_that_is_not_due_does_not_happen(
    make_runner: MakeRunner, clock: ManualClock
) -> None:
    probe = Probe()
    runner = make_runner(spec("a", probe, interval=10.0))
    await runner.start_all()
    await eventually(lambda: clock.sleeping == 1)
    clock.advance(9.9)
    await idle()
    assert probe.runs == 1


async def test_stats_follow_successes_and_failures(
    make_runner: MakeRunner, clock: ManualClock
) -> None:
    probe = Probe(clock=clock, takes=2.5, fail_with=ValueError("bad data"))
    runner = make_runner(spec("a", probe, interval=30.0))
    await runner.start_all()
    await eventually(lambda: clock.sleeping == 1)
    stats = runner.stats("a")
    assert (stats.runs, stats.failures, stats.consecutive_failures) == (1, 1, 1)
    assert stats.last_error == "ValueError: bad data"
    assert stats.last_duration == 2.5
    assert stats.last_run_at == 2.5
    assert stats.next_run_at == 3.5  # backoff 1 s, not the 30 s interval

    probe.fail_with = None
    clock.advance(1.0)
    await eventually(lambda: runner.stats("a").runs == 2 and clock.sleeping == 1)
    stats = runner.stats("a")
    assert (stats.successes, stats.failures, stats.consecutive_failures) == (1, 1, 0)
    assert stats.last_error == "ValueError: bad data"  # kept for the record
    assert stats.next_run_at == clock.now + 30.0


async def test_failures_back_off_exponentially_and_never_stop_the_loop(
    make_runner: MakeRunner, clock: ManualClock
) -> None:
    probe = Probe(fail_with=RuntimeError("down"))
    healthy = Probe()
    runner = make_runner(
        spec("flaky", probe, interval=5.0),
        spec("steady", healthy, interval=5.0),
        backoff=BackoffConfig(initial=1.0, maximum=8.0, jitter=0.0),
    )
    await runner.start_all()
    waits = []
    for run in range(1, 7):
        await settled(probe, runs=run, clock=clock, sleeping=2)
        waits.append(runner.stats("flaky").next_run_at - clock.now)  # type: ignore[operator]
        clock.advance(waits[-1])
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert runner.state("flaky") is LoopState.RUNNING
    assert runner.stats("flaky").consecutive_failures >= 6
    assert healthy.runs >= 4  # the other loop kept its own schedule


# --- health ------------------------------------------------------------------------------------


async def test_health_goes_from_healthy_to_degraded_to_failing_and_back(
    make_runner: MakeRunner, clock: ManualClock
) -> None:
    probe = Probe()
    runner = make_runner(spec("a", probe, interval=10.0))
    await runner.start_all()
    await eventually(lambda: clock.sleeping == 1)
    assert runner.health().status is Health.HEALTHY

    statuses = []
    probe.fail_with = OSError("unreachable")
    for _ in range(3):
        clock.advance(clock.sleeps[-1])
        runs = probe.runs
        await settled(probe, runs=runs + 1, clock=clock, sleeping=1)
        statuses.append(runner.health().status)
    assert statuses == [Health.DEGRADED, Health.DEGRADED, Health.FAILING]
    assert runner.health().failing_loops == ("a",)

    probe.fail_with = None
    clock.advance(clock.sleeps[-1])
    await eventually(lambda: runner.stats("a").consecutive_failures == 0)
    assert runner.health().status is Health.HEALTHY


async def test_a_run_stuck_past_its_grace_makes_the_loop_degraded(
    make_runner: MakeRunner, clock: ManualClock
) -> None:
    gate = asyncio.Event()
    probe = Probe()
    runner = make_runner(spec("a", probe, interval=10.0))
    await runner.start_all()
    await eventually(lambda: clock.sleeping == 1)
    probe.gate = gate
    clock.advance(10.0)
    await eventually(lambda: probe.runs == 2)  # now blocked inside run_once
    clock.advance(10.0)
    assert runner.health().status is Health.HEALTHY  # late by 10 s: within the grace
    clock.advance(0.5)
    report = runner.health()
    assert report.status is Health.DEGRADED
    assert report.loops[0].reason == "overdue by 10.5s"
    gate.set()
    await eventually(lambda: runner.stats("a").runs == 2 and clock.sleeping == 1)
    assert runner.health().status is Health.HEALTHY


async def test_health_report_is_plain_json(make_runner: MakeRunner, clock: ManualClock) -> None:
    runner = make_runner(
        spec("manifests", Probe(), interval=60.0),
        spec("sync", Probe(fail_with=RuntimeError("x")), depends_on=("manifests",)),
        spec("off", Probe(), enabled=False),
    )
    assert runner.health().loops_running == 0
    await runner.start_all()
    await eventually(lambda: clock.sleeping == 2)
    data = json.loads(json.dumps(runner.health().as_dict()))
    assert data["status"] == "degraded"
    assert data["loops_running"] == 2
    assert data["total_loops"] == 3
    assert data["degraded_loops"] == ["sync"]
    assert data["loops"]["sync"]["depends_on"] == ["manifests"]
    assert data["loops"]["sync"]["last_error"] == "RuntimeError: x"
    assert data["loops"]["off"]["state"] == "disabled"


@pytest.mark.parametrize(
    "escape",
    [
        pytest.param(asyncio.CancelledError(), id="cancelled-from-inside"),
        pytest.param(GeneratorExit(), id="base-exception"),
    ],
)
async def test_a_loop_that_dies_is_reported_failing(
    make_runner: MakeRunner, clock: ManualClock, escape: BaseException
) -> None:
    runner = make_runner(spec("fragile", Probe(fail_with=escape)), spec("other", Probe()))
    await runner.start_all()
    await eventually(lambda: runner.state("fragile") is LoopState.CRASHED)
    report = runner.health()
    assert report.status is Health.FAILING
    assert report.failing_loops == ("fragile",)
    assert report.loops[0].reason.startswith("stopped unexpectedly")
    assert report.loops_running == 1
    assert runner.state("other") is LoopState.RUNNING


# --- stopping ----------------------------------------------------------------------------------


async def test_stop_all_cancels_every_loop(make_runner: MakeRunner, clock: ManualClock) -> None:
    gate = asyncio.Event()  # never set: "busy" is inside run_once when stopped
    busy = Probe(gate=gate)
    waiting = Probe()
    runner = make_runner(
        spec("sleeper", Probe()),
        spec("busy", busy),
        spec("waiting", waiting, depends_on=("busy",)),
        spec("off", Probe(), enabled=False),
    )
    await runner.start_all()
    await eventually(lambda: busy.runs == 1 and clock.sleeping == 2)
    result = await runner.stop_all(timeout=DEADLINE)
    assert result == StopResult(stopped=("sleeper", "busy", "waiting"), timed_out=())
    assert result.clean
    assert {runner.state(n) for n in ("sleeper", "busy", "waiting")} == {LoopState.STOPPED}
    assert runner.health().status is Health.HEALTHY
    assert runner.health().loops_running == 0
    assert waiting.runs == 0
    assert clock.sleeping == 0


async def test_stop_all_before_start_is_harmless(make_runner: MakeRunner) -> None:
    runner = make_runner(spec("a", Probe()))
    assert await runner.stop_all(timeout=0.0) == StopResult(stopped=(), timed_out=())


async def test_stop_all_gives_up_after_the_timeout(make_runner: MakeRunner) -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    async def stubborn() -> None:
        entered.set()
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # misbehaves: swallows the cancellation

    runner = make_runner(spec("stubborn", stubborn), spec("polite", Probe()))
    await runner.start_all()
    await eventually(entered.is_set)
    result = await runner.stop_all(timeout=0.01)
    assert result.timed_out == ("stubborn",)
    assert result.stopped == ("polite",)
    assert not result.clean
    assert runner.state("stubborn") is LoopState.STOPPING
    release.set()  # let it finish so the test leaves nothing behind
    await eventually(lambda: runner.state("stubborn") is LoopState.STOPPED)


# --- defaults: real time -----------------------------------------------------------------------


async def test_with_the_real_clock_and_sleep() -> None:
    three = asyncio.Event()
    runs = 0

    async def count() -> None:
        nonlocal runs
        runs += 1
        if runs == 3:
            three.set()

    runner = LoopRunner([LoopSpec("fast", 0.001, count)])
    await runner.start_all()
    try:
        await asyncio.wait_for(three.wait(), timeout=DEADLINE)
    finally:
        result = await runner.stop_all(timeout=DEADLINE)
    assert result.clean
    assert runner.stats("fast").successes >= 3
