"""The autopilot loops (leader only): idle detection fills free GPUs with SelfplayJobs whose
configs the self-play scheduler draws by weight; the job reaper deletes finished autopilot
jobs beyond a retention. Each tick is a plain async function, run by the loop runner.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any

from ringrift_operator.api.common import (
    ANNOTATION_EPOCH,
    LABEL_CONFIG,
    LABEL_MANAGED_BY,
    LABEL_PREFIX,
    OPERATOR_NAME,
    parse_config_key,
)
from ringrift_operator.api.meta import parse_rfc3339
from ringrift_operator.api.selfplayjob import KIND as SELFPLAYJOB
from ringrift_operator.api.settings import AutopilotSettings
from ringrift_operator.kube.client import ApiError
from ringrift_operator.loops.runner import LoopSpec
from ringrift_operator.managers.autopilot import FinishedJob, plan_idle_fill, plan_reaping
from ringrift_operator.managers.selfplayscheduling import (
    DiversityMetrics,
    Pick,
    SchedulerSettings,
    compute_config_weights,
    summarize_diversity,
    track_pick,
)
from ringrift_operator.reconcilers.deps import Deps

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
    _in_flight: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.scheduler = scheduler_settings(self.settings)
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

    async def fill_idle_gpus(self) -> None:
        jobs = self._own_jobs()
        seen = {(j.get("metadata") or {}).get("name", "") for j in jobs}
        self._in_flight -= seen
        pending = len(self._in_flight) + sum(
            1 for j in jobs if (j.get("status") or {}).get("phase", "Pending") == "Pending"
        )
        weights = compute_config_weights(settings=self.scheduler)
        plan = plan_idle_fill(
            nodes=self.deps.cache.node_infos(), pending_jobs=pending, weights=weights,
            settings=self.scheduler, rng=self.rng, games=self.settings.games_per_job,
            max_new=self.settings.max_new_jobs_per_tick,
        )  # fmt: skip
        for job in plan:
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
                },
            }
            created = await self.deps.client.create(
                f"/apis/ringrift.ai/v1alpha1/namespaces/{self.settings.namespace}/selfplayjobs",
                body,
            )
            self._in_flight.add(created["metadata"]["name"])
            self.created += 1
            self.diversity = track_pick(
                self.diversity, Pick(config=job.config, engine_mode=job.engine_mode)
            )
        if plan:
            log.info("autopilot: %d self-play jobs for idle GPUs", len(plan))

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

    def status(self) -> dict[str, Any]:
        summary = summarize_diversity(self.diversity)
        return {
            "created": self.created,
            "reaped": self.reaped,
            "diversity": {
                "picks": summary.total_picks,
                "by_config": dict(summary.by_config.counts),
                "by_engine_mode": dict(summary.by_engine_mode.counts),
                "config_evenness": round(summary.by_config.evenness, 3),
            },
        }

    def loops(self) -> list[LoopSpec]:
        return [
            LoopSpec("job-reaper", float(self.settings.reap_interval_seconds), self.reap_finished),
            LoopSpec(
                "idle-detection",
                float(self.settings.idle_interval_seconds),
                self.fill_idle_gpus,
                depends_on=("job-reaper",),
            ),
        ]
