"""What a TrainingRun's reconciler knows of its config: the games (from the node agents'
manifests, or from the SelfplayJobs), the data hash, the last training, recent data hashes,
and the nodes that could train it now.

Read by ``reconcilers.trainingrun`` before a run starts (the gates) and when it places its export
and training pods (data locality). Games are counted from the manifests when the agents answer:
a file is attributed to the SelfplayJob attempt that wrote it (``<job>-a<attempt>-``) and that
attempt's games are spread over its files. Without manifests — no agents, or none answered —
the count falls back to the games the config's SelfplayJobs completed, on the node each ran on,
and the data hash to a hash of those jobs' uids and games; games moved by a SyncPlan or written
by anything but a SelfplayJob are then not seen. Both counts are cluster-wide per config.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from ringrift_operator.api.common import config_key
from ringrift_operator.api.contract import JobKind
from ringrift_operator.api.meta import parse_rfc3339
from ringrift_operator.api.trainingrun import KIND, TrainingRun
from ringrift_operator.managers.inventory import build_inventory
from ringrift_operator.managers.jobs import Attempt, OwnerRef, build_demand
from ringrift_operator.managers.ranking import Demand, RankedNode, rank_gpu_nodes
from ringrift_operator.managers.trainingrun import (
    ConfigView,
    Decision,
    GameCount,
    JobGames,
    TrainingStart,
    count_games_from_jobs,
    count_games_in_files,
)
from ringrift_operator.reconcilers.deps import Deps
from ringrift_operator.reconcilers.manifests import agent_endpoints
from ringrift_operator.reconcilers.placement import summarize, toleration
from ringrift_operator.state.rows import TrainingHash

log = logging.getLogger(__name__)
DEDUPE_WINDOW = 100  # the seed remembers the last 100 training hashes
INVENTORY_MAX_AGE_SECONDS = 3.0  # manifests older than this are fetched again
SETTLE_SECONDS = 30.0  # a job this recent whose files the agents do not show yet: wait for them
SELFPLAYJOB = "SelfplayJob"


def _same_config(body: dict[str, Any], config: str) -> bool:
    spec = body.get("spec") or {}
    try:
        return config_key(spec.get("board", ""), int(spec.get("players", 2))) == config
    except (ValueError, TypeError):
        return False


def _selfplay_games(deps: Deps, config: str) -> list[JobGames]:
    jobs = []
    for (kind, _, name), body in list(deps.resources.items()):
        if kind != SELFPLAYJOB or not _same_config(body, config):
            continue
        status = body.get("status") or {}
        games = int(status.get("gamesCompleted") or 0)
        done = status.get("completionTime")
        if games:
            jobs.append(JobGames(name=name, games=games, attempt=int(status.get("attempts") or 1),
                                 node=str(status.get("node") or ""),
                                 completed_at=parse_rfc3339(done) if done else None))  # fmt: skip
    return jobs


async def observe_data(deps: Deps, config: str) -> tuple[GameCount, str, str]:
    """(games, data hash, source). From the node agents' manifests when they answer: the game
    files of the config on every node, games attributed to the SelfplayJobs that wrote them;
    else from the SelfplayJobs alone (games completed, on the node each ran on), hashed over
    the jobs' uids and games. ``GameCount.unseen`` lists jobs that finished in the last
    :data:`SETTLE_SECONDS` whose files the manifests do not show yet."""
    jobs = _selfplay_games(deps, config)
    endpoints = agent_endpoints(deps.cache.nodes)
    if endpoints:
        # Manifests older than the newest finished job of the config miss its games: ask again.
        newest = max((j.completed_at.timestamp() for j in jobs if j.completed_at), default=0.0)
        fresher_than = max(deps.clock().timestamp() - INVENTORY_MAX_AGE_SECONDS, newest)
        try:
            collection = await deps.store.collect(endpoints, fresher_than=fresher_than)
        except Exception:
            log.exception("collecting manifests for %s failed; counting SelfplayJobs", config)
        else:
            if collection.manifests:
                prefix = f"games/{config}/"
                files = {
                    node: [p for p in m.files if p.startswith(prefix)]
                    for node, m in collection.manifests.items()
                }
                inventory = build_inventory(collection.manifests.values(), configs=[config])
                count = count_games_in_files(files, jobs)
                now = deps.clock()
                recent = {
                    j.name
                    for j in jobs
                    if j.completed_at and (now - j.completed_at).total_seconds() < SETTLE_SECONDS
                }
                unseen = tuple(n for n in count.unseen if n in recent)
                count = GameCount(total=count.total, by_node=count.by_node, unseen=unseen)
                return count, inventory.of(config).data_hash, "node manifests"
    digest = hashlib.sha256(config.encode())
    for (kind, ns, name), body in sorted(deps.resources.items()):
        if kind == SELFPLAYJOB and _same_config(body, config):
            games = int((body.get("status") or {}).get("gamesCompleted") or 0)
            uid = (body.get("metadata") or {}).get("uid", f"{ns}/{name}")
            if games:
                digest.update(f"{uid}\t{games}\n".encode())
    return count_games_from_jobs(jobs), digest.hexdigest()[:16], "SelfplayJobs"


def _other_runs(deps: Deps, run: TrainingRun, config: str) -> list[dict[str, Any]]:
    return [
        body
        for (kind, _, _), body in list(deps.resources.items())
        if kind == KIND
        and _same_config(body, config)
        and (body.get("metadata") or {}).get("uid") != run.uid
    ]


async def observe_config(deps: Deps, run: TrainingRun) -> ConfigView:
    config = config_key(run.spec.board, run.spec.players)
    count, data_hash, source = await observe_data(deps, config)
    others = _other_runs(deps, run, config)
    finished = [
        (s.get("completionTime") or "", int(s.get("gamesUsed") or 0))
        for s in (b.get("status") or {} for b in others)
        if s.get("phase") in ("Complete", "Promoted")
    ]
    baseline = max(finished)[1] if finished else 0
    hashes = {
        str(s["dataHash"])
        for s in (b.get("status") or {} for b in others)
        if s.get("dataHash") and s.get("startTime")
    }
    if deps.history is not None:
        try:
            recent = await deps.history.list_training_hashes(limit=DEDUPE_WINDOW, config=config)
            hashes |= {h.digest for h in recent}
        except Exception:
            log.exception("reading training hashes failed; deduping from statuses only")
    starts = [
        parse_rfc3339(str(s["startTime"]))
        for s in (b.get("status") or {} for b in others)
        if s.get("startTime")
    ]
    fitting, why = training_capacity(deps, run, count)
    return ConfigView(
        total_games=count.total, games_at_last_training=baseline, data_hash=data_hash,
        recent_hashes=frozenset(hashes), last_started_at=max(starts, default=None),
        fitting_nodes=fitting, capacity_message=why, source=source, settled=not count.unseen,
    )  # fmt: skip


def with_starts(deps: Deps, run: TrainingRun, view: ConfigView) -> ConfigView:
    """Fold in the starts this process made that the watch may not have shown yet."""
    config = config_key(run.spec.board, run.spec.players)
    mine = [s for s in deps.training_starts if s.config == config and s.run_uid != run.uid]
    if not mine:
        return view
    last = max(s.started_at for s in mine)
    if view.last_started_at is not None:
        last = max(last, view.last_started_at)
    return ConfigView(
        total_games=view.total_games, games_at_last_training=view.games_at_last_training,
        data_hash=view.data_hash, recent_hashes=view.recent_hashes | {s.data_hash for s in mine},
        last_started_at=last, fitting_nodes=view.fitting_nodes,
        capacity_message=view.capacity_message, source=view.source, settled=view.settled,
    )  # fmt: skip


def remember_start(deps: Deps, run: TrainingRun, decision: Decision) -> None:
    config = config_key(run.spec.board, run.spec.players)
    data_hash = decision.status.data_hash or ""
    now = deps.clock()
    deps.training_starts.append(TrainingStart(config, run.uid, data_hash, now))
    del deps.training_starts[:-DEDUPE_WINDOW]
    if deps.history is not None and data_hash:
        deps.history.enqueue(TrainingHash(digest=data_hash, config=config, at=now.timestamp()))


def run_attempt(deps: Deps, run: TrainingRun, number: int) -> Attempt:
    spec = run.spec
    owner = OwnerRef(api_version=run.api_version, kind=KIND, name=run.name, uid=run.uid)
    return Attempt(
        owner=owner, namespace=run.namespace, config=config_key(spec.board, spec.players),
        number=number, epoch=deps.epoch(),
        tolerations=tuple(toleration(t) for t in spec.placement.tolerations),
        node_selector=dict(spec.placement.node_selector),
        active_deadline_seconds=spec.active_deadline_seconds,
    )  # fmt: skip


def run_demand(deps: Deps, run: TrainingRun, kind: JobKind, gpus: int) -> Demand:
    base = build_demand(kind=kind, settings=deps.workload, attempt=run_attempt(deps, run, 1),
                        gpus=gpus)  # fmt: skip
    if kind is JobKind.GAUNTLET:
        return base
    # Export and training read all of the config's data: both need the run's memory floor.
    return Demand(
        gpus=base.gpus, cpu_millis=base.cpu_millis, min_memory_gib=run.spec.min_memory_gib,
        allowed_archs=base.allowed_archs, tolerations=base.tolerations,
        node_selector=base.node_selector,
    )  # fmt: skip


def training_candidates(
    deps: Deps, run: TrainingRun, count: GameCount, *, first: str = ""
) -> tuple[list[RankedNode], str]:
    """Nodes that could take one training rank now, best first. Training reads the node's own
    data, so when it is known where the games are, only nodes holding them qualify; the export
    node (``first``: it holds the training set) leads, then the most games, then power."""
    demand = run_demand(deps, run, JobKind.TRAINING, run.spec.gpus)
    ranking = rank_gpu_nodes(deps.cache.node_infos(), demand=demand)
    ranked = list(ranking.iter_ranked())
    holders = {n for n, g in count.by_node.items() if g > 0}
    if holders:
        ranked = [r for r in ranked if r.name in holders or r.name == first]
    ranked.sort(key=lambda r: (r.name != first, -count.by_node.get(r.name, 0), r.rank))
    if ranked:
        return ranked, ""
    if not holders:
        return ranked, summarize(ranking.explain())
    # Say why the nodes holding the games cannot take it; the others do not matter.
    reasons = [rej.describe() for rej in ranking.rejected if rej.name in holders]
    why = f"the games are on {', '.join(sorted(holders))}"
    return ranked, why + (f"; {summarize(reasons)}" if reasons else "")


def training_capacity(deps: Deps, run: TrainingRun, count: GameCount) -> tuple[int, str]:
    ranked, why = training_candidates(deps, run, count)
    return len(ranked), why
