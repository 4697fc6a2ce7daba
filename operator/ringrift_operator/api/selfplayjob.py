"""The SelfplayJob resource: generate N games of one board config with one engine.

Spec, status, the resource wrapper, ``parse_selfplayjob`` and ``derive_phase``. Read by the
SelfplayJob reconciler and the autopilot loops that create jobs; ``crdgen`` turns the spec and
status models into the CRD.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from ringrift_operator.api.common import (
    GPU_ENGINE_MODES,
    MAX_PLAYERS,
    MIN_PLAYERS,
    Board,
    EngineMode,
)
from ringrift_operator.api.conditions import (
    CONDITIONS_LIST_EXTRA,
    MAX_CONDITIONS,
    Condition,
    SelfplayJobConditionType,
    is_true,
)
from ringrift_operator.api.meta import (
    MAX_URI_LENGTH,
    ConfigKey,
    Message,
    Name,
    Placement,
    Reason,
    ResourceBase,
    Rfc3339,
    WireModel,
    immutable,
    parse_resource,
)

KIND = "SelfplayJob"
PLURAL = "selfplayjobs"
SHORT_NAMES = ("spj",)
MAX_GAMES = 100_000
MAX_SELFPLAY_GPUS = 8
MAX_BACKOFF_LIMIT = 20
MAX_ATTEMPT_RECORDS = 10
MAX_DEADLINE_SECONDS = 30 * 24 * 3600

_GPU_MODES = sorted(m.value for m in GPU_ENGINE_MODES)
_GPU_MODES_CEL = "[" + ", ".join(f"'{m}'" for m in _GPU_MODES) + "]"
GPU_ENGINE_MESSAGE = "spec.gpus must be at least 1 for engine modes that evaluate a network (" + (
    ", ".join(_GPU_MODES) + ")"
)


class SelfplayJobPhase(StrEnum):
    """Summary of a SelfplayJob's conditions, for humans and printer columns."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    COMPLETE = "Complete"
    FAILED = "Failed"
    EXPIRED = "Expired"


TERMINAL_PHASES = frozenset(
    {SelfplayJobPhase.COMPLETE, SelfplayJobPhase.FAILED, SelfplayJobPhase.EXPIRED}
)


class AttemptResult(StrEnum):
    """How one attempt (one pod) ended, or that it is still going."""

    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    EXPIRED = "Expired"  # activeDeadlineSeconds passed while it ran
    LOST = "Lost"  # its node went NotReady or disappeared


class SelfplayJobSpec(WireModel):
    """What to play: one board config, one engine, a number of games, on one node."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"!(self.engineMode in {_GPU_MODES_CEL}) || self.gpus >= 1",
                    "message": GPU_ENGINE_MESSAGE,
                    "fieldPath": ".gpus",
                    "reason": "FieldValueInvalid",
                }
            ]
        }
    )

    board: Board = Field(
        description="Board type: square8, square19, hex8 or hexagonal. Immutable.",
        json_schema_extra=immutable("board"),
    )
    players: int = Field(
        default=2,
        ge=MIN_PLAYERS,
        le=MAX_PLAYERS,
        description=f"Number of players, {MIN_PLAYERS}-{MAX_PLAYERS} (default 2). With board it "
        "forms the config key, e.g. square8_2p. Immutable.",
        json_schema_extra=immutable("players"),
    )
    engine_mode: EngineMode = Field(
        description="Self-play engine. maxn, brs, mcts, gumbel-mcts, policy-only, nn-descent and "
        "nn-minimax run the search self-play script; random, heuristic and nnue-guided the GPU "
        "self-play script. gumbel-mcts, policy-only, nn-descent, nn-minimax and nnue-guided "
        "evaluate a network and need gpus >= 1. Immutable.",
        json_schema_extra=immutable("engineMode"),
    )
    games: int = Field(
        ge=1,
        le=MAX_GAMES,
        description=f"Games to generate, 1-{MAX_GAMES}. The job is Complete when the workload "
        "reports this many games written.",
    )
    gpus: int = Field(
        default=1,
        ge=0,
        le=MAX_SELFPLAY_GPUS,
        description=f"GPUs (nvidia.com/gpu) for the job's pod, 0-{MAX_SELFPLAY_GPUS} (default 1). "
        "0 makes it a CPU job placed by CPU power.",
    )
    model: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_URI_LENGTH,
        description="URI of the model to play with, e.g. file:///data/models/square8_2p/g3.pt. "
        "Unset: the promoted model of the config at the time the attempt starts (none for "
        "engines that use no network).",
    )
    placement: Placement = Field(
        default_factory=Placement,
        description="Filters on the nodes the job may run on; the best remaining node wins.",
        json_schema_extra={"default": {}},
    )
    dispatch_timeout_seconds: int = Field(
        default=300,
        ge=1,
        le=86_400,
        description="Seconds the job may wait for a node before it Expires (default 300).",
    )
    active_deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_DEADLINE_SECONDS,
        description="Seconds the job may run, counted from its first start, before it Fails "
        "with DeadlineExceeded. Unset: no limit.",
    )
    backoff_limit: int = Field(
        default=3,
        ge=0,
        le=MAX_BACKOFF_LIMIT,
        description="Failed attempts retried before the job Fails (default 3; 0 = no retry). "
        "Each retry may pick another node; nodes that failed it rank lower.",
    )
    suspend: bool = Field(
        default=False,
        description="True stops the running attempt (its pod is deleted, games written so far "
        "count) and starts none until set back to false. Time suspended does not count "
        "towards the deadlines.",
    )

    @model_validator(mode="after")
    def _check_gpus(self) -> SelfplayJobSpec:
        if self.engine_mode in GPU_ENGINE_MODES and self.gpus < 1:
            raise ValueError(GPU_ENGINE_MESSAGE)
        return self


class AttemptRecord(WireModel):
    """One attempt of the job: one pod on one node."""

    model_config = ConfigDict(extra="ignore")

    attempt: int = Field(ge=1, le=MAX_BACKOFF_LIMIT + 1, description="Attempt number, from 1.")
    node: Name | None = Field(default=None, description="Node the attempt ran on.")
    pod: Name | None = Field(default=None, description="Pod of the attempt.")
    result: AttemptResult = Field(
        default=AttemptResult.RUNNING,
        description="Running, Succeeded, Failed, Expired (deadline) or Lost (node went away).",
    )
    reason: Reason | None = Field(default=None, description="CamelCase reason of the result.")


class SelfplayJobStatus(WireModel):
    """What the operator observed and did; written only by the operator."""

    model_config = ConfigDict(extra="ignore")

    observed_generation: int = Field(
        default=0, ge=0, description="metadata.generation this status was computed from."
    )
    phase: SelfplayJobPhase = Field(
        default=SelfplayJobPhase.PENDING,
        description="Pending, Running, Suspended, Complete, Failed or Expired; derived from the "
        "conditions (terminal conditions first, then Suspended, then Running).",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=MAX_CONDITIONS,
        description="Scheduled, Running, Complete, Failed, Expired and Suspended.",
        json_schema_extra=CONDITIONS_LIST_EXTRA,
    )
    config: ConfigKey | None = Field(
        default=None, description="Config key of the job, e.g. square8_2p (board_players)."
    )
    node: Name | None = Field(default=None, description="Node of the current or last attempt.")
    power_score: int | None = Field(
        default=None,
        ge=0,
        le=1_000_000,
        description="The node's power score when it was chosen (higher ranks first).",
    )
    pod: Name | None = Field(default=None, description="Pod of the current or last attempt.")
    attempts: int = Field(
        default=0, ge=0, le=MAX_BACKOFF_LIMIT + 1, description="Attempts started so far."
    )
    failed_attempts: int = Field(
        default=0,
        ge=0,
        le=MAX_BACKOFF_LIMIT + 1,
        description="Attempts that failed (pod failed or its node was lost); the job Fails when "
        "this exceeds spec.backoffLimit.",
    )
    games_completed: int = Field(
        default=0, ge=0, le=MAX_GAMES, description="Games written by finished attempts."
    )
    start_time: Rfc3339 | None = Field(
        default=None, description="When the first attempt started (RFC 3339)."
    )
    completion_time: Rfc3339 | None = Field(
        default=None, description="When the job became Complete, Failed or Expired (RFC 3339)."
    )
    epoch: int = Field(
        default=0, ge=0, description="Leader epoch of the operator that last wrote this status."
    )
    reason: Reason | None = Field(
        default=None, description="CamelCase reason of the current phase."
    )
    message: Message | None = Field(default=None, description="Human-readable detail of the phase.")
    recent_attempts: list[AttemptRecord] = Field(
        default_factory=list,
        max_length=MAX_ATTEMPT_RECORDS,
        description=f"The last {MAX_ATTEMPT_RECORDS} attempts, oldest first.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["attempt"],
        },
    )


class SelfplayJob(ResourceBase):
    """SelfplayJob generates a number of games of one board config with one self-play engine,
    on the best free node the operator finds, retrying on failure."""

    api_version: Literal["ringrift.ai/v1alpha1"] = "ringrift.ai/v1alpha1"
    kind: Literal["SelfplayJob"] = "SelfplayJob"
    spec: SelfplayJobSpec = Field(description="Desired state.")
    status: SelfplayJobStatus = Field(
        default_factory=SelfplayJobStatus, description="Observed state."
    )


def parse_selfplayjob(body: Mapping[str, Any]) -> SelfplayJob:
    """Parse a SelfplayJob body; raises InvalidResourceError naming each bad field's path."""
    return parse_resource(SelfplayJob, body, kind=KIND)


def derive_phase(conditions: Sequence[Condition]) -> SelfplayJobPhase:
    """The phase the conditions mean. Precedence: Complete > Failed > Expired (terminal, work
    that finished stays finished) > Suspended > Running > Pending."""
    for condition_type, phase in (
        (SelfplayJobConditionType.COMPLETE, SelfplayJobPhase.COMPLETE),
        (SelfplayJobConditionType.FAILED, SelfplayJobPhase.FAILED),
        (SelfplayJobConditionType.EXPIRED, SelfplayJobPhase.EXPIRED),
        (SelfplayJobConditionType.SUSPENDED, SelfplayJobPhase.SUSPENDED),
        (SelfplayJobConditionType.RUNNING, SelfplayJobPhase.RUNNING),
    ):
        if is_true(conditions, condition_type):
            return phase
    return SelfplayJobPhase.PENDING


def set_attempt_record(
    records: Sequence[AttemptRecord], record: AttemptRecord
) -> list[AttemptRecord]:
    """Return the records with ``record`` merged by attempt number, sorted, and cut to the
    newest :data:`MAX_ATTEMPT_RECORDS`."""
    merged = {r.attempt: r for r in records}
    merged[record.attempt] = record
    return [merged[k] for k in sorted(merged)][-MAX_ATTEMPT_RECORDS:]
