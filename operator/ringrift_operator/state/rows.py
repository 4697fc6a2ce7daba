"""Rows of the history store: one frozen dataclass per table, as callers write and read them.

Pure data, no I/O. ``state.history`` maps them to and from SQLite; reconcilers and loops build
them. Times are unix seconds (``float``) supplied by the caller; the store never reads the clock
to stamp a row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class NodeEventKind(StrEnum):
    """What a node did: the two sides of its reputation."""

    FAILURE = "failure"
    SUCCESS = "success"


class GameResult(StrEnum):
    """One A/B gauntlet game, from the candidate's point of view."""

    WIN = "win"
    LOSS = "loss"
    DRAW = "draw"


@dataclass(frozen=True, slots=True)
class JobAttempt:
    """One attempt (one pod) of a job-like resource; re-recording (uid, attempt) updates it.

    ``kind``/``namespace``/``name``/``uid`` identify the owning resource (a SelfplayJob, a
    TrainingRun, …); ``phase`` is the pod phase or the reconciler's own word for the attempt.
    """

    kind: str
    namespace: str
    name: str
    uid: str
    attempt: int
    phase: str
    started_at: float
    epoch: int
    pod: str = ""
    node: str = ""
    reason: str = ""
    finished_at: float | None = None


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """A failure or success observed on a node; the raw material of node reputation."""

    node: str
    kind: NodeEventKind
    at: float
    reason: str = ""
    job: str = ""  # "<namespace>/<name>" of the job involved, if any


@dataclass(frozen=True, slots=True)
class NodeReputation:
    """Failures and successes of one node since some time (read-only aggregate)."""

    node: str
    failures: int
    successes: int
    last_failure_at: float | None
    last_success_at: float | None


@dataclass(frozen=True, slots=True)
class EloRating:
    """A model's rating in one config; writing one also appends it to the rating history."""

    model_id: str
    config: str
    rating: float
    games: int
    updated_at: float


@dataclass(frozen=True, slots=True)
class AbTest:
    """The A/B gauntlet of one TrainingRun: a candidate against a baseline and opponents.

    Tests are immutable once recorded: recording the same ``test_id`` again keeps the first.
    """

    test_id: str
    config: str
    candidate_model: str
    baseline_model: str
    created_at: float
    opponents: tuple[str, ...] = ()
    training_run: str = ""  # "<namespace>/<name>"


@dataclass(frozen=True, slots=True)
class AbTestGame:
    """One game of an A/B test; (test_id, shard, game) identifies it, so re-recording is a no-op."""

    test_id: str
    opponent: str
    result: GameResult
    shard: int
    game: int
    played_at: float
    pod: str = ""


@dataclass(frozen=True, slots=True)
class AbTestTally:
    """Wins, losses and draws of an A/B test's candidate against one opponent (read-only)."""

    opponent: str
    wins: int
    losses: int
    draws: int

    @property
    def games(self) -> int:
        return self.wins + self.losses + self.draws


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """One model in the per-config registry.

    ``promoted``/``promoted_at`` are read-only here: they are owned by
    ``HistoryStore.promote_model``, which keeps at most one promoted model per config. Writing a
    record that claims to be promoted is refused.
    """

    model_id: str
    config: str
    generation: int
    uri: str
    sha256: str
    created_at: float
    training_run: str = ""  # "<namespace>/<name>"
    promoted: bool = False
    promoted_at: float | None = None  # the last time it was promoted, kept after demotion


@dataclass(frozen=True, slots=True)
class MetricSample:
    """One observation of a named metric with its labels."""

    name: str
    value: float
    at: float
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TrainingHash:
    """The dedupe hash of one training dispatch (a digest of its config and data)."""

    digest: str
    config: str
    at: float


@dataclass(frozen=True, slots=True)
class EpochRecord:
    """A leader epoch: the lease's transition count when ``holder`` acquired it."""

    epoch: int
    holder: str
    acquired_at: float


@dataclass(frozen=True, slots=True)
class StateEntry:
    """One key of the small key-value ``state`` table; the value is opaque text (often JSON)."""

    key: str
    value: str
    updated_at: float


@dataclass(frozen=True, slots=True)
class IntegrityReport:
    """The answer of ``PRAGMA integrity_check``/``quick_check``."""

    ok: bool
    messages: tuple[str, ...]


HistoryRow = (
    JobAttempt
    | NodeEvent
    | EloRating
    | AbTest
    | AbTestGame
    | ModelRecord
    | MetricSample
    | TrainingHash
    | EpochRecord
    | StateEntry
)
"""Everything ``HistoryStore.record``/``record_many``/``enqueue`` accept."""
