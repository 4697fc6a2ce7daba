"""The autopilot's pure decisions: which self-play to start on idle GPUs, and which finished
autopilot jobs to clean up (the seed's IdleDetectionLoop and JobReaperLoop, minus the I/O).

Called by ``loops.autopilot`` every tick with a snapshot of the nodes and of the autopilot's own
SelfplayJobs; returns what to create or delete. Counting pending jobs as already spoken for is
what makes a tick interrupted half-way safe to run again: it never creates twice.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from ringrift_operator.api.common import EngineMode
from ringrift_operator.managers.nodes import NodeInfo
from ringrift_operator.managers.selfplayscheduling import (
    ConfigWeight,
    SchedulerSettings,
    pick_config,
    pick_engine_mode,
    plan_job_targets,
)


@dataclass(frozen=True, slots=True)
class NewJob:
    config: str
    engine_mode: EngineMode
    gpus: int
    games: int


@dataclass(frozen=True, slots=True)
class IdleCapacity:
    """GPU self-play the cluster could take now, per node and in total."""

    per_node: tuple[tuple[str, int], ...]
    total: int


def find_idle_capacity(nodes: Sequence[NodeInfo]) -> IdleCapacity:
    """Free GPU slots on Ready, schedulable nodes, up to each node's self-play target."""
    per_node = []
    for node in nodes:
        if not node.ready or node.unschedulable or node.gpu_free <= 0:
            continue
        target = plan_job_targets(node=node).gpu_jobs
        room = min(node.gpu_free, max(0, target - node.running_jobs))
        if room > 0:
            per_node.append((node.name, room))
    return IdleCapacity(tuple(per_node), sum(n for _, n in per_node))


def plan_idle_fill(
    *,
    nodes: Sequence[NodeInfo],
    pending_jobs: int,
    weights: Sequence[ConfigWeight],
    settings: SchedulerSettings,
    rng: random.Random,
    games: int,
    max_new: int,
) -> list[NewJob]:
    """New one-GPU self-play jobs for the idle capacity not already spoken for by pending
    jobs, each config drawn by weight and each engine from the GPU mix."""
    capacity = find_idle_capacity(nodes)
    wanted = min(max_new, capacity.total - pending_jobs)
    if wanted <= 0 or not weights:
        return []
    # Any node with a free GPU stands for "a GPU node" when drawing the engine mode.
    gpu_node = next(n for n in nodes if n.name == capacity.per_node[0][0])
    return [
        NewJob(
            config=pick_config(weights, rng=rng),
            engine_mode=pick_engine_mode(node=gpu_node, settings=settings, rng=rng),
            gpus=1,
            games=games,
        )
        for _ in range(wanted)
    ]


@dataclass(frozen=True, slots=True)
class FinishedJob:
    namespace: str
    name: str
    finished_at: float  # seconds since the epoch


def plan_reaping(
    jobs: Sequence[FinishedJob], *, now: float, keep: int, older_than_seconds: float
) -> list[FinishedJob]:
    """Finished autopilot jobs to delete: beyond the newest ``keep``, those older than the age."""
    newest_first = sorted(jobs, key=lambda j: j.finished_at, reverse=True)
    return [j for j in newest_first[keep:] if now - j.finished_at > older_than_seconds]


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A Pending autopilot SelfplayJob: waiting in the queue for a GPU."""

    namespace: str
    name: str
    config: str
    created_at: float  # seconds since the epoch


def plan_backlog(
    *,
    queued: Sequence[QueuedJob],
    in_flight: int,
    weights: Sequence[ConfigWeight],
    rng: random.Random,
    backlog: int,
    max_per_config: int,
) -> list[str]:
    """Configs of the new Pending jobs that top the queue up to ``backlog`` (jobs created but
    not seen yet, ``in_flight``, count as queued), each drawn by weight among the configs
    with fewer than ``max_per_config`` queued. The idle detection counts the queue as spoken
    for, so the two never ask for the same GPU twice."""
    per_config: dict[str, int] = {}
    for job in queued:
        per_config[job.config] = per_config.get(job.config, 0) + 1
    wanted = backlog - len(queued) - in_flight
    picks: list[str] = []
    while wanted > 0:
        open_ = [
            w for w in weights if per_config.get(w.config, 0) < max_per_config and w.weight > 0
        ]
        if not open_:
            break
        config = pick_config(open_, rng=rng)
        per_config[config] = per_config.get(config, 0) + 1
        picks.append(config)
        wanted -= 1
    return picks


def plan_queue_timeouts(
    queued: Sequence[QueuedJob], *, now: float, max_age_seconds: float
) -> list[QueuedJob]:
    """Queued jobs older than ``max_age_seconds``: the queue's work-queue maintenance removes
    them (the config mix they were drawn from is stale by then)."""
    return [j for j in queued if now - j.created_at > max_age_seconds]
