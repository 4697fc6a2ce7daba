"""The workload contract: what the operator hands a workload container and what it reads back.

Single source for the env var names, the node data layout and the termination-message shape.
Used by the pod builders (``managers.jobs``), the sample workload (``workload``), the sandbox's
workload simulator and the reconcilers that parse results. Documented in docs/workload-contract.md.
"""

from __future__ import annotations

import json
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class JobKind(StrEnum):
    """What a workload pod is asked to do."""

    SELFPLAY = "selfplay"
    EXPORT = "export"
    TRAINING = "training"
    GAUNTLET = "gauntlet"


class Env:
    """Names of the environment variables every workload container receives."""

    JOB_KIND = "RINGRIFT_JOB_KIND"  # a JobKind value
    JOB_NAME = "RINGRIFT_JOB_NAME"  # the owning resource's name
    CONFIG = "RINGRIFT_CONFIG"  # config key, e.g. "square8_2p"
    BOARD = "RINGRIFT_BOARD"
    PLAYERS = "RINGRIFT_PLAYERS"
    ENGINE_MODE = "RINGRIFT_ENGINE_MODE"  # selfplay only
    GAMES = "RINGRIFT_GAMES"  # selfplay: games to play; gauntlet: games of this shard
    MODEL_PATH = "RINGRIFT_MODEL_PATH"  # model to play with / to start training from ("" = none)
    OPPONENTS = "RINGRIFT_OPPONENTS"  # gauntlet: comma-separated opponent model paths or names
    SEED = "RINGRIFT_SEED"  # deterministic seed for this attempt
    DATA_DIR = "RINGRIFT_DATA_DIR"  # the node-local data directory (games, training sets, models)
    OUTPUT_DIR = "RINGRIFT_OUTPUT_DIR"  # where this attempt writes its outputs (under DATA_DIR)
    EPOCH = "RINGRIFT_EPOCH"  # the leader epoch that created the pod
    ATTEMPT = "RINGRIFT_ATTEMPT"  # 1-based attempt number
    SHARD = "RINGRIFT_SHARD"  # gauntlet / distributed training: this pod's index
    SHARDS = "RINGRIFT_SHARDS"  # number of pods in the group
    # Distributed training (torchrun-style rendezvous).
    MASTER_ADDR = "MASTER_ADDR"
    MASTER_PORT = "MASTER_PORT"
    WORLD_SIZE = "WORLD_SIZE"
    NODE_RANK = "NODE_RANK"


# Node-local data layout, relative to DATA_DIR. Games are what SyncPlan moves between nodes.
GAMES_SUBDIR = "games"  # games/<config>/<file>.jsonl
TRAINING_SUBDIR = "training"  # training/<config>/<dataset>.npz-like files
MODELS_SUBDIR = "models"  # models/<config>/<model>.pt-like files
CONTAINER_DATA_DIR = "/data"  # where DATA_DIR is mounted inside a workload container
HOST_DATA_DIR = "/var/lib/ringrift"  # default hostPath of the data directory on a node
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
TERMINATION_MESSAGE_MAX_BYTES = 4096  # the kubelet's limit

# Exit codes with a meaning beyond "failed".
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2  # the workload rejected its environment: retrying will not help


class ModelRef(BaseModel):
    """A model file produced by training."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    uri: str = Field(description="Where the model file is, e.g. file:///data/models/sq8_2p/g3.pt")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the model file")
    generation: int = Field(ge=0, description="Model generation (promoted models count upwards)")


class WorkloadResult(BaseModel):
    """The JSON a workload writes to its termination message. Every field is optional so that
    one shape serves every job kind; unknown keys are ignored for forward compatibility."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    kind: JobKind | None = None
    games_written: int | None = Field(default=None, ge=0, alias="gamesWritten")
    files: list[str] = Field(default_factory=list, description="Output files, relative to DATA_DIR")
    samples: int | None = Field(default=None, ge=0, description="Export: training samples written")
    model: ModelRef | None = None
    wins: int | None = Field(default=None, ge=0)
    losses: int | None = Field(default=None, ge=0)
    draws: int | None = Field(default=None, ge=0)
    message: str = ""

    def to_message(self) -> str:
        """Serialise for the termination log, within the kubelet's size limit."""
        text = self.model_dump_json(by_alias=True, exclude_none=True, exclude_defaults=True)
        if len(text.encode()) > TERMINATION_MESSAGE_MAX_BYTES:
            trimmed = self.model_copy(update={"files": self.files[:20], "message": ""})
            text = trimmed.model_dump_json(by_alias=True, exclude_none=True, exclude_defaults=True)
        return text


def parse_result(message: str | None) -> WorkloadResult | None:
    """Parse a termination message; None when absent or not the contract's JSON."""
    if not message:
        return None
    try:
        return WorkloadResult.model_validate(json.loads(message))
    except (ValueError, ValidationError):
        return None
