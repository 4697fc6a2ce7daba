"""The SelfplayJob decision, as a table: job state + observed attempt → action and status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ringrift_operator.api.selfplayjob import SelfplayJob, parse_selfplayjob
from ringrift_operator.managers.pods import PodPhase
from ringrift_operator.managers.selfplayjob import (
    Action,
    AttemptView,
    NodeState,
    decide_selfplayjob,
    placed,
    pod_rejected,
    unplaceable,
)

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
CREATED = (NOW - timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%SZ")


def job(**spec: Any) -> SelfplayJob:
    return parse_selfplayjob(
        {
            "apiVersion": "ringrift.ai/v1alpha1",
            "kind": "SelfplayJob",
            "metadata": {
                "name": "j",
                "namespace": "ns",
                "uid": "u1",
                "generation": 1,
                "creationTimestamp": CREATED,
            },
            "spec": {
                "board": "square8",
                "players": 2,
                "engineMode": "heuristic",
                "games": 10,
                **spec,
            },
        }
    )


def running(j: SelfplayJob, *, node: str = "gpu-h100-0") -> SelfplayJob:
    """The job after its first attempt was placed on ``node``."""
    d = decide_selfplayjob(j, attempt=AttemptView(pod="j-sp-1"), now=NOW)
    return j.model_copy(
        update={
            "status": placed(
                j, d.status, node=node, pod="j-sp-1", score=1000, reasons=("tier 1",), now=NOW
            ).status
        }
    )


def pod(phase: PodPhase, *, node: str = "gpu-h100-0", **kw: Any) -> AttemptView:
    return AttemptView(pod="j-sp-1", exists=True, node=node, phase=phase, **kw)


def test_a_new_job_asks_to_be_placed() -> None:
    d = decide_selfplayjob(job(), attempt=AttemptView(pod="j-sp-1"), now=NOW)
    assert d.action is Action.PLACE
    assert d.status.attempts == 1
    assert d.status.config == "square8_2p"
    assert d.status.observed_generation == 1


def test_placing_records_node_score_and_a_scheduled_event() -> None:
    j = running(job())
    assert (j.status.node, j.status.power_score, j.status.phase.value) == (
        "gpu-h100-0", 1000, "Pending",
    )  # fmt: skip
    d = placed(job(), job().status, node="gpu-h100-0", pod="j-sp-1", score=1000,
               reasons=("tier 1",), now=NOW)  # fmt: skip
    assert [e.reason for e in d.events] == ["Scheduled"]
    assert "power score 1000" in d.events[0].message


def test_the_scheduled_condition_keeps_what_the_node_was_chosen_over() -> None:
    alternatives = "3 candidate(s), 2 rejected; runner-up gpu-a100-0 (power 700)"
    d = placed(job(), job().status, node="gpu-h100-0", pod="j-sp-1", score=1000,
               reasons=("tier 1",), now=NOW, alternatives=alternatives)  # fmt: skip
    scheduled = next(c for c in d.status.conditions if c.type == "Scheduled")
    assert scheduled.message.endswith("tier 1; " + alternatives)
    plain = placed(job(), job().status, node="gpu-h100-0", pod="j-sp-1", score=1000,
                   reasons=("tier 1",), now=NOW)  # fmt: skip
    assert next(c for c in plain.status.conditions if c.type == "Scheduled").message.endswith(
        "(power score 1000): tier 1"
    )


def test_no_capacity_keeps_it_pending_with_a_reason_and_one_event() -> None:
    d = unplaceable(job(), job().status, why="no free GPU", now=NOW)
    assert d.status.phase.value == "Pending"
    assert d.status.reason == "WaitingForNode"
    assert d.requeue_after is not None
    assert [e.reason for e in d.events] == ["FailedScheduling"]
    again = unplaceable(job().model_copy(update={"status": d.status}), d.status,
                        why="no free GPU", now=NOW)  # fmt: skip
    assert again.events == ()  # no event spam while it keeps waiting


def test_a_refused_pod_keeps_it_pending_saying_why_and_retries_slowly() -> None:
    why = '422 Invalid: Pod "j-sp-1" is invalid: spec.tolerations[1].key: Invalid value: "æ"'
    d = pod_rejected(job(), job().status, why=why, now=NOW)
    assert d.status.phase.value == "Pending"
    assert d.status.reason == "PodRejected"
    assert "spec.tolerations[1].key" in (d.status.message or "")
    assert d.status.conditions  # a status the user can read, not a crash-looping reconcile
    assert d.requeue_after is not None
    assert d.requeue_after >= 10
    assert [e.reason for e in d.events] == ["FailedCreate"]
    again = pod_rejected(job().model_copy(update={"status": d.status}), d.status, why=why,
                         now=NOW)  # fmt: skip
    assert again.events == ()


@pytest.mark.parametrize(
    ("phase", "expected_phase", "expected_reason"),
    [
        pytest.param(PodPhase.PENDING, "Pending", "PodCreated", id="bound-not-started"),
        pytest.param(PodPhase.RUNNING, "Running", "PodRunning", id="running"),
    ],
)
def test_following_the_pod(phase: PodPhase, expected_phase: str, expected_reason: str) -> None:
    d = decide_selfplayjob(running(job()), attempt=pod(phase), now=NOW)
    assert d.action is Action.NONE
    assert (d.status.phase.value, d.status.reason) == (expected_phase, expected_reason)


def test_success_reads_the_games_from_the_termination_message() -> None:
    d = decide_selfplayjob(
        running(job()),
        attempt=pod(PodPhase.SUCCEEDED, exit_code=0, message='{"gamesWritten": 10}'),
        now=NOW,
    )
    assert d.status.phase.value == "Complete"
    assert d.status.games_completed == 10
    assert d.status.completion_time is not None
    assert [e.reason for e in d.events] == ["Completed"]


@pytest.mark.parametrize(
    ("backoff_limit", "failed_before", "phase", "attempts"),
    [
        pytest.param(3, 0, "Pending", 2, id="retry"),
        pytest.param(1, 1, "Failed", 1, id="limit-reached"),
        pytest.param(0, 0, "Failed", 1, id="no-retries"),
    ],
)
def test_a_failed_pod_is_retried_until_the_backoff_limit(
    backoff_limit: int, failed_before: int, phase: str, attempts: int
) -> None:
    j = running(job(backoffLimit=backoff_limit))
    j = j.model_copy(
        update={"status": j.status.model_copy(update={"failed_attempts": failed_before})}
    )
    d = decide_selfplayjob(j, attempt=pod(PodPhase.FAILED, exit_code=1), now=NOW)
    assert d.status.phase.value == phase
    assert d.status.attempts == attempts
    assert d.status.failed_attempts == failed_before + 1


def test_a_retry_avoids_the_nodes_that_failed() -> None:
    j = running(job())
    d = decide_selfplayjob(j, attempt=pod(PodPhase.FAILED, exit_code=1), now=NOW)
    retried = j.model_copy(update={"status": d.status})
    again = decide_selfplayjob(retried, attempt=AttemptView(pod="j-sp-2"), now=NOW)
    assert again.action is Action.PLACE
    assert again.exclude_nodes == ("gpu-h100-0",)


def test_bad_input_fails_at_once() -> None:
    d = decide_selfplayjob(running(job()), attempt=pod(PodPhase.FAILED, exit_code=2), now=NOW)
    assert (d.status.phase.value, d.status.reason) == ("Failed", "BadInput")


@pytest.mark.parametrize("state", [NodeState.NOT_READY, NodeState.MISSING], ids=str)
def test_a_lost_node_fails_the_attempt_deletes_its_pod_and_retries(state: NodeState) -> None:
    d = decide_selfplayjob(running(job()), attempt=pod(PodPhase.RUNNING, node_state=state),
                           now=NOW)  # fmt: skip
    assert d.action is Action.DELETE_POD
    assert d.status.attempts == 2
    assert d.status.recent_attempts[0].result.value == "Lost"
    assert "NodeLost" in [e.reason for e in d.events]


def test_waiting_beyond_the_dispatch_timeout_expires() -> None:
    late = NOW + timedelta(seconds=400)
    d = decide_selfplayjob(job(), attempt=AttemptView(pod="j-sp-1"), now=late)
    assert (d.status.phase.value, d.status.reason) == ("Expired", "DispatchTimeout")
    assert d.action is Action.NONE


def test_running_past_the_active_deadline_fails_and_removes_the_pod() -> None:
    j = running(job(activeDeadlineSeconds=60))
    d = decide_selfplayjob(j, attempt=pod(PodPhase.RUNNING), now=NOW)
    j = j.model_copy(update={"status": d.status})
    d = decide_selfplayjob(j, attempt=pod(PodPhase.RUNNING), now=NOW + timedelta(seconds=61))
    assert d.action is Action.DELETE_POD
    assert (d.status.phase.value, d.status.reason) == ("Failed", "DeadlineExceeded")


def test_suspend_deletes_the_pod_and_resume_starts_a_new_attempt() -> None:
    j = running(job(suspend=True))
    d = decide_selfplayjob(j, attempt=pod(PodPhase.RUNNING), now=NOW)
    assert d.action is Action.DELETE_POD
    assert d.status.phase.value == "Suspended"
    assert d.status.attempts == 2
    assert d.status.failed_attempts == 0
    resumed = job().model_copy(update={"status": d.status})
    d2 = decide_selfplayjob(resumed, attempt=AttemptView(pod="j-sp-2"), now=NOW)
    assert d2.action is Action.PLACE
    assert "Resumed" in [e.reason for e in d2.events]


def test_a_finished_job_stays_finished_and_cleans_up_a_leftover_pod() -> None:
    done = decide_selfplayjob(
        running(job()), attempt=pod(PodPhase.SUCCEEDED, message='{"gamesWritten": 10}'), now=NOW
    )
    j = job().model_copy(update={"status": done.status})
    d = decide_selfplayjob(j, attempt=pod(PodPhase.RUNNING), now=NOW)
    assert d.action is Action.DELETE_POD
    assert d.status == done.status


def test_a_pod_of_an_earlier_object_is_waited_for() -> None:
    d = decide_selfplayjob(job(), attempt=AttemptView(pod="j-sp-1", exists=True, deleting=True),
                           now=NOW)  # fmt: skip
    assert d.action is Action.NONE
    assert d.requeue_after is not None


def test_deciding_twice_on_the_same_observation_changes_nothing() -> None:
    j = running(job())
    first = decide_selfplayjob(j, attempt=pod(PodPhase.RUNNING), now=NOW)
    j2 = j.model_copy(update={"status": first.status})
    second = decide_selfplayjob(j2, attempt=pod(PodPhase.RUNNING), now=NOW + timedelta(seconds=5))
    assert second.status == first.status
    assert second.events == ()


@pytest.mark.parametrize("phase", [PodPhase.PENDING, PodPhase.RUNNING], ids=["pending", "running"])
def test_a_bound_pod_the_status_does_not_know_is_taken_as_placed(phase: PodPhase) -> None:
    # The status written after the placement was lost (a restart between the create and it).
    j = job()
    j = j.model_copy(update={"status": decide_selfplayjob(j, attempt=AttemptView(pod="j-sp-1"),
                                                          now=NOW).status})  # fmt: skip
    d = decide_selfplayjob(j, attempt=pod(phase), now=NOW)
    assert d.action is Action.NONE
    assert (d.status.node, d.status.pod) == ("gpu-h100-0", "j-sp-1")
    scheduled = next(c for c in d.status.conditions if c.type == "Scheduled")
    assert scheduled.status == "True"
    assert [e.reason for e in d.events] == ["Scheduled"]
    # Once written, following the pod adds no second Scheduled event.
    again = decide_selfplayjob(j.model_copy(update={"status": d.status}), attempt=pod(phase),
                               now=NOW)  # fmt: skip
    assert again.events == ()
