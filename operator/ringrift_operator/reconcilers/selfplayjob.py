"""SelfplayJob reconciler: observe the job's current attempt, decide (``managers.selfplayjob``),
act — place the attempt's pod on the best node (create, then bind: the operator is the scheduler
of its own pods), delete a pod — and write the status that results, with Events.

Idempotent: the pod name is deterministic per attempt, a create that finds the pod goes on to
bind it, a bind that finds it bound goes on, and status is written only when it changed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ringrift_operator.api.common import (
    ANNOTATION_POWER_SCORE,
    config_key,
)
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
from ringrift_operator.managers.ranking import describe_alternatives, rank_nodes
from ringrift_operator.managers.selfplayjob import (
    Action,
    AttemptView,
    Decision,
    NodeState,
    attempt_pod_name,
    current_attempt,
    decide_selfplayjob,
    placed,
    pod_rejected,
    unplaceable,
)
from ringrift_operator.reconcilers.deps import Deps
from ringrift_operator.reconcilers.models import fetch_promoted_model
from ringrift_operator.reconcilers.status import report_invalid, write_status
from ringrift_operator.state.rows import JobAttempt

log = logging.getLogger(__name__)


def pod_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{name}"


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

    view = await _observe(deps, job)
    decision = decide_selfplayjob(job, attempt=view, now=deps.clock(), epoch=deps.epoch())
    if decision.action is Action.DELETE_POD and decision.pod:
        grace = 0 if view.node_state is not NodeState.READY else None
        await deps.client.delete(pod_path(job.namespace, decision.pod), grace_seconds=grace)
    elif decision.action is Action.PLACE:
        decision = await _place(deps, job, decision)
    await _write(deps, job, decision)
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


async def _place(deps: Deps, job: SelfplayJob, decision: Decision) -> Decision:
    spec = job.spec
    owner = OwnerRef(api_version=job.api_version, kind=KIND, name=job.name, uid=job.uid)
    attempt = Attempt(
        owner=owner,
        namespace=job.namespace,
        config=config_key(spec.board, spec.players),
        number=current_attempt(job),
        epoch=deps.epoch(),
        tolerations=tuple(_toleration(t) for t in spec.placement.tolerations),
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
            ranking = rank_nodes(
                deps.cache.node_infos(exclude=decision.exclude_nodes), demand=demand
            )
            if ranking.best is None and decision.exclude_nodes:
                ranking = rank_nodes(deps.cache.node_infos(), demand=demand)
            best = ranking.best
            if best is None:
                why = _summarize(ranking.explain())
                return unplaceable(job, decision.status, why=why, now=deps.clock(),
                                   epoch=deps.epoch())  # fmt: skip
            node = best.name
            score = best.gpu_power if demand.gpus > 0 else best.cpu_power
            reasons = tuple(best.reasons)
            alternatives = describe_alternatives(ranking)
            deps.cache.reserve(
                key, node=node, gpus=demand.gpus, cpu_millis=demand.cpu_millis,
                memory_bytes=0, now=time.monotonic(),
            )  # fmt: skip
        manifest["metadata"].setdefault("annotations", {})[ANNOTATION_POWER_SCORE] = str(score)
        try:
            await _create_and_bind(deps, job.namespace, manifest, node)
        except PodRefusedError as e:
            deps.cache.release(key)
            return pod_rejected(job, decision.status, why=str(e), now=deps.clock(),
                                epoch=deps.epoch())  # fmt: skip
        except BaseException:
            deps.cache.release(key)
            raise
    deps.metrics.placement_latency(time.perf_counter() - started)
    return placed(
        job, decision.status, node=node, pod=name, score=score, reasons=reasons,
        now=deps.clock(), epoch=deps.epoch(), alternatives=alternatives,
    )  # fmt: skip


class PodRefusedError(Exception):
    """The API server refused to create the pod (400/403/422): retrying at once cannot help.
    Raised by ``_create_and_bind`` (also the TrainingRun reconciler's)."""


async def _create_and_bind(deps: Deps, namespace: str, manifest: dict[str, Any], node: str) -> None:
    name = manifest["metadata"]["name"]
    try:
        await deps.client.create(f"/api/v1/namespaces/{namespace}/pods", manifest)
    except ApiError as e:
        if e.status in (400, 403, 422):  # invalid (a spec the schema let through), PodSecurity…
            raise PodRefusedError(str(e)) from e
        if not e.conflict:
            raise
    try:
        await deps.client.bind_pod(namespace=namespace, pod=name, node=node)
    except ApiError as e:
        # Already bound (a previous run of this reconcile got this far): fine if to our node.
        if not e.conflict:
            raise
        current = await deps.client.get(pod_path(namespace, name))
        bound = (current.get("spec") or {}).get("nodeName")
        if not bound:
            raise
        deps.cache.upsert_pod(current)


def _toleration(t: Any) -> Any:
    from ringrift_operator.managers.nodes import TaintEffect, Toleration

    return Toleration(
        key=t.key or None,
        operator=t.operator.value,
        value=t.value,
        effect=TaintEffect(t.effect.value) if t.effect else None,
    )


def _summarize(lines: list[str], limit: int = 4) -> str:
    if not lines:
        return "no nodes"
    head = "; ".join(lines[:limit])
    return head + (f"; and {len(lines) - limit} more" if len(lines) > limit else "")


async def _write(deps: Deps, job: SelfplayJob, decision: Decision) -> None:
    written = await write_status(deps, job, plural=PLURAL, old=job.status,
                                 new=decision.status, events=decision.events)  # fmt: skip
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
