"""SyncPlan rounds, run in the background: collect, plan, pull, verify, judge.

The SyncPlan reconciler starts a round (:meth:`SyncRounds.start`) and reads its progress as a
:class:`~ringrift_operator.managers.syncplan.RoundView` on every pass; a round never blocks a
reconcile worker. One round per plan (by uid): starting another cancels the one in flight, and
deleting the plan cancels it (:meth:`SyncRounds.cancel`), which cancels its pulls.

A round:

1. collects a fresh manifest from every advertised agent (and every target) at once, each with
   the store's 30 s timeout; a peer that fails is recorded with its error and skipped, its last
   manifest (if not older than ``manifestMaxAgeSeconds``) still saying what is newest;
2. plans with :func:`~ringrift_operator.managers.syncplanning.plan_sync` over the games of
   ``spec.configs``, sources that failed in the previous round counting as unhealthy;
3. runs the transfers, at most :data:`MAX_CONCURRENT_TRANSFERS` at a time: the TARGET's agent is
   asked to pull the files from the SOURCE's agent (it verifies every sha256 and never installs a
   corrupt file);
4. collects the targets' manifests again, plans again over them, and judges
   (:func:`~ringrift_operator.managers.syncplan.judge_round`): every target holds every wanted
   file, or the plan retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from ringrift_operator.agent.auth import TokenError
from ringrift_operator.agent.client import AgentError, PullState
from ringrift_operator.api.conditions import SyncPlanReason
from ringrift_operator.api.syncplan import TransferState
from ringrift_operator.managers.syncplan import (
    PeerView,
    RoundOutcome,
    RoundPhase,
    RoundView,
    TransferView,
    build_transfer_views,
    judge_round,
)
from ringrift_operator.managers.syncplanning import (
    Manifest,
    SyncPlan,
    SyncSettings,
    Transfer,
    config_prefix,
    manifest_age,
    plan_sync,
)
from ringrift_operator.reconcilers.manifests import ManifestStore

if TYPE_CHECKING:
    from ringrift_operator.reconcilers.deps import Metrics

log = logging.getLogger(__name__)

MAX_CONCURRENT_TRANSFERS = 4  # pulls of one plan in flight at once
PULL_TIMEOUT_SECONDS = 600.0  # one pull of at most maxFilesPerJob files


@dataclass(frozen=True, slots=True)
class RoundInputs:
    """What one round works from, fixed when it starts."""

    namespace: str
    name: str
    uid: str
    configs: tuple[str, ...]
    settings: SyncSettings
    targets: tuple[str, ...]
    endpoints: Mapping[str, str]  # node -> agent URL, every advertised Ready node

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class _Round:
    inputs: RoundInputs
    view: RoundView
    task: asyncio.Task[None] | None = None
    bad_sources: frozenset[str] = frozenset()  # sources whose files failed in this round


@dataclass
class SyncRounds:
    """The latest round of every SyncPlan, by uid (finished ones are kept: their outcome is
    what the status shows until the next round)."""

    _rounds: dict[str, _Round] = field(default_factory=dict)

    def view(self, uid: str) -> RoundView | None:
        r = self._rounds.get(uid)
        return r.view if r is not None else None

    def mark_reported(self, uid: str, number: int) -> None:
        """The finished round ``number``'s status and Event are written."""
        r = self._rounds.get(uid)
        if r is not None and r.view.number == number and r.view.outcome is not None:
            r.view = dataclasses.replace(r.view, reported=True)

    def start(
        self,
        inputs: RoundInputs,
        view: RoundView,
        *,
        store: ManifestStore,
        clock: Callable[[], datetime],
        metrics: Metrics,
    ) -> None:
        """Cancel the plan's round in flight, if any, and start ``view`` in the background."""
        previous = self._rounds.get(inputs.uid)
        unhealthy = previous.bad_sources if previous is not None else frozenset()
        self.cancel(inputs.uid)
        r = _Round(inputs=inputs, view=dataclasses.replace(view, targets=inputs.targets))
        self._rounds[inputs.uid] = r
        runner = _Runner(r, store=store, clock=clock, metrics=metrics, unhealthy=unhealthy)
        r.task = asyncio.create_task(runner.run(), name=f"syncplan-{inputs.label}-{view.number}")

    def cancel(self, uid: str) -> None:
        """Stop the plan's round (its pulls are cancelled) and forget it."""
        r = self._rounds.pop(uid, None)
        if r is not None and r.task is not None and not r.task.done():
            r.task.cancel()

    async def close(self) -> None:
        tasks = [r.task for r in self._rounds.values() if r.task is not None]
        self._rounds.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class _Runner:
    """One round's steps; updates ``round.view`` as it goes."""

    def __init__(
        self,
        r: _Round,
        *,
        store: ManifestStore,
        clock: Callable[[], datetime],
        metrics: Metrics,
        unhealthy: frozenset[str],
    ) -> None:
        self.r = r
        self.inputs = r.inputs
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.unhealthy = unhealthy
        self.bad_sources: set[str] = set()

    async def run(self) -> None:
        try:
            outcome = await self._steps()
        except asyncio.CancelledError:
            log.info("syncplan %s round %d cancelled", self.inputs.label, self.r.view.number)
            raise
        except Exception as e:  # a bug must not leave the plan Syncing forever
            log.exception("syncplan %s round %d failed", self.inputs.label, self.r.view.number)
            outcome = RoundOutcome(False, SyncPlanReason.TRANSFER_FAILED, f"internal error: {e}")
        self.r.bad_sources = frozenset(self.bad_sources)
        self._update(phase=RoundPhase.DONE, outcome=outcome, finished_at=self.clock())
        log.info("syncplan %s round %d: %s", self.inputs.label, self.r.view.number, outcome.message)

    async def _steps(self) -> RoundOutcome:
        i = self.inputs
        started = self.r.view.started_at.timestamp()
        asked = {**i.endpoints, **{t: i.endpoints.get(t, "") for t in i.targets}}
        collection = await self.store.collect(asked, fresher_than=started)
        errors = dict(collection.errors)
        manifests = dict(collection.manifests)
        for node in errors:  # a failing peer's last manifest still says what is newest
            last = self.store.latest(node)
            if last is not None:
                manifests[node] = last
        now = self.clock().timestamp()
        self._update(peers=_peers(manifests, errors, configs=i.configs, now=now))
        if not i.targets or not collection.manifests:
            return judge_round(
                targets=i.targets,
                errors=errors,
                collected=len(collection.manifests),
                transfers=(),
                verification=None,
            )
        plan = self._plan(manifests, unreachable=errors, now=now)
        views = build_transfer_views(plan, round_number=self.r.view.number)
        self._update(phase=RoundPhase.SYNCING, transfers=views, missing_files=_missing(plan))
        self.metrics.sync_pending(i.namespace, i.name, _missing(plan), plan.total_bytes)
        if plan.transfers:
            limit = asyncio.Semaphore(MAX_CONCURRENT_TRANSFERS)
            await asyncio.gather(
                *(self._transfer(n, t, limit) for n, t in enumerate(plan.transfers))
            )
        # Verify: the targets' manifests after the pulls, planned against the same sources.
        reachable = [t for t in i.targets if t in collection.manifests]
        self.store.invalidate({t.target for t in plan.transfers})
        after = await self.store.collect(
            {t: i.endpoints[t] for t in reachable}, fresher_than=self.clock().timestamp()
        )
        manifests.update(after.manifests)
        errors.update(after.errors)
        verification = self._plan(manifests, unreachable=errors, now=self.clock().timestamp())
        self._update(missing_files=_missing(verification))
        self.metrics.sync_pending(
            i.namespace, i.name, _missing(verification), verification.total_bytes
        )
        return judge_round(
            targets=i.targets,
            errors=errors,
            collected=len(collection.manifests),
            transfers=self.r.view.transfers,
            verification=verification,
        )

    def _plan(
        self, manifests: Mapping[str, Manifest], *, unreachable: Mapping[str, str], now: float
    ) -> SyncPlan:
        return plan_sync(
            manifests.values(),
            targets=self.inputs.targets,
            now=now,
            settings=self.inputs.settings,
            configs=self.inputs.configs,
            unhealthy=self.unhealthy,
            unreachable=frozenset(unreachable),
        )

    async def _transfer(self, index: int, transfer: Transfer, limit: asyncio.Semaphore) -> None:
        i = self.inputs
        async with limit:
            self._set_transfer(index, state=TransferState.RUNNING)
            log.info(
                "syncplan %s round %d: %s pulls %d files (%d bytes) from %s",
                i.label,
                self.r.view.number,
                transfer.target,
                len(transfer.files),
                transfer.total_bytes,
                transfer.source,
            )
            try:
                report = await self.store.client(i.endpoints[transfer.target]).pull(
                    source_url=i.endpoints[transfer.source],
                    files=transfer.files,
                    timeout=PULL_TIMEOUT_SECONDS,
                )
            except (AgentError, TokenError) as e:
                self._set_transfer(index, state=TransferState.FAILED, message=str(e))
                self.metrics.sync_pull(i.namespace, i.name, "error")
                return
        done = [r for r in report.results if r.state is PullState.DONE]
        failed = [r for r in report.results if r.state is PullState.FAILED]
        moved = sum(r.bytes for r in done)
        message = None
        if failed:
            self.bad_sources.add(transfer.source)
            message = f"{len(failed)} of {len(report.results)} files failed: "
            message += "; ".join(f"{r.path}: {r.error}" for r in failed[:3])
        state = TransferState.FAILED if failed else TransferState.SUCCEEDED
        self._set_transfer(
            index, state=state, message=message, files_done=len(done), bytes_done=moved
        )
        self.metrics.sync_pull(i.namespace, i.name, "failed" if failed else "succeeded")
        self.metrics.sync_moved(i.namespace, i.name, len(done), moved)

    # ---- progress ----------------------------------------------------------------------------
    def _update(self, **fields: object) -> None:
        self.r.view = dataclasses.replace(self.r.view, **fields)  # type: ignore[arg-type]

    def _set_transfer(self, index: int, **fields: object) -> None:
        transfers = list(self.r.view.transfers)
        transfers[index] = dataclasses.replace(transfers[index], **fields)  # type: ignore[arg-type]
        self._update(transfers=tuple(transfers))


def _missing(plan: SyncPlan) -> int:
    return sum(plan.missing.values())


def _peers(
    manifests: Mapping[str, Manifest],
    errors: Mapping[str, str],
    *,
    configs: Sequence[str],
    now: float,
) -> tuple[PeerView, ...]:
    prefixes = tuple(config_prefix(c) for c in configs)
    peers = []
    for node in sorted({*manifests, *errors}):
        m = manifests.get(node)
        entries = [e for p, e in m.files.items() if p.startswith(prefixes)] if m else []
        peers.append(
            PeerView(
                node=node,
                files=len(entries),
                bytes=sum(e.size for e in entries),
                age_seconds=manifest_age(m, now=now) if m else None,
                error=errors.get(node),
            )
        )
    return tuple(peers)


__all__ = ["MAX_CONCURRENT_TRANSFERS", "RoundInputs", "SyncRounds", "TransferView"]
