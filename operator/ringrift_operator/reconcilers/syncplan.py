"""SyncPlan reconciler: observe the plan's round, decide (``managers.syncplan``), act — start a
round in the background (``reconcilers.syncrounds``) — and write the status that results, with
one Event per finished round.

Idempotent and level-based: the round in memory is the truth while this process runs (the status
may lag behind it); after a restart the status says whether a round is due. Status is written
(a merge patch of ``/status``) only when it changed. Deleting a plan cancels its round
(:func:`forget_syncplan`, called by the controller on the watch's DELETED event).
"""

from __future__ import annotations

import logging
from typing import Any

from ringrift_operator.api.meta import InvalidResourceError
from ringrift_operator.api.syncplan import KIND, PLURAL, SyncPlan, parse_syncplan
from ringrift_operator.managers.syncplan import (
    Action,
    Decision,
    decide_syncplan,
    next_round,
    resolve_targets,
)
from ringrift_operator.managers.syncplanning import SyncSettings
from ringrift_operator.reconcilers.deps import Deps
from ringrift_operator.reconcilers.manifests import agent_endpoints
from ringrift_operator.reconcilers.status import report_invalid, write_status
from ringrift_operator.reconcilers.syncrounds import RoundInputs

log = logging.getLogger(__name__)


async def reconcile_syncplan(deps: Deps, body: dict[str, Any]) -> float | None:
    """Bring one SyncPlan a step further; returns seconds until it wants another look."""
    meta = body.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        forget_syncplan(deps, body)
        return None
    try:
        plan = parse_syncplan(body)
    except InvalidResourceError as e:
        await report_invalid(deps, body, e, kind=KIND, plural=PLURAL)
        return None
    rounds = deps.sync_rounds
    view = rounds.view(plan.uid)
    decision = decide_syncplan(plan, round=view, now=deps.clock(), epoch=deps.epoch())
    if decision.action is Action.START_ROUND:
        _start_round(deps, plan, why=decision.why)
    await _write(deps, plan, decision)
    if view is not None and decision.events:
        rounds.mark_reported(plan.uid, view.number)
    return decision.requeue_after


def forget_syncplan(deps: Deps, body: dict[str, Any]) -> None:
    """The plan is gone or going: stop its round and drop its metrics."""
    meta = body.get("metadata") or {}
    deps.sync_rounds.cancel(meta.get("uid", ""))
    deps.metrics.sync_forget(meta.get("namespace", ""), meta.get("name", ""))


def _start_round(deps: Deps, plan: SyncPlan, *, why: str) -> None:
    spec = plan.spec
    now = deps.clock()
    view = next_round(plan, deps.sync_rounds.view(plan.uid), now=now)
    inputs = RoundInputs(
        namespace=plan.namespace,
        name=plan.name,
        uid=plan.uid,
        configs=tuple(spec.configs),
        settings=SyncSettings(
            max_files_per_job=spec.max_files_per_job,
            mtime_tolerance_seconds=float(spec.mtime_tolerance_seconds),
            manifest_max_age_seconds=float(spec.manifest_max_age_seconds),
        ),
        targets=resolve_targets(spec.targets, nodes=deps.cache.node_infos()),
        endpoints=agent_endpoints(deps.cache.nodes),
    )
    log.info(
        "syncplan %s round %d starts (%s): targets %s",
        inputs.label,
        view.number,
        why,
        ", ".join(inputs.targets) or "none",
    )
    deps.sync_rounds.start(inputs, view, store=deps.store, clock=deps.clock, metrics=deps.metrics)


async def _write(deps: Deps, plan: SyncPlan, decision: Decision) -> None:
    await write_status(deps, plan, plural=PLURAL, old=plan.status, new=decision.status,
                       events=decision.events)  # fmt: skip
