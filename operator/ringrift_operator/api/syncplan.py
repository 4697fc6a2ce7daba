"""The SyncPlan resource: keep training nodes supplied with the games other nodes produced.

Spec, status, the resource wrapper, ``parse_syncplan`` and ``derive_state``. Read by the
SyncPlan reconciler and the training-sync loop; ``crdgen`` builds the CRD.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from ringrift_operator.api.common import ALL_CONFIG_KEYS
from ringrift_operator.api.conditions import (
    CONDITIONS_LIST_EXTRA,
    MAX_CONDITIONS,
    Condition,
    ConditionStatus,
    SyncPlanConditionType,
    get_condition,
    is_true,
)
from ringrift_operator.api.meta import (
    LABEL_KEYS_RULE,
    MAX_LABELS,
    MAX_MESSAGE_LENGTH,
    ConfigKey,
    LabelKey,
    LabelValue,
    Message,
    Name,
    Reason,
    ResourceBase,
    Rfc3339,
    WireModel,
    parse_resource,
)

KIND = "SyncPlan"
PLURAL = "syncplans"
SHORT_NAMES = ("sp",)
MAX_TARGET_NODES = 64
MAX_PEERS = 256
MAX_TRANSFERS = 256
MAX_FILES = 10_000_000
MAX_BYTES = 2**53  # exact in every JSON implementation

TARGETS_MESSAGE = "spec.targets must set exactly one of nodeNames, selector, topTrainingNodes"


class SyncPlanState(StrEnum):
    """Summary of a SyncPlan's conditions, for humans and printer columns."""

    IDLE = "Idle"
    COLLECTING = "Collecting"
    SYNCING = "Syncing"
    SYNCED = "Synced"
    RETRY = "Retry"


class TransferState(StrEnum):
    """Progress of one transfer (one pull by a target's agent)."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class LabelSelector(WireModel):
    """Selects nodes by labels."""

    match_labels: dict[LabelKey, LabelValue] = Field(
        min_length=1,
        max_length=MAX_LABELS,
        description=f"Node labels that must all match; 1-{MAX_LABELS} entries.",
        json_schema_extra={"x-kubernetes-validations": [LABEL_KEYS_RULE]},
    )


class SyncTargets(WireModel):
    """Which nodes receive the games: exactly one of the three ways."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "[has(self.nodeNames), has(self.selector), "
                    "has(self.topTrainingNodes)].filter(x, x).size() == 1",
                    "message": TARGETS_MESSAGE,
                }
            ]
        }
    )

    node_names: list[Name] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_TARGET_NODES,
        description=f"These nodes, by name (1-{MAX_TARGET_NODES}). Missing nodes are skipped.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    selector: LabelSelector | None = Field(
        default=None, description="Every Ready node whose labels match."
    )
    top_training_nodes: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TARGET_NODES,
        description="The N best nodes for training, as the operator ranks them at each round "
        "(GPU power, free memory, reputation).",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> SyncTargets:
        chosen = [self.node_names, self.selector, self.top_training_nodes]
        if sum(v is not None for v in chosen) != 1:
            raise ValueError(TARGETS_MESSAGE)
        if self.node_names is not None and len(set(self.node_names)) != len(self.node_names):
            raise ValueError("spec.targets.nodeNames must not repeat")
        return self


class SyncPlanSpec(WireModel):
    """Which games go where, in what batches, how often."""

    configs: list[ConfigKey] = Field(
        min_length=1,
        max_length=len(ALL_CONFIG_KEYS),
        description="Config keys whose games are synced, e.g. square8_2p (board_players).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    targets: SyncTargets = Field(description="The nodes that must end up with the games.")
    max_files_per_job: int = Field(
        default=50,
        ge=1,
        le=1000,
        description="Files one transfer (one pull by a target's agent) moves at most (default 50).",
    )
    mtime_tolerance_seconds: int = Field(
        default=60,
        ge=0,
        le=3600,
        description="A target's copy counts as current when its mtime is within this many "
        "seconds of the source's (clock skew; default 60).",
    )
    manifest_max_age_seconds: int = Field(
        default=300,
        ge=10,
        le=86_400,
        description="Node manifests older than this are collected again before planning "
        "(default 300).",
    )
    interval_seconds: int = Field(
        default=0,
        ge=0,
        le=7 * 86_400,
        description="Seconds between rounds once Synced. 0 (the default) syncs once.",
    )

    @model_validator(mode="after")
    def _unique_configs(self) -> SyncPlanSpec:
        if len(set(self.configs)) != len(self.configs):
            raise ValueError("spec.configs must not repeat")
        return self


class PeerStatus(WireModel):
    """What one node's agent reported in its manifest."""

    model_config = ConfigDict(extra="ignore")

    node: Name = Field(description="Node name.")
    files: int = Field(default=0, ge=0, le=MAX_FILES, description="Game files of the configs.")
    total_bytes: int = Field(
        default=0, ge=0, le=MAX_BYTES, alias="bytes", description="Their size in bytes."
    )
    manifest_age_seconds: int | None = Field(
        default=None, ge=0, description="Age of the manifest when planning, in seconds."
    )
    error: str | None = Field(
        default=None,
        max_length=MAX_MESSAGE_LENGTH,
        description="Why the manifest could not be collected. A failing peer never fails the "
        "plan; its files are skipped this round.",
    )


class Transfer(WireModel):
    """One batch of files one target pulls from one source."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(
        min_length=1, max_length=MAX_MESSAGE_LENGTH // 4, description="Unique transfer name."
    )
    target: Name = Field(description="Node that pulls.")
    source: Name = Field(description="Node pulled from.")
    files: int = Field(default=0, ge=0, le=1000, description="Files in the batch.")
    total_bytes: int = Field(
        default=0, ge=0, le=MAX_BYTES, alias="bytes", description="Bytes in the batch."
    )
    state: TransferState = Field(
        default=TransferState.PENDING, description="Pending, Running, Succeeded or Failed."
    )
    message: Message | None = Field(default=None, description="Error of a Failed transfer.")


class SyncPlanStatus(WireModel):
    """What the operator observed and did; written only by the operator."""

    model_config = ConfigDict(extra="ignore")

    observed_generation: int = Field(
        default=0, ge=0, description="metadata.generation this status was computed from."
    )
    state: SyncPlanState = Field(
        default=SyncPlanState.IDLE,
        description="Idle, Collecting, Syncing, Synced or Retry; derived from the conditions.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=MAX_CONDITIONS,
        description="ManifestsCollected, Synced and Retrying.",
        json_schema_extra=CONDITIONS_LIST_EXTRA,
    )
    target_nodes: list[Name] = Field(
        default_factory=list,
        max_length=MAX_TARGET_NODES,
        description="The nodes spec.targets resolved to in the current round.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    peers: list[PeerStatus] = Field(
        default_factory=list,
        max_length=MAX_PEERS,
        description="One entry per node whose manifest was asked for.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["node"]},
    )
    missing_files: int = Field(
        default=0, ge=0, le=MAX_FILES, description="Files some target still lacks."
    )
    transfers: list[Transfer] = Field(
        default_factory=list,
        max_length=MAX_TRANSFERS,
        description="Transfers of the current round.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    files_synced: int = Field(
        default=0, ge=0, le=MAX_FILES, description="Files copied since the plan was created."
    )
    bytes_synced: int = Field(
        default=0, ge=0, le=MAX_BYTES, description="Bytes copied since the plan was created."
    )
    retry_after: Rfc3339 | None = Field(
        default=None,
        description="While Retry: the next round starts at this time (backoff 1 s doubling to "
        "30 s).",
    )
    attempts: int = Field(
        default=0, ge=0, le=1_000_000, description="Consecutive failed rounds (resets on success)."
    )
    last_sync_time: Rfc3339 | None = Field(
        default=None, description="When the plan was last Synced (RFC 3339)."
    )
    epoch: int = Field(
        default=0, ge=0, description="Leader epoch of the operator that last wrote this status."
    )
    reason: Reason | None = Field(default=None, description="CamelCase reason of the state.")
    message: Message | None = Field(default=None, description="Human-readable detail.")


class SyncPlan(ResourceBase):
    """SyncPlan keeps training nodes supplied with the game files other nodes produced, by
    diffing the node agents' manifests and asking targets to pull what they lack."""

    api_version: Literal["ringrift.ai/v1alpha1"] = "ringrift.ai/v1alpha1"
    kind: Literal["SyncPlan"] = "SyncPlan"
    spec: SyncPlanSpec = Field(description="Desired state.")
    status: SyncPlanStatus = Field(default_factory=SyncPlanStatus, description="Observed state.")


def parse_syncplan(body: Mapping[str, Any]) -> SyncPlan:
    """Parse a SyncPlan body; raises InvalidResourceError naming each bad field's path."""
    return parse_resource(SyncPlan, body, kind=KIND)


def derive_state(conditions: Sequence[Condition]) -> SyncPlanState:
    """The state the conditions mean. Precedence: Retrying=True → Retry; Synced=True → Synced;
    ManifestsCollected=True → Syncing; ManifestsCollected=Unknown → Collecting; otherwise (no
    round yet, or the manifests expired) → Idle."""
    t = SyncPlanConditionType
    if is_true(conditions, t.RETRYING):
        return SyncPlanState.RETRY
    if is_true(conditions, t.SYNCED):
        return SyncPlanState.SYNCED
    collected = get_condition(conditions, t.MANIFESTS_COLLECTED)
    if collected is None or collected.status is ConditionStatus.FALSE:
        return SyncPlanState.IDLE
    if collected.status is ConditionStatus.TRUE:
        return SyncPlanState.SYNCING
    return SyncPlanState.COLLECTING
