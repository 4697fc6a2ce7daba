"""The JobManager's pure parts: which script runs, what pod runs it, how jobs move and go stale.

Called by the SelfplayJob and TrainingRun reconcilers (pod builders, phase transitions, retries),
the job reaper loop (stale pods) and the placement step (jobs per node). The pods built here are
plain Kubernetes JSON that honours the workload contract (``api.contract``); creating and binding
them is ``kube``'s business.

The job lifecycle is the seed's state machine::

    Pending --dispatch--> Running --succeed--> Complete --promote--> Promoted
    Pending --timeout---> Expired   (not dispatched within the dispatch timeout, 5 min)
    Pending --reject----> Failed    (bad input: retrying will not help)
    Running --fail------> Failed
    Running --retry-----> Pending   (an attempt failed and attempts remain)
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from ringrift_operator.api.common import (
    ANNOTATION_EPOCH,
    GPU_ENGINE_MODES,
    LABEL_ATTEMPT,
    LABEL_CONFIG,
    LABEL_JOB_KIND,
    LABEL_MANAGED_BY,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
    OPERATOR_NAME,
    SEARCH_ENGINE_MODES,
    EngineMode,
    parse_config_key,
)
from ringrift_operator.api.contract import (
    CONTAINER_DATA_DIR,
    EXIT_BAD_INPUT,
    HOST_DATA_DIR,
    TERMINATION_MESSAGE_PATH,
    Env,
    JobKind,
)
from ringrift_operator.managers.gpus import GpuClass
from ringrift_operator.managers.nodes import (
    GPU_RESOURCE,
    LABEL_ARCH,
    NodeInfo,
    Toleration,
)
from ringrift_operator.managers.pods import PodInfo, PodPhase
from ringrift_operator.managers.ranking import (
    GPU_TOLERATION,
    TRAINING_MIN_MEMORY_GIB,
    Demand,
)

__all__ = [
    "DEFAULT_DISPATCH_TIMEOUT_SECONDS",
    "DEFAULT_HEARTBEAT_TIMEOUT_SECONDS",
    "DEFAULT_IMAGE",
    "DEFAULT_RESOURCES",
    "DEFAULT_SCRIPTS",
    "KIND_ABBREVIATIONS",
    "NONROOT_ID",
    "Attempt",
    "Distributed",
    "IllegalTransition",
    "JobEvent",
    "JobPhase",
    "OwnerRef",
    "PodResources",
    "Profile",
    "SelfplayFlavor",
    "StalePod",
    "StaleReason",
    "WorkloadScript",
    "WorkloadSettings",
    "allowed_events",
    "attempt_seed",
    "build_demand",
    "build_export_pod",
    "build_gauntlet_pod",
    "build_selfplay_pod",
    "build_training_pod",
    "count_jobs_per_node",
    "decide_failed_attempt",
    "decide_selfplay_flavor",
    "detect_stale_pods",
    "is_dispatch_expired",
    "is_finished",
    "is_terminal",
    "label_value",
    "pod_name",
    "script_for",
    "transition",
    "with_running_jobs",
]

JsonDict = dict[str, Any]

DEFAULT_DISPATCH_TIMEOUT_SECONDS = 300  # the seed expires jobs not dispatched within 5 minutes
DEFAULT_HEARTBEAT_TIMEOUT_SECONDS = 300  # the seed's stale-job threshold: 5 min without progress
DEFAULT_IMAGE = (
    "ghcr.io/ringrift/ai-service:latest"  # the user's RingRift image; set it per install
)
NONROOT_ID = 65532  # the conventional "nonroot" uid/gid of distroless-style images
CONTAINER_NAME = "workload"
DNS_LABEL_MAX = 63
GAUNTLET_SUBDIR = "gauntlet"  # gauntlet outputs (game records); results travel in the message


# --- Engine-mode routing and settings ---------------------------------------------------------


class WorkloadScript(StrEnum):
    """The workload entry points the operator runs, one per job kind (two for self-play)."""

    SEARCH_SELFPLAY = "search-selfplay"
    GPU_SELFPLAY = "gpu-selfplay"
    EXPORT = "export"
    TRAINING = "training"
    GAUNTLET = "gauntlet"


# The seed's script names, run with the image's Python.
DEFAULT_SCRIPTS: Mapping[WorkloadScript, tuple[str, ...]] = MappingProxyType(
    {
        WorkloadScript.SEARCH_SELFPLAY: ("python3", "scripts/generate_gumbel_selfplay.py"),
        WorkloadScript.GPU_SELFPLAY: ("python3", "scripts/run_gpu_selfplay.py"),
        WorkloadScript.EXPORT: ("python3", "scripts/export_replay_dataset.py"),
        WorkloadScript.TRAINING: ("python3", "scripts/train.py"),
        WorkloadScript.GAUNTLET: ("python3", "scripts/run_model_comparison_tournament.py"),
    }
)


def script_for(kind: JobKind, *, engine_mode: EngineMode | None = None) -> WorkloadScript:
    """The seed's routing: search engine modes run the search self-play script; random, heuristic
    and nnue-guided run the GPU self-play script. Other kinds have one script each."""
    if kind is JobKind.SELFPLAY:
        if engine_mode is None:
            raise ValueError("a selfplay job needs an engine mode to choose its script")
        if engine_mode in SEARCH_ENGINE_MODES:
            return WorkloadScript.SEARCH_SELFPLAY
        return WorkloadScript.GPU_SELFPLAY
    return {
        JobKind.EXPORT: WorkloadScript.EXPORT,
        JobKind.TRAINING: WorkloadScript.TRAINING,
        JobKind.GAUNTLET: WorkloadScript.GAUNTLET,
    }[kind]


class SelfplayFlavor(StrEnum):
    """The seed's three kinds of self-play pod."""

    GPU = "gpu"  # simple engines on a GPU
    HYBRID = "hybrid"  # search engines: tree search on CPU, network evaluation on a GPU
    CPU = "cpu"  # no GPU (heuristic / random play)


def decide_selfplay_flavor(*, engine_mode: EngineMode, gpus: int) -> SelfplayFlavor:
    """CPU when no GPU is asked for; hybrid for search engines with a GPU; GPU otherwise.

    Raises ValueError for an engine that evaluates a network but is given no GPU.
    """
    if gpus <= 0:
        if engine_mode in GPU_ENGINE_MODES:
            raise ValueError(f"engine mode {engine_mode.value} needs a GPU (gpus >= 1)")
        return SelfplayFlavor.CPU
    if engine_mode in SEARCH_ENGINE_MODES:
        return SelfplayFlavor.HYBRID
    return SelfplayFlavor.GPU


class Profile(StrEnum):
    """Resource profiles: one per job kind, self-play split by flavor."""

    SELFPLAY_GPU = "selfplay-gpu"
    SELFPLAY_HYBRID = "selfplay-hybrid"
    SELFPLAY_CPU = "selfplay-cpu"
    EXPORT = "export"
    TRAINING = "training"
    GAUNTLET = "gauntlet"


_SELFPLAY_PROFILES: Mapping[SelfplayFlavor, Profile] = MappingProxyType(
    {
        SelfplayFlavor.GPU: Profile.SELFPLAY_GPU,
        SelfplayFlavor.HYBRID: Profile.SELFPLAY_HYBRID,
        SelfplayFlavor.CPU: Profile.SELFPLAY_CPU,
    }
)


@dataclass(frozen=True, slots=True)
class PodResources:
    """CPU and memory a workload container requests (memory is also its limit)."""

    cpu_millis: int
    memory_mib: int


DEFAULT_RESOURCES: Mapping[Profile, PodResources] = MappingProxyType(
    {
        Profile.SELFPLAY_GPU: PodResources(cpu_millis=2000, memory_mib=8192),
        Profile.SELFPLAY_HYBRID: PodResources(cpu_millis=8000, memory_mib=16384),
        Profile.SELFPLAY_CPU: PodResources(cpu_millis=4000, memory_mib=4096),
        Profile.EXPORT: PodResources(cpu_millis=2000, memory_mib=8192),
        Profile.TRAINING: PodResources(cpu_millis=4000, memory_mib=8192),
        Profile.GAUNTLET: PodResources(cpu_millis=2000, memory_mib=8192),
    }
)


@dataclass(frozen=True, slots=True)
class WorkloadSettings:
    """How workload pods are made: image, commands, data directory, resources, architectures.

    ``commands`` and ``resources`` may name only the entries that differ from the defaults.
    """

    image: str = DEFAULT_IMAGE
    image_pull_policy: str = "IfNotPresent"  # Always | IfNotPresent | Never
    image_pull_secrets: tuple[str, ...] = ()
    commands: Mapping[WorkloadScript, tuple[str, ...]] = field(default_factory=dict)
    data_host_path: str = HOST_DATA_DIR  # hostPath of the node-local data directory
    resources: Mapping[Profile, PodResources] = field(default_factory=dict)
    allowed_archs: tuple[str, ...] = ("amd64",)  # architectures the image is built for

    def command(self, script: WorkloadScript) -> list[str]:
        return list(self.commands.get(script) or DEFAULT_SCRIPTS[script])

    def resources_for(self, profile: Profile) -> PodResources:
        return self.resources.get(profile) or DEFAULT_RESOURCES[profile]


# --- Pod identity -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OwnerRef:
    """The resource a pod belongs to (a SelfplayJob or a TrainingRun)."""

    api_version: str
    kind: str
    name: str
    uid: str

    def to_dict(self) -> JsonDict:
        """The controller owner reference: garbage collection deletes the pod with its owner."""
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


KIND_ABBREVIATIONS: Mapping[JobKind, str] = MappingProxyType(
    {
        JobKind.SELFPLAY: "sp",
        JobKind.EXPORT: "ex",
        JobKind.TRAINING: "tr",
        JobKind.GAUNTLET: "ga",
    }
)

_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_NOT_LABEL_VALUE = re.compile(r"[^A-Za-z0-9._-]+")


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def pod_name(*, owner: str, kind: JobKind, attempt: int, shard: int | None = None) -> str:
    """``{owner}-{kind}-{attempt}[-{shard}]``: deterministic, so a retried create finds the pod it
    already made, and a valid DNS-1123 label of at most 63 characters. A long or non-DNS owner name
    is shortened and gets a short stable hash of the original, so distinct owners stay distinct."""
    suffix = f"-{KIND_ABBREVIATIONS[kind]}-{attempt}" + (f"-{shard}" if shard is not None else "")
    base = _NOT_DNS.sub("-", owner.lower()).strip("-")
    if base != owner or len(base) + len(suffix) > DNS_LABEL_MAX:
        room = DNS_LABEL_MAX - len(suffix) - 7  # "-" + 6 hex digits
        base = f"{base[:room].rstrip('-')}-{_short_hash(owner)}".lstrip("-")
    return base + suffix


def label_value(text: str) -> str:
    """``text`` as a valid label value: unchanged when it is one, else shortened/cleaned with a
    short stable hash (owner names may be DNS subdomains of up to 253 characters)."""
    clean = _NOT_LABEL_VALUE.sub("-", text).strip("-._")
    if clean == text and len(text) <= DNS_LABEL_MAX:
        return text
    room = DNS_LABEL_MAX - 7
    return f"{clean[:room].rstrip('-._')}-{_short_hash(text)}".lstrip("-")


def attempt_seed(*, owner_uid: str, attempt: int) -> int:
    """A deterministic 31-bit seed per attempt: a retry plays different games, a re-created pod
    of the same attempt the same ones."""
    digest = hashlib.sha256(f"{owner_uid}/{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass(frozen=True, slots=True)
class Attempt:
    """What every pod of one attempt of one job shares."""

    owner: OwnerRef
    namespace: str
    config: str  # config key, e.g. "square8_2p"
    number: int  # 1-based attempt number
    epoch: int  # the leader epoch creating the pod
    tolerations: tuple[Toleration, ...] = ()  # placement.tolerations of the job
    node_selector: Mapping[str, str] = field(default_factory=dict)  # placement.nodeSelector
    active_deadline_seconds: int | None = None

    @property
    def seed(self) -> int:
        return attempt_seed(owner_uid=self.owner.uid, attempt=self.number)


@dataclass(frozen=True, slots=True)
class Distributed:
    """torchrun-style rendezvous of one pod of a multi-node training."""

    master_addr: str
    world_size: int
    node_rank: int
    master_port: int = 29500


# --- Pod builders -----------------------------------------------------------------------------


def build_selfplay_pod(
    *,
    attempt: Attempt,
    settings: WorkloadSettings,
    engine_mode: EngineMode,
    games: int,
    gpus: int,
    model_path: str = "",
) -> JsonDict:
    """A self-play pod: GPU, hybrid (GPU + more CPU) or CPU heuristic (gpus = 0)."""
    profile = _SELFPLAY_PROFILES[decide_selfplay_flavor(engine_mode=engine_mode, gpus=gpus)]
    return _build_pod(
        attempt=attempt,
        settings=settings,
        kind=JobKind.SELFPLAY,
        script=script_for(JobKind.SELFPLAY, engine_mode=engine_mode),
        profile=profile,
        gpus=max(0, gpus),
        output_dir=CONTAINER_DATA_DIR,  # the workload lays out games/, training/, … itself
        env={
            Env.ENGINE_MODE: engine_mode.value,
            Env.GAMES: str(games),
            Env.MODEL_PATH: model_path,
            Env.SEED: str(attempt.seed),
        },
    )


def build_export_pod(*, attempt: Attempt, settings: WorkloadSettings) -> JsonDict:
    """An export pod (CPU only): games of the config → a training dataset."""
    return _build_pod(
        attempt=attempt,
        settings=settings,
        kind=JobKind.EXPORT,
        script=WorkloadScript.EXPORT,
        profile=Profile.EXPORT,
        gpus=0,
        output_dir=CONTAINER_DATA_DIR,  # the workload lays out games/, training/, … itself
        env={Env.SEED: str(attempt.seed)},
    )


def build_training_pod(
    *,
    attempt: Attempt,
    settings: WorkloadSettings,
    gpus: int = 1,
    model_path: str = "",
    distributed: Distributed | None = None,
) -> JsonDict:
    """A training pod; with ``distributed`` one rank of a multi-node training (named by rank)."""
    env = {Env.MODEL_PATH: model_path, Env.SEED: str(attempt.seed)}
    if distributed is not None:
        env |= {
            Env.MASTER_ADDR: distributed.master_addr,
            Env.MASTER_PORT: str(distributed.master_port),
            Env.WORLD_SIZE: str(distributed.world_size),
            Env.NODE_RANK: str(distributed.node_rank),
            Env.SHARD: str(distributed.node_rank),
            Env.SHARDS: str(distributed.world_size),
        }
    return _build_pod(
        attempt=attempt,
        settings=settings,
        kind=JobKind.TRAINING,
        script=WorkloadScript.TRAINING,
        profile=Profile.TRAINING,
        gpus=max(1, gpus),
        output_dir=CONTAINER_DATA_DIR,  # the workload lays out games/, training/, … itself
        env=env,
        shard=distributed.node_rank if distributed is not None else None,
    )


def build_gauntlet_pod(
    *,
    attempt: Attempt,
    settings: WorkloadSettings,
    model_path: str,
    opponents: Sequence[str],
    games: int,
    shard: int = 0,
    shards: int = 1,
    gpus: int = 1,
) -> JsonDict:
    """One shard of a gauntlet: ``games`` games of the candidate model against the opponents.
    Named with its shard index when the gauntlet has more than one shard."""
    return _build_pod(
        attempt=attempt,
        settings=settings,
        kind=JobKind.GAUNTLET,
        script=WorkloadScript.GAUNTLET,
        profile=Profile.GAUNTLET,
        gpus=max(0, gpus),
        output_dir=CONTAINER_DATA_DIR,  # the workload lays out games/, training/, … itself
        env={
            Env.MODEL_PATH: model_path,
            Env.OPPONENTS: ",".join(opponents),
            Env.GAMES: str(games),
            Env.SEED: str(attempt.seed + shard),
            Env.SHARD: str(shard),
            Env.SHARDS: str(shards),
        },
        shard=shard if shards > 1 else None,
    )


def build_demand(
    *,
    kind: JobKind,
    settings: WorkloadSettings,
    attempt: Attempt,
    gpus: int,
    engine_mode: EngineMode | None = None,
    min_gpu_class: GpuClass | None = None,
) -> Demand:
    """The NodeSelector's demand for the pod the matching builder makes, so that placement and
    the pod agree on GPUs, CPU, tolerations, architectures and node selector."""
    if kind is JobKind.SELFPLAY:
        if engine_mode is None:
            raise ValueError("a selfplay demand needs an engine mode")
        profile = _SELFPLAY_PROFILES[decide_selfplay_flavor(engine_mode=engine_mode, gpus=gpus)]
    else:
        profile = Profile(kind.value)
    gpus = 0 if kind is JobKind.EXPORT else max(0, gpus)
    if kind is JobKind.TRAINING:
        gpus = max(1, gpus)
    return Demand(
        gpus=gpus,
        cpu_millis=settings.resources_for(profile).cpu_millis,
        min_memory_gib=TRAINING_MIN_MEMORY_GIB if kind is JobKind.TRAINING else 0,
        allowed_archs=frozenset(settings.allowed_archs),
        tolerations=attempt.tolerations,
        node_selector=attempt.node_selector,
        min_gpu_class=min_gpu_class,
    )


def _build_pod(
    *,
    attempt: Attempt,
    settings: WorkloadSettings,
    kind: JobKind,
    script: WorkloadScript,
    profile: Profile,
    gpus: int,
    output_dir: str,
    env: Mapping[str, str],
    shard: int | None = None,
) -> JsonDict:
    board, players = parse_config_key(attempt.config)
    owner = attempt.owner
    all_env = {
        Env.JOB_KIND: kind.value,
        Env.JOB_NAME: owner.name,
        Env.CONFIG: attempt.config,
        Env.BOARD: board.value,
        Env.PLAYERS: str(players),
        Env.DATA_DIR: CONTAINER_DATA_DIR,
        Env.OUTPUT_DIR: output_dir,
        Env.EPOCH: str(attempt.epoch),
        Env.ATTEMPT: str(attempt.number),
        **env,
        "HOME": "/tmp",  # the root filesystem is read-only; libraries cache under $HOME
    }
    resources = settings.resources_for(profile)
    requests = {"cpu": f"{resources.cpu_millis}m", "memory": f"{resources.memory_mib}Mi"}
    limits = {"memory": f"{resources.memory_mib}Mi"}  # no CPU limit: throttling only slows games
    tolerations = list(attempt.tolerations)
    if gpus > 0:
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(gpus)
        if GPU_TOLERATION not in tolerations:
            tolerations.append(GPU_TOLERATION)
    spec: JsonDict = {
        "schedulerName": OPERATOR_NAME,  # the operator places its own pods (pods/binding)
        "restartPolicy": "Never",  # a failed attempt is retried as a new pod, by the operator
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": NONROOT_ID,
            "runAsGroup": NONROOT_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": LABEL_ARCH,
                                    "operator": "In",
                                    "values": list(settings.allowed_archs),
                                }
                            ]
                        }
                    ]
                }
            }
        },
        "tolerations": [_toleration_json(t) for t in tolerations],
        "containers": [
            {
                "name": CONTAINER_NAME,
                "image": settings.image,
                "imagePullPolicy": settings.image_pull_policy,
                "command": settings.command(script),
                "env": [{"name": k, "value": v} for k, v in all_env.items()],
                "resources": {"requests": requests, "limits": limits},
                "volumeMounts": [
                    {"name": "data", "mountPath": CONTAINER_DATA_DIR},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
                "terminationMessagePath": TERMINATION_MESSAGE_PATH,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "readOnlyRootFilesystem": True,
                    "runAsNonRoot": True,
                    "runAsUser": NONROOT_ID,
                    "runAsGroup": NONROOT_ID,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
            }
        ],
        "volumes": [
            {
                "name": "data",
                "hostPath": {"path": settings.data_host_path, "type": "DirectoryOrCreate"},
            },
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if attempt.node_selector:
        spec["nodeSelector"] = dict(attempt.node_selector)
    if attempt.active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = attempt.active_deadline_seconds
    if settings.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in settings.image_pull_secrets]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(owner=owner.name, kind=kind, attempt=attempt.number, shard=shard),
            "namespace": attempt.namespace,
            "labels": {
                LABEL_MANAGED_BY: OPERATOR_NAME,
                LABEL_JOB_KIND: kind.value,
                LABEL_OWNER_KIND: owner.kind,
                LABEL_OWNER_NAME: label_value(owner.name),
                LABEL_CONFIG: attempt.config,
                LABEL_ATTEMPT: str(attempt.number),
            },
            "annotations": {ANNOTATION_EPOCH: str(attempt.epoch)},
            "ownerReferences": [owner.to_dict()],
        },
        "spec": spec,
    }


def _toleration_json(tol: Toleration) -> JsonDict:
    out: JsonDict = {"operator": tol.operator}
    if tol.key:
        out["key"] = tol.key
    if tol.operator != "Exists":
        out["value"] = tol.value
    if tol.effect is not None:
        out["effect"] = tol.effect.value
    return out


# --- Jobs per node and stale jobs -------------------------------------------------------------


def count_jobs_per_node(pods: Iterable[PodInfo]) -> dict[str, int]:
    """Non-terminal operator pods bound to each node (the seed's ``get_job_count_for_node``).
    Pods being deleted still hold their node's resources, so they count."""
    counts: dict[str, int] = {}
    for pod in pods:
        if pod.node_name and pod.is_operator_pod and not pod.is_terminal:
            counts[pod.node_name] = counts.get(pod.node_name, 0) + 1
    return counts


def with_running_jobs(nodes: Iterable[NodeInfo], *, pods: Iterable[PodInfo]) -> list[NodeInfo]:
    """The nodes with ``running_jobs`` set from the pods snapshot."""
    counts = count_jobs_per_node(pods)
    return [replace(node, running_jobs=counts.get(node.name, 0)) for node in nodes]


class StaleReason(StrEnum):
    NOT_STARTED = "NotStarted"  # bound to a node but the workload never started
    NO_PROGRESS = "NoProgress"  # running without a heartbeat for too long
    ORPHANED = "Orphaned"  # its owning resource is gone


@dataclass(frozen=True, slots=True)
class StalePod:
    pod: PodInfo
    reason: StaleReason
    message: str


def detect_stale_pods(
    pods: Iterable[PodInfo],
    *,
    live_owner_uids: frozenset[str],
    now: float,
    dispatch_timeout_seconds: int = DEFAULT_DISPATCH_TIMEOUT_SECONDS,
    heartbeat_timeout_seconds: int = DEFAULT_HEARTBEAT_TIMEOUT_SECONDS,
) -> list[StalePod]:
    """Operator pods the reaper should delete, each with one reason (orphaned wins).

    Pods already being deleted and pods of other controllers are never reported. A running pod's
    progress clock starts when it started, so a fresh pod is not stale before its first heartbeat.
    """
    stale: list[StalePod] = []
    for pod in pods:
        if pod.deleting or not pod.is_operator_pod:
            continue
        if pod.owner_uid not in live_owner_uids:
            owner = " ".join(part for part in pod.owner if part) or "no owner labels"
            message = f"owner gone ({owner}, uid {pod.owner_uid or 'none'})"
            stale.append(StalePod(pod=pod, reason=StaleReason.ORPHANED, message=message))
            continue
        if pod.is_terminal:
            continue
        if pod.phase is PodPhase.PENDING and pod.is_bound and pod.started_at is None:
            bound_at = pod.bound_at if pod.bound_at is not None else pod.created_at
            waited = now - bound_at
            if waited > dispatch_timeout_seconds:
                message = (
                    f"bound to {pod.node_name} {int(waited)}s ago and not started "
                    f"(dispatch timeout {dispatch_timeout_seconds}s)"
                )
                stale.append(StalePod(pod=pod, reason=StaleReason.NOT_STARTED, message=message))
            continue
        if pod.phase is PodPhase.RUNNING:
            last = pod.last_progress_at or pod.started_at or pod.bound_at or pod.created_at
            silent = now - last
            if silent > heartbeat_timeout_seconds:
                message = (
                    f"running on {pod.node_name or 'unknown node'} without progress for "
                    f"{int(silent)}s (heartbeat timeout {heartbeat_timeout_seconds}s)"
                )
                stale.append(StalePod(pod=pod, reason=StaleReason.NO_PROGRESS, message=message))
    return stale


def is_dispatch_expired(
    created_at: float, *, now: float, timeout_seconds: int = DEFAULT_DISPATCH_TIMEOUT_SECONDS
) -> bool:
    """A pending job not dispatched for more than the timeout expires (the seed: 5 minutes)."""
    return now - created_at > timeout_seconds


# --- The job state machine --------------------------------------------------------------------


class JobPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETE = "Complete"
    FAILED = "Failed"
    EXPIRED = "Expired"
    PROMOTED = "Promoted"


class JobEvent(StrEnum):
    DISPATCH = "dispatch"  # a pod was bound to a node
    SUCCEED = "succeed"  # the attempt finished successfully
    FAIL = "fail"  # the attempt failed and no attempt remains (or retrying cannot help)
    RETRY = "retry"  # the attempt failed and attempts remain
    TIMEOUT = "timeout"  # not dispatched within the dispatch timeout
    PROMOTE = "promote"  # the model passed the gauntlet
    REJECT = "reject"  # bad input: the job can never run


_TRANSITIONS: Mapping[tuple[JobPhase, JobEvent], JobPhase] = MappingProxyType(
    {
        (JobPhase.PENDING, JobEvent.DISPATCH): JobPhase.RUNNING,
        (JobPhase.PENDING, JobEvent.TIMEOUT): JobPhase.EXPIRED,
        (JobPhase.PENDING, JobEvent.REJECT): JobPhase.FAILED,
        (JobPhase.RUNNING, JobEvent.SUCCEED): JobPhase.COMPLETE,
        (JobPhase.RUNNING, JobEvent.FAIL): JobPhase.FAILED,
        (JobPhase.RUNNING, JobEvent.RETRY): JobPhase.PENDING,
        (JobPhase.COMPLETE, JobEvent.PROMOTE): JobPhase.PROMOTED,
    }
)


class IllegalTransition(ValueError):
    """An event that the job's phase does not accept."""

    def __init__(self, phase: JobPhase, event: JobEvent) -> None:
        self.phase = phase
        self.event = event
        allowed = ", ".join(e.value for e in allowed_events(phase)) or "none (terminal)"
        super().__init__(
            f"illegal job transition: {event.value!r} in phase {phase.value} "
            f"(allowed events: {allowed})"
        )


def transition(phase: JobPhase, event: JobEvent) -> JobPhase:
    """The phase after ``event``; raises IllegalTransition when ``phase`` does not accept it."""
    try:
        return _TRANSITIONS[(phase, event)]
    except KeyError:
        raise IllegalTransition(phase, event) from None


def allowed_events(phase: JobPhase) -> tuple[JobEvent, ...]:
    """Events ``phase`` accepts, in declaration order."""
    return tuple(e for e in JobEvent if (phase, e) in _TRANSITIONS)


def is_terminal(phase: JobPhase) -> bool:
    """No event leaves this phase: Failed, Expired, Promoted. Complete is not terminal: a gauntlet
    may still promote it."""
    return not allowed_events(phase)


def is_finished(phase: JobPhase) -> bool:
    """No pod will run for the job any more: Complete or terminal."""
    return phase is JobPhase.COMPLETE or is_terminal(phase)


def decide_failed_attempt(
    *, attempts: int, backoff_limit: int, exit_code: int | None = None
) -> JobEvent:
    """RETRY while retries remain (``backoff_limit`` retries after the first attempt, as in a
    Kubernetes Job), FAIL after that, and FAIL at once when the workload rejected its input."""
    if exit_code == EXIT_BAD_INPUT:
        return JobEvent.FAIL
    return JobEvent.RETRY if attempts - 1 < backoff_limit else JobEvent.FAIL
