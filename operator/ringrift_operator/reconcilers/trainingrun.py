"""TrainingRun reconciler: observe the run's pods and (until it starts) its config's data,
decide (``managers.trainingrun``), act — place the export pod near the data, every training rank
at once or none (gang), the gauntlet shards on different nodes, delete pods — record history
(training hashes, A/B games, Elo, the model registry) and write the status, with Events.

Idempotent like the SelfplayJob reconciler: pod names are deterministic per attempt, a create
that finds its pod goes on to bind it, status is written only when it changed, and every history
write is keyed so that writing it twice changes nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable
from typing import Any

from ringrift_operator.api.common import LABEL_JOB_KIND, LABEL_OWNER_NAME, config_key
from ringrift_operator.api.conditions import TrainingRunConditionType, is_true
from ringrift_operator.api.contract import JobKind, parse_result
from ringrift_operator.api.meta import InvalidResourceError
from ringrift_operator.api.trainingrun import (
    KIND,
    PLURAL,
    TERMINAL_PHASES,
    TrainedModel,
    TrainingRun,
    derive_phase,
    parse_trainingrun,
)
from ringrift_operator.kube.client import ApiError
from ringrift_operator.kube.snapshots import PodRecord
from ringrift_operator.managers.elo import INITIAL_RATING
from ringrift_operator.managers.jobs import (
    Distributed,
    OwnerRef,
    build_export_pod,
    build_gauntlet_pod,
    build_training_pod,
    label_value,
)
from ringrift_operator.managers.pods import PodPhase
from ringrift_operator.managers.ranking import (
    best_node_for_gauntlet,
    rank_cpu_nodes,
)
from ringrift_operator.managers.selfplayjob import NodeState
from ringrift_operator.managers.training import plan_gauntlet_shards
from ringrift_operator.managers.trainingrun import (
    Action,
    Decision,
    GameCount,
    PodStart,
    PodView,
    Record,
    decide_trainingrun,
    placed,
    pod_roles,
    training_pods,
    unplaceable,
)
from ringrift_operator.reconcilers.deps import Deps
from ringrift_operator.reconcilers.models import (
    fetch_promoted_model,
    model_id,
    record_promotion,
)
from ringrift_operator.reconcilers.placement import PodRefusedError, create_on_node, summarize
from ringrift_operator.reconcilers.status import report_invalid, write_status
from ringrift_operator.reconcilers.trainingdata import (
    observe_config,
    observe_data,
    remember_start,
    run_attempt,
    run_demand,
    training_candidates,
    with_starts,
)
from ringrift_operator.state.rows import AbTest, AbTestGame, EloRating, GameResult

log = logging.getLogger(__name__)
T = TrainingRunConditionType


def pod_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{name}"


async def reconcile_trainingrun(deps: Deps, body: dict[str, Any]) -> float | None:
    """Bring one TrainingRun a step closer to done; returns seconds until it wants another
    look (None: when something changes)."""
    meta = body.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return None
    try:
        run = parse_trainingrun(body)
    except InvalidResourceError as e:
        await report_invalid(deps, body, e, kind=KIND, plural=PLURAL)
        return None

    pods = await _observe_pods(deps, run)
    pending = not is_true(run.status.conditions, T.DATA_READY)
    if pending and derive_phase(run.status.conditions) not in TERMINAL_PHASES:
        view = await observe_config(deps, run)  # outside the lock: may ask the node agents
        async with deps.training_lock:
            # Decide and remember the start in one step, so that a second run of the config
            # sees this one's start (cooldown) and data hash (dedupe).
            view = with_starts(deps, run, view)
            decision = decide_trainingrun(run, pods=pods, config=view, now=deps.clock(),
                                          epoch=deps.epoch())  # fmt: skip
            if decision.record is Record.STARTED:
                remember_start(deps, run, decision)
    else:
        decision = decide_trainingrun(run, pods=pods, config=None, now=deps.clock(),
                                      epoch=deps.epoch())  # fmt: skip

    for name in decision.delete:
        grace = 0 if pods[name].node_state is not NodeState.READY else None
        await deps.client.delete(pod_path(run.namespace, name), grace_seconds=grace)
    if decision.starts and decision.action in (Action.EXPORT, Action.TRAIN, Action.EVALUATE):
        after = await _place(deps, run, decision, pods)
        # The placement's status builds on the decision's; its Events and record add to them.
        decision = dataclasses.replace(
            after, events=(*decision.events, *after.events), record=decision.record,
            delete=decision.delete,
        )  # fmt: skip
    if decision.record in (Record.EVALUATED, Record.PROMOTED):
        await _record_evaluation(deps, run, decision, pods)
    await _write(deps, run, decision)
    return decision.requeue_after


# ---- observe -----------------------------------------------------------------------------------


async def _observe_pods(deps: Deps, run: TrainingRun) -> dict[str, PodView]:
    records = {p.name: p for p in deps.cache.pods_of(run.uid)}
    for name in run.status.pods:
        if name in records:
            continue
        # The status says we created it: the watch may just be behind. Ask before concluding.
        try:
            deps.cache.upsert_pod(await deps.client.get(pod_path(run.namespace, name)))
        except ApiError as e:
            if not e.not_found:
                raise
        record = deps.cache.pod(run.namespace, name)
        if record is not None and record.owner_uid == run.uid:
            records[name] = record
    return {name: _view(deps, p) for name, p in records.items()}


def _view(deps: Deps, pod: PodRecord) -> PodView:
    ready = deps.cache.node_ready(pod.node) if pod.node else True
    state = (
        NodeState.MISSING if ready is None else NodeState.READY if ready else NodeState.NOT_READY
    )
    return PodView(
        name=pod.name, node=pod.node, phase=pod.phase, exit_code=pod.exit_code,
        message=pod.termination_message, deleting=pod.deleting, node_state=state,
    )  # fmt: skip


# ---- placement ----------------------------------------------------------------------------------


async def _place(
    deps: Deps, run: TrainingRun, decision: Decision, pods: dict[str, PodView]
) -> Decision:
    kind = decision.starts[0].kind
    config = config_key(run.spec.board, run.spec.players)
    started = time.perf_counter()
    count, _, _ = await observe_data(deps, config)
    manifests: list[dict[str, Any]] = []
    async with deps.placement_lock:
        if kind is JobKind.EXPORT:
            chosen, why = _choose_export(deps, run, decision, count)
        elif kind is JobKind.TRAINING:
            export_node = _export_node(run, pods)
            ranked, why = training_candidates(deps, run, count, first=export_node)
            # A retry goes elsewhere when enough other nodes hold the data.
            others = [r for r in ranked if r.name not in decision.avoid]
            ranked = others if len(others) >= run.spec.nodes else ranked
            chosen = [r.name for r in ranked[: run.spec.nodes]]
            if len(chosen) < run.spec.nodes:
                why = (
                    f"needs {run.spec.nodes} node(s) with {run.spec.gpus} free GPU(s) and "
                    f"{run.spec.min_memory_gib} GiB holding the games, found {len(chosen)}"
                ) + (f": {why}" if why else "")
                chosen = []  # gang: all ranks or none
            else:
                why = "data locality" if export_node in chosen else "power score"
        else:
            chosen, why = _choose_gauntlet(deps, run, decision, pods)
        if not chosen:
            return unplaceable(run, decision.status, kind=kind, why=why, now=deps.clock(),
                               epoch=deps.epoch())  # fmt: skip
        starts = decision.starts[: len(chosen)]
        for start, node in zip(starts, chosen, strict=True):
            manifest = await _build_pod(deps, run, start, model=decision.status.model)
            demand_gpus = _gpus_of(manifest)
            cpu = _cpu_of(manifest)
            deps.cache.reserve((run.namespace, start.name), node=node, gpus=demand_gpus,
                               cpu_millis=cpu, memory_bytes=0, now=time.monotonic())  # fmt: skip
            manifests.append(manifest)
    try:
        if kind is JobKind.TRAINING and run.spec.nodes > 1:
            await _ensure_service(deps, run)
        for manifest, node in zip(manifests, chosen, strict=True):
            await create_on_node(deps, run.namespace, manifest, node)
    except PodRefusedError as e:  # a spec the schema let through, Pod Security…: say so
        for start in starts:
            deps.cache.release((run.namespace, start.name))
        return unplaceable(run, decision.status, kind=kind, now=deps.clock(), epoch=deps.epoch(),
                           why=f"the API server refused the pod: {' '.join(str(e).split())[:600]}",
                           retry_after=30.0)  # fmt: skip
    except BaseException:
        for start in starts:
            deps.cache.release((run.namespace, start.name))
        raise
    deps.metrics.placement_latency(time.perf_counter() - started)
    return placed(run, decision.status, starts=starts, nodes=chosen, why=why, now=deps.clock(),
                  epoch=deps.epoch())  # fmt: skip


def _export_node(run: TrainingRun, pods: dict[str, PodView]) -> str:
    """The node of the run's latest successful export (it holds the training set)."""
    roles = pod_roles(run)
    done = [
        (roles[n].attempt, p.node)
        for n, p in pods.items()
        if n in roles and roles[n].kind is JobKind.EXPORT and p.phase is PodPhase.SUCCEEDED
    ]
    return max(done)[1] if done else ""


def _choose_export(
    deps: Deps, run: TrainingRun, decision: Decision, count: GameCount
) -> tuple[list[str], str]:
    """The export reads the games of its node: the node with the most games of the config
    that can take it (and that could also train, so the training set is where training runs),
    else the best CPU node."""
    ranking = rank_cpu_nodes(deps.cache.node_infos(),
                             demand=run_demand(deps, run, JobKind.EXPORT, 0))  # fmt: skip
    ranked = list(ranking.iter_ranked())
    if not ranked:
        return [], summarize(ranking.explain())
    trainers, _ = training_candidates(deps, run, count)
    trainer_names = {r.name for r in trainers}
    avoid = set(decision.avoid)
    best = max(
        ranked,
        key=lambda r: (
            r.name not in avoid,  # a retry goes elsewhere when it can
            r.name in trainer_names,
            count.by_node.get(r.name, 0),
            -r.rank,
        ),
    )
    games = count.by_node.get(best.name, 0)
    why = f"holds {games} games" if games else f"cpu power {best.cpu_power}"
    return [best.name], why


def _choose_gauntlet(
    deps: Deps, run: TrainingRun, decision: Decision, pods: dict[str, PodView]
) -> tuple[list[str], str]:
    """One node per shard, each avoiding the nodes other shards already use; stops at the
    first shard no node can take (the rest are placed on a later look)."""
    demand = run_demand(deps, run, JobKind.GAUNTLET, 1)
    roles = pod_roles(run)
    used = {
        p.node
        for n, p in pods.items()
        if n in roles and roles[n].kind is JobKind.GAUNTLET and p.live and p.node
    } | set(decision.avoid)  # and a retried shard's failed node
    chosen: list[str] = []
    why = "shards spread over nodes"
    for start in decision.starts:
        selection = best_node_for_gauntlet(
            deps.cache.node_infos(), demand=demand, avoid=frozenset(used)
        )
        if selection.chosen is None:
            why = selection.message
            break
        chosen.append(selection.chosen.name)
        used.add(selection.chosen.name)
        # Reserved now so that the next shard's ranking sees this GPU taken.
        deps.cache.reserve((run.namespace, start.name), node=selection.chosen.name,
                           gpus=demand.gpus, cpu_millis=demand.cpu_millis, memory_bytes=0,
                           now=time.monotonic())  # fmt: skip
    return chosen, why


async def _build_pod(
    deps: Deps, run: TrainingRun, start: PodStart, *, model: TrainedModel | None
) -> dict[str, Any]:
    attempt = run_attempt(deps, run, start.attempt)
    config = attempt.config
    if start.kind is JobKind.EXPORT:
        return build_export_pod(attempt=attempt, settings=deps.workload)
    if start.kind is JobKind.TRAINING:
        base = run.spec.base_model or ""
        if not base:
            promoted = await fetch_promoted_model(deps, config=config)
            base = promoted.uri if promoted is not None else ""
        distributed = None
        if run.spec.nodes > 1:
            rank0 = training_pods(run, start.attempt)[0]
            distributed = Distributed(
                master_addr=f"{rank0}.{run.name}", world_size=run.spec.nodes, node_rank=start.shard
            )
        manifest = build_training_pod(attempt=attempt, settings=deps.workload,
                                      gpus=run.spec.gpus, model_path=base,
                                      distributed=distributed)  # fmt: skip
        if distributed is not None:
            # <pod>.<service> resolves through the headless Service named after the run.
            manifest["spec"]["hostname"] = start.name
            manifest["spec"]["subdomain"] = run.name
        return manifest
    opponents = await _resolve_opponents(deps, config, run.spec.gauntlet.opponents)
    return build_gauntlet_pod(
        attempt=attempt, settings=deps.workload, model_path=model.uri if model else "",
        opponents=opponents, games=start.games, shard=start.shard,
        shards=len(plan_gauntlet_shards(games=run.spec.gauntlet.games,
                                        pods=run.spec.gauntlet.shards)),
        gpus=1,
    )  # fmt: skip


async def _resolve_opponents(deps: Deps, config: str, opponents: Iterable[str]) -> list[str]:
    """``promoted`` becomes the config's promoted model (dropped while there is none)."""
    promoted = await fetch_promoted_model(deps, config=config)
    resolved = []
    for opponent in opponents:
        if opponent == "promoted":
            if promoted is not None:
                resolved.append(promoted.uri)
        else:
            resolved.append(opponent)
    return resolved or ["heuristic"]


def _gpus_of(manifest: dict[str, Any]) -> int:
    requests = manifest["spec"]["containers"][0]["resources"]["requests"]
    return int(requests.get("nvidia.com/gpu", "0"))


def _cpu_of(manifest: dict[str, Any]) -> int:
    requests = manifest["spec"]["containers"][0]["resources"]["requests"]
    return int(str(requests.get("cpu", "0m")).rstrip("m") or 0)


async def _ensure_service(deps: Deps, run: TrainingRun) -> None:
    """The headless Service of a distributed run's rendezvous (rank 0 is MASTER_ADDR)."""
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": run.name,
            "namespace": run.namespace,
            "ownerReferences": [
                OwnerRef(api_version=run.api_version, kind=KIND, name=run.name,
                         uid=run.uid).to_dict()
            ],
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {LABEL_OWNER_NAME: label_value(run.name), LABEL_JOB_KIND: "training"},
            "ports": [{"name": "rendezvous", "port": 29500, "targetPort": 29500}],
        },
    }  # fmt: skip
    try:
        await deps.client.create(f"/api/v1/namespaces/{run.namespace}/services", body)
    except ApiError as e:
        if not e.conflict:
            raise


# ---- history ------------------------------------------------------------------------------------


async def _record_evaluation(
    deps: Deps, run: TrainingRun, decision: Decision, pods: dict[str, PodView]
) -> None:
    """The gauntlet as an A/B test (one per run) with its games, the candidate's Elo, and — when
    promoted — the registry. The promotion is written before the status says Promoted."""
    status = decision.status
    model = status.model
    if model is None:
        return
    config = config_key(run.spec.board, run.spec.players)
    now = deps.clock()
    baseline = await fetch_promoted_model(deps, config=config)
    if decision.record is Record.PROMOTED:
        await record_promotion(deps, config=config, model=model,
                               training_run=f"{run.namespace}/{run.name}", now=now)  # fmt: skip
    if deps.history is None:
        return
    at = now.timestamp()
    opponents = ",".join(run.spec.gauntlet.opponents)
    rows: list[Any] = [
        AbTest(test_id=run.uid, config=config, candidate_model=model.uri,
               baseline_model=baseline.uri if baseline else "", created_at=at,
               opponents=tuple(run.spec.gauntlet.opponents),
               training_run=f"{run.namespace}/{run.name}")
    ]  # fmt: skip
    # The workload reports a tally per shard, not each game: its games are recorded in the
    # order wins, draws, losses, numbered within the shard, against the shard's opponents.
    roles = pod_roles(run)
    for name in status.pods:
        role = roles.get(name)
        result = parse_result(pods[name].message) if name in pods else None
        if role is None or role.kind is not JobKind.GAUNTLET or result is None:
            continue
        outcomes = (
            [GameResult.WIN] * (result.wins or 0)
            + [GameResult.DRAW] * (result.draws or 0)
            + [GameResult.LOSS] * (result.losses or 0)
        )
        rows += [
            AbTestGame(test_id=run.uid, opponent=opponents, result=r, shard=role.shard, game=g,
                       played_at=at, pod=name)
            for g, r in enumerate(outcomes)
        ]  # fmt: skip
    gauntlet = status.gauntlet
    if gauntlet is not None:
        # A simple update from the gauntlet score: the candidate starts from the promoted
        # model's rating (or 1500) plus its Elo difference against the gauntlet's opponents.
        rating = INITIAL_RATING
        if baseline is not None:
            known = await deps.history.fetch_elo_rating(config=config, model_id=baseline.model_id)
            rating = known.rating if known is not None else INITIAL_RATING
        games = gauntlet.wins + gauntlet.losses + gauntlet.draws
        rows.append(EloRating(model_id=model_id(model), config=config,
                              rating=rating + (gauntlet.elo_delta or 0), games=games,
                              updated_at=at))  # fmt: skip
    try:
        await deps.history.record_many(rows)
    except Exception:
        log.exception("recording the gauntlet of %s/%s failed", run.namespace, run.name)


# ---- status -------------------------------------------------------------------------------------


async def _write(deps: Deps, run: TrainingRun, decision: Decision) -> None:
    await write_status(deps, run, plural=PLURAL, old=run.status, new=decision.status,
                       events=decision.events)  # fmt: skip
