"""What a TrainingRun needs next, decided from the run, its pods and what is known of its config.

Pure, like :mod:`~ringrift_operator.managers.selfplayjob`: the reconciler observes the run's pods
(:class:`PodView` by name) and, while the run has not started, its config (:class:`ConfigView`:
games, data hash, recent hashes, last start, training capacity); :func:`decide_trainingrun`
returns the status to write, the pods to start or delete and the Events of the transitions.
Placement results come back through :func:`placed` / :func:`unplaceable`.

A run's life (conditions in brackets; the phase is derived from them):

1. Pending: gates in the TrainingCoordinator's order — enough new games (DataReady=False
   NotEnoughGames), not a duplicate of the last 100 data hashes (Skipped DuplicateData), cooldown
   over (DataReady=False Cooldown), enough nodes with the GPUs and memory (DataReady=False
   WaitingForNode). Then DataReady=True and the export starts.
2. Export pod (Exported), 3. training pod(s), all ranks at once (Trained, model from rank 0's
   termination message), 4. gauntlet shards (GauntletPassed), 5. Promoted or Complete.

Retries: a failed pod of any step starts a new attempt of that unit (the export, the training
group, one gauntlet shard) until ``backoffLimit`` failures, then the run Fails. Failures are
counted from attempt numbers (pod names carry them), so nothing but the pods and ``status.pods``
is needed to know them. Exit code 2 (bad input) fails the run at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from fractions import Fraction

from ringrift_operator.api.common import config_key
from ringrift_operator.api.conditions import (
    ConditionStatus,
    TrainingRunConditionType,
    TrainingRunReason,
    get_condition,
    is_true,
    update_condition,
)
from ringrift_operator.api.contract import EXIT_BAD_INPUT, JobKind, parse_result
from ringrift_operator.api.meta import parse_rfc3339, rfc3339
from ringrift_operator.api.trainingrun import (
    TERMINAL_PHASES,
    GauntletResult,
    TrainedModel,
    TrainingRun,
    TrainingRunStatus,
    derive_phase,
)
from ringrift_operator.managers.jobs import pod_name
from ringrift_operator.managers.pods import PodPhase
from ringrift_operator.managers.selfplayjob import JobEvent, NodeState
from ringrift_operator.managers.training import (
    DEFAULT_MIN_GAUNTLET_GAMES,
    GauntletShard,
    PromotionPolicy,
    ShardResult,
    cooldown_remaining_seconds,
    decide_promotion,
    plan_gauntlet_shards,
    score_gauntlet,
)

T = TrainingRunConditionType
R = TrainingRunReason
TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN
BAD_INPUT = "BadInput"  # the contract's reason for exit code 2 (not retried)
MAX_MESSAGE = 900
DATA_POLL_SECONDS = 5.0  # how often a run waiting for data or a node looks again
_DONE = frozenset({PodPhase.SUCCEEDED, PodPhase.FAILED})

__all__ = [
    "Action",
    "ConfigView",
    "Decision",
    "GameCount",
    "JobGames",
    "PodRole",
    "PodStart",
    "PodView",
    "Record",
    "TrainingStart",
    "count_games_from_jobs",
    "count_games_in_files",
    "decide_trainingrun",
    "gauntlet_policy",
    "placed",
    "pod_roles",
    "unplaceable",
]


class Action(StrEnum):
    NONE = "None"
    EXPORT = "Export"  # place the export pod
    TRAIN = "Train"  # place every training rank at once (gang), or none
    EVALUATE = "Evaluate"  # place the gauntlet shards in ``starts``
    DELETE = "Delete"  # only delete ``delete`` (a finished run's leftovers)


class Record(StrEnum):
    """History the reconciler writes along with the status."""

    NONE = "None"
    STARTED = "Started"  # the run left Pending: remember its start and data hash
    EVALUATED = "Evaluated"  # the gauntlet finished: A/B games and Elo
    PROMOTED = "Promoted"  # evaluated and promoted: also the model registry


@dataclass(frozen=True, slots=True)
class PodView:
    """One pod of the run as observed."""

    name: str
    node: str = ""
    phase: PodPhase | None = None
    exit_code: int | None = None
    message: str | None = None
    deleting: bool = False
    node_state: NodeState = NodeState.READY

    @property
    def live(self) -> bool:
        return not self.deleting and self.phase not in _DONE

    @property
    def lost(self) -> bool:
        return self.live and bool(self.node) and self.node_state is not NodeState.READY


@dataclass(frozen=True, slots=True)
class ConfigView:
    """What the reconciler knows of the run's config before the run starts.

    ``total_games``: distinct games of the config now; ``games_at_last_training``: the
    ``gamesUsed`` of its last Complete/Promoted run; ``recent_hashes``: the data hashes of the
    last trainings (the dedupe window); ``last_started_at``: when the config last started
    training; ``fitting_nodes``: nodes that could take one training rank now (free GPUs,
    memory, holding the data when its location is known).
    """

    total_games: int
    games_at_last_training: int
    data_hash: str
    recent_hashes: frozenset[str] = frozenset()
    last_started_at: datetime | None = None
    fitting_nodes: int = 0
    capacity_message: str = ""
    source: str = "selfplayjobs"
    settled: bool = True  # False: games just written are not in the manifests yet; look again


@dataclass(frozen=True, slots=True)
class TrainingStart:
    """A training that left Pending: what the cooldown and the dedupe of later runs read."""

    config: str
    run_uid: str
    data_hash: str
    started_at: datetime


@dataclass(frozen=True, slots=True)
class JobGames:
    """Games a SelfplayJob of the config wrote: ``games`` by attempt ``attempt`` on ``node``."""

    name: str
    games: int
    attempt: int = 1
    node: str = ""
    completed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class GameCount:
    """Distinct games of a config and the games each node holds."""

    total: int
    by_node: Mapping[str, int]
    unseen: tuple[str, ...] = ()  # jobs with games but no file in the manifests (yet)


def count_games_from_jobs(jobs: Sequence[JobGames]) -> GameCount:
    """The fallback count without manifests: the games the config's SelfplayJobs completed,
    on the node each ran on (games moved by a SyncPlan are not seen this way)."""
    by_node: dict[str, int] = {}
    for job in jobs:
        if job.node and job.games:
            by_node[job.node] = by_node.get(job.node, 0) + job.games
    return GameCount(total=sum(j.games for j in jobs), by_node=by_node)


def count_games_in_files(
    files_by_node: Mapping[str, Sequence[str]], jobs: Sequence[JobGames]
) -> GameCount:
    """Games in the game files the node agents reported (``games/<config>/<job>-a<n>-<k>...``).

    Agents count files, not games, so each file is attributed by its name to the SelfplayJob
    attempt that wrote it (the contract's ``<job>-a<attempt>-`` prefix): that attempt's games
    are spread evenly over its files. A file no known job wrote counts as one game, a lower
    bound. A path held by several nodes (synced copies) counts once in ``total``.
    """
    prefixes = {f"{j.name}-a{j.attempt}-": j.games for j in jobs if j.games}
    owner: dict[str, str] = {}
    for paths in files_by_node.values():
        for path in paths:
            stem = path.rsplit("/", 1)[-1]
            owner[path] = next((p for p in prefixes if stem.startswith(p)), "")
    files_of: dict[str, int] = {}
    for prefix in owner.values():
        if prefix:
            files_of[prefix] = files_of.get(prefix, 0) + 1

    def games(path: str) -> Fraction:
        prefix = owner[path]
        return Fraction(prefixes[prefix], files_of[prefix]) if prefix else Fraction(1)

    total = sum((games(p) for p in owner), Fraction(0))
    by_node = {
        node: round(sum((games(p) for p in set(paths)), Fraction(0)))
        for node, paths in files_by_node.items()
        if paths
    }
    unseen = tuple(j.name for j in jobs if j.games and f"{j.name}-a{j.attempt}-" not in files_of)
    return GameCount(total=round(total), by_node=by_node, unseen=unseen)


@dataclass(frozen=True, slots=True)
class PodStart:
    """A pod the reconciler should create and place."""

    name: str
    kind: JobKind
    attempt: int
    shard: int = 0  # gauntlet shard or training rank
    games: int = 0  # gauntlet: games of this shard


@dataclass(frozen=True, slots=True)
class Decision:
    status: TrainingRunStatus
    action: Action = Action.NONE
    starts: tuple[PodStart, ...] = ()
    delete: tuple[str, ...] = ()
    events: tuple[JobEvent, ...] = ()
    record: Record = Record.NONE
    requeue_after: float | None = None
    avoid: tuple[str, ...] = ()  # for a retry: the node that failed, used only if nothing else


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


class _Status:
    """A small builder over an immutable status: conditions, fields, events."""

    def __init__(self, run: TrainingRun, now: datetime, epoch: int) -> None:
        self.run = run
        self.now = now
        self.gen = run.generation
        self.s = run.status.model_copy(
            update={
                "observed_generation": self.gen,
                "config": config_key(run.spec.board, run.spec.players),
                "epoch": epoch,
            }
        )
        self.events: list[JobEvent] = []

    def cond(self, type: T, status: ConditionStatus, reason: str, message: str = "") -> bool:
        """Set a condition; True when its status or reason changed (an Event-worthy change)."""
        conditions, changed = update_condition(
            self.s.conditions, type=type, status=status, reason=reason,
            message=_short(message), generation=self.gen, now=self.now,
        )  # fmt: skip
        self.s = self.s.model_copy(update={"conditions": conditions})
        return changed

    def set(self, **fields: object) -> None:
        self.s = self.s.model_copy(update=fields)

    def event(self, type: str, reason: str, message: str) -> None:
        self.events.append(JobEvent(type, reason, _short(message)))

    def decision(self, reason: str | None, message: str, **kw: object) -> Decision:
        phase = derive_phase(self.s.conditions)
        update: dict[str, object] = {"phase": phase, "reason": reason, "message": _short(message)}
        if phase in TERMINAL_PHASES and self.s.completion_time is None:
            update["completion_time"] = rfc3339(self.now)
        self.s = self.s.model_copy(update=update)
        return Decision(status=self.s, events=tuple(self.events), **kw)  # type: ignore[arg-type]


# --- Units, attempts and failures ------------------------------------------------------------


def _max_attempts(run: TrainingRun) -> int:
    return run.spec.backoff_limit + 2  # attempt numbers never go beyond this (see failures)


def export_pod(run: TrainingRun, attempt: int) -> str:
    return pod_name(owner=run.name, kind=JobKind.EXPORT, attempt=attempt)


def training_pods(run: TrainingRun, attempt: int) -> tuple[str, ...]:
    """The ranks' pod names of one training attempt (no rank suffix when not distributed)."""
    if run.spec.nodes == 1:
        return (pod_name(owner=run.name, kind=JobKind.TRAINING, attempt=attempt),)
    return tuple(
        pod_name(owner=run.name, kind=JobKind.TRAINING, attempt=attempt, shard=rank)
        for rank in range(run.spec.nodes)
    )


def gauntlet_shards(run: TrainingRun) -> tuple[GauntletShard, ...]:
    return plan_gauntlet_shards(games=run.spec.gauntlet.games, pods=run.spec.gauntlet.shards)


def gauntlet_pod(run: TrainingRun, attempt: int, shard: int) -> str:
    suffix = shard if len(gauntlet_shards(run)) > 1 else None
    return pod_name(owner=run.name, kind=JobKind.GAUNTLET, attempt=attempt, shard=suffix)


@dataclass(frozen=True, slots=True)
class PodRole:
    """What one of the run's pod names stands for."""

    kind: JobKind
    attempt: int
    shard: int = 0  # training rank or gauntlet shard


def pod_roles(run: TrainingRun) -> dict[str, PodRole]:
    """Every pod name the run can use, with its step, attempt and rank/shard."""
    roles: dict[str, PodRole] = {}
    for a in range(1, _max_attempts(run) + 1):
        roles[export_pod(run, a)] = PodRole(JobKind.EXPORT, a)
        for rank, name in enumerate(training_pods(run, a)):
            roles[name] = PodRole(JobKind.TRAINING, a, rank)
        for shard in gauntlet_shards(run):
            roles[gauntlet_pod(run, a, shard.index)] = PodRole(JobKind.GAUNTLET, a, shard.index)
    return roles


@dataclass(frozen=True, slots=True)
class _Unit:
    """One retriable unit: the export, the training group or one gauntlet shard."""

    attempt: int  # latest attempt seen (0: never started)
    pods: tuple[PodView | None, ...]  # its pods at that attempt (None: not observed)
    names: tuple[str, ...]

    @property
    def started(self) -> bool:
        return self.attempt > 0

    @property
    def succeeded(self) -> bool:
        return self.started and all(p is not None and p.phase is PodPhase.SUCCEEDED
                                    for p in self.pods)  # fmt: skip

    @property
    def failed(self) -> PodView | None:
        """The pod that failed this attempt (a Failed pod, a lost node), else None."""
        for p in self.pods:
            if p is not None and (p.phase is PodPhase.FAILED or p.lost):
                return p
        return None

    @property
    def vanished(self) -> bool:
        """Started, some pods gone (deleted under us) and not all finished well."""
        return self.started and any(p is None for p in self.pods) and not self.succeeded


def _unit(pods: Mapping[str, PodView], names_known: frozenset[str],
          attempts: Sequence[tuple[str, ...]]) -> _Unit:  # fmt: skip
    """The latest attempt of a unit, given each attempt's pod names (attempt 1 first)."""
    latest = max(
        (i + 1 for i, group in enumerate(attempts) if any(n in names_known for n in group)),
        default=0,
    )
    if latest == 0:
        return _Unit(0, (), ())
    group = attempts[latest - 1]
    return _Unit(latest, tuple(pods.get(n) for n in group), group)


def _failures(units: Sequence[_Unit]) -> int:
    """Failed attempts so far: every attempt but the latest failed; the latest if it did."""
    total = 0
    for u in units:
        if not u.started:
            continue
        total += u.attempt - 1
        if u.failed is not None or u.vanished:
            total += 1
    return total


def gauntlet_policy(run: TrainingRun) -> PromotionPolicy:
    """The run's promotion policy. The minimum games is the seed's 50, or all of the run's
    gauntlet when it asks for fewer: a run asking for 30 games must be able to pass."""
    g = run.spec.gauntlet
    return PromotionPolicy(
        win_rate_percent=g.promotion_win_rate_percent,
        min_games=min(DEFAULT_MIN_GAUNTLET_GAMES, g.games),
        auto_promote=run.spec.auto_promote,
    )


# --- The decision -----------------------------------------------------------------------------


def decide_trainingrun(
    run: TrainingRun,
    *,
    pods: Mapping[str, PodView],
    config: ConfigView | None,
    now: datetime,
    epoch: int = 0,
) -> Decision:
    """The next step of ``run`` given its pods (by name) and, before it starts, its config.

    ``config`` may be None once DataReady is True (the gates are over); before that None means
    "not observed" and the run waits.
    """
    b = _Status(run, now, epoch)
    phase = derive_phase(run.status.conditions)
    live = tuple(sorted(n for n, p in pods.items() if p.live))
    if phase in TERMINAL_PHASES:
        if live:
            return Decision(status=run.status, action=Action.DELETE, delete=live)
        return Decision(status=run.status)

    known = frozenset(pods) | frozenset(run.status.pods)
    limit = _max_attempts(run)
    export = _unit(pods, known, [(export_pod(run, a),) for a in range(1, limit + 1)])
    training = _unit(pods, known, [training_pods(run, a) for a in range(1, limit + 1)])
    shards = gauntlet_shards(run)
    gauntlet = [
        _unit(pods, known, [(gauntlet_pod(run, a, s.index),) for a in range(1, limit + 1)])
        for s in shards
    ]
    failures = _failures([export, training, *gauntlet])

    if not is_true(run.status.conditions, T.DATA_READY):
        return _decide_gates(b, run, config, now)

    deadline = run.spec.active_deadline_seconds
    started = parse_rfc3339(run.status.start_time) if run.status.start_time else now
    if deadline is not None and now - started > timedelta(seconds=deadline):
        message = f"not done within activeDeadlineSeconds ({deadline}s)"
        b.cond(T.FAILED, TRUE, R.DEADLINE_EXCEEDED, message)
        b.event("Warning", "DeadlineExceeded", message)
        return b.decision(R.DEADLINE_EXCEEDED, message, action=Action.DELETE, delete=live)

    if not is_true(run.status.conditions, T.EXPORTED):
        return _decide_export(b, run, export, failures, live)
    if not is_true(run.status.conditions, T.TRAINED):
        return _decide_training(b, run, training, failures, live)
    return _decide_gauntlet(b, run, gauntlet, shards, failures, live)


def _decide_gates(b: _Status, run: TrainingRun, config: ConfigView | None,
                  now: datetime) -> Decision:  # fmt: skip
    spec = run.spec
    key = config_key(spec.board, spec.players)
    pending = spec.pending_deadline_seconds
    created = run.metadata.creation_timestamp
    if (
        pending is not None
        and created
        and now - parse_rfc3339(created) > timedelta(seconds=pending)
    ):
        message = f"still Pending after pendingDeadlineSeconds ({pending}s)"
        b.cond(T.EXPIRED, TRUE, R.DEADLINE_EXCEEDED, message)
        b.event("Warning", "Expired", message)
        return b.decision(R.DEADLINE_EXCEEDED, message)
    if config is None or not config.settled:
        # A just-finished SelfplayJob's files are not in the manifests yet: deciding now could
        # wrongly call the data a duplicate (Skipped is final). Look again in a moment.
        return Decision(status=run.status, requeue_after=1.0)

    new = max(0, config.total_games - config.games_at_last_training)
    if new < spec.min_new_games:
        message = (
            f"{new} new games of {key} since the last training ({config.total_games} in all, "
            f"{config.games_at_last_training} used before), {spec.min_new_games} needed"
        )
        if b.cond(T.DATA_READY, FALSE, R.NOT_ENOUGH_GAMES, message):
            b.event("Normal", "WaitingForData", message)
        return b.decision(R.NOT_ENOUGH_GAMES, message, requeue_after=DATA_POLL_SECONDS)

    if config.data_hash in config.recent_hashes:
        message = f"data hash {config.data_hash} of {key} was trained on already"
        b.cond(T.DATA_READY, FALSE, R.DUPLICATE_DATA, message)
        b.cond(T.SKIPPED, TRUE, R.DUPLICATE_DATA, message)
        b.set(data_hash=config.data_hash)
        b.event("Normal", "Skipped", message)
        return b.decision(R.DUPLICATE_DATA, message)

    last = config.last_started_at.timestamp() if config.last_started_at else None
    remaining = cooldown_remaining_seconds(
        last_started_at=last, now=now.timestamp(), cooldown_seconds=spec.cooldown_seconds
    )
    if remaining > 0:
        message = f"{key} started training recently; {remaining:.0f}s of cooldown left"
        if b.cond(T.DATA_READY, FALSE, R.COOLDOWN, message):
            b.event("Normal", "CoolingDown", message)
        return b.decision(R.COOLDOWN, message, requeue_after=max(1.0, remaining))

    if config.fitting_nodes < spec.nodes:
        message = (
            f"needs {spec.nodes} node(s) with {spec.gpus} free GPU(s) and {spec.min_memory_gib} "
            f"GiB, found {config.fitting_nodes}"
        ) + (f": {config.capacity_message}" if config.capacity_message else "")
        if b.cond(T.DATA_READY, FALSE, R.WAITING_FOR_NODE, message):
            b.event("Warning", "WaitingForNode", message)
        return b.decision(R.WAITING_FOR_NODE, message, requeue_after=DATA_POLL_SECONDS)

    message = f"{new} new games of {key} ({config.total_games} in all, from {config.source})"
    b.cond(T.DATA_READY, TRUE, R.DATA_READY, message)
    b.cond(T.EXPORTED, FALSE, R.EXPORTING, "exporting the games into a training set")
    b.set(data_hash=config.data_hash, games_used=config.total_games, start_time=rfc3339(b.now))
    b.event("Normal", "DataReady", message)
    start = PodStart(name=export_pod(run, 1), kind=JobKind.EXPORT, attempt=1)
    return b.decision(R.EXPORTING, message, action=Action.EXPORT, starts=(start,),
                      record=Record.STARTED)  # fmt: skip


def _failure_text(pod: PodView, step: str, attempt: int) -> str:
    if pod.lost:
        why = "was deleted" if pod.node_state is NodeState.MISSING else "is not Ready"
        return f"{step} attempt {attempt}: node {pod.node} {why} (pod {pod.name})"
    detail = (pod.message or "").strip().replace("\n", " ")[:300]
    result = parse_result(pod.message)
    if result is not None:
        detail = result.message[:300]
    text = f"{step} attempt {attempt}: pod {pod.name} failed on {pod.node} (exit {pod.exit_code})"
    return text + (f": {detail}" if detail else "")


def _retry_or_fail(
    b: _Status, run: TrainingRun, *, failures: int, failed: PodView | None, step: str,
    attempt: int, live: Sequence[str], retry: tuple[PodStart, ...], action: Action,
    condition: T, state: ConditionStatus = FALSE,
) -> Decision:  # fmt: skip
    """After a failed attempt of a unit: fail the run (bad input, backoff limit) or retry."""
    text = (
        _failure_text(failed, step, attempt)
        if failed is not None
        else f"{step} attempt {attempt}: its pods disappeared"
    )
    lost = failed is not None and failed.lost
    b.event("Warning", "NodeLost" if lost else "AttemptFailed", text)
    if failed is not None and not lost and failed.exit_code == EXIT_BAD_INPUT:
        message = text + " — the workload rejected its input"
        b.cond(T.FAILED, TRUE, BAD_INPUT, message)
        b.event("Warning", "Failed", message)
        return b.decision(BAD_INPUT, message, action=Action.DELETE, delete=tuple(live))
    if failures > run.spec.backoff_limit:
        message = f"{text}; backoffLimit ({run.spec.backoff_limit}) reached"
        b.cond(T.FAILED, TRUE, R.BACKOFF_LIMIT_EXCEEDED, message)
        b.event("Warning", "BackoffLimitExceeded", message)
        return b.decision(R.BACKOFF_LIMIT_EXCEEDED, message, action=Action.DELETE,
                          delete=tuple(live))  # fmt: skip
    reason = R.NODE_LOST if lost else R.POD_FAILED
    message = f"{text}; retrying ({failures} of {run.spec.backoff_limit} retries used)"
    b.cond(condition, state, reason, message)
    avoid = (failed.node,) if failed is not None and failed.node else ()
    return b.decision(reason, message, action=action, starts=retry, delete=tuple(live),
                      avoid=avoid)  # fmt: skip


def _decide_export(b: _Status, run: TrainingRun, export: _Unit, failures: int,
                   live: Sequence[str]) -> Decision:  # fmt: skip
    if not export.started:
        start = PodStart(name=export_pod(run, 1), kind=JobKind.EXPORT, attempt=1)
        return b.decision(R.EXPORTING, "placing the export pod", action=Action.EXPORT,
                          starts=(start,))  # fmt: skip
    pod = export.pods[0]
    if export.succeeded and pod is not None:
        result = parse_result(pod.message)
        detail = result.message if result is not None and result.message else "exported"
        message = f"export on {pod.node}: {detail}"
        b.cond(T.EXPORTED, TRUE, R.EXPORT_SUCCEEDED, message)
        b.cond(T.TRAINED, FALSE, R.TRAINING, "placing the training pod(s)")
        b.event("Normal", "Exported", message)
        starts = _training_starts(run, 1)
        return b.decision(R.TRAINING, message, action=Action.TRAIN, starts=starts)
    if export.failed is not None or export.vanished:
        nxt = export.attempt + 1
        start = PodStart(name=export_pod(run, nxt), kind=JobKind.EXPORT, attempt=nxt)
        return _retry_or_fail(
            b, run, failures=failures, failed=export.failed, step="export",
            attempt=export.attempt, live=[n for n in live if n in export.names],
            retry=(start,), action=Action.EXPORT, condition=T.EXPORTED,
        )  # fmt: skip
    where = f" on {pod.node}" if pod is not None and pod.node else ""
    b.cond(T.EXPORTED, FALSE, R.EXPORTING, f"export pod {export.names[0]}{where}")
    return b.decision(R.EXPORTING, f"exporting{where}")


def _training_starts(run: TrainingRun, attempt: int) -> tuple[PodStart, ...]:
    return tuple(
        PodStart(name=name, kind=JobKind.TRAINING, attempt=attempt, shard=rank)
        for rank, name in enumerate(training_pods(run, attempt))
    )


def _decide_training(b: _Status, run: TrainingRun, training: _Unit, failures: int,
                     live: Sequence[str]) -> Decision:  # fmt: skip
    if not training.started:
        return b.decision(R.TRAINING, "placing the training pod(s)", action=Action.TRAIN,
                          starts=_training_starts(run, 1))  # fmt: skip
    rank0 = training.pods[0]
    model = None
    if training.succeeded and rank0 is not None:
        result = parse_result(rank0.message)
        if result is not None and result.model is not None:
            model = TrainedModel(uri=result.model.uri, sha256=result.model.sha256,
                                 generation=result.model.generation)  # fmt: skip
    if model is not None:
        message = f"generation {model.generation} trained on {rank0.node if rank0 else '?'}"
        b.cond(T.TRAINED, TRUE, R.TRAINING_SUCCEEDED, message)
        b.cond(T.GAUNTLET_PASSED, UNKNOWN, R.EVALUATING, "placing the gauntlet")
        b.set(model=model)
        b.event("Normal", "Trained", f"{message}: {model.uri}")
        starts = tuple(
            PodStart(name=gauntlet_pod(run, 1, s.index), kind=JobKind.GAUNTLET, attempt=1,
                     shard=s.index, games=s.games)
            for s in gauntlet_shards(run)
        )  # fmt: skip
        return b.decision(R.EVALUATING, message, action=Action.EVALUATE, starts=starts)
    failed = training.failed
    if training.succeeded and rank0 is not None:
        failed = PodView(
            name=rank0.name,
            node=rank0.node,
            phase=PodPhase.FAILED,
            exit_code=rank0.exit_code,
            message="training succeeded without a valid model in its message",
        )
    if failed is not None or training.vanished:
        nxt = training.attempt + 1
        return _retry_or_fail(
            b, run, failures=failures, failed=failed, step="training",
            attempt=training.attempt, live=[n for n in live if n in training.names],
            retry=_training_starts(run, nxt), action=Action.TRAIN, condition=T.TRAINED,
        )  # fmt: skip
    nodes = sorted({p.node for p in training.pods if p is not None and p.node})
    b.cond(T.TRAINED, FALSE, R.TRAINING, f"training on {', '.join(nodes) or 'its nodes'}")
    return b.decision(R.TRAINING, f"training on {', '.join(nodes) or 'its nodes'}")


def _decide_gauntlet(
    b: _Status, run: TrainingRun, units: Sequence[_Unit], shards: Sequence[GauntletShard],
    failures: int, live: Sequence[str],
) -> Decision:  # fmt: skip
    starts: list[PodStart] = []
    results: list[ShardResult] = []
    avoid: list[str] = []
    done = 0
    for shard, unit in zip(shards, units, strict=True):
        if not unit.started:
            starts.append(PodStart(name=gauntlet_pod(run, 1, shard.index), kind=JobKind.GAUNTLET,
                                   attempt=1, shard=shard.index, games=shard.games))  # fmt: skip
            continue
        pod = unit.pods[0]
        result = parse_result(pod.message) if unit.succeeded and pod is not None else None
        if result is not None and None not in (result.wins, result.losses, result.draws):
            results.append(ShardResult(wins=result.wins or 0, losses=result.losses or 0,
                                       draws=result.draws or 0))  # fmt: skip
            done += 1
            continue
        failed = unit.failed
        if unit.succeeded and pod is not None:
            failed = PodView(
                name=pod.name,
                node=pod.node,
                phase=PodPhase.FAILED,
                message="gauntlet succeeded without wins/losses/draws",
            )
        if failed is not None or unit.vanished:
            nxt = unit.attempt + 1
            retry = PodStart(
                name=gauntlet_pod(run, nxt, shard.index),
                kind=JobKind.GAUNTLET,
                attempt=nxt,
                shard=shard.index,
                games=shard.games,
            )
            doomed = failures > run.spec.backoff_limit
            decision = _retry_or_fail(
                b, run, failures=failures, failed=failed, step=f"gauntlet shard {shard.index}",
                attempt=unit.attempt, retry=(retry,), action=Action.EVALUATE,
                live=list(live) if doomed else [n for n in live if n in unit.names],
                condition=T.GAUNTLET_PASSED, state=UNKNOWN,
            )  # fmt: skip
            if decision.status.phase in TERMINAL_PHASES:
                return decision
            starts.append(retry)  # the other shards go on; the retried one joins them
            avoid.extend(decision.avoid)
            continue
    if done < len(shards):
        b.set(gauntlet=_partial(results, done))
        message = f"gauntlet: {done} of {len(shards)} shard(s) done"
        b.cond(T.GAUNTLET_PASSED, UNKNOWN, R.EVALUATING, message)
        action = Action.EVALUATE if starts else Action.NONE
        return b.decision(R.EVALUATING, message, action=action, starts=tuple(starts),
                          avoid=tuple(avoid))  # fmt: skip

    score = score_gauntlet(results)
    b.set(gauntlet=GauntletResult(
        wins=score.wins, losses=score.losses, draws=score.draws,
        win_rate_percent=score.win_rate_percent, elo_delta=round(score.elo_diff),
        elo_low=round(score.elo_low), elo_high=round(score.elo_high), shards_completed=done,
    ))  # fmt: skip
    promotion = decide_promotion(score=score, policy=gauntlet_policy(run))
    summary = (
        f"{score.wins}W {score.losses}L {score.draws}D, win rate {score.win_rate_percent}% "
        f"(needs {run.spec.gauntlet.promotion_win_rate_percent}%), Elo {round(score.elo_diff):+d}"
    )
    if promotion.passed:
        b.cond(T.GAUNTLET_PASSED, TRUE, R.WIN_RATE_ABOVE_THRESHOLD, summary)
    else:
        b.cond(T.GAUNTLET_PASSED, FALSE, R.WIN_RATE_BELOW_THRESHOLD,
               f"{summary}: {promotion.message}")  # fmt: skip
    b.event("Normal", "Evaluated", summary)
    if promotion.promote:
        model = b.s.model
        message = f"promoted {model.uri if model else 'the model'}: {summary}"
        b.cond(T.PROMOTED, TRUE, R.PROMOTED, message)
        b.event("Normal", "Promoted", message)
        return b.decision(R.PROMOTED, message, record=Record.PROMOTED)
    reason = R.AUTO_PROMOTE_DISABLED if promotion.passed else R.NOT_PROMOTED
    message = f"not promoted: {promotion.message}"
    b.cond(T.COMPLETE, TRUE, reason, message)
    b.event("Normal", "Completed", message)
    return b.decision(reason, message, record=Record.EVALUATED)


def _partial(results: Sequence[ShardResult], done: int) -> GauntletResult:
    return GauntletResult(
        wins=sum(r.wins for r in results), losses=sum(r.losses for r in results),
        draws=sum(r.draws for r in results), shards_completed=done,
    )  # fmt: skip


# --- Placement results -------------------------------------------------------------------------


def placed(
    run: TrainingRun, status: TrainingRunStatus, *, starts: Sequence[PodStart],
    nodes: Sequence[str], why: str, now: datetime, epoch: int = 0,
) -> Decision:  # fmt: skip
    """The status after ``starts`` were bound to ``nodes`` (same order)."""
    b = _Status(run.model_copy(update={"status": status}), now, epoch)
    names = [s.name for s in starts]
    kind = starts[0].kind if starts else JobKind.EXPORT
    roles = pod_roles(run)
    same_step = [n for n in status.pods if n in roles and roles[n].kind is kind]
    pods = list(dict.fromkeys([*(same_step if kind is JobKind.GAUNTLET else []), *names]))
    if kind is JobKind.TRAINING:
        b.set(node=nodes[0], nodes=list(nodes))
    b.set(pods=pods, attempts=status.attempts + len(starts))
    where = ", ".join(f"{n} → {node}" for n, node in zip(names, nodes, strict=True))
    message = f"{kind.value}: {where}" + (f" ({why})" if why else "")
    b.event("Normal", "Scheduled", message)
    return b.decision(status.reason, message)


def unplaceable(
    run: TrainingRun, status: TrainingRunStatus, *, kind: JobKind, why: str, now: datetime,
    epoch: int = 0, retry_after: float = DATA_POLL_SECONDS,
) -> Decision:  # fmt: skip
    """The status while no node (or not enough nodes) can take the step's pods."""
    b = _Status(run.model_copy(update={"status": status}), now, epoch)
    message = f"waiting for a node for the {kind.value} step: {why}"
    condition = {JobKind.EXPORT: T.EXPORTED, JobKind.TRAINING: T.TRAINED}.get(
        kind, T.GAUNTLET_PASSED
    )
    state = UNKNOWN if condition is T.GAUNTLET_PASSED else FALSE
    b.cond(condition, state, R.WAITING_FOR_NODE, message)
    before = get_condition(run.status.conditions, condition)  # as last written, not as decided
    if before is None or before.reason != R.WAITING_FOR_NODE:
        b.event("Warning", "WaitingForNode", message)
    return b.decision(R.WAITING_FOR_NODE, message, requeue_after=retry_after)
