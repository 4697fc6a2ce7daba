"""SelfplayJob reconciler: observe the job's current attempt, decide (``managers.selfplayjob``),
act — place the attempt's pod on the best node (created with ``spec.nodeName`` set: the operator
is the scheduler of its own pods), delete a pod — and write the status that results, with Events.

A placement does not wait for its status: the reconcile that placed the pod leaves the status it
decided in ``Deps.unwritten`` and asks for another look, which the work queue gives after the
jobs still waiting for a node (``Controller``'s priorities). That next reconcile writes the
placement's status and Event together with whatever the pod did meanwhile, in one status write;
a pod not started yet gets up to ``COALESCE_SECONDS`` to start first, so that Scheduled and Running
are usually one write. Per placed job: the pod's create, one status write, the Scheduled Event.
While other jobs wait for a node (a burst), those status writes wait too — up to
``DEFER_SECONDS`` — so that the API server spends itself on placements first.

Idempotent: the pod name is deterministic per attempt, a create that finds the pod goes on
(binding it if it is somehow unbound), and status is written only when it changed. A status lost
between the create and its write (a restart) is rebuilt from the bound pod.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ringrift_operator.api.common import config_key
from ringrift_operator.api.contract import JobKind
from ringrift_operator.api.meta import InvalidResourceError
from ringrift_operator.api.selfplayjob import KIND, PLURAL, SelfplayJob, parse_selfplayjob
from ringrift_operator.kube.client import ApiError
from ringrift_operator.managers.gpus import parse_gpu_class
from ringrift_operator.managers.jobs import (
    Attempt,
    OwnerRef,
    build_demand,
    build_selfplay_pod,
)
from ringrift_operator.managers.pods import PodPhase
from ringrift_operator.managers.ranking import describe_alternatives, rank_for_placement
from ringrift_operator.managers.selfplayjob import (
    Action,
    AttemptView,
    Decision,
    JobEvent,
    NodeState,
    attempt_pod_name,
    current_attempt,
    decide_selfplayjob,
    placed,
    pod_rejected,
    unplaceable,
)
from ringrift_operator.reconcilers.deps import Deps, Unwritten
from ringrift_operator.reconcilers.models import fetch_promoted_model
from ringrift_operator.reconcilers.placement import (
    PodRefusedError,
    annotate_decision,
    create_on_node,
    pod_path,
    summarize,
    toleration,
)
from ringrift_operator.reconcilers.status import report_invalid, write_status
from ringrift_operator.state.rows import JobAttempt

log = logging.getLogger(__name__)

COALESCE_SECONDS = 2.0
"""How long a placement's status may wait for its pod to start (one write instead of two)."""
DEFER_SECONDS = 15.0
"""How long a placement's status may wait while other jobs wait for a node."""

__all__ = ["pod_path", "reconcile_selfplayjob"]


async def reconcile_selfplayjob(deps: Deps, body: dict[str, Any]) -> float | None:
    """Bring one SelfplayJob a step closer to done; returns seconds until it wants another
    look (None: when something changes)."""
    meta = body.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return None
    try:
        job = parse_selfplayjob(body)
    except InvalidResourceError as e:
        await report_invalid(deps, body, e, kind=KIND, plural=PLURAL)
        return None

    key = (KIND, job.namespace, job.name)
    pending = deps.unwritten.pop(key, None)
    if pending is not None and pending.uid != job.uid:
        pending = None  # left by an earlier object of that name
    try:
        return await _reconcile(deps, job, key, pending)
    except BaseException:
        if pending is not None:
            deps.unwritten.setdefault(key, pending)  # not written: the next try writes it
        raise


async def _reconcile(
    deps: Deps, job: SelfplayJob, key: tuple[str, str, str], pending: Unwritten | None
) -> float | None:
    # ``current``: the job as this process last decided it (the written status, or the
    # placement's status still to write); what is written is compared with ``job.status``.
    current = job if pending is None else job.model_copy(update={"status": pending.status})
    carried: tuple[JobEvent, ...] = pending.events if pending is not None else ()
    if pending is not None:
        age = time.monotonic() - pending.since
        if age < DEFER_SECONDS and not job.spec.suspend and deps.placements_backlogged():
            # Jobs are waiting for a node: their creates go first, this write when the backlog
            # clears (the controller queues it again then) or DEFER_SECONDS after the placement.
            deps.unwritten[key] = pending
            deps.deferred.add(key)
            return DEFER_SECONDS - age
    view = await _observe(deps, current)
    if pending is not None and view.phase is PodPhase.PENDING and view.node and not view.deleting:
        # Placed a moment ago and not started yet: wait a little for it to start, so that one
        # status write says both (it usually does; the pod's change brings the job back).
        wait = COALESCE_SECONDS - (time.monotonic() - pending.since)
        if wait > 0:
            deps.unwritten[key] = pending
            return wait
    decision = decide_selfplayjob(current, attempt=view, now=deps.clock(), epoch=deps.epoch())
    if decision.action is Action.DELETE_POD and decision.pod:
        grace = 0 if view.node_state is not NodeState.READY else None
        await deps.client.delete(pod_path(job.namespace, decision.pod), grace_seconds=grace)
    elif decision.action is Action.PLACE:
        decision, on_node = await _place(deps, current, decision)
        if on_node:
            # On its node: the status (and its Event) waits for the next look, after the jobs
            # still waiting for a node.
            deps.unwritten[key] = Unwritten(
                job.uid, decision.status, carried + decision.events, since=time.monotonic()
            )
            return 0.0
    await _write(deps, job, decision, carried + decision.events)
    return decision.requeue_after


async def _observe(deps: Deps, job: SelfplayJob) -> AttemptView:
    name = attempt_pod_name(job, current_attempt(job))
    pod = deps.cache.pod(job.namespace, name)
    if pod is None and job.status.pod == name:
        # The status says we placed it: the watch may just be behind. Ask before concluding.
        try:
            deps.cache.upsert_pod(await deps.client.get(pod_path(job.namespace, name)))
            pod = deps.cache.pod(job.namespace, name)
        except ApiError as e:
            if not e.not_found:
                raise
    if pod is None:
        return AttemptView(pod=name)
    if pod.owner_uid != job.uid:
        # A pod of an earlier object with this name, on its way out (garbage collection):
        # wait for it rather than adopt it.
        return AttemptView(pod=name, exists=True, deleting=True)
    ready = deps.cache.node_ready(pod.node) if pod.node else True
    state = (
        NodeState.MISSING if ready is None else NodeState.READY if ready else NodeState.NOT_READY
    )
    return AttemptView(
        pod=name, exists=True, node=pod.node, phase=pod.phase, exit_code=pod.exit_code,
        message=pod.termination_message, deleting=pod.deleting, node_state=state,
    )  # fmt: skip


async def _place(deps: Deps, job: SelfplayJob, decision: Decision) -> tuple[Decision, bool]:
    """Choose the node and create the pod on it: the status that results, and whether the pod
    is on a node (False: no node can take it yet)."""
    spec = job.spec
    owner = OwnerRef(api_version=job.api_version, kind=KIND, name=job.name, uid=job.uid)
    attempt = Attempt(
        owner=owner,
        namespace=job.namespace,
        config=config_key(spec.board, spec.players),
        number=current_attempt(job),
        epoch=deps.epoch(),
        tolerations=tuple(toleration(t) for t in spec.placement.tolerations),
        node_selector=dict(spec.placement.node_selector),
        active_deadline_seconds=spec.active_deadline_seconds,
    )
    min_class = None
    if spec.placement.min_gpu_class.value != "any" and spec.gpus > 0:
        min_class = parse_gpu_class(spec.placement.min_gpu_class.value)
    demand = build_demand(
        kind=JobKind.SELFPLAY, settings=deps.workload, attempt=attempt, gpus=spec.gpus,
        engine_mode=spec.engine_mode, min_gpu_class=min_class,
    )  # fmt: skip
    model_path = spec.model or ""
    if not model_path:  # unpinned: the promoted model of the config, if there is one
        promoted = await fetch_promoted_model(deps, config=attempt.config)
        model_path = promoted.uri if promoted is not None else ""
    manifest = build_selfplay_pod(
        attempt=attempt, settings=deps.workload, engine_mode=spec.engine_mode,
        games=spec.games, gpus=spec.gpus, model_path=model_path,
    )  # fmt: skip
    name = manifest["metadata"]["name"]
    key = (job.namespace, name)
    started = time.perf_counter()
    existing = deps.cache.pod(job.namespace, name)
    reasons: tuple[str, ...]
    alternatives = ""
    if existing is not None and existing.node and existing.owner_uid == job.uid:
        node = existing.node  # placed earlier; the status write was what got lost
        score, reasons = job.status.power_score or 0, ("placed earlier",)
    else:
        async with deps.placement_lock:
            # Decide over the snapshot and reserve in one step, so that concurrent placements
            # each see the GPUs the others just took.
            ranking = rank_for_placement(
                deps.cache.node_infos(), demand=demand, avoid=decision.exclude_nodes
            )
            best = ranking.best
            if best is None:
                why = summarize(ranking.explain())
                waiting = unplaceable(job, decision.status, why=why, now=deps.clock(),
                                      epoch=deps.epoch())  # fmt: skip
                return waiting, False
            node = best.name
            score = best.gpu_power if demand.gpus > 0 else best.cpu_power
            reasons = tuple(best.reasons)
            alternatives = describe_alternatives(ranking)
            deps.cache.reserve(
                key, node=node, gpus=demand.gpus, cpu_millis=demand.cpu_millis,
                memory_bytes=0, now=time.monotonic(),
            )  # fmt: skip
            annotate_decision(manifest, score=score, decided_at=deps.clock())
        try:
            await create_on_node(deps, job.namespace, manifest, node)
        except PodRefusedError as e:
            deps.cache.release(key)
            rejected = pod_rejected(job, decision.status, why=str(e), now=deps.clock(),
                                    epoch=deps.epoch())  # fmt: skip
            return rejected, False
        except BaseException:
            deps.cache.release(key)
            raise
    deps.metrics.placement_latency(time.perf_counter() - started)
    result = placed(
        job, decision.status, node=node, pod=name, score=score, reasons=reasons,
        now=deps.clock(), epoch=deps.epoch(), alternatives=alternatives,
    )  # fmt: skip
    return result, True


async def _write(
    deps: Deps, job: SelfplayJob, decision: Decision, events: tuple[JobEvent, ...]
) -> None:
    written = await write_status(deps, job, plural=PLURAL, old=job.status,
                                 new=decision.status, events=events)  # fmt: skip
    if written:
        _record_history(deps, job, decision)


def _record_history(deps: Deps, job: SelfplayJob, decision: Decision) -> None:
    if deps.history is None:
        return
    now = deps.clock().timestamp()
    old = {r.attempt: r for r in job.status.recent_attempts}
    for rec in decision.status.recent_attempts:
        before = old.get(rec.attempt)
        if before is not None and before.result == rec.result and before.node == rec.node:
            continue
        finished = None if rec.result.value == "Running" else now
        deps.history.enqueue(
            JobAttempt(
                kind=KIND, namespace=job.namespace, name=job.name, uid=job.uid,
                attempt=rec.attempt, phase=rec.result.value, started_at=now,
                epoch=deps.epoch(), pod=rec.pod or "", node=rec.node or "",
                reason=rec.reason or "", finished_at=finished,
            )
        )  # fmt: skip
        if rec.node and rec.result.value in ("Failed", "Lost") and rec.reason != "Suspended":
            from ringrift_operator.state.rows import NodeEvent, NodeEventKind

            deps.history.enqueue(
                NodeEvent(node=rec.node, kind=NodeEventKind.FAILURE, at=now,
                          reason=rec.reason or "", job=f"{job.namespace}/{job.name}")
            )  # fmt: skip
            deps.cache.record_failure(rec.node)
