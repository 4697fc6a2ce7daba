"""Idle detection and reaping as pure decisions."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringrift_operator.managers.autopilot import (
    FinishedJob,
    QueuedJob,
    find_idle_capacity,
    plan_backlog,
    plan_idle_fill,
    plan_queue_timeouts,
    plan_reaping,
)
from ringrift_operator.managers.nodes import GIB, NodeInfo
from ringrift_operator.managers.selfplayscheduling import SchedulerSettings, compute_config_weights

H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.memory": "81559"}


def gpu_node(name: str, *, gpus: int = 8, used: int = 0, jobs: int = 0, **kw: object) -> NodeInfo:
    return NodeInfo(name=name, labels=H100, gpu_allocatable=gpus, gpu_in_use=used,
                    cpu_millis=96_000, memory_bytes=1024 * GIB, running_jobs=jobs,
                    **kw)  # type: ignore[arg-type]  # fmt: skip


SETTINGS = SchedulerSettings(
    static_priorities={"square8_2p": 8, "hex8_2p": 3}, enabled_configs=("square8_2p", "hex8_2p")
)
WEIGHTS = compute_config_weights(settings=SETTINGS)


@pytest.mark.parametrize(
    ("node", "room"),
    [
        pytest.param(gpu_node("a"), 8, id="idle-node"),
        pytest.param(gpu_node("a", used=6, jobs=6), 2, id="partly-busy"),
        pytest.param(gpu_node("a", used=8, jobs=8), 0, id="full"),
        pytest.param(gpu_node("a", ready=False), 0, id="not-ready"),
        pytest.param(gpu_node("a", unschedulable=True), 0, id="cordoned"),
        pytest.param(
            NodeInfo(name="cpu", cpu_millis=32_000, memory_bytes=64 * GIB), 0, id="cpu-only"
        ),
    ],
)
def test_idle_capacity(node: NodeInfo, room: int) -> None:
    assert find_idle_capacity([node]).total == room


def test_fill_creates_one_job_per_free_gpu_minus_pending() -> None:
    nodes = [gpu_node("a"), gpu_node("b", used=4, jobs=4)]
    plan = plan_idle_fill(nodes=nodes, pending_jobs=2, weights=WEIGHTS, settings=SETTINGS,
                          rng=random.Random(1), games=100, max_new=100)  # fmt: skip
    assert len(plan) == 12 - 2
    assert {j.gpus for j in plan} == {1}
    assert {j.games for j in plan} == {100}


def test_fill_is_capped_per_tick_and_quiet_when_pending_covers_it() -> None:
    nodes = [gpu_node("a")]
    capped = plan_idle_fill(nodes=nodes, pending_jobs=0, weights=WEIGHTS, settings=SETTINGS,
                            rng=random.Random(1), games=1, max_new=3)  # fmt: skip
    assert len(capped) == 3
    covered = plan_idle_fill(nodes=nodes, pending_jobs=8, weights=WEIGHTS, settings=SETTINGS,
                             rng=random.Random(1), games=1, max_new=30)  # fmt: skip
    assert covered == []


def test_the_config_mix_follows_the_priorities() -> None:
    nodes = [gpu_node(f"n{i}") for i in range(100)]
    plan = plan_idle_fill(nodes=nodes, pending_jobs=0, weights=WEIGHTS, settings=SETTINGS,
                          rng=random.Random(3), games=1, max_new=800)  # fmt: skip
    mix = Counter(j.config for j in plan)
    expected = {w.config: w.weight for w in WEIGHTS}
    share = mix["square8_2p"] / len(plan)
    assert share == pytest.approx(expected["square8_2p"] / sum(expected.values()), abs=0.05)
    assert all(j.engine_mode.value in {"gumbel-mcts", "nnue-guided", "policy-only", "nn-descent",
                                       "nn-minimax"} for j in plan)  # fmt: skip


def test_reaping_keeps_the_newest_and_the_young() -> None:
    jobs = [FinishedJob("ns", f"j{i}", finished_at=1000.0 + i) for i in range(10)]
    gone = plan_reaping(jobs, now=1600.0, keep=3, older_than_seconds=595)
    assert sorted(j.name for j in gone) == ["j0", "j1", "j2", "j3", "j4"]
    assert plan_reaping(jobs, now=1600.0, keep=20, older_than_seconds=0) == []


# --- queue population and work-queue maintenance -----------------------------------------------


def queued(config: str, name: str = "", created_at: float = 0.0) -> QueuedJob:
    return QueuedJob(namespace="ns", name=name or config, config=config, created_at=created_at)


@pytest.mark.parametrize(
    ("have", "in_flight", "backlog", "per_config", "expected"),
    [
        pytest.param([], 0, 2, 1, 2, id="fills-to-backlog"),
        pytest.param([queued("square8_2p")], 0, 2, 1, 1, id="counts-queued"),
        pytest.param([], 2, 2, 1, 0, id="counts-in-flight"),
        pytest.param([], 0, 5, 1, 2, id="capped-per-config"),
        pytest.param([queued("square8_2p"), queued("hex8_2p")], 0, 1, 1, 0, id="over-backlog"),
        pytest.param([], 0, 0, 1, 0, id="backlog-off"),
    ],
)
def test_plan_backlog(
    have: list[QueuedJob], in_flight: int, backlog: int, per_config: int, expected: int
) -> None:
    picks = plan_backlog(
        queued=have, in_flight=in_flight, weights=WEIGHTS, rng=random.Random(1),
        backlog=backlog, max_per_config=per_config,
    )  # fmt: skip
    assert len(picks) == expected
    counts = Counter(picks) + Counter(j.config for j in have)
    assert all(n <= per_config for n in counts.values())


@given(
    have=st.lists(st.sampled_from(["square8_2p", "hex8_2p"]), max_size=6),
    in_flight=st.integers(0, 5), backlog=st.integers(0, 8), per_config=st.integers(1, 4),
)  # fmt: skip
def test_backlog_never_overfills(
    have: list[str], in_flight: int, backlog: int, per_config: int
) -> None:
    picks = plan_backlog(
        queued=[queued(c) for c in have], in_flight=in_flight, weights=WEIGHTS,
        rng=random.Random(0), backlog=backlog, max_per_config=per_config,
    )  # fmt: skip
    assert len(have) + in_flight + len(picks) <= max(backlog, len(have) + in_flight)
    assert set(picks) <= {"square8_2p", "hex8_2p"}


def test_queue_timeouts_remove_only_old_jobs() -> None:
    jobs = [queued("hex8_2p", "old", created_at=0), queued("hex8_2p", "new", created_at=3000)]
    assert [j.name for j in plan_queue_timeouts(jobs, now=3700, max_age_seconds=3600)] == ["old"]


def test_idle_fill_counts_the_queue_as_spoken_for() -> None:
    nodes = [gpu_node("a", gpus=4)]
    plan = plan_idle_fill(nodes=nodes, pending_jobs=3, weights=WEIGHTS, settings=SETTINGS,
                          rng=random.Random(0), games=10, max_new=10)  # fmt: skip
    assert len(plan) == 1
