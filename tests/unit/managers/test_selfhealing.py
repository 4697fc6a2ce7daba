"""Self-healing: stuck pods by deadline, node transitions, reputation moves."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringrift_operator.managers.selfhealing import (
    NodeChange,
    PodAge,
    StuckReason,
    find_stuck_pods,
    plan_node_transitions,
    plan_reputation_change,
)

NOW = 100_000.0


def pod(name: str, *, node: str = "n1", age: float = 0, running: float | None = None) -> PodAge:
    return PodAge(namespace="ns", name=name, owner_kind="SelfplayJob", owner_name="job",
                  node=node, created_at=NOW - age,
                  started_at=None if running is None else NOW - running)  # fmt: skip


@pytest.mark.parametrize(
    ("p", "reason"),
    [
        pytest.param(pod("fresh", age=10), None, id="pending-within-deadline"),
        pytest.param(pod("late", age=601), StuckReason.NEVER_STARTED, id="never-started"),
        pytest.param(pod("unbound", node="", age=10_000), None, id="unbound-is-not-stuck"),
        pytest.param(pod("busy", age=5000, running=3600), None, id="running-within-deadline"),
        pytest.param(
            pod("hung", age=9000, running=7201), StuckReason.NO_PROGRESS, id="running-too-long"
        ),
    ],
)
def test_find_stuck_pods(p: PodAge, reason: StuckReason | None) -> None:
    stuck = find_stuck_pods([p], now=NOW, pending_deadline=600, running_deadline=7200)
    assert [s.reason for s in stuck] == ([reason] if reason else [])
    for s in stuck:
        assert p.name in s.message
        assert "deadline" in s.message


@pytest.mark.parametrize(
    ("known", "current", "expected"),
    [
        pytest.param({}, {"a": True}, [], id="first-seen-ready"),
        pytest.param({}, {"a": False}, [("a", NodeChange.OFFLINE)], id="first-seen-not-ready"),
        pytest.param({"a": True}, {"a": False}, [("a", NodeChange.OFFLINE)], id="went-offline"),
        pytest.param({"a": False}, {"a": False}, [], id="still-offline"),
        pytest.param({"a": False}, {"a": True}, [("a", NodeChange.RECOVERED)], id="recovered"),
        pytest.param({"a": False}, {}, [], id="deleted-node"),
        pytest.param(
            {"b": True, "a": True},
            {"b": False, "a": False},
            [("a", NodeChange.OFFLINE), ("b", NodeChange.OFFLINE)],
            id="sorted",
        ),
    ],
)
def test_plan_node_transitions(
    known: dict[str, bool], current: dict[str, bool], expected: list[tuple[str, NodeChange]]
) -> None:
    assert [(t.node, t.change) for t in plan_node_transitions(known, current)] == expected


@given(st.dictionaries(st.sampled_from("abcdef"), st.booleans()),
       st.dictionaries(st.sampled_from("abcdef"), st.booleans()))  # fmt: skip
def test_transitions_replayed_reach_the_current_state(
    known: dict[str, bool], current: dict[str, bool]
) -> None:
    """Applying the transitions to ``known`` agrees with ``current`` on every NotReady node
    and on every node that was NotReady before; a second look finds nothing new."""
    changes = plan_node_transitions(known, current)
    state = dict(known)
    for t in changes:
        state[t.node] = t.change is NodeChange.RECOVERED
    for node, ready in current.items():
        if not ready or known.get(node) is False:
            assert state[node] == ready
    assert plan_node_transitions(current, current) == []


@pytest.mark.parametrize(
    ("change", "penalty", "forgiveness", "delta"),
    [
        (NodeChange.OFFLINE, 3, 2, 3),
        (NodeChange.RECOVERED, 3, 2, -2),
        (NodeChange.RECOVERED, 1, 2, -1),  # never gives back more than going offline cost
        (NodeChange.OFFLINE, 0, 0, 0),
    ],
)
def test_plan_reputation_change(
    change: NodeChange, penalty: int, forgiveness: int, delta: int
) -> None:
    assert plan_reputation_change(change, penalty=penalty, forgiveness=forgiveness) == delta
