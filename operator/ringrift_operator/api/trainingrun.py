"""The TrainingRun resource: one training of one board config, gated by new data, evaluated in
a gauntlet and maybe promoted.

Spec, status, the resource wrapper, ``parse_trainingrun`` and ``derive_phase``. Read by the
TrainingRun reconciler and the readiness loop that creates runs; ``crdgen`` builds the CRD.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from ringrift_operator.api.common import MAX_PLAYERS, MIN_PLAYERS, Board
from ringrift_operator.api.conditions import (
    CONDITIONS_LIST_EXTRA,
    MAX_CONDITIONS,
    Condition,
    TrainingRunConditionType,
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

KIND = "TrainingRun"
PLURAL = "trainingruns"
SHORT_NAMES = ("tr",)
MAX_TRAINING_GPUS = 8
MAX_TRAINING_NODES = 16
MAX_GAUNTLET_GAMES = 10_000
MAX_GAUNTLET_SHARDS = 64
MAX_OPPONENTS = 8
MAX_PODS = 1 + MAX_TRAINING_NODES + MAX_GAUNTLET_SHARDS  # export + training + gauntlet shards
MAX_DEADLINE_SECONDS = 30 * 24 * 3600
MAX_ELO = 10_000

SHARDS_MESSAGE = "spec.gauntlet.shards must not exceed spec.gauntlet.games"
DISTRIBUTED_MESSAGE = "spec.gpus must be at least 1 when spec.nodes > 1 (distributed training)"


Opponent = Annotated[str, Field(min_length=1, max_length=MAX_URI_LENGTH)]


class TrainingRunPhase(StrEnum):
    """Summary of a TrainingRun's conditions, for humans and printer columns."""

    PENDING = "Pending"  # waiting for data, cooldown or a node
    EXPORTING = "Exporting"
    TRAINING = "Training"
    EVALUATING = "Evaluating"
    COMPLETE = "Complete"  # evaluated, not promoted
    PROMOTED = "Promoted"
    FAILED = "Failed"
    EXPIRED = "Expired"
    SKIPPED = "Skipped"  # the same data was already trained on


TERMINAL_PHASES = frozenset(
    {
        TrainingRunPhase.COMPLETE,
        TrainingRunPhase.PROMOTED,
        TrainingRunPhase.FAILED,
        TrainingRunPhase.EXPIRED,
        TrainingRunPhase.SKIPPED,
    }
)


class GauntletSpec(WireModel):
    """How the trained model is evaluated before it may be promoted."""

    # has() guards: the API server checks the parent's `default: {}` against this rule before
    # nested defaults are filled in.
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.shards) || !has(self.games) || self.shards <= self.games",
                    "message": SHARDS_MESSAGE,
                    "fieldPath": ".shards",
                }
            ]
        }
    )

    games: int = Field(
        default=100,
        ge=1,
        le=MAX_GAUNTLET_GAMES,
        description=f"Evaluation games in total, 1-{MAX_GAUNTLET_GAMES} (default 100), split "
        "evenly over the opponents and the shards.",
    )
    opponents: list[Opponent] = Field(
        default=["promoted", "heuristic", "random"],
        min_length=1,
        max_length=MAX_OPPONENTS,
        description="Who the new model plays: `promoted` (the config's promoted model), the "
        "engines `heuristic` and `random`, or model URIs. Default: promoted, heuristic, random.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    shards: int = Field(
        default=1,
        ge=1,
        le=MAX_GAUNTLET_SHARDS,
        description=f"Evaluation pods run in parallel, 1-{MAX_GAUNTLET_SHARDS} (default 1); at "
        "most games.",
    )
    promotion_win_rate_percent: int = Field(
        default=55,
        ge=0,
        le=100,
        description="Win rate, in whole percent of decided games plus half the draws, the new "
        "model needs against every opponent to pass the gauntlet (default 55).",
    )

    @model_validator(mode="after")
    def _check(self) -> GauntletSpec:
        if self.shards > self.games:
            raise ValueError(SHARDS_MESSAGE)
        if len(set(self.opponents)) != len(self.opponents):
            raise ValueError("spec.gauntlet.opponents must not repeat")
        return self


class TrainingRunSpec(WireModel):
    """What to train and when: a config, how much new data, on which hardware."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.nodes == 1 || self.gpus >= 1",
                    "message": DISTRIBUTED_MESSAGE,
                    "fieldPath": ".gpus",
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
        description=f"Number of players, {MIN_PLAYERS}-{MAX_PLAYERS} (default 2). Immutable.",
        json_schema_extra=immutable("players"),
    )
    min_new_games: int = Field(
        default=1000,
        ge=1,
        le=10_000_000,
        description="New games of the config (since the last training) that must exist across "
        "the cluster before the run starts (default 1000). Until then it stays Pending.",
    )
    cooldown_seconds: int = Field(
        default=300,
        ge=0,
        le=86_400,
        description="Minimum seconds between two trainings of the same config (default 300).",
    )
    min_memory_gib: int = Field(
        default=8,
        ge=1,
        le=4096,
        alias="minMemoryGiB",
        description="Free memory, in GiB, a node needs to be chosen for training (default 8).",
    )
    gpus: int = Field(
        default=1,
        ge=0,
        le=MAX_TRAINING_GPUS,
        description=f"GPUs per training node, 0-{MAX_TRAINING_GPUS} (default 1; 0 trains on CPU).",
    )
    nodes: int = Field(
        default=1,
        ge=1,
        le=MAX_TRAINING_NODES,
        description=f"Training nodes, 1-{MAX_TRAINING_NODES} (default 1). More than 1 trains "
        "distributed: all pods are placed together (gang) or none is.",
    )
    base_model: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_URI_LENGTH,
        description="URI of the model to start from. Unset: the config's promoted model, or "
        "from scratch when there is none.",
    )
    placement: Placement = Field(
        default_factory=Placement,
        description="Filters on the nodes the run's pods may use.",
        json_schema_extra={"default": {}},
    )
    gauntlet: GauntletSpec = Field(
        default_factory=GauntletSpec,
        description="Evaluation of the trained model.",
        json_schema_extra={"default": {}},
    )
    auto_promote: bool = Field(
        default=True,
        description="Promote the model when it passes the gauntlet (default true). False ends "
        "the run Complete, leaving promotion to a person.",
    )
    backoff_limit: int = Field(
        default=3,
        ge=0,
        le=20,
        description="Failed pods (export, training, gauntlet shard) retried before the run "
        "Fails (default 3).",
    )
    pending_deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_DEADLINE_SECONDS,
        description="Seconds the run may stay Pending (data, cooldown, node) before it Expires. "
        "Unset: wait as long as it takes.",
    )
    active_deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_DEADLINE_SECONDS,
        description="Seconds from leaving Pending until the run must be done, else it Fails "
        "with DeadlineExceeded. Unset: no limit.",
    )

    @model_validator(mode="after")
    def _check(self) -> TrainingRunSpec:
        if self.nodes > 1 and self.gpus < 1:
            raise ValueError(DISTRIBUTED_MESSAGE)
        return self


class TrainedModel(WireModel):
    """The model file the run produced."""

    model_config = ConfigDict(extra="ignore")

    uri: str = Field(
        min_length=1, max_length=MAX_URI_LENGTH, description="Where the model file is."
    )
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", max_length=64, description="SHA-256 of the file, hex."
    )
    generation: int = Field(
        ge=0, le=1_000_000, description="Model generation; promoted models count upwards."
    )


class GauntletResult(WireModel):
    """Evaluation results, summed over opponents and shards."""

    model_config = ConfigDict(extra="ignore")

    wins: int = Field(default=0, ge=0, le=MAX_GAUNTLET_GAMES, description="Games won.")
    losses: int = Field(default=0, ge=0, le=MAX_GAUNTLET_GAMES, description="Games lost.")
    draws: int = Field(default=0, ge=0, le=MAX_GAUNTLET_GAMES, description="Games drawn.")
    win_rate_percent: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description="(wins + draws/2) / games, in whole percent, rounded down.",
    )
    elo_delta: int | None = Field(
        default=None,
        ge=-MAX_ELO,
        le=MAX_ELO,
        description="Estimated Elo of the new model minus its opponents', rounded.",
    )
    elo_low: int | None = Field(
        default=None, ge=-MAX_ELO, le=MAX_ELO, description="Lower bound of the 95% Elo interval."
    )
    elo_high: int | None = Field(
        default=None, ge=-MAX_ELO, le=MAX_ELO, description="Upper bound of the 95% Elo interval."
    )
    shards_completed: int = Field(
        default=0, ge=0, le=MAX_GAUNTLET_SHARDS, description="Evaluation pods finished."
    )


class TrainingRunStatus(WireModel):
    """What the operator observed and did; written only by the operator."""

    model_config = ConfigDict(extra="ignore")

    observed_generation: int = Field(
        default=0, ge=0, description="metadata.generation this status was computed from."
    )
    phase: TrainingRunPhase = Field(
        default=TrainingRunPhase.PENDING,
        description="Pending, Exporting, Training, Evaluating, Complete, Promoted, Failed, "
        "Expired or Skipped; derived from the conditions.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=MAX_CONDITIONS,
        description="DataReady, Exported, Trained, GauntletPassed, Promoted, Complete, Failed, "
        "Expired and Skipped.",
        json_schema_extra=CONDITIONS_LIST_EXTRA,
    )
    config: ConfigKey | None = Field(default=None, description="Config key, e.g. square8_2p.")
    data_hash: str | None = Field(
        default=None,
        max_length=128,
        pattern=r"^[0-9a-f]+$",
        description="Hash of (config, training data); a run whose hash was trained before is "
        "Skipped.",
    )
    games_used: int = Field(
        default=0, ge=0, le=100_000_000, description="Games in the exported training set."
    )
    node: Name | None = Field(default=None, description="Training node (rank 0 when distributed).")
    nodes: list[Name] = Field(
        default_factory=list,
        max_length=MAX_TRAINING_NODES,
        description="All training nodes, rank order.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    pods: list[Name] = Field(
        default_factory=list,
        max_length=MAX_PODS,
        description="Pods of the current step (export, training ranks or gauntlet shards).",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    model: TrainedModel | None = Field(default=None, description="The trained model.")
    gauntlet: GauntletResult | None = Field(default=None, description="Evaluation results.")
    attempts: int = Field(default=0, ge=0, le=1000, description="Pods started, retries included.")
    start_time: Rfc3339 | None = Field(
        default=None, description="When the run left Pending (RFC 3339)."
    )
    completion_time: Rfc3339 | None = Field(
        default=None, description="When the run reached a terminal phase (RFC 3339)."
    )
    epoch: int = Field(
        default=0, ge=0, description="Leader epoch of the operator that last wrote this status."
    )
    reason: Reason | None = Field(default=None, description="CamelCase reason of the phase.")
    message: Message | None = Field(default=None, description="Human-readable detail.")


class TrainingRun(ResourceBase):
    """TrainingRun trains one board config once enough new games exist, evaluates the model in
    a gauntlet and, if it wins often enough, promotes it."""

    api_version: Literal["ringrift.ai/v1alpha1"] = "ringrift.ai/v1alpha1"
    kind: Literal["TrainingRun"] = "TrainingRun"
    spec: TrainingRunSpec = Field(description="Desired state.")
    status: TrainingRunStatus = Field(
        default_factory=TrainingRunStatus, description="Observed state."
    )


def parse_trainingrun(body: Mapping[str, Any]) -> TrainingRun:
    """Parse a TrainingRun body; raises InvalidResourceError naming each bad field's path."""
    return parse_resource(TrainingRun, body, kind=KIND)


def derive_phase(conditions: Sequence[Condition]) -> TrainingRunPhase:
    """The phase the conditions mean. Precedence: the terminal conditions Promoted > Complete >
    Failed > Expired > Skipped, then progress backwards: Trained → Evaluating, Exported →
    Training, DataReady → Exporting, else Pending."""
    t = TrainingRunConditionType
    for condition_type, phase in (
        (t.PROMOTED, TrainingRunPhase.PROMOTED),
        (t.COMPLETE, TrainingRunPhase.COMPLETE),
        (t.FAILED, TrainingRunPhase.FAILED),
        (t.EXPIRED, TrainingRunPhase.EXPIRED),
        (t.SKIPPED, TrainingRunPhase.SKIPPED),
        (t.TRAINED, TrainingRunPhase.EVALUATING),
        (t.EXPORTED, TrainingRunPhase.TRAINING),
        (t.DATA_READY, TrainingRunPhase.EXPORTING),
    ):
        if is_true(conditions, condition_type):
            return phase
    return TrainingRunPhase.PENDING
