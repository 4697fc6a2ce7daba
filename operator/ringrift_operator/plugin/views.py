"""What ``kubectl ringrift`` shows, computed from the objects it read: pure functions over plain
JSON objects (Nodes, Pods, Leases, Events and the operator's resources) and a clock, returning
JSON-ready dicts that ``-o json`` prints as they are and ``render`` turns into tables.

The same managers the operator uses do the thinking: node ranking (``managers.ranking``), the
self-play scheduler's weights and diversity (``managers.selfplayscheduling``), the lease
arithmetic (``managers.leadership``); so what the plugin says is what the operator would decide
from the same snapshot.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ringrift_operator.api.common import (
    ALL_CONFIG_KEYS,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
    EngineMode,
    config_key,
)
from ringrift_operator.api.selfplayjob import SelfplayJobPhase
from ringrift_operator.api.settings import AutopilotSettings
from ringrift_operator.api.syncplan import SyncPlanState
from ringrift_operator.api.trainingrun import TrainingRunPhase
from ringrift_operator.kube.snapshots import node_info, parse_time, pod_record
from ringrift_operator.managers.elo import INITIAL_RATING
from ringrift_operator.managers.gpus import GpuClass, parse_gpu_class, score_cpu, score_gpu
from ringrift_operator.managers.leadership import is_expired, lease_view
from ringrift_operator.managers.nodes import NodeInfo, TaintEffect, Toleration
from ringrift_operator.managers.ranking import Demand, judge_node, rank_gpu_nodes, rank_nodes
from ringrift_operator.managers.selfplayscheduling import (
    DIVERSITY_WINDOW,
    ConfigElo,
    DiversityMetrics,
    Pick,
    compute_config_weights,
    summarize_diversity,
    track_pick,
)

JsonDict = dict[str, Any]
LEASE_NAME_HINT = "ringrift-operator"  # the default lease name, and part of the chart's
ALL_ARCHS = frozenset({"amd64", "arm64"})
# A job "uses" a node's ranking with the demand of a plain one-GPU self-play job.
SELFPLAY_DEMAND = Demand(gpus=1, allowed_archs=ALL_ARCHS)


@dataclass(frozen=True)
class ClusterObjects:
    """Everything the plugin read, as the API server returned it (plain JSON objects)."""

    nodes: list[JsonDict] = field(default_factory=list)
    pods: list[JsonDict] = field(default_factory=list)
    leases: list[JsonDict] = field(default_factory=list)
    selfplayjobs: list[JsonDict] = field(default_factory=list)
    trainingruns: list[JsonDict] = field(default_factory=list)
    syncplans: list[JsonDict] = field(default_factory=list)


def _meta(obj: Mapping[str, Any]) -> JsonDict:
    return dict(obj.get("metadata") or {})


def _status(obj: Mapping[str, Any]) -> JsonDict:
    return dict(obj.get("status") or {})


def _spec(obj: Mapping[str, Any]) -> JsonDict:
    return dict(obj.get("spec") or {})


def _ref(obj: Mapping[str, Any]) -> str:
    meta = _meta(obj)
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _created(obj: Mapping[str, Any]) -> float:
    return parse_time(_meta(obj).get("creationTimestamp")) or 0.0


def _config_of(obj: Mapping[str, Any]) -> str:
    status, spec = _status(obj), _spec(obj)
    if status.get("config"):
        return str(status["config"])
    if spec.get("board") and spec.get("players"):
        return config_key(str(spec["board"]), int(spec["players"]))
    return ""


def _condition(obj: Mapping[str, Any], type_: str) -> JsonDict | None:
    for cond in _status(obj).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def human_age(seconds: float) -> str:
    """kubectl's short ages: 45s, 7m, 3h, 2d."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


# --- nodes --------------------------------------------------------------------------------------


def build_node_infos(nodes: Iterable[JsonDict], pods: Iterable[JsonDict]) -> list[NodeInfo]:
    """NodeInfo per Node, with the GPUs, CPU and memory its bound, unfinished pods request and
    the operator's workload pods on it (what the operator's cache computes from its watches)."""
    gpus: Counter[str] = Counter()
    cpu: Counter[str] = Counter()
    memory: Counter[str] = Counter()
    jobs: Counter[str] = Counter()
    for raw in pods:
        pod = pod_record(raw)
        if not pod.holds_resources:
            continue
        gpus[pod.node] += pod.gpus
        cpu[pod.node] += pod.cpu_millis
        memory[pod.node] += pod.memory_bytes
        if pod.is_operator_pod:
            jobs[pod.node] += 1
    infos = []
    for raw in nodes:
        name = _meta(raw).get("name", "")
        infos.append(
            node_info(
                raw, gpu_in_use=gpus[name], cpu_in_use=cpu[name], memory_in_use=memory[name],
                running_jobs=jobs[name],
            )
        )  # fmt: skip
    return infos


def nodes_view(objs: ClusterObjects) -> list[JsonDict]:
    """Every node, best first as the NodeSelector orders GPU work: GPU nodes by per-GPU power
    (busy ones included), then nodes without GPUs by CPU power. ``accepts`` says whether a
    one-GPU self-play job could go there now, ``why`` what stands in the way."""
    infos = build_node_infos(objs.nodes, objs.pods)
    listing = Demand(gpus=0, allowed_archs=ALL_ARCHS, tolerations=_TOLERATE_ALL_PREFER)
    gpu_nodes = rank_gpu_nodes([n for n in infos if n.has_gpu], demand=listing)
    ordered: list[NodeInfo] = [r.node for r in gpu_nodes.iter_ranked()]
    ordered += [n for n in gpu_nodes.rejected_nodes]
    cpu_only = sorted(
        (n for n in infos if not n.has_gpu),
        key=lambda n: (-score_cpu(cpu_millis=n.cpu_millis, memory_bytes=n.memory_bytes), n.name),
    )
    ordered += cpu_only
    rows = []
    for rank, node in enumerate(ordered, 1):
        gpu = score_gpu(node.labels)
        verdict = judge_node(node, demand=SELFPLAY_DEMAND)
        rows.append(
            {
                "rank": rank,
                "name": node.name,
                "gpu": gpu.base_product or "" if node.has_gpu else "",
                "tier": gpu.tier if node.has_gpu else None,
                "powerScore": gpu.score if node.has_gpu else 0,
                "cpuPower": score_cpu(cpu_millis=node.cpu_millis, memory_bytes=node.memory_bytes),
                "gpus": node.gpu_allocatable,
                "gpusFree": node.gpu_free,
                "jobs": node.running_jobs,
                "ready": node.ready,
                "accepts": verdict.accepted,
                "why": "; ".join(verdict.rejections + verdict.penalty_reasons),
            }
        )
    return rows


_TOLERATE_ALL_PREFER = (Toleration(operator="Exists"),)  # listing: taints do not hide nodes


def gpu_usage(objs: ClusterObjects) -> JsonDict:
    """GPUs of Ready nodes: allocatable, requested by running or bound pods, idle."""
    infos = build_node_infos(objs.nodes, objs.pods)
    ready = [n for n in infos if n.ready]
    total = sum(n.gpu_allocatable for n in ready)
    busy = sum(min(n.gpu_in_use, n.gpu_allocatable) for n in ready)
    return {
        "nodes": len(infos),
        "readyNodes": len(ready),
        "gpuNodes": sum(1 for n in ready if n.has_gpu),
        "total": total,
        "busy": busy,
        "idle": total - busy,
        "operatorPods": sum(n.running_jobs for n in infos),
    }


# --- status -------------------------------------------------------------------------------------


def find_operator_lease(leases: Sequence[JsonDict], *, name: str | None = None) -> JsonDict | None:
    """The operator's Lease: the one named ``name`` (``ns/name`` or ``name``), else the most
    recently renewed lease whose name contains ``ringrift-operator``."""
    if name:
        ns, _, short = name.rpartition("/")
        for lease in leases:
            meta = _meta(lease)
            if meta.get("name") == short and (not ns or meta.get("namespace") == ns):
                return lease
        return None
    candidates = [le for le in leases if LEASE_NAME_HINT in str(_meta(le).get("name", ""))]
    if not candidates:
        return None
    return max(candidates, key=lambda le: str(_spec(le).get("renewTime") or ""))


def leader_view(lease: JsonDict | None, *, now: datetime) -> JsonDict:
    view = lease_view(lease)
    if lease is None or view is None:
        return {"lease": None, "leader": None, "epoch": None, "expired": True, "renewedAgo": None}
    renewed = None if view.renew_time is None else (now - view.renew_time).total_seconds()
    return {
        "lease": _ref(lease),
        "leader": view.holder or None,
        "epoch": view.transitions,
        "expired": is_expired(view, now=now),
        "renewedAgo": None if renewed is None else round(renewed, 1),
        "durationSeconds": view.duration_seconds,
    }


def _phases(objs: Iterable[JsonDict], order: Iterable[str]) -> dict[str, int]:
    counts = Counter(str(_status(o).get("phase") or "Pending") for o in objs)
    return {p: counts.get(p, 0) for p in order} | {
        p: n for p, n in counts.items() if p not in order
    }


def training_readiness(objs: ClusterObjects) -> list[JsonDict]:
    """Per config: games self-play produced, and the newest TrainingRun's data readiness."""
    games: Counter[str] = Counter()
    for job in objs.selfplayjobs:
        games[_config_of(job)] += int(_status(job).get("gamesCompleted") or 0)
    newest: dict[str, JsonDict] = {}
    for tr in sorted(objs.trainingruns, key=_created):
        newest[_config_of(tr)] = tr
    rows = []
    for config in sorted(set(games) | set(newest), key=_config_order):
        if not config:
            continue
        run: JsonDict | None = newest.get(config)
        ready = _condition(run, "DataReady") if run is not None else None
        rows.append(
            {
                "config": config,
                "gamesProduced": games.get(config, 0),
                "trainingRun": _ref(run) if run is not None else None,
                "phase": _status(run).get("phase") or "Pending" if run is not None else None,
                "dataReady": ready.get("status") if ready else None,
                "reason": ready.get("reason") if ready else None,
                "message": ready.get("message") if ready else None,
            }
        )
    return rows


def _config_order(config: str) -> tuple[int, str]:
    return (ALL_CONFIG_KEYS.index(config) if config in ALL_CONFIG_KEYS else 99, config)


def sync_backlog(objs: ClusterObjects) -> JsonDict:
    plans = []
    for plan in sorted(objs.syncplans, key=_ref):
        status = _status(plan)
        plans.append(
            {
                "syncPlan": _ref(plan),
                "state": status.get("state") or SyncPlanState.IDLE.value,
                "missingFiles": int(status.get("missingFiles") or 0),
                "filesSynced": int(status.get("filesSynced") or 0),
                "lastSyncTime": status.get("lastSyncTime"),
            }
        )
    return {"missingFiles": sum(p["missingFiles"] for p in plans), "plans": plans}


def status_view(
    objs: ClusterObjects, *, now: datetime, lease_name: str | None = None,
    operator_status: JsonDict | None = None,
) -> JsonDict:  # fmt: skip
    """The loop at a glance: who leads, what runs, what is idle, what training waits for."""
    view: JsonDict = {
        "leadership": leader_view(find_operator_lease(objs.leases, name=lease_name), now=now),
        "selfplayJobs": _phases(objs.selfplayjobs, [p.value for p in SelfplayJobPhase]),
        "trainingRuns": _phases(objs.trainingruns, [p.value for p in TrainingRunPhase]),
        "gpus": gpu_usage(objs),
        "training": training_readiness(objs),
        "sync": sync_backlog(objs),
    }
    if operator_status is not None:
        view["operator"] = {
            k: operator_status.get(k) for k in ("identity", "role", "epoch", "leader", "loops")
        }
    return view


# --- configs ------------------------------------------------------------------------------------


def elo_points(trainingruns: Iterable[JsonDict]) -> list[JsonDict]:
    """Elo of every evaluated model, per config and generation, from TrainingRun statuses.

    The operator rates a candidate at its baseline's rating plus the gauntlet's Elo difference,
    the baseline being the config's promoted model (1500 before the first); replaying the runs
    of each config in completion order gives the same numbers without the history store."""
    by_config: dict[str, list[JsonDict]] = {}
    for run in trainingruns:
        status = _status(run)
        if (status.get("gauntlet") or {}).get("eloDelta") is None:
            continue
        if not (status.get("model") or {}).get("generation"):
            continue
        by_config.setdefault(_config_of(run), []).append(run)
    points = []
    for config, runs in sorted(by_config.items(), key=lambda kv: _config_order(kv[0])):
        baseline = INITIAL_RATING
        runs.sort(key=lambda r: (str(_status(r).get("completionTime") or "~"), _created(r)))
        for run in runs:
            status = _status(run)
            rating = baseline + float(status["gauntlet"]["eloDelta"])
            promoted = status.get("phase") == TrainingRunPhase.PROMOTED.value
            if promoted:
                baseline = rating
            points.append(
                {
                    "config": config,
                    "generation": int(status["model"]["generation"]),
                    "rating": rating,
                    "eloDelta": int(status["gauntlet"]["eloDelta"]),
                    "promoted": promoted,
                    "trainingRun": _ref(run),
                }
            )
    return points


def current_elo(points: Iterable[JsonDict]) -> dict[str, ConfigElo]:
    """The rating of each config's promoted model (the last promoted point), with its gain
    over the model it replaced as the recent gain."""
    out: dict[str, ConfigElo] = {}
    for p in points:
        if p["promoted"]:
            out[p["config"]] = ConfigElo(rating=p["rating"], recent_gain=float(p["eloDelta"]))
    return out


def recent_picks(
    selfplayjobs: Iterable[JsonDict], *, window: int = DIVERSITY_WINDOW
) -> DiversityMetrics:
    """The last ``window`` self-play jobs, oldest first, as the scheduler's pick history."""
    metrics = DiversityMetrics(window=window)
    for job in sorted(selfplayjobs, key=lambda j: (_created(j), _ref(j))):
        spec = _spec(job)
        try:
            mode = EngineMode(spec.get("engineMode", ""))
        except ValueError:
            continue
        metrics = track_pick(metrics, Pick(config=_config_of(job), engine_mode=mode))
    return metrics


def configs_view(
    objs: ClusterObjects, *, settings: AutopilotSettings, elo: Mapping[str, ConfigElo] | None = None
) -> JsonDict:
    """Per enabled config: the scheduler's weight with every component, its share of the
    draws, the Elo of its promoted model and its share of recent self-play."""
    # The autopilot's own mapping of its settings, imported here: it brings the operator's
    # runtime (reconcilers, client) that the other commands do not need.
    from ringrift_operator.loops.autopilot import scheduler_settings

    scheduler = scheduler_settings(settings)
    ratings = dict(elo) if elo is not None else current_elo(elo_points(objs.trainingruns))
    weights = compute_config_weights(settings=scheduler, elo=ratings)
    total = sum(w.weight for w in weights) or 1.0
    diversity = summarize_diversity(
        recent_picks(objs.selfplayjobs), configs=scheduler.enabled_configs
    )
    picks = diversity.by_config.counts
    window = max(1, diversity.window_picks)
    rows = [
        {
            "config": w.config,
            "priority": w.static_priority,
            "eloBoost": round(w.elo_boost, 2),
            "curriculum": round(w.curriculum, 2),
            "override": w.override,
            "weight": round(w.weight, 2),
            "sharePercent": round(100 * w.weight / total, 1),
            "elo": round(ratings[w.config].rating) if w.config in ratings else None,
            "recentJobs": picks.get(w.config, 0),
            "recentSharePercent": round(100 * picks.get(w.config, 0) / window, 1),
        }
        for w in weights
    ]
    return {
        "configs": rows,
        "diversity": {
            "windowJobs": diversity.window_picks,
            "configEntropyBits": round(diversity.by_config.entropy_bits, 3),
            "configEvenness": round(diversity.by_config.evenness, 3),
            "byEngineMode": dict(diversity.by_engine_mode.counts),
            "mostPicked": diversity.by_config.most_picked,
            "leastPicked": diversity.by_config.least_picked,
        },
    }


# --- explain ------------------------------------------------------------------------------------


def job_demand(job: JsonDict) -> Demand:
    """The NodeSelector demand of a SelfplayJob's pod, as near as the spec tells (the operator
    adds the workload's CPU request and architectures from its settings)."""
    spec = _spec(job)
    placement = dict(spec.get("placement") or {})
    min_class: GpuClass | None = None
    gpus = int(spec.get("gpus", 1))
    if placement.get("minGpuClass") not in (None, "any") and gpus > 0:
        min_class = parse_gpu_class(str(placement["minGpuClass"]))
    tolerations = tuple(
        Toleration(
            key=t.get("key") or None, operator=t.get("operator", "Equal"),
            value=t.get("value", "") or "",
            effect=TaintEffect(t["effect"]) if t.get("effect") else None,
        )
        for t in placement.get("tolerations") or []
    )  # fmt: skip
    return Demand(
        gpus=gpus, allowed_archs=ALL_ARCHS, tolerations=tolerations,
        node_selector=dict(placement.get("nodeSelector") or {}), min_gpu_class=min_class,
    )  # fmt: skip


def explain_view(
    job: JsonDict, *, events: Sequence[JsonDict], objs: ClusterObjects, top: int = 5
) -> JsonDict:
    """Why the job is where it is: the placement the operator recorded (the Scheduled
    condition, the pod's power-score annotation, the attempt history and Events) and how the
    nodes rank for the job now."""
    status = _status(job)
    scheduled = _condition(job, "Scheduled")
    node = status.get("node")
    # The job's own node is counted as free for the job: it holds the job's own pod.
    infos = build_node_infos(objs.nodes, [p for p in objs.pods if not _is_pod_of(p, job)])
    ranking = rank_nodes(infos, demand=job_demand(job))
    ranked = [
        {"rank": r.rank, "node": r.name, "powerScore": r.gpu_power, "score": r.score,
         "why": "; ".join(r.reasons)}
        for r in ranking.iter_ranked()
    ]  # fmt: skip
    place = next((r["rank"] for r in ranked if r["node"] == node), None)
    rejected = {rej.name: "; ".join(rej.reasons) for rej in ranking.rejected}
    return {
        "selfplayJob": _ref(job),
        "config": _config_of(job),
        "phase": status.get("phase") or "Pending",
        "node": node,
        "powerScore": status.get("powerScore"),
        "attempts": status.get("attempts", 0),
        "decision": {
            "status": scheduled.get("status") if scheduled else None,
            "reason": scheduled.get("reason") if scheduled else None,
            "message": scheduled.get("message") if scheduled else None,
            "time": scheduled.get("lastTransitionTime") if scheduled else None,
        },
        "history": [dict(a) for a in status.get("recentAttempts") or []],
        "events": [
            {
                "type": e.get("type"),
                "reason": e.get("reason"),
                "message": e.get("message"),
                "count": e.get("count", 1),
                "time": _event_time(e),
            }
            for e in sorted(events, key=_event_time)
        ],
        "now": {
            "candidates": ranking.candidates,
            "rejected": len(rejected),
            "nodeRank": place,
            "nodeRejectedBecause": rejected.get(node) if node else None,
            "top": ranked[:top],
        },
    }


def _is_pod_of(pod: JsonDict, job: JsonDict) -> bool:
    labels = _meta(pod).get("labels") or {}
    return (
        labels.get(LABEL_OWNER_KIND) == "SelfplayJob"
        and labels.get(LABEL_OWNER_NAME) == _meta(job).get("name")
        and _meta(pod).get("namespace") == _meta(job).get("namespace")
    )


def _event_time(event: Mapping[str, Any]) -> str:
    return str(
        event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp") or ""
    )
