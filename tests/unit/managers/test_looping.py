"""The loop runner's pure decisions: start order, backoff, stats and health."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringrift_operator.managers.looping import (
    ERROR_TEXT_LIMIT,
    BackoffConfig,
    Health,
    HealthPolicy,
    LoopDependencyError,
    LoopSnapshot,
    LoopState,
    LoopStats,
    backoff_delay,
    build_health_report,
    classify_loop,
    describe_error,
    next_delay,
    order_loops,
    record_failure,
    record_success,
)

NO_JITTER = BackoffConfig(jitter=0.0)


@dataclass
class FixedRandom:
    """A ``random.Random`` stand-in that always draws the same value."""

    value: float

    def random(self) -> float:
        return self.value


MID = FixedRandom(0.5)  # the jitter factor is exactly 1


# --- start order -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deps", "order"),
    [
        pytest.param({}, [], id="no-loops"),
        pytest.param({"a": [], "b": [], "c": []}, ["a", "b", "c"], id="independent-keep-order"),
        pytest.param({"c": ["b"], "b": ["a"], "a": []}, ["a", "b", "c"], id="chain-reversed"),
        pytest.param(
            {"top": ["left", "right"], "left": ["base"], "right": ["base"], "base": []},
            ["base", "left", "right", "top"],
            id="diamond",
        ),
        pytest.param(
            {"reaper": [], "idle": ["reaper"], "elo": [], "sync": ["manifests"], "manifests": []},
            ["reaper", "idle", "elo", "manifests", "sync"],
            id="seed-like-registration-order-kept",
        ),
        pytest.param({"a": ["b", "b"], "b": []}, ["b", "a"], id="repeated-dependency"),
    ],
)
def test_order_loops(deps: dict[str, list[str]], order: list[str]) -> None:
    assert order_loops(deps) == order


@pytest.mark.parametrize(
    ("deps", "message"),
    [
        pytest.param(
            {"a": ["ghost"]}, "loop 'a' depends on unknown loop(s): 'ghost'", id="unknown"
        ),
        pytest.param({"a": ["a"]}, "loop dependency cycle: a -> a", id="self"),
        pytest.param({"a": ["b"], "b": ["a"]}, "loop dependency cycle: a -> b -> a", id="pair"),
        pytest.param(
            {"a": ["b"], "b": ["c"], "c": ["a"]},
            "loop dependency cycle: a -> b -> c -> a",
            id="triangle",
        ),
        pytest.param(
            {"x": ["b"], "b": ["c"], "c": ["b"], "free": []},
            "loop dependency cycle: b -> c -> b",
            id="cycle-named-without-bystanders",
        ),
    ],
)
def test_unsatisfiable_dependencies_name_the_loops(
    deps: dict[str, list[str]], message: str
) -> None:
    with pytest.raises(LoopDependencyError) as raised:
        order_loops(deps)
    assert str(raised.value) == message


@st.composite
def dags(draw: st.DrawFn) -> dict[str, list[str]]:
    names = [f"l{i}" for i in range(draw(st.integers(min_value=0, max_value=12)))]
    perm = draw(st.permutations(names))  # registration order, unrelated to dependency order
    deps: dict[str, list[str]] = {}
    for i, name in enumerate(names):
        deps[name] = draw(st.lists(st.sampled_from(names[:i]), unique=True)) if i else []
    return {name: deps[name] for name in perm}


@given(dags())
def test_order_is_a_permutation_with_dependencies_first(deps: dict[str, list[str]]) -> None:
    order = order_loops(deps)
    assert sorted(order) == sorted(deps)
    position = {name: i for i, name in enumerate(order)}
    for name, needs in deps.items():
        assert all(position[d] < position[name] for d in needs)


# --- backoff -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(0, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (6, 32.0), (7, 60.0), (50, 60.0)],
    ids=lambda v: str(v),
)
def test_backoff_doubles_up_to_the_maximum(failures: int, delay: float) -> None:
    assert backoff_delay(failures, config=NO_JITTER, rng=MID) == delay


@pytest.mark.parametrize(
    ("draw", "delay"),
    [
        pytest.param(0.0, 3.6, id="lowest-draw"),
        pytest.param(0.5, 4.0, id="middle-draw"),
        pytest.param(0.75, 4.2, id="upper-draw"),
    ],
)
def test_jitter_scales_the_wait(draw: float, delay: float) -> None:
    assert backoff_delay(3, config=BackoffConfig(), rng=FixedRandom(draw)) == pytest.approx(delay)


def test_jitter_never_exceeds_the_maximum() -> None:
    assert backoff_delay(10, config=BackoffConfig(), rng=FixedRandom(0.999)) == 60.0


def test_huge_failure_counts_do_not_overflow() -> None:
    config = BackoffConfig(multiplier=1e6, jitter=0.0)
    assert backoff_delay(10**9, config=config, rng=MID) == 60.0


@given(
    failures=st.integers(min_value=1, max_value=10_000),
    draw=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    initial=st.floats(min_value=0.01, max_value=10.0),
    multiplier=st.floats(min_value=1.0, max_value=5.0),
    jitter=st.floats(min_value=0.0, max_value=0.9),
)
def test_backoff_stays_within_jitter_of_the_capped_exponential(
    failures: int, draw: float, initial: float, multiplier: float, jitter: float
) -> None:
    config = BackoffConfig(initial=initial, maximum=60.0, multiplier=multiplier, jitter=jitter)
    delay = backoff_delay(failures, config=config, rng=FixedRandom(draw))
    # The capped exponential without overflow: past the cap, log-space says so.
    exponent = failures - 1
    capped = exponent * math.log(multiplier) >= math.log(60.0 / initial)
    base = 60.0 if capped else min(60.0, initial * multiplier**exponent)
    assert 0.0 < delay <= 60.0
    assert base * (1 - jitter) - 1e-9 <= delay <= base * (1 + jitter) + 1e-9


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"initial": 0.0}, id="zero-initial"),
        pytest.param({"initial": 10.0, "maximum": 5.0}, id="maximum-below-initial"),
        pytest.param({"multiplier": 0.5}, id="shrinking"),
        pytest.param({"jitter": 1.0}, id="jitter-to-zero"),
        pytest.param({"jitter": -0.1}, id="negative-jitter"),
    ],
)
def test_backoff_config_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"initial|multiplier|jitter"):
        BackoffConfig(**kwargs)


@pytest.mark.parametrize(
    ("failures", "delay"),
    [pytest.param(0, 30.0, id="success-waits-the-interval"), pytest.param(2, 2.0, id="backoff")],
)
def test_next_delay(failures: int, delay: float) -> None:
    assert next_delay(consecutive_failures=failures, interval=30.0, config=NO_JITTER, rng=MID) == (
        delay
    )


# --- stats -------------------------------------------------------------------------------------


def test_success_counts_and_clears_the_streak_but_keeps_the_last_error() -> None:
    before = LoopStats(runs=4, successes=1, failures=3, consecutive_failures=3, last_error="E: x")
    after = record_success(before, started_at=100.0, finished_at=102.5)
    assert after == LoopStats(
        runs=5,
        successes=2,
        failures=3,
        consecutive_failures=0,
        last_duration=2.5,
        last_error="E: x",
        last_run_at=102.5,
    )


def test_failure_counts_and_extends_the_streak() -> None:
    before = LoopStats(runs=2, successes=2, next_run_at=50.0)
    after = record_failure(before, started_at=100.0, finished_at=100.25, error="E: boom")
    assert after == LoopStats(
        runs=3,
        successes=2,
        failures=1,
        consecutive_failures=1,
        last_duration=0.25,
        last_error="E: boom",
        last_run_at=100.25,
        next_run_at=50.0,
    )


def test_duration_is_never_negative() -> None:
    assert record_success(LoopStats(), started_at=5.0, finished_at=4.0).last_duration == 0.0


@pytest.mark.parametrize(
    ("error", "text"),
    [
        pytest.param(ValueError("bad config"), "ValueError: bad config", id="with-message"),
        pytest.param(TimeoutError(), "TimeoutError", id="without-message"),
        pytest.param(KeyError("k"), "KeyError: 'k'", id="repr-like-message"),
    ],
)
def test_describe_error(error: BaseException, text: str) -> None:
    assert describe_error(error) == text


def test_describe_error_cuts_long_messages() -> None:
    text = describe_error(RuntimeError("x" * 10_000))
    assert len(text) == ERROR_TEXT_LIMIT
    assert text.startswith("RuntimeError: xxx")
    assert text.endswith("…")


# --- health ------------------------------------------------------------------------------------

NOW = 1_000.0


def snap(
    state: LoopState = LoopState.RUNNING,
    *,
    name: str = "loop",
    interval: float = 10.0,
    failures: int = 0,
    next_run_at: float | None = NOW + 5,
    error: str | None = None,
) -> LoopSnapshot:
    stats = LoopStats(
        runs=failures + 1,
        successes=1,
        failures=failures,
        consecutive_failures=failures,
        last_error=error,
        last_run_at=NOW - 5,
        next_run_at=next_run_at,
    )
    return LoopSnapshot(name=name, interval=interval, state=state, stats=stats)


@pytest.mark.parametrize(
    ("snapshot", "health", "reason"),
    [
        pytest.param(snap(), Health.HEALTHY, "", id="running-on-time"),
        pytest.param(snap(LoopState.PENDING, next_run_at=None), Health.HEALTHY, "", id="pending"),
        pytest.param(snap(LoopState.WAITING, next_run_at=0.0), Health.HEALTHY, "", id="waiting"),
        pytest.param(snap(LoopState.STOPPED, next_run_at=0.0), Health.HEALTHY, "", id="stopped"),
        pytest.param(snap(LoopState.DISABLED, next_run_at=None), Health.HEALTHY, "", id="disabled"),
        pytest.param(
            snap(failures=1, error="E: x"),
            Health.DEGRADED,
            "1 consecutive failure(s) (last: E: x)",
            id="one-failure",
        ),
        pytest.param(snap(failures=2), Health.DEGRADED, "2 consecutive failure(s)", id="two"),
        pytest.param(
            snap(failures=3, error="E: x"),
            Health.FAILING,
            "3 consecutive failures (last: E: x)",
            id="three-failures-is-failing",
        ),
        pytest.param(
            snap(LoopState.CRASHED, error="Boom"),
            Health.FAILING,
            "stopped unexpectedly (last: Boom)",
            id="crashed",
        ),
        pytest.param(
            snap(next_run_at=NOW - 10.0), Health.HEALTHY, "", id="late-within-interval-grace"
        ),
        pytest.param(
            snap(next_run_at=NOW - 10.5), Health.DEGRADED, "overdue by 10.5s", id="overdue"
        ),
        pytest.param(
            snap(interval=1.0, next_run_at=NOW - 4.0), Health.HEALTHY, "", id="min-grace-short"
        ),
        pytest.param(
            snap(interval=1.0, next_run_at=NOW - 6.0),
            Health.DEGRADED,
            "overdue by 6.0s",
            id="overdue-short-interval",
        ),
    ],
)
def test_classify_loop(snapshot: LoopSnapshot, health: Health, reason: str) -> None:
    assert classify_loop(snapshot, now=NOW) == (health, reason)


def test_failing_threshold_comes_from_the_policy() -> None:
    policy = HealthPolicy(failing_after=1)
    assert classify_loop(snap(failures=1), now=NOW, policy=policy)[0] is Health.FAILING


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"failing_after": 0}, id="failing-after-zero"),
        pytest.param({"overdue_min_grace": -1.0}, id="negative-grace"),
    ],
)
def test_health_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"failing_after|grace"):
        HealthPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("snapshots", "status", "running", "failing", "degraded"),
    [
        pytest.param([], Health.HEALTHY, 0, (), (), id="no-loops"),
        pytest.param(
            [snap(name="a"), snap(LoopState.WAITING, name="b"), snap(LoopState.STOPPED, name="c")],
            Health.HEALTHY,
            2,
            (),
            (),
            id="all-well",
        ),
        pytest.param(
            [snap(name="a"), snap(name="b", failures=1)],
            Health.DEGRADED,
            2,
            (),
            ("b",),
            id="one-degraded",
        ),
        pytest.param(
            [snap(name="a", failures=1), snap(LoopState.CRASHED, name="b"), snap(name="c")],
            Health.FAILING,
            2,
            ("b",),
            ("a",),
            id="worst-wins",
        ),
    ],
)
def test_health_report(
    snapshots: list[LoopSnapshot],
    status: Health,
    running: int,
    failing: tuple[str, ...],
    degraded: tuple[str, ...],
) -> None:
    report = build_health_report(snapshots, now=NOW)
    assert report.status is status
    assert report.healthy is (status is Health.HEALTHY)
    assert report.loops_running == running
    assert report.total_loops == len(snapshots)
    assert report.failing_loops == failing
    assert report.degraded_loops == degraded


def test_health_report_as_dict_is_the_status_json() -> None:
    report = build_health_report(
        [snap(name="elo-sync", failures=1, error="E: x"), snap(LoopState.DISABLED, name="off")],
        now=NOW,
    )
    data = json.loads(json.dumps(report.as_dict()))
    assert data["status"] == "degraded"
    assert data["healthy"] is False
    assert (data["loops_running"], data["total_loops"]) == (1, 2)
    assert data["failing_loops"] == []
    assert data["degraded_loops"] == ["elo-sync"]
    assert data["loops"]["elo-sync"] == {
        "state": "running",
        "health": "degraded",
        "reason": "1 consecutive failure(s) (last: E: x)",
        "interval_seconds": 10.0,
        "depends_on": [],
        "runs": 2,
        "successes": 1,
        "failures": 1,
        "consecutive_failures": 1,
        "last_duration_seconds": None,
        "last_error": "E: x",
        "last_run_age_seconds": 5.0,
        "next_run_in_seconds": 5.0,
    }
    assert data["loops"]["off"]["state"] == "disabled"
