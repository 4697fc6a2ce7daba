"""Prometheus metrics of the data plane: SyncPlan transfers and the node agents' manifests.

:func:`install_data_plane_metrics` registers the instruments on the operator's own
``CollectorRegistry`` (``Deps.registry``; never the global one) and points the reconcilers'
metric hooks (``Deps.metrics``) at them. Manifest ages are computed when scraped, from the
manifest store, so that they grow between collections as a real age does.

Names (units in the names, counters end in ``_total``):

- ``ringrift_syncplan_pending_files`` / ``ringrift_syncplan_pending_bytes`` (gauges, per plan):
  what the targets still lack, as of the plan's last planning or verification;
- ``ringrift_syncplan_synced_files_total`` / ``ringrift_syncplan_synced_bytes_total`` (per plan);
- ``ringrift_syncplan_pulls_total`` (per plan and outcome: succeeded, failed, error);
- ``ringrift_agent_manifest_age_seconds`` (per node): age of the operator's latest manifest;
- ``ringrift_agent_manifest_errors_total`` (per node): failed manifest fetches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ringrift_operator.reconcilers.deps import Deps
from ringrift_operator.reconcilers.manifests import ManifestStore

PLAN_LABELS = ("namespace", "syncplan")


@dataclass(frozen=True)
class DataPlaneMetrics:
    """The instruments; built by :func:`install_data_plane_metrics`."""

    pending_files: Gauge
    pending_bytes: Gauge
    synced_files: Counter
    synced_bytes: Counter
    pulls: Counter
    manifest_errors: Counter

    def forget(self, namespace: str, plan: str) -> None:
        """Drop every series of a deleted plan."""
        for metric in (
            self.pending_files,
            self.pending_bytes,
            self.synced_files,
            self.synced_bytes,
        ):
            with contextlib.suppress(KeyError):
                metric.remove(namespace, plan)
        for outcome in ("succeeded", "failed", "error"):
            with contextlib.suppress(KeyError):
                self.pulls.remove(namespace, plan, outcome)


class ManifestAgeCollector(Collector):
    """``ringrift_agent_manifest_age_seconds``, read from the store at scrape time."""

    def __init__(self, store: ManifestStore) -> None:
        self.store = store

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "ringrift_agent_manifest_age_seconds",
            "Seconds since the operator last collected the node agent's manifest.",
            labels=["node"],
        )
        for node, age in sorted(self.store.ages().items()):
            family.add_metric([node], age)
        yield family

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []  # dynamic: nothing to check at registration


def build_data_plane_metrics(registry: CollectorRegistry) -> DataPlaneMetrics:
    """The instruments, registered on ``registry``."""
    return DataPlaneMetrics(
        pending_files=Gauge(
            "ringrift_syncplan_pending_files",
            "Files the SyncPlan's targets still lack.",
            PLAN_LABELS,
            registry=registry,
        ),
        pending_bytes=Gauge(
            "ringrift_syncplan_pending_bytes",
            "Bytes the SyncPlan's targets still lack.",
            PLAN_LABELS,
            registry=registry,
        ),
        synced_files=Counter(
            "ringrift_syncplan_synced_files",
            "Files the SyncPlan's transfers copied.",
            PLAN_LABELS,
            registry=registry,
        ),
        synced_bytes=Counter(
            "ringrift_syncplan_synced_bytes",
            "Bytes the SyncPlan's transfers copied.",
            PLAN_LABELS,
            registry=registry,
        ),
        pulls=Counter(
            "ringrift_syncplan_pulls",
            "Pulls the operator asked agents for, by outcome.",
            (*PLAN_LABELS, "outcome"),
            registry=registry,
        ),
        manifest_errors=Counter(
            "ringrift_agent_manifest_errors",
            "Failed manifest collections from the node agent.",
            ("node",),
            registry=registry,
        ),
    )


def install_data_plane_metrics(deps: Deps) -> DataPlaneMetrics:
    """Register the data plane's metrics on ``deps.registry`` and hook them into
    ``deps.metrics``; returns the instruments."""
    m = build_data_plane_metrics(deps.registry)
    deps.registry.register(ManifestAgeCollector(deps.store))
    hooks = deps.metrics

    def pending(namespace: str, plan: str, files: int, size: int) -> None:
        m.pending_files.labels(namespace, plan).set(files)
        m.pending_bytes.labels(namespace, plan).set(size)

    def moved(namespace: str, plan: str, files: int, size: int) -> None:
        m.synced_files.labels(namespace, plan).inc(files)
        m.synced_bytes.labels(namespace, plan).inc(size)

    hooks.sync_pending = pending
    hooks.sync_moved = moved
    hooks.sync_pull = lambda namespace, plan, outcome: m.pulls.labels(
        namespace, plan, outcome
    ).inc()
    hooks.sync_forget = m.forget
    hooks.manifest_error = lambda node, error: m.manifest_errors.labels(node).inc()
    return m


def render(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text format (what ``/metrics`` serves)."""
    return generate_latest(registry)
