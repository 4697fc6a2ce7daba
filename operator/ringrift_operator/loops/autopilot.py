"""The leader's loops (the seed's LoopManager table), assembled for the loop runner:

- ``manifest-collection``: the node agents' manifests kept fresh;
- ``elo-sync`` (``loops.elosync``): current ratings into the scheduler's Elo boost;
- ``job-reaper``: finished autopilot jobs deleted beyond a retention;
- ``idle-detection``: free GPUs filled with SelfplayJobs whose configs the self-play scheduler
  draws by weight;
- ``queue-population``: a bounded backlog of Pending autopilot jobs, so that freed GPUs fill at
  once, and old queued jobs timed out (work-queue maintenance);
- ``self-healing`` (``loops.selfhealing``): stuck pods, offline and recovered nodes;
- ``predictive-monitoring`` (``loops.monitoring``): trends that will cross their thresholds;
- ``training-sync`` (``loops.trainingsync``): a TrainingRun per config whose data is ready.

The self-play loops and training sync run with ``autopilot.enabled``; the others on every
leader. Each tick is a plain async method, run by the loop runner.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ringrift_operator.api.common import (
    ANNOTATION_EPOCH,
    LABEL_CONFIG,
    LABEL_MANAGED_BY,
    LABEL_PREFIX,
    OPERATOR_NAME,
    EngineMode,
    parse_config_key,
)
from ringrift_operator.api.meta import parse_rfc3339
from ringrift_operator.api.selfplayjob import KIND as SELFPLAYJOB
from ringrift_operator.api.settings import AutopilotSettings
from ringrift_operator.kube.client import ApiError
from ringrift_operator.loops.elosync import EloSync
from ringrift_operator.loops.monitoring import Monitoring
from ringrift_operator.loops.runner import LoopSpec
from ringrift_operator.loops.selfhealing import SelfHealing
from ringrift_operator.loops.trainingsync import TrainingSync
from ringrift_operator.managers.autopilot import (
    FinishedJob,
    NewJob,
    QueuedJob,
    plan_backlog,
    plan_idle_fill,
    plan_queue_timeouts,
    plan_reaping,
)
from ringrift_operator.managers.selfplayscheduling import (
    ConfigElo,
    ConfigWeight,
    DiversityMetrics,
    Pick,
    SchedulerSettings,
    compute_config_weights,
    pick_engine_mode,
    summarize_diversity,
    track_pick,
)
from ringrift_operator.reconcilers.deps import Deps
from ringrift_operator.reconcilers.manifests import agent_endpoints

log = logging.getLogger(__name__)
LABEL_AUTOPILOT = f"{LABEL_PREFIX}autopilot"
FINISHED = {"Complete", "Failed", "Expired"}


def scheduler_settings(a: AutopilotSettings) -> SchedulerSettings:
    kwargs: dict[str, Any] = {
        "static_priorities": dict(a.priorities),
        "board_overrides": dict(a.board_overrides),
        "curriculum_weights": {k: float(v) for k, v in a.curriculum_weights.items()},
    }
    if a.enabled_configs:
        kwargs["enabled_configs"] = tuple(a.enabled_configs)
    return SchedulerSettings(**kwargs)


@dataclass
class Autopilot:
    deps: Deps
    settings: AutopilotSettings
    rng: random.Random = field(default_factory=random.Random)
    diversity: DiversityMetrics = field(default_factory=DiversityMetrics)
    created: int = 0
    reaped: int = 0
    queued: int = 0
    timed_out: int = 0
    ratings: dict[str, ConfigElo] = field(default_factory=dict)
    """config -> rating summary, as the Elo sync last read them (feeds the Elo boost)."""
    _in_flight: set[str] = field(default_factory=set)

    manifests_collected: int = 0

    def __post_init__(self) -> None:
        self.scheduler = scheduler_settings(self.settings)
        a = self.settings
        self.elo_sync = EloSync(self.deps, self.scheduler.enabled_configs,
                                float(a.elo_stagnation_window_seconds), self.ratings)  # fmt: skip
        self.training_sync = TrainingSync(self.deps, a)
        self.healing = SelfHealing(self.deps, a.healing)
        self.monitoring = Monitoring(self.deps, a.monitoring, a.namespace)
        if self.settings.seed is not None:
            self.rng.seed(self.settings.seed)

    def _own_jobs(self) -> list[dict[str, Any]]:
        return [
            body
            for (kind, ns, _), body in self.deps.resources.items()
            if kind == SELFPLAYJOB
            and ns == self.settings.namespace
            and ((body.get("metadata") or {}).get("labels") or {}).get(LABEL_AUTOPILOT) == "true"
        ]

    def _queued(self) -> list[QueuedJob]:
        """The autopilot's Pending jobs (the queue), after forgetting in-flight ones now seen."""
        jobs = self._own_jobs()
        self._in_flight -= {(j.get("metadata") or {}).get("name", "") for j in jobs}
        queued = []
        for body in jobs:
            if (body.get("status") or {}).get("phase", "Pending") != "Pending":
                continue
            meta = body.get("metadata") or {}
            created = meta.get("creationTimestamp")
            queued.append(QueuedJob(
                namespace=meta.get("namespace", ""), name=meta.get("name", ""),
                config=(meta.get("labels") or {}).get(LABEL_CONFIG, ""),
                created_at=parse_rfc3339(created).timestamp() if created else 0.0,
            ))  # fmt: skip
        return queued

    def weights(self) -> tuple[ConfigWeight, ...]:
        """The config weights, with the ratings the Elo sync last read."""
        return compute_config_weights(settings=self.scheduler, elo=self.ratings)

    async def fill_idle_gpus(self) -> None:
        pending = len(self._in_flight) + len(self._queued())
        plan = plan_idle_fill(
            nodes=self.deps.cache.node_infos(), pending_jobs=pending, weights=self.weights(),
            settings=self.scheduler, rng=self.rng, games=self.settings.games_per_job,
            max_new=self.settings.max_new_jobs_per_tick,
        )  # fmt: skip
        for job in plan:
            await self._create_job(job)
        if plan:
            log.info("autopilot: %d self-play jobs for idle GPUs", len(plan))

    async def populate_queue(self) -> None:
        """Work-queue maintenance (old queued jobs deleted), then the queue topped up."""
        q = self.settings.queue
        queued = self._queued()
        now = self.deps.clock().timestamp()
        for job in plan_queue_timeouts(queued, now=now, max_age_seconds=q.max_age_seconds):
            try:
                await self.deps.client.delete(
                    f"/apis/ringrift.ai/v1alpha1/namespaces/{job.namespace}/selfplayjobs/{job.name}"
                )
                self.timed_out += 1
            except ApiError as e:
                if not e.not_found:
                    log.warning("timing out %s/%s failed: %s", job.namespace, job.name, e)
            queued.remove(job)
        configs = plan_backlog(
            queued=queued, in_flight=len(self._in_flight), weights=self.weights(), rng=self.rng,
            backlog=q.backlog, max_per_config=q.max_pending_per_config,
        )  # fmt: skip
        nodes = self.deps.cache.node_infos()
        gpu_node = next((n for n in nodes if n.gpu_allocatable > 0), None)
        for config in configs:
            mode = (
                pick_engine_mode(node=gpu_node, settings=self.scheduler, rng=self.rng)
                if gpu_node is not None
                else EngineMode.GUMBEL_MCTS
            )
            await self._create_job(NewJob(config, mode, 1, self.settings.games_per_job))
            self.queued += 1

    async def _create_job(self, job: NewJob) -> None:
        board, players = parse_config_key(job.config)
        body = {
            "apiVersion": "ringrift.ai/v1alpha1",
            "kind": SELFPLAYJOB,
            "metadata": {
                "generateName": f"auto-{job.config.replace('_', '-')}-",
                "labels": {
                    LABEL_AUTOPILOT: "true",
                    LABEL_MANAGED_BY: OPERATOR_NAME,
                    LABEL_CONFIG: job.config,
                },
                "annotations": {ANNOTATION_EPOCH: str(self.deps.epoch())},
            },
            "spec": {
                "board": board.value,
                "players": players,
                "engineMode": job.engine_mode.value,
                "games": job.games,
                "gpus": job.gpus,
                # Queued jobs wait for a GPU until the queue maintenance times them out.
                "dispatchTimeoutSeconds": self.settings.queue.max_age_seconds,
            },
        }
        created = await self.deps.client.create(
            f"/apis/ringrift.ai/v1alpha1/namespaces/{self.settings.namespace}/selfplayjobs", body
        )
        self._in_flight.add(created["metadata"]["name"])
        self.created += 1
        self.deps.metrics.autopilot_created(SELFPLAYJOB)
        self.diversity = track_pick(
            self.diversity, Pick(config=job.config, engine_mode=job.engine_mode)
        )

    async def reap_finished(self) -> None:
        now = self.deps.clock().timestamp()
        finished = []
        for body in self._own_jobs():
            status = body.get("status") or {}
            if status.get("phase") not in FINISHED:
                continue
            when = status.get("completionTime")
            if not when:
                continue
            meta = body.get("metadata") or {}
            finished.append(FinishedJob(meta.get("namespace", ""), meta.get("name", ""),
                                        parse_rfc3339(when).timestamp()))  # fmt: skip
        for job in plan_reaping(finished, now=now, keep=self.settings.keep_finished,
                                older_than_seconds=self.settings.reap_after_seconds):  # fmt: skip
            try:
                await self.deps.client.delete(
                    f"/apis/ringrift.ai/v1alpha1/namespaces/{job.namespace}/selfplayjobs/{job.name}"
                )
                self.reaped += 1
            except ApiError as e:
                log.warning("reaping %s/%s failed: %s", job.namespace, job.name, e)

    async def collect_manifests(self) -> None:
        """The seed's ManifestCollectionLoop: every agent's manifest kept fresh, so that the
        training readiness, the SyncPlans and the disk forecast read recent ones."""
        endpoints = agent_endpoints(self.deps.cache.nodes)
        if not endpoints:
            return
        fresher_than = self.deps.clock().timestamp() - self.settings.manifest_interval_seconds / 2
        collection = await self.deps.store.collect(endpoints, fresher_than=fresher_than)
        self.manifests_collected = len(collection.manifests)
        if collection.errors and not collection.manifests:
            raise RuntimeError(f"no agent answered: {_first(collection.errors)}")

    def status(self) -> dict[str, Any]:
        summary = summarize_diversity(self.diversity)
        weights = self.weights()
        return {
            "enabled": self.settings.enabled,
            "created": self.created,
            "reaped": self.reaped,
            "queue": {
                "created": self.queued,
                "timed_out": self.timed_out,
                "pending": len(self._in_flight) + len(self._queued()),
                "backlog": self.settings.queue.backlog,
            },
            "weights": {
                w.config: {"weight": round(w.weight, 3), "elo_boost": round(w.elo_boost, 3)}
                for w in weights
            },
            "elo": self.elo_sync.status(),
            "training_sync": self.training_sync.status(),
            "self_healing": self.healing.status(),
            "predictions": self.monitoring.status(),
            "manifests": {
                "nodes": self.manifests_collected,
                "errors": self.deps.store.errors(),
            },
            "diversity": {
                "picks": summary.total_picks,
                "by_config": dict(summary.by_config.counts),
                "by_engine_mode": dict(summary.by_engine_mode.counts),
                "config_evenness": round(summary.by_config.evenness, 3),
            },
        }

    def loops(self) -> list[LoopSpec]:
        """Every leader loop, by the seed's names; the self-play ones only with the autopilot
        on, training sync only with it on too."""
        a = self.settings
        on = a.enabled
        return [
            LoopSpec("manifest-collection", float(a.manifest_interval_seconds),
                     self.collect_manifests),
            LoopSpec("elo-sync", float(a.elo_sync_interval_seconds), self.elo_sync.sync),
            LoopSpec("job-reaper", float(a.reap_interval_seconds), self.reap_finished,
                     enabled=on),
            LoopSpec("idle-detection", float(a.idle_interval_seconds), self.fill_idle_gpus,
                     depends_on=("job-reaper", "elo-sync"), enabled=on),
            LoopSpec("queue-population", float(a.queue.interval_seconds), self.populate_queue,
                     depends_on=("idle-detection",), enabled=on),
            LoopSpec("self-healing", float(a.healing.interval_seconds), self.healing.heal,
                     enabled=a.healing.enabled),
            LoopSpec("predictive-monitoring", float(a.monitoring.interval_seconds),
                     self.monitoring.monitor, depends_on=("manifest-collection",),
                     enabled=a.monitoring.enabled),
            LoopSpec("training-sync", float(a.training.interval_seconds), self.training_sync.sync,
                     depends_on=("manifest-collection",), enabled=on and a.training.enabled),
        ]  # fmt: skip


def _first(errors: Mapping[str, str]) -> str:
    node = sorted(errors)[0]
    return f"{node}: {errors[node]}"
