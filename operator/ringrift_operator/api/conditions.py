"""Status conditions: the model, the documented condition types and reasons of every resource,
and the one pure helper that sets a condition.

Reconcilers never edit ``status.conditions`` by hand: they call :func:`set_condition` with the
clock passed in, and derive ``phase``/``state`` from the result (see each kind's module).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from pydantic import ConfigDict, Field
from pydantic.config import JsonDict

from ringrift_operator.api.meta import REASON_PATTERN, Rfc3339, WireModel, rfc3339

MAX_CONDITIONS = 16
MAX_CONDITION_MESSAGE_LENGTH = 4096
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)

# Every list of conditions in every status is a map keyed by type.
CONDITIONS_LIST_EXTRA: JsonDict = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


class ConditionStatus(StrEnum):
    """Whether a condition holds."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(WireModel):
    """One aspect of the resource's state, as in the Kubernetes API conventions."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: str = Field(
        min_length=1,
        max_length=316,
        pattern=CONDITION_TYPE_PATTERN,
        description="Condition type in CamelCase, e.g. Scheduled; unique within the list.",
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=REASON_PATTERN,
        description="Machine-readable CamelCase reason for the last transition.",
    )
    message: str = Field(
        default="",
        max_length=MAX_CONDITION_MESSAGE_LENGTH,
        description="Human-readable details; may be empty.",
    )
    last_transition_time: Rfc3339 = Field(
        description="When the status last changed (RFC 3339). Unchanged while the status stays "
        "the same, even if reason or message change.",
    )
    observed_generation: int = Field(
        default=0,
        ge=0,
        description="metadata.generation of the spec this condition was computed from.",
    )


# --- Condition types and reasons, per resource ---------------------------------------------


class SelfplayJobConditionType(StrEnum):
    """Condition types of a SelfplayJob."""

    SCHEDULED = "Scheduled"  # a node was chosen and the attempt's pod bound to it
    RUNNING = "Running"  # the attempt's pod is running
    COMPLETE = "Complete"  # the requested games were written (terminal)
    FAILED = "Failed"  # attempts exhausted, deadline passed or bad input (terminal)
    EXPIRED = "Expired"  # no node could take the job within dispatchTimeoutSeconds (terminal)
    SUSPENDED = "Suspended"  # spec.suspend is true: no pod runs


class SelfplayJobReason(StrEnum):
    """Reasons on SelfplayJob conditions."""

    WAITING_FOR_NODE = "WaitingForNode"  # Scheduled=False: no node passes the filters yet
    POD_REJECTED = "PodRejected"  # Scheduled=False: the API server refused the attempt's pod
    NODE_SELECTED = "NodeSelected"  # Scheduled=True
    POD_CREATED = "PodCreated"  # Running=False: bound, container not started yet
    POD_RUNNING = "PodRunning"  # Running=True
    POD_SUCCEEDED = "PodSucceeded"  # Complete=True
    POD_FAILED = "PodFailed"  # Running=False: the attempt failed; another may follow
    NODE_LOST = "NodeLost"  # the node went NotReady or away during an attempt
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"  # Failed=True
    DEADLINE_EXCEEDED = "DeadlineExceeded"  # Failed=True: activeDeadlineSeconds passed
    DISPATCH_TIMEOUT = "DispatchTimeout"  # Expired=True
    INVALID_SPEC = "InvalidSpec"  # Failed=True: the spec cannot be run
    BAD_INPUT = "BadInput"  # Failed=True: the workload rejected its input (exit code 2)
    SUSPENDED = "Suspended"  # Suspended=True
    RESUMED = "Resumed"  # Suspended=False


class TrainingRunConditionType(StrEnum):
    """Condition types of a TrainingRun, in the order a run earns them."""

    DATA_READY = "DataReady"  # enough new games, cooldown over, no duplicate data hash
    EXPORTED = "Exported"  # games exported into a training set
    TRAINED = "Trained"  # a model was trained from it
    GAUNTLET_PASSED = "GauntletPassed"  # True/False once evaluated; Unknown while evaluating
    PROMOTED = "Promoted"  # the model became the config's promoted model (terminal)
    COMPLETE = "Complete"  # finished without promotion (terminal)
    FAILED = "Failed"  # a step failed beyond its retries (terminal)
    EXPIRED = "Expired"  # stayed Pending past pendingDeadlineSeconds (terminal)
    SKIPPED = "Skipped"  # the same data was already trained on (terminal)


class TrainingRunReason(StrEnum):
    """Reasons on TrainingRun conditions."""

    NOT_ENOUGH_GAMES = "NotEnoughGames"  # DataReady=False
    COOLDOWN = "Cooldown"  # DataReady=False: the config trained less than cooldownSeconds ago
    WAITING_FOR_NODE = "WaitingForNode"  # no node with the GPUs and memory is free
    DATA_READY = "DataReady"  # DataReady=True
    DUPLICATE_DATA = "DuplicateData"  # Skipped=True
    EXPORTING = "Exporting"
    EXPORT_SUCCEEDED = "ExportSucceeded"
    TRAINING = "Training"
    TRAINING_SUCCEEDED = "TrainingSucceeded"
    EVALUATING = "Evaluating"  # GauntletPassed=Unknown
    WIN_RATE_ABOVE_THRESHOLD = "WinRateAboveThreshold"  # GauntletPassed=True
    WIN_RATE_BELOW_THRESHOLD = "WinRateBelowThreshold"  # GauntletPassed=False
    PROMOTED = "Promoted"  # Promoted=True
    AUTO_PROMOTE_DISABLED = "AutoPromoteDisabled"  # Complete=True after a passed gauntlet
    NOT_PROMOTED = "NotPromoted"  # Complete=True after a failed gauntlet
    POD_FAILED = "PodFailed"
    NODE_LOST = "NodeLost"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"  # Failed=True
    DEADLINE_EXCEEDED = "DeadlineExceeded"  # Failed=True or Expired=True
    INVALID_SPEC = "InvalidSpec"  # Failed=True


class SyncPlanConditionType(StrEnum):
    """Condition types of a SyncPlan."""

    MANIFESTS_COLLECTED = "ManifestsCollected"  # Unknown while collecting, True when fresh
    SYNCED = "Synced"  # every target has every file of the configs
    RETRYING = "Retrying"  # waiting until status.retryAfter before the next round


class SyncPlanReason(StrEnum):
    """Reasons on SyncPlan conditions."""

    COLLECTING = "Collecting"  # ManifestsCollected=Unknown
    COLLECTED = "Collected"  # ManifestsCollected=True
    MANIFESTS_EXPIRED = "ManifestsExpired"  # ManifestsCollected=False: older than the max age
    NO_TARGETS = "NoTargets"  # no node matches spec.targets
    NO_PEERS = "NoPeers"  # no agent answered
    TRANSFERS_PENDING = "TransfersPending"  # Synced=False
    ALL_FILES_PRESENT = "AllFilesPresent"  # Synced=True
    TRANSFER_FAILED = "TransferFailed"  # Retrying=True
    PEER_UNREACHABLE = "PeerUnreachable"  # Retrying=True when no peer answered at all
    RECOVERED = "Recovered"  # Retrying=False


# --- The helper -------------------------------------------------------------------------------


def set_condition(
    conditions: Sequence[Condition],
    *,
    type: str,
    status: ConditionStatus | str,
    reason: str,
    message: str = "",
    generation: int,
    now: datetime | str,
) -> list[Condition]:
    """Return a new list with condition ``type`` set; the input is not changed.

    The condition replaces the one of the same type in place (or is appended). Its
    ``lastTransitionTime`` is ``now`` when the status changes or the condition is new, and is
    kept when only reason, message or generation change. Messages longer than the schema allows
    are cut. ``now`` is an aware datetime or an RFC 3339 string: the caller owns the clock.
    """
    status = ConditionStatus(status)
    existing = get_condition(conditions, type)
    if existing is not None and existing.status is status:
        transition = existing.last_transition_time
    else:
        transition = rfc3339(now)
    if len(message) > MAX_CONDITION_MESSAGE_LENGTH:
        message = message[: MAX_CONDITION_MESSAGE_LENGTH - 1] + "…"
    new = Condition(
        type=type,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=transition,
        observed_generation=generation,
    )
    if existing is None:
        return [*conditions, new]
    return [new if c.type == type else c for c in conditions]


def update_condition(
    conditions: Sequence[Condition],
    *,
    type: str,
    status: ConditionStatus | str,
    reason: str,
    message: str = "",
    generation: int,
    now: datetime | str,
) -> tuple[list[Condition], bool]:
    """:func:`set_condition`, plus whether the condition's status or reason changed — the
    transitions a reconciler reports as Events (a new message alone is not one)."""
    before = get_condition(conditions, type)
    after = set_condition(conditions, type=type, status=status, reason=reason, message=message,
                          generation=generation, now=now)  # fmt: skip
    changed = before is None or before.status != ConditionStatus(status) or before.reason != reason
    return after, changed


def get_condition(conditions: Sequence[Condition], type: str) -> Condition | None:
    """The condition of this type, or None."""
    return next((c for c in conditions if c.type == type), None)


def is_true(conditions: Sequence[Condition], type: str) -> bool:
    """Whether the condition of this type exists with status True."""
    condition = get_condition(conditions, type)
    return condition is not None and condition.status is ConditionStatus.TRUE
