"""Prometheus metrics of the control loop: placement latency, reconcile durations, jobs by
outcome, games, GPUs and API requests. Registered on the operator's own registry
(``Deps.registry``) and fed through the ``Deps.metrics`` hooks the reconcilers call.

- ``ringrift_placement_latency_seconds`` (histogram): decide + create + bind of one pod;
- ``ringrift_reconcile_duration_seconds`` (histogram, by result ok|error) and
  ``ringrift_reconcile_errors_total`` (counter);
- ``ringrift_jobs_total`` (counter, by kind and outcome);
- ``ringrift_games_total`` (counter, by config): games written by finished self-play;
- ``ringrift_gpus`` (gauge, by state allocatable|in_use), ``ringrift_nodes`` (gauge, by state
  ready|not_ready), ``ringrift_node_recent_failures`` (gauge, by node: its reputation) and
  ``ringrift_api_requests_total`` (by verb and resource), computed when scraped;
- the leader's loops: ``ringrift_loop_runs_total`` (by loop and result success|failure) and
  ``ringrift_loop_last_duration_seconds`` (by loop), computed when scraped;
  ``ringrift_autopilot_created_total`` (by kind), ``ringrift_self_healing_actions_total`` (by
  action), ``ringrift_prediction_seconds_to_threshold`` (gauge by signal; -1 not on course)
  and ``ringrift_prediction_alerts_total`` (by signal kind);
- ``ringrift_history_recoveries_total`` (counter): corrupt history databases this process moved
  aside at startup (0 or 1), and ``ringrift_history_available`` (gauge, 0 or 1): whether the
  history store is open at all.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ringrift_operator.reconcilers.deps import Deps

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _ClusterCollector(Collector):
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def collect(self) -> Iterable[Metric]:
        total, used = self.deps.cache.gpu_totals()
        gpus = GaugeMetricFamily("ringrift_gpus", "GPUs on Ready nodes", labels=["state"])
        gpus.add_metric(["allocatable"], total)
        gpus.add_metric(["in_use"], used)
        yield gpus
        not_ready = self.deps.cache.not_ready_nodes()
        nodes = GaugeMetricFamily("ringrift_nodes", "Nodes by readiness", labels=["state"])
        nodes.add_metric(["ready"], len(self.deps.cache.nodes) - len(not_ready))
        nodes.add_metric(["not_ready"], len(not_ready))
        yield nodes
        failures = GaugeMetricFamily(
            "ringrift_node_recent_failures",
            "Failed or lost attempts on a node within the reputation window (lowers its rank)",
            labels=["node"],
        )
        for node, n in self.deps.cache.failures_by_node().items():
            failures.add_metric([node], n)
        yield failures
        requests = CounterMetricFamily(
            "ringrift_api_requests", "API requests sent", labels=["verb", "resource"]
        )
        for (verb, resource), n in sorted(self.deps.client.stats.counts.items()):
            requests.add_metric([verb, resource], n)
        yield requests
        runs = CounterMetricFamily(
            "ringrift_loop_runs", "Runs of each leader loop by result", labels=["loop", "result"]
        )
        duration = GaugeMetricFamily(
            "ringrift_loop_last_duration_seconds", "How long each loop's last run took",
            labels=["loop"],
        )  # fmt: skip
        for snap in self.deps.metrics.loop_snapshots():
            runs.add_metric([snap.name, "success"], snap.stats.successes)
            runs.add_metric([snap.name, "failure"], snap.stats.failures)
            if snap.stats.last_duration is not None:
                duration.add_metric([snap.name], snap.stats.last_duration)
        yield runs
        yield duration
        history = self.deps.history
        recoveries = CounterMetricFamily(
            "ringrift_history_recoveries",
            "Corrupt history databases moved aside (to <name>.corrupt-<time>) at startup",
        )
        recoveries.add_metric([], 1 if history is not None and history.recovered_from else 0)
        yield recoveries
        yield GaugeMetricFamily(
            "ringrift_history_available", "Whether the history store is open (1) or not (0)",
            value=0 if history is None else 1,
        )  # fmt: skip


def install_operator_metrics(deps: Deps) -> None:
    registry = deps.registry
    placement = Histogram(
        "ringrift_placement_latency_seconds",
        "Time to place one pod: rank, reserve, create and bind",
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    reconcile = Histogram(
        "ringrift_reconcile_duration_seconds",
        "Duration of one reconcile",
        labelnames=["result"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    errors = Counter(
        "ringrift_reconcile_errors", "Reconciles that raised (retried with backoff)",
        registry=registry,
    )  # fmt: skip
    jobs = Counter(
        "ringrift_jobs", "Finished jobs by outcome", labelnames=["kind", "outcome"],
        registry=registry,
    )  # fmt: skip
    games = Counter(
        "ringrift_games", "Games written by finished self-play", labelnames=["config"],
        registry=registry,
    )  # fmt: skip
    created = Counter(
        "ringrift_autopilot_created", "Resources the autopilot loops created", labelnames=["kind"],
        registry=registry,
    )  # fmt: skip
    healing = Counter(
        "ringrift_self_healing_actions", "Actions of the self-healing loop",
        labelnames=["action"], registry=registry,
    )  # fmt: skip
    prediction = Gauge(
        "ringrift_prediction_seconds_to_threshold",
        "Seconds until a monitored trend crosses its threshold (0: crossed; -1: not on course)",
        labelnames=["signal"], registry=registry,
    )  # fmt: skip
    alerts = Counter(
        "ringrift_prediction_alerts", "Warnings of a predicted threshold crossing",
        labelnames=["signal"], registry=registry,
    )  # fmt: skip
    registry.register(_ClusterCollector(deps))
    deps.metrics.placement_latency = placement.observe

    def on_reconcile(seconds: float, ok: bool) -> None:
        reconcile.labels("ok" if ok else "error").observe(seconds)
        if not ok:
            errors.inc()

    deps.metrics.reconcile = on_reconcile
    deps.metrics.job_outcome = lambda kind, outcome: jobs.labels(kind, outcome).inc()
    deps.metrics.games = lambda config, n: games.labels(config).inc(n)
    deps.metrics.autopilot_created = lambda kind: created.labels(kind).inc()
    deps.metrics.healing_action = lambda action: healing.labels(action).inc()
    deps.metrics.prediction_alert = lambda signal: alerts.labels(signal).inc()

    def on_prediction(signal: str, seconds: float | None) -> None:
        prediction.labels(signal).set(-1.0 if seconds is None else seconds)

    deps.metrics.prediction = on_prediction
