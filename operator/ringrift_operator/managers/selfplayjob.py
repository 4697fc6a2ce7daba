"""What a SelfplayJob needs next, decided from the job and its current attempt's pod.

Pure: the reconciler observes (``AttemptView``), calls :func:`decide_selfplayjob`, performs the
one action it returns (place, delete a pod, nothing) and writes the status it returns. Placement
results come back through :func:`placed` / :func:`unplaceable`. Every status change is a new
status value built with the one condition helper; Events are returned only on transitions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from ringrift_operator.api.common import config_key
from ringrift_operator.api.conditions import (
    ConditionStatus,
    SelfplayJobConditionType,
    SelfplayJobReason,
    get_condition,
    update_condition,
)
from ringrift_operator.api.contract import EXIT_BAD_INPUT, JobKind, parse_result
from ringrift_operator.api.meta import parse_rfc3339, rfc3339
from ringrift_operator.api.selfplayjob import (
    TERMINAL_PHASES,
    AttemptRecord,
    AttemptResult,
    SelfplayJob,
    SelfplayJobStatus,
    derive_phase,
    set_attempt_record,
)
from ringrift_operator.managers.jobs import pod_name
from ringrift_operator.managers.pods import PodPhase

T = SelfplayJobConditionType
R = SelfplayJobReason
TRUE, FALSE = ConditionStatus.TRUE, ConditionStatus.FALSE
MAX_MESSAGE = 900


class NodeState(StrEnum):
    READY = "Ready"
    NOT_READY = "NotReady"
    MISSING = "Missing"


class Action(StrEnum):
    NONE = "None"
    PLACE = "Place"  # choose a node, create the attempt's pod (if absent) and bind it
    DELETE_POD = "DeletePod"  # remove the attempt's pod (node lost, deadline, suspend, done)


@dataclass(frozen=True, slots=True)
class AttemptView:
    """The current attempt's pod as observed, or ``exists=False``."""

    pod: str
    exists: bool = False
    node: str = ""
    phase: PodPhase | None = None
    exit_code: int | None = None
    message: str | None = None
    deleting: bool = False
    node_state: NodeState = NodeState.READY


@dataclass(frozen=True, slots=True)
class JobEvent:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Decision:
    status: SelfplayJobStatus
    action: Action = Action.NONE
    pod: str = ""  # the pod the action is about
    events: tuple[JobEvent, ...] = ()
    requeue_after: float | None = None  # seconds; None: only on change or resync
    exclude_nodes: tuple[str, ...] = field(default=())  # for PLACE: nodes that failed this job


def current_attempt(job: SelfplayJob) -> int:
    return max(1, job.status.attempts)


def attempt_pod_name(job: SelfplayJob, attempt: int) -> str:
    return pod_name(owner=job.name, kind=JobKind.SELFPLAY, attempt=attempt)


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


class _Status:
    """A small builder over an immutable status: set conditions, fields, collect events."""

    def __init__(self, job: SelfplayJob, now: datetime, epoch: int) -> None:
        self.job = job
        self.now = now
        self.gen = job.generation
        self.s = job.status.model_copy(
            update={
                "observed_generation": self.gen,
                "config": config_key(job.spec.board, job.spec.players),
                "epoch": epoch,
            }
        )
        self.events: list[JobEvent] = []

    def cond(self, type: T, status: ConditionStatus, reason: R, message: str = "") -> bool:
        """Set a condition; True when its status or reason changed (an Event-worthy change)."""
        conditions, changed = update_condition(
            self.s.conditions, type=type, status=status, reason=reason,
            message=_short(message), generation=self.gen, now=self.now,
        )  # fmt: skip
        self.s = self.s.model_copy(update={"conditions": conditions})
        return changed

    def set(self, **fields: object) -> None:
        self.s = self.s.model_copy(update=fields)

    def record(self, attempt: int, **fields: object) -> None:
        existing = next((r for r in self.s.recent_attempts if r.attempt == attempt), None)
        base = existing or AttemptRecord(attempt=attempt)
        self.set(recent_attempts=set_attempt_record(self.s.recent_attempts, base.model_copy(
            update=fields)))  # fmt: skip

    def event(self, type: str, reason: str, message: str) -> None:
        self.events.append(JobEvent(type, reason, _short(message)))

    def finish(self, reason: R | None, message: str) -> SelfplayJobStatus:
        phase = derive_phase(self.s.conditions)
        update: dict[str, object] = {"phase": phase, "reason": reason, "message": _short(message)}
        if phase in TERMINAL_PHASES and self.s.completion_time is None:
            update["completion_time"] = rfc3339(self.now)
        self.s = self.s.model_copy(update=update)
        return self.s

    def decision(self, reason: R | None, message: str, **kw: object) -> Decision:
        status = self.finish(reason, message)
        return Decision(status=status, events=tuple(self.events), **kw)  # type: ignore[arg-type]


def _pending_since(job: SelfplayJob) -> datetime | None:
    scheduled = get_condition(job.status.conditions, T.SCHEDULED)
    if scheduled is not None and scheduled.status is FALSE:
        return parse_rfc3339(scheduled.last_transition_time)
    created = job.metadata.creation_timestamp
    return parse_rfc3339(created) if created else None


def _failed_nodes(job: SelfplayJob) -> tuple[str, ...]:
    return tuple(
        r.node
        for r in job.status.recent_attempts
        if r.node and r.result in (AttemptResult.FAILED, AttemptResult.LOST)
    )


def decide_selfplayjob(
    job: SelfplayJob, *, attempt: AttemptView, now: datetime, epoch: int = 0
) -> Decision:
    """The next step for ``job`` given its current attempt's pod."""
    b = _Status(job, now, epoch)
    spec = job.spec
    n = current_attempt(job)
    phase = derive_phase(job.status.conditions)
    live = attempt.exists and not attempt.deleting and attempt.phase not in _DONE

    if phase in TERMINAL_PHASES:
        # Finished work stays finished; a pod left running (deadline, race) is removed.
        if live:
            return Decision(status=job.status, action=Action.DELETE_POD, pod=attempt.pod)
        return Decision(status=job.status)

    if spec.suspend:
        if b.cond(T.SUSPENDED, TRUE, R.SUSPENDED, "spec.suspend is true: no pod runs"):
            b.event("Normal", "Suspended", "job suspended; its running pod, if any, is removed")
        b.cond(T.RUNNING, FALSE, R.SUSPENDED, "suspended")
        if live:
            b.record(n, node=attempt.node, pod=attempt.pod, result=AttemptResult.FAILED,
                     reason=R.SUSPENDED.value)  # fmt: skip
            b.set(attempts=n + 1)  # a resumed job starts a fresh attempt (and a fresh pod name)
            return b.decision(R.SUSPENDED, "suspended", action=Action.DELETE_POD, pod=attempt.pod)
        return b.decision(R.SUSPENDED, "suspended")
    was_suspended = get_condition(job.status.conditions, T.SUSPENDED) is not None
    if was_suspended and b.cond(T.SUSPENDED, FALSE, R.RESUMED, "spec.suspend is false"):
        b.event("Normal", "Resumed", "job resumed")
        b.cond(T.SCHEDULED, FALSE, R.WAITING_FOR_NODE, "resumed; waiting for a node")

    if not attempt.exists or not attempt.node:
        if attempt.exists and attempt.deleting:
            return b.decision(R.WAITING_FOR_NODE, "waiting for the previous pod to go",
                              requeue_after=2.0)  # fmt: skip
        since = _pending_since(job)
        if since is not None and now - since > timedelta(seconds=spec.dispatch_timeout_seconds):
            message = (
                f"no node could take the job within dispatchTimeoutSeconds "
                f"({spec.dispatch_timeout_seconds}s)"
            )
            b.cond(T.EXPIRED, TRUE, R.DISPATCH_TIMEOUT, message)
            b.cond(T.SCHEDULED, FALSE, R.DISPATCH_TIMEOUT, message)
            b.event("Warning", "Expired", message)
            action = Action.DELETE_POD if attempt.exists else Action.NONE
            return b.decision(R.DISPATCH_TIMEOUT, message, action=action, pod=attempt.pod)
        b.set(attempts=n)
        return b.decision(
            None, "placing", action=Action.PLACE, pod=attempt.pod,
            exclude_nodes=_failed_nodes(job),
        )  # fmt: skip

    # The attempt's pod is bound to a node.
    if attempt.phase not in _DONE and attempt.node_state is not NodeState.READY:
        why = "was deleted" if attempt.node_state is NodeState.MISSING else "is not Ready"
        message = f"node {attempt.node} {why} during attempt {n}"
        b.record(n, node=attempt.node, pod=attempt.pod, result=AttemptResult.LOST,
                 reason=R.NODE_LOST.value)  # fmt: skip
        b.event("Warning", "NodeLost", message)
        return _after_failure(b, job, n, R.NODE_LOST, message, attempt)

    if attempt.phase is PodPhase.SUCCEEDED:
        result = parse_result(attempt.message)
        games = result.games_written if result and result.games_written is not None else 0
        message = f"attempt {n} wrote {games} games on node {attempt.node}"
        b.record(n, node=attempt.node, pod=attempt.pod, result=AttemptResult.SUCCEEDED,
                 reason=R.POD_SUCCEEDED.value)  # fmt: skip
        b.set(games_completed=min(spec.games, games))
        b.cond(T.RUNNING, FALSE, R.POD_SUCCEEDED, message)
        b.cond(T.COMPLETE, TRUE, R.POD_SUCCEEDED, message)
        b.event("Normal", "Completed", message)
        return b.decision(R.POD_SUCCEEDED, message)

    if attempt.phase is PodPhase.FAILED:
        detail = (attempt.message or "").strip().replace("\n", " ")[:300]
        message = f"attempt {n} failed on node {attempt.node} (exit code {attempt.exit_code})" + (
            f": {detail}" if detail else ""
        )
        b.record(n, node=attempt.node, pod=attempt.pod, result=AttemptResult.FAILED,
                 reason=R.POD_FAILED.value)  # fmt: skip
        b.event("Warning", "AttemptFailed", message)
        if attempt.exit_code == EXIT_BAD_INPUT:
            b.cond(T.RUNNING, FALSE, R.BAD_INPUT, message)
            b.cond(T.FAILED, TRUE, R.BAD_INPUT, message + " — the workload rejected its input")
            b.set(failed_attempts=job.status.failed_attempts + 1)
            return b.decision(R.BAD_INPUT, message)
        return _after_failure(b, job, n, R.POD_FAILED, message, attempt)

    # Bound and not finished: Pending (starting) or Running.
    scheduled = get_condition(b.s.conditions, T.SCHEDULED)
    if b.s.pod != attempt.pod or scheduled is None or scheduled.status is not TRUE:
        # Placed, but the status written after the placement was lost (a restart between the
        # pod's create and the status write): take the pod's word for it.
        message = f"attempt {n}: pod {attempt.pod} bound to {attempt.node}"
        if b.cond(T.SCHEDULED, TRUE, R.NODE_SELECTED, message):
            b.event("Normal", "Scheduled", message)
        b.set(node=attempt.node, pod=attempt.pod, attempts=n)
    b.record(n, node=attempt.node, pod=attempt.pod, result=AttemptResult.RUNNING)
    if attempt.phase is PodPhase.RUNNING:
        if b.s.start_time is None:
            b.set(start_time=rfc3339(now))
        b.cond(T.RUNNING, TRUE, R.POD_RUNNING, f"pod {attempt.pod} running on {attempt.node}")
        deadline = spec.active_deadline_seconds
        started = parse_rfc3339(b.s.start_time) if b.s.start_time else now
        if deadline is not None and now - started > timedelta(seconds=deadline):
            message = f"ran longer than activeDeadlineSeconds ({deadline}s)"
            b.record(n, result=AttemptResult.EXPIRED, reason=R.DEADLINE_EXCEEDED.value)
            b.cond(T.RUNNING, FALSE, R.DEADLINE_EXCEEDED, message)
            b.cond(T.FAILED, TRUE, R.DEADLINE_EXCEEDED, message)
            b.event("Warning", "DeadlineExceeded", message)
            return b.decision(R.DEADLINE_EXCEEDED, message, action=Action.DELETE_POD,
                              pod=attempt.pod)  # fmt: skip
        remaining = None
        if deadline is not None:
            remaining = max(1.0, deadline - (now - started).total_seconds())
        return b.decision(R.POD_RUNNING, f"running on {attempt.node}", requeue_after=remaining)
    b.cond(T.RUNNING, FALSE, R.POD_CREATED, f"pod {attempt.pod} bound to {attempt.node}")
    return b.decision(R.POD_CREATED, f"starting on {attempt.node}")


_DONE = frozenset({PodPhase.SUCCEEDED, PodPhase.FAILED})


def _after_failure(
    b: _Status, job: SelfplayJob, n: int, reason: R, message: str, attempt: AttemptView
) -> Decision:
    """Retry on another node while retries remain, else Fail. The failed pod is removed when it
    is still around and not finished (a lost node), so it cannot come back and double-count."""
    failures = job.status.failed_attempts + 1
    b.set(failed_attempts=failures)
    action = Action.DELETE_POD if attempt.phase not in _DONE else Action.NONE
    if failures > job.spec.backoff_limit:
        final = f"{message}; backoffLimit ({job.spec.backoff_limit}) reached"
        b.cond(T.RUNNING, FALSE, reason, message)
        b.cond(T.FAILED, TRUE, R.BACKOFF_LIMIT_EXCEEDED, final)
        b.event("Warning", "BackoffLimitExceeded", final)
        return b.decision(R.BACKOFF_LIMIT_EXCEEDED, final, action=action, pod=attempt.pod)
    retry = f"{message}; retrying as attempt {n + 1}"
    b.set(attempts=n + 1)
    b.cond(T.RUNNING, FALSE, reason, message)
    b.cond(T.SCHEDULED, FALSE, reason, retry)
    return b.decision(reason, retry, action=action, pod=attempt.pod, requeue_after=0.5)


def placed(
    job: SelfplayJob, status: SelfplayJobStatus, *, node: str, pod: str, score: int,
    reasons: tuple[str, ...], now: datetime, epoch: int = 0, alternatives: str = "",
) -> Decision:  # fmt: skip
    """The status after the attempt's pod was bound to ``node``. ``alternatives`` says what
    else the ranking held (candidates, rejections, the runner-up): the Scheduled condition
    keeps it, so ``kubectl ringrift explain`` can tell why this node and not another."""
    b = _Status(job.model_copy(update={"status": status}), now, epoch)
    n = current_attempt(job)
    why = "; ".join(reasons[:3])
    message = f"attempt {n}: pod {pod} bound to {node} (power score {score}): {why}"
    if alternatives:
        message += f"; {alternatives}"
    if b.cond(T.SCHEDULED, TRUE, R.NODE_SELECTED, message):
        b.event("Normal", "Scheduled", message)
    b.cond(T.RUNNING, FALSE, R.POD_CREATED, f"pod {pod} bound to {node}")
    b.set(node=node, pod=pod, power_score=score, attempts=n)
    b.record(n, node=node, pod=pod, result=AttemptResult.RUNNING)
    return b.decision(R.NODE_SELECTED, f"bound to {node}")


def unplaceable(
    job: SelfplayJob, status: SelfplayJobStatus, *, why: str, now: datetime, epoch: int = 0,
    retry_after: float = 5.0,
) -> Decision:  # fmt: skip
    """The status while no node can take the job (it stays Pending with the reason)."""
    b = _Status(job.model_copy(update={"status": status}), now, epoch)
    message = f"no node can take the job yet: {why}"
    if b.cond(T.SCHEDULED, FALSE, R.WAITING_FOR_NODE, message):
        b.event("Warning", "FailedScheduling", message)
    return b.decision(R.WAITING_FOR_NODE, message, requeue_after=retry_after)


def pod_rejected(
    job: SelfplayJob, status: SelfplayJobStatus, *, why: str, now: datetime, epoch: int = 0,
    retry_after: float = 30.0,
) -> Decision:  # fmt: skip
    """The status when the API server refused the attempt's pod (validation, Pod Security or
    another admission check): the job stays Pending and says why, and is tried again now and
    then (the namespace's policy may change) until its dispatch timeout expires it."""
    b = _Status(job.model_copy(update={"status": status}), now, epoch)
    message = f"the API server refused the attempt's pod: {' '.join(why.split())[:600]}"
    if b.cond(T.SCHEDULED, FALSE, R.POD_REJECTED, message):
        b.event("Warning", "FailedCreate", message)
    return b.decision(R.POD_REJECTED, message, requeue_after=retry_after)
