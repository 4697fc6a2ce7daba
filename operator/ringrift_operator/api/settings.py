"""Operator settings: one validated object, read from environment variables (``RINGRIFT_*``) and
an optional YAML/JSON file (the Helm chart's ConfigMap), rejected with a message naming the bad
setting. Built once at startup and passed down; never read from the environment elsewhere.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ringrift_operator.api.common import parse_config_key
from ringrift_operator.api.contract import HOST_DATA_DIR
from ringrift_operator.api.trainingrun import TrainingRunSpec

ENV_PREFIX = "RINGRIFT_"


class SettingsError(ValueError):
    """Invalid operator settings; the message lists every bad setting."""


class WorkloadImageSettings(BaseModel):
    """The workload image and how its pods are made."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str = Field(
        default="ghcr.io/ringrift/ai-service:latest",
        min_length=1,
        description="Image of the RingRift workload (must honour the workload contract).",
    )
    image_pull_policy: str = Field(default="IfNotPresent", pattern="^(Always|IfNotPresent|Never)$")
    data_host_path: str = Field(
        default=HOST_DATA_DIR, description="hostPath of the node-local data directory."
    )
    architectures: tuple[str, ...] = Field(
        default=("amd64", "arm64"), min_length=1, description="Architectures the image runs on."
    )
    commands: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Command per workload script (search-selfplay, gpu-selfplay, export, "
        "training, gauntlet); unset ones use the seed's script names.",
    )


class TrainingSyncSettings(BaseModel):
    """The training-sync loop: a TrainingRun per config once its data is ready."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        default=False, description="Create a TrainingRun for a config whose data is ready."
    )
    interval_seconds: int = Field(default=300, ge=1, le=86_400)
    configs: list[str] = Field(
        default_factory=list,
        description="Configs it trains; empty: the autopilot's enabled_configs (or all).",
    )
    spec: dict[str, Any] = Field(
        default_factory=dict,
        description="TrainingRun spec fields of every run it creates, as in the CRD "
        "(camelCase: minNewGames, cooldownSeconds, gpus, gauntlet…); board and players are set "
        "per config; an unset minNewGames is the board's default (500 small, 200 large boards).",
    )

    @field_validator("configs")
    @classmethod
    def _known_configs(cls, value: list[str]) -> list[str]:
        _check_configs(value)
        return value

    @field_validator("spec")
    @classmethod
    def _spec_is_a_trainingrun_spec(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "board" in value or "players" in value:
            raise ValueError("board and players are set per config; leave them out")
        TrainingRunSpec.model_validate({"board": "square8", **value})
        return value


class SelfHealingSettings(BaseModel):
    """The self-healing loop: stuck pods recovered, node loss and recovery handled."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="Recover stuck work; handle offline nodes.")
    interval_seconds: int = Field(default=30, ge=1, le=86_400)
    pending_pod_deadline_seconds: int = Field(
        default=600, ge=1, description="A pod bound to a node but not started this long is stuck."
    )
    running_pod_deadline_seconds: int = Field(
        default=21_600, ge=1, description="A pod running this long without finishing is stuck."
    )
    host_offline_penalty: int = Field(
        default=3, ge=0, le=100, description="Failures counted against a node that goes NotReady…"
    )
    recovery_forgiveness: int = Field(
        default=2, ge=0, le=100, description="…of which this many are forgiven once it is Ready."
    )


class MonitoringSettings(BaseModel):
    """The predictive-monitoring loop: trends that will cross a threshold within a horizon."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="Forecast trends; warn before thresholds.")
    interval_seconds: int = Field(default=60, ge=1, le=86_400)
    window_seconds: int = Field(
        default=1800, ge=10, description="Samples older than this are dropped from a trend."
    )
    min_samples: int = Field(default=5, ge=2, le=10_000, description="Samples before a forecast.")
    horizon_seconds: int = Field(
        default=3600, ge=1, description="Warn when a threshold will be crossed within this."
    )
    realert_seconds: int = Field(
        default=3600, ge=1, description="One warning per signal this often at most."
    )
    disk_percent_threshold: int = Field(
        default=90, ge=1, le=100, description="Data on a node, % of its ephemeral storage."
    )
    failure_rate_percent_threshold: int = Field(
        default=25, ge=1, le=100, description="Failed of finished SelfplayJobs, %."
    )
    pending_jobs_threshold: int = Field(
        default=100, ge=1, description="Pending SelfplayJobs and TrainingRuns."
    )


class QueueSettings(BaseModel):
    """The queue-population loop: a bounded backlog of Pending autopilot SelfplayJobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval_seconds: int = Field(default=60, ge=1, le=86_400)
    backlog: int = Field(
        default=2, ge=0, le=1000, description="Pending autopilot jobs kept waiting for a GPU."
    )
    max_pending_per_config: int = Field(
        default=1, ge=1, le=1000, description="At most this many of the backlog per config."
    )
    max_age_seconds: int = Field(
        default=3600, ge=60, le=86_400, description="Pending autopilot jobs older are deleted."
    )


class AutopilotSettings(BaseModel):
    """The leader-only loops that keep GPUs busy without anybody creating jobs by hand."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=False, description="Fill idle GPUs with self-play.")
    namespace: str = Field(default="default", description="Where autopilot jobs are created.")
    idle_interval_seconds: int = Field(default=15, ge=1, le=3600)
    games_per_job: int = Field(default=200, ge=1, le=100_000)
    max_new_jobs_per_tick: int = Field(default=32, ge=1, le=1000)
    reap_interval_seconds: int = Field(default=60, ge=1, le=86_400)
    reap_after_seconds: int = Field(
        default=600, ge=0, description="Finished autopilot jobs older than this are deleted…"
    )
    keep_finished: int = Field(default=100, ge=0, description="…beyond the newest this many.")
    priorities: dict[str, int] = Field(
        default_factory=dict, description="Static priority per config key (3-8), e.g. hex8_2p: 7."
    )
    board_overrides: dict[str, int] = Field(
        default_factory=dict, description="Extra priority per config key (0-6)."
    )
    curriculum_weights: dict[str, int] = Field(
        default_factory=dict, description="Curriculum weight per config key (-2..+3)."
    )
    enabled_configs: list[str] = Field(
        default_factory=list, description="Configs self-play may pick; empty: all of them."
    )
    seed: int | None = Field(default=None, description="Seed of the config draws (tests).")
    queue: QueueSettings = Field(default_factory=QueueSettings)
    training: TrainingSyncSettings = Field(default_factory=TrainingSyncSettings)
    healing: SelfHealingSettings = Field(default_factory=SelfHealingSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    elo_sync_interval_seconds: int = Field(default=300, ge=1, le=86_400)
    elo_stagnation_window_seconds: int = Field(
        default=86_400, ge=60, description="A config gaining under 20 Elo in this is stagnating."
    )
    manifest_interval_seconds: int = Field(default=60, ge=1, le=86_400)

    @field_validator("priorities", "board_overrides", "curriculum_weights")
    @classmethod
    def _known_config_keys(cls, value: dict[str, int]) -> dict[str, int]:
        _check_configs(value)
        return value

    @field_validator("enabled_configs")
    @classmethod
    def _known_configs(cls, value: list[str]) -> list[str]:
        _check_configs(value)
        return value


def _check_configs(keys: Any) -> None:
    for key in keys:
        parse_config_key(key)


class OperatorSettings(BaseModel):
    """Everything the operator process is configured with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workload: WorkloadImageSettings = Field(default_factory=WorkloadImageSettings)
    autopilot: AutopilotSettings = Field(default_factory=AutopilotSettings)
    # 64: a placement holds its worker for the pod's create, so a burst is placed as fast as
    # that many creates in flight allow (16 gave a third of kube-scheduler's rate in the bench).
    workers: int = Field(default=64, ge=1, le=256, description="Concurrent reconciles.")
    resync_seconds: int = Field(
        default=30, ge=1, le=3600, description="Every resource is reconciled at least this often."
    )
    history_path: str = Field(
        default="/var/lib/ringrift-operator/history.db",
        description="SQLite history store (job attempts, reputation, Elo, gauntlet games).",
    )
    reputation_window_seconds: int = Field(
        default=3600, ge=60, description="Failures on a node count against it for this long."
    )
    namespace: str = Field(
        default="", description="Watch only this namespace; empty watches all namespaces."
    )
    leader_election: bool = Field(
        default=True, description="Act only while holding the Lease (one active replica)."
    )
    lease_name: str = Field(
        default="ringrift-operator", min_length=1, max_length=253,
        description="The coordination.k8s.io Lease the replicas elect their leader with.",
    )  # fmt: skip
    lease_namespace: str = Field(
        default="", description="Namespace of the Lease; empty: $POD_NAMESPACE, else default."
    )
    lease_duration_seconds: int = Field(
        default=15, ge=5, le=300, description="A leader silent this long loses the Lease."
    )
    watch_stall_seconds: int = Field(
        default=90, ge=5, le=3600,
        description="A watch that receives nothing (no event, no bookmark) this long is "
        "restarted; watch requests end server-side after two thirds of it (at most 60 s) and "
        "are resumed, so a quiet healthy watch is never taken for a stalled one.",
    )  # fmt: skip
    shutdown_timeout_seconds: int = Field(
        default=10, ge=1, le=600,
        description="After SIGTERM the operator exits within this long, gracefully or not "
        "(then with a non-zero status), even when the API server is unreachable.",
    )  # fmt: skip
    http_port: int = Field(
        default=8080, ge=0, le=65535, description="/healthz, /readyz, /metrics, /status (0: off)."
    )
    agent_token_file: str = Field(
        default="/var/run/ringrift/agent-token",
        min_length=1,
        description="File holding the node agents' shared token (a mounted Secret); the "
        "operator presents it when it collects manifests and asks agents to pull.",
    )


def load_settings(
    *, environ: Mapping[str, str] | None = None, file: str | Path | None = None
) -> OperatorSettings:
    """Settings from a file (YAML or JSON) overlaid by ``RINGRIFT_*`` variables.

    Variables map onto fields by name: ``RINGRIFT_WORKERS=32``, ``RINGRIFT_WORKLOAD__IMAGE=…``
    (``__`` descends into a section). Values are parsed as JSON when they parse, else strings.
    """
    env = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = {}
    path = file or env.get(f"{ENV_PREFIX}SETTINGS_FILE")
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise SettingsError(f"cannot read settings file {path}: {e}") from e
        if not isinstance(loaded, dict):
            raise SettingsError(f"settings file {path} must hold a mapping")
        data.update(loaded)
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key == f"{ENV_PREFIX}SETTINGS_FILE":
            continue
        parts = key[len(ENV_PREFIX) :].lower().split("__")
        if parts[0] not in OperatorSettings.model_fields:
            continue  # other RINGRIFT_ variables belong to other programs (agent, workload)
        target = data
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        try:
            target[parts[-1]] = json.loads(raw)
        except ValueError:
            target[parts[-1]] = raw
    try:
        return OperatorSettings.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise SettingsError(f"invalid operator settings: {problems}") from e
