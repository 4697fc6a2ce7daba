"""What a SyncPlan needs next, decided from the plan and the round the operator is running for it.

Pure, like :mod:`~ringrift_operator.managers.selfplayjob`. A *round* is one pass of the sync
workflow: collect manifests, plan (:func:`~ringrift_operator.managers.syncplanning.plan_sync`),
run the transfers, collect the targets' manifests again and judge (:func:`judge_round`). The
reconciler runs rounds in the background (``reconcilers.syncrounds``), shows each one as a
:class:`RoundView`, and calls :func:`decide_syncplan`, which returns the status to write, the
Events (one per round, when it ends) and whether to start a new round:

- no round yet, a round of an older generation, or a status left mid-round by an earlier operator
  process: start one (``RESET``/``COLLECT`` of the workflow);
- a round running: the status follows it (Collecting → Syncing), look again in a second;
- a round done and good: Synced, ``lastSyncTime``; again after ``intervalSeconds`` (0: never,
  until the spec changes);
- a round done and not good (a transfer failed, an agent did not answer, files still missing):
  Retry with ``retryAfter`` = end + :func:`~ringrift_operator.managers.syncplanning.retry_delay`
  (1 s doubling to 30 s) and ``attempts`` + 1. Never Failed: one failing peer never fails a plan.

Targets are resolved by :func:`resolve_targets` over the node snapshot (names, a label selector,
or the top N of the training ranking).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from ringrift_operator.api.conditions import (
    ConditionStatus,
    SyncPlanConditionType,
    SyncPlanReason,
    get_condition,
    set_condition,
)
from ringrift_operator.api.meta import parse_rfc3339, rfc3339
from ringrift_operator.api.syncplan import (
    MAX_PEERS,
    MAX_TARGET_NODES,
    MAX_TRANSFERS,
    PeerStatus,
    SyncPlan,
    SyncPlanState,
    SyncPlanStatus,
    SyncTargets,
    Transfer,
    TransferState,
    derive_state,
)
from ringrift_operator.managers.nodes import NodeInfo
from ringrift_operator.managers.ranking import top_training_nodes
from ringrift_operator.managers.syncplanning import (
    SyncEvent,
    SyncState,
    retry_delay,
    transition,
)
from ringrift_operator.managers.syncplanning import SyncPlan as Plan

T = SyncPlanConditionType
R = SyncPlanReason
TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN
MAX_MESSAGE = 900
POLL_SECONDS = 1.0  # how often a running round's progress is written to status


# --- targets -------------------------------------------------------------------------------------


def resolve_targets(targets: SyncTargets, *, nodes: Sequence[NodeInfo]) -> tuple[str, ...]:
    """The node names ``spec.targets`` means now: named nodes that exist (in spec order), Ready
    nodes matching the selector (by name), or the top N training nodes (best first)."""
    if targets.node_names is not None:
        known = {n.name for n in nodes}
        return tuple(name for name in targets.node_names if name in known)
    if targets.selector is not None:
        want = targets.selector.match_labels.items()
        return tuple(
            sorted(n.name for n in nodes if n.ready and all(n.labels.get(k) == v for k, v in want))
        )[:MAX_TARGET_NODES]
    count = targets.top_training_nodes or 0
    return tuple(r.name for r in top_training_nodes(nodes, count=count))


# --- rounds ------------------------------------------------------------------------------------


class RoundPhase(StrEnum):
    COLLECTING = "Collecting"
    SYNCING = "Syncing"
    DONE = "Done"


@dataclass(frozen=True, slots=True)
class PeerView:
    """One node whose manifest the round asked for."""

    node: str
    files: int = 0  # game files of the plan's configs
    bytes: int = 0
    age_seconds: float | None = None  # manifest age when planning
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TransferView:
    """One pull of the round (``files``/``bytes`` planned, ``*_done`` actually moved)."""

    name: str
    target: str
    source: str
    files: int
    bytes: int
    state: TransferState = TransferState.PENDING
    message: str | None = None
    files_done: int = 0
    bytes_done: int = 0


@dataclass(frozen=True, slots=True)
class RoundOutcome:
    ok: bool
    reason: SyncPlanReason
    message: str
    collected: bool = True  # some manifest was collected (ManifestsCollected=True)


@dataclass(frozen=True, slots=True)
class RoundView:
    """A round as the reconciler sees it; ``base_*`` are the status values when it started."""

    number: int
    generation: int
    started_at: datetime
    phase: RoundPhase = RoundPhase.COLLECTING
    targets: tuple[str, ...] = ()
    peers: tuple[PeerView, ...] = ()
    transfers: tuple[TransferView, ...] = ()
    missing_files: int = 0
    base_files: int = 0
    base_bytes: int = 0
    base_attempts: int = 0
    outcome: RoundOutcome | None = None
    finished_at: datetime | None = None
    reported: bool = False  # its Event was posted

    @property
    def files_done(self) -> int:
        return sum(t.files_done for t in self.transfers)

    @property
    def bytes_done(self) -> int:
        return sum(t.bytes_done for t in self.transfers)


def build_transfer_views(plan: Plan, *, round_number: int) -> tuple[TransferView, ...]:
    """The plan's transfers as Pending views, named ``r<round>-<index>``."""
    return tuple(
        TransferView(
            name=f"r{round_number}-{i:03d}",
            target=t.target,
            source=t.source,
            files=len(t.files),
            bytes=t.total_bytes,
        )
        for i, t in enumerate(plan.transfers, start=1)
    )


def judge_round(
    *,
    targets: Sequence[str],
    errors: Mapping[str, str],
    collected: int,
    transfers: Sequence[TransferView],
    verification: Plan | None,
) -> RoundOutcome:
    """Whether a finished round leaves every target with every wanted file.

    ``errors``: node -> why its manifest could not be collected; ``collected``: manifests in
    hand; ``verification``: the plan over the targets' manifests collected after the transfers
    (None when the round never got that far).
    """
    if not targets:
        return RoundOutcome(False, R.NO_TARGETS, "no node matches spec.targets", collected > 0)
    if not collected:
        why = _list(f"{n} ({e})" for n, e in sorted(errors.items())) or "no agent is advertised"
        return RoundOutcome(False, R.NO_PEERS, f"no agent answered: {why}", collected=False)
    failed = [t for t in transfers if t.state is TransferState.FAILED]
    problems = []
    if failed:
        first = failed[0]
        problems.append(
            f"{len(failed)} of {len(transfers)} transfers failed, e.g. {first.target} from "
            f"{first.source}: {first.message or 'failed'}"
        )
    if errors:
        unreachable = _list(f"{n} ({e})" for n, e in sorted(errors.items()))
        problems.append(f"unreachable agents: {unreachable}")
    if verification is not None:
        missing = sum(verification.missing.values())
        if missing:
            problems.append(f"{missing} files still missing on the targets")
        if verification.skipped_targets:
            skipped = sorted(verification.skipped_targets.items())
            problems.append("targets not verified: " + _list(f"{n} ({r})" for n, r in skipped))
    if problems:
        reason = R.TRANSFER_FAILED if failed or not errors else R.PEER_UNREACHABLE
        return RoundOutcome(False, reason, "; ".join(problems))
    moved = sum(t.files_done for t in transfers)
    return RoundOutcome(
        True,
        R.ALL_FILES_PRESENT,
        f"every target ({_list(targets)}) holds every file; {moved} files moved",
    )


# --- the decision ------------------------------------------------------------------------------


class Action(StrEnum):
    NONE = "None"
    START_ROUND = "StartRound"  # cancel any round in flight, then start a new one


@dataclass(frozen=True, slots=True)
class PlanEvent:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Decision:
    status: SyncPlanStatus
    action: Action = Action.NONE
    events: tuple[PlanEvent, ...] = ()
    requeue_after: float | None = None
    why: str = ""  # why a round starts (log line)


@dataclass
class _Status:
    plan: SyncPlan
    now: datetime
    s: SyncPlanStatus = field(init=False)

    def __post_init__(self) -> None:
        self.s = self.plan.status.model_copy(update={"observed_generation": self.plan.generation})

    def cond(self, type: T, status: ConditionStatus, reason: R, message: str = "") -> None:
        conditions = set_condition(
            self.s.conditions,
            type=type,
            status=status,
            reason=reason,
            message=_short(message),
            generation=self.plan.generation,
            now=self.now,
        )
        self.s = self.s.model_copy(update={"conditions": conditions})

    def finish(self, reason: R, message: str, **fields: object) -> SyncPlanStatus:
        self.s = self.s.model_copy(
            update={"reason": reason.value, "message": _short(message), **fields}
        )
        return self.s.model_copy(update={"state": derive_state(self.s.conditions)})


def decide_syncplan(
    plan: SyncPlan, *, round: RoundView | None, now: datetime, epoch: int = 0
) -> Decision:
    """The status ``plan`` should show and whether to start a round (see the module doc)."""
    if round is None or round.generation != plan.generation:
        return _between_rounds(plan, now=now, epoch=epoch, stale_round=round is not None)
    b = _Status(plan, now)
    b.s = b.s.model_copy(update={"epoch": epoch})
    _show_round(b, round)
    if round.outcome is None:
        if round.phase is RoundPhase.COLLECTING:
            b.cond(
                T.MANIFESTS_COLLECTED,
                UNKNOWN,
                R.COLLECTING,
                f"round {round.number}: collecting manifests from the node agents",
            )
            b.cond(T.SYNCED, FALSE, R.TRANSFERS_PENDING, "collecting manifests")
            return Decision(
                b.finish(R.COLLECTING, f"round {round.number}: collecting"),
                requeue_after=POLL_SECONDS,
            )
        _collected(b, round)
        done = sum(t.state in _FINISHED for t in round.transfers)
        message = f"round {round.number}: {done} of {len(round.transfers)} transfers finished"
        b.cond(T.SYNCED, FALSE, R.TRANSFERS_PENDING, message)
        return Decision(b.finish(R.TRANSFERS_PENDING, message), requeue_after=POLL_SECONDS)

    outcome, ended = round.outcome, round.finished_at or now
    if round.reported:  # its status and Event are out: is the next round due?
        due, why = _next_round(plan, round, ended=ended)
        if due is not None and now >= due:
            return start_round_status(plan, now=now, epoch=epoch, why=why)
    moved = (
        f"round {round.number}: moved {round.files_done} files ({round.bytes_done} bytes) "
        f"in {len(round.transfers)} transfers"
    )
    if outcome.ok:
        _collected(b, round)
        b.cond(T.SYNCED, TRUE, outcome.reason, outcome.message)
        if round.base_attempts and get_condition(b.s.conditions, T.RETRYING) is not None:
            b.cond(
                T.RETRYING, FALSE, R.RECOVERED, f"synced after {round.base_attempts} failed rounds"
            )
        status = b.finish(
            outcome.reason,
            outcome.message,
            attempts=0,
            retry_after=None,
            last_sync_time=rfc3339(ended),
        )
        event = PlanEvent("Normal", "Synced", f"{moved}; {outcome.message}")
    else:
        attempts = round.base_attempts + 1
        delay = retry_delay(attempts)
        if outcome.collected:
            _collected(b, round)
        else:
            b.cond(T.MANIFESTS_COLLECTED, FALSE, outcome.reason, outcome.message)
        b.cond(T.SYNCED, FALSE, R.TRANSFERS_PENDING, outcome.message)
        message = f"{outcome.message}; retry {attempts} in {delay:g}s"
        b.cond(T.RETRYING, TRUE, outcome.reason, message)
        retry_at = rfc3339(ended + timedelta(seconds=delay))
        status = b.finish(outcome.reason, message, attempts=attempts, retry_after=retry_at)
        event = PlanEvent("Warning", "SyncRetry", f"{moved}; {message}")
    due, _ = _next_round(plan, round, ended=ended)
    again = None if due is None else _remaining(due, now)
    return Decision(status, events=() if round.reported else (event,), requeue_after=again)


def _next_round(
    plan: SyncPlan, round: RoundView, *, ended: datetime
) -> tuple[datetime | None, str]:
    """When the round after a finished one is due (None: not until the spec changes), and why."""
    assert round.outcome is not None
    if not round.outcome.ok:
        attempts = round.base_attempts + 1
        due = ended + timedelta(seconds=retry_delay(attempts))
        return due, f"retry {attempts}: collecting again"
    interval = plan.spec.interval_seconds
    if not interval:
        return None, ""
    return ended + timedelta(seconds=interval), f"intervalSeconds ({interval}) passed: re-sync"


def start_round_status(plan: SyncPlan, *, now: datetime, epoch: int, why: str) -> Decision:
    """The status of a round that starts now: Collecting."""
    b = _Status(plan, now)
    b.s = b.s.model_copy(update={"epoch": epoch, "transfers": [], "missing_files": 0})
    b.cond(T.MANIFESTS_COLLECTED, UNKNOWN, R.COLLECTING, "collecting manifests from the agents")
    b.cond(T.SYNCED, FALSE, R.TRANSFERS_PENDING, "collecting manifests")
    if get_condition(b.s.conditions, T.RETRYING) is not None:
        b.cond(T.RETRYING, FALSE, R.COLLECTING, why)
    return Decision(
        b.finish(R.COLLECTING, why), action=Action.START_ROUND, requeue_after=POLL_SECONDS, why=why
    )


def _between_rounds(plan: SyncPlan, *, now: datetime, epoch: int, stale_round: bool) -> Decision:
    """No round of this generation in memory: start one unless the status says there is no
    need yet (Synced without an interval due, Retry before retryAfter)."""
    status = plan.status
    state = SyncState(derive_state(status.conditions).value)
    if stale_round or status.observed_generation != plan.generation:
        transition(state, SyncEvent.RESET)
        why = "the spec changed: new round" if status.observed_generation else "first round"
        return start_round_status(plan, now=now, epoch=epoch, why=why)
    if state is SyncState.SYNCED:
        interval = plan.spec.interval_seconds
        if not interval or status.last_sync_time is None:
            return Decision(status)
        due = parse_rfc3339(status.last_sync_time) + timedelta(seconds=interval)
        if now < due:
            return Decision(status, requeue_after=_remaining(due, now))
        transition(transition(state, SyncEvent.CACHE_EXPIRED), SyncEvent.COLLECT)
        return start_round_status(
            plan, now=now, epoch=epoch, why=f"intervalSeconds ({interval}) passed: re-sync"
        )
    if state is SyncState.RETRY:
        due = parse_rfc3339(status.retry_after) if status.retry_after else now
        if now < due:
            return Decision(status, requeue_after=_remaining(due, now))
        transition(state, SyncEvent.RETRY_DUE)
        return start_round_status(
            plan, now=now, epoch=epoch, why=f"retry {status.attempts}: collecting again"
        )
    # Idle, or Collecting/Syncing left by an operator that stopped mid-round: start over.
    return start_round_status(plan, now=now, epoch=epoch, why="collecting manifests")


def _show_round(b: _Status, round: RoundView) -> None:
    transfers = [
        Transfer(
            name=t.name,
            target=t.target,
            source=t.source,
            files=min(t.files, 1000),
            total_bytes=t.bytes,
            state=t.state,
            message=_short(t.message or "") or None,
        )
        for t in _shown(round.transfers)
    ]
    peers = [
        PeerStatus(
            node=p.node,
            files=p.files,
            total_bytes=p.bytes,
            error=_short(p.error or "") or None,
            manifest_age_seconds=None if p.age_seconds is None else int(p.age_seconds),
        )
        for p in round.peers[:MAX_PEERS]
    ]
    b.s = b.s.model_copy(
        update={
            "target_nodes": list(round.targets[:MAX_TARGET_NODES]),
            "peers": peers,
            "transfers": transfers,
            "missing_files": round.missing_files,
            "files_synced": round.base_files + round.files_done,
            "bytes_synced": round.base_bytes + round.bytes_done,
        }
    )


def _shown(transfers: Sequence[TransferView]) -> list[TransferView]:
    """At most MAX_TRANSFERS transfers: failed and running ones first, then in plan order."""
    if len(transfers) <= MAX_TRANSFERS:
        return list(transfers)
    rank = {TransferState.FAILED: 0, TransferState.RUNNING: 1}
    chosen = sorted(range(len(transfers)), key=lambda i: (rank.get(transfers[i].state, 2), i))
    return [transfers[i] for i in sorted(chosen[:MAX_TRANSFERS])]


def _collected(b: _Status, round: RoundView) -> None:
    answered = sum(p.error is None for p in round.peers)
    b.cond(
        T.MANIFESTS_COLLECTED,
        TRUE,
        R.COLLECTED,
        f"round {round.number}: {answered} of {len(round.peers)} agents answered",
    )


_FINISHED = (TransferState.SUCCEEDED, TransferState.FAILED)


def _remaining(due: datetime, now: datetime) -> float:
    return max(0.0, (due - now).total_seconds())


def _list(items: Iterable[object], limit: int = 5) -> str:
    values = [str(i) for i in items]
    head = ", ".join(values[:limit])
    return head + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


__all__ = [
    "Action",
    "Decision",
    "PeerView",
    "PlanEvent",
    "RoundOutcome",
    "RoundPhase",
    "RoundView",
    "SyncPlanState",
    "TransferView",
    "build_transfer_views",
    "decide_syncplan",
    "judge_round",
    "next_round",
    "resolve_targets",
    "start_round_status",
]


def next_round(plan: SyncPlan, previous: RoundView | None, *, now: datetime) -> RoundView:
    """The view of a round that starts now. Counters carry on from the previous round kept in
    memory (the status may lag behind it; a cancelled round's finished transfers count), else
    from the status; a spec change resets ``attempts``."""
    if previous is None:
        status = plan.status
        files, size, attempts = status.files_synced, status.bytes_synced, status.attempts
    else:
        files = previous.base_files + previous.files_done
        size = previous.base_bytes + previous.bytes_done
        attempts = previous.base_attempts
        if previous.outcome is not None:
            attempts = 0 if previous.outcome.ok else attempts + 1
        if previous.generation != plan.generation:
            attempts = 0
    return RoundView(
        number=previous.number + 1 if previous is not None else 1,
        generation=plan.generation,
        started_at=now,
        base_files=files,
        base_bytes=size,
        base_attempts=attempts,
    )
