"""The predictive-monitoring loop (leader only): samples trends, forecasts when each will cross
its threshold, and warns before it does.

Signals, sampled every tick into a sliding window (``managers.forecasting``):

- ``disk/<node>``: game data a node holds (its agent's manifest) as a percentage of its
  allocatable ephemeral storage; nodes without a manifest or without that figure are skipped;
- ``failure_rate``: Failed or Expired SelfplayJobs among those that finished within the window,
  in percent;
- ``pending_queue``: SelfplayJobs and TrainingRuns that are Pending.

Each forecast sets ``ringrift_prediction_seconds_to_threshold{signal}`` (-1: not on course to
cross); a crossing within the horizon posts one Warning Event ``PredictedThresholdCrossing``
(on the Node for disk, on the autopilot's Namespace otherwise), again at most once per
``realert_seconds`` while the trend holds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ringrift_operator.api.meta import parse_rfc3339
from ringrift_operator.api.selfplayjob import KIND as SELFPLAYJOB
from ringrift_operator.api.settings import MonitoringSettings
from ringrift_operator.api.trainingrun import KIND as TRAININGRUN
from ringrift_operator.kube.events import build_event, post_event
from ringrift_operator.kube.snapshots import parse_quantity
from ringrift_operator.managers.forecasting import (
    AlertState,
    Forecast,
    Sample,
    Series,
    add_sample,
    decide_alert,
    failure_rate_percent,
    forecast,
)
from ringrift_operator.reconcilers.deps import Deps

log = logging.getLogger(__name__)
FAILED = {"Failed", "Expired"}
FINISHED = FAILED | {"Complete"}


@dataclass
class Monitoring:
    deps: Deps
    settings: MonitoringSettings
    namespace: str
    series: dict[str, Series] = field(default_factory=dict)
    alerts: dict[str, AlertState] = field(default_factory=dict)
    forecasts: dict[str, Forecast] = field(default_factory=dict)
    warnings: int = 0

    def sample(self, now: float) -> dict[str, tuple[float, float]]:
        """signal -> (value now, threshold)."""
        s = self.settings
        values: dict[str, tuple[float, float]] = {}
        for name, node in list(self.deps.cache.nodes.items()):
            storage = parse_quantity(
                ((node.get("status") or {}).get("allocatable") or {}).get("ephemeral-storage")
            )
            manifest = self.deps.store.latest(name)
            if storage > 0 and manifest is not None:
                percent = 100.0 * manifest.total_bytes / storage
                values[f"disk/{name}"] = (percent, float(s.disk_percent_threshold))
        failed = finished = pending = 0
        for (kind, _, _), body in list(self.deps.resources.items()):
            status = body.get("status") or {}
            phase = status.get("phase") or "Pending"
            if phase == "Pending" and kind in (SELFPLAYJOB, TRAININGRUN):
                pending += 1
            done = status.get("completionTime")
            recent = bool(done) and now - parse_rfc3339(str(done)).timestamp() <= s.window_seconds
            if kind == SELFPLAYJOB and phase in FINISHED and recent:
                finished += 1
                failed += phase in FAILED
        values["failure_rate"] = (
            failure_rate_percent(failed=failed, finished=finished),
            float(s.failure_rate_percent_threshold),
        )
        values["pending_queue"] = (float(pending), float(s.pending_jobs_threshold))
        return values

    async def monitor(self) -> None:
        s = self.settings
        now = self.deps.clock().timestamp()
        values = self.sample(now)
        for signal in set(self.series) - set(values):  # a node that left
            del self.series[signal]
            self.forecasts.pop(signal, None)
            self.alerts.pop(signal, None)
            self.deps.metrics.prediction(signal, None)
        for signal, (value, threshold) in sorted(values.items()):
            series = add_sample(self.series.get(signal, Series()), Sample(now, value),
                                window=s.window_seconds)  # fmt: skip
            self.series[signal] = series
            result = forecast(series, threshold=threshold, min_samples=s.min_samples)
            self.forecasts[signal] = result
            self.deps.metrics.prediction(signal, result.seconds_to_threshold)
            warn, self.alerts[signal] = decide_alert(
                self.alerts.get(signal, AlertState()), result, now=now,
                horizon=s.horizon_seconds, realert_after=s.realert_seconds,
            )  # fmt: skip
            if warn:
                await self._warn(signal, value, threshold, result)

    async def _warn(self, signal: str, value: float, threshold: float, result: Forecast) -> None:
        seconds = result.seconds_to_threshold or 0.0
        when = "has reached" if seconds <= 0 else f"will reach {threshold:g} in ~{seconds:.0f}s:"
        message = f"{signal} is {value:.1f}; on its current trend it {when} threshold {threshold:g}"
        if seconds <= 0:
            message = f"{signal} is {value:.1f}, at or above its threshold {threshold:g}"
        involved: dict[str, Any]
        if signal.startswith("disk/"):
            node = signal.removeprefix("disk/")
            meta = (self.deps.cache.nodes.get(node) or {}).get("metadata") or {}
            involved = {"apiVersion": "v1", "kind": "Node", "name": node,
                        "uid": meta.get("uid", "")}  # fmt: skip
        else:
            involved = {"apiVersion": "v1", "kind": "Namespace", "name": self.namespace}
        event = build_event(involved=involved, type="Warning", reason="PredictedThresholdCrossing",
                            message=message, now=self.deps.clock(),
                            instance=self.deps.identity)  # fmt: skip
        event["metadata"]["namespace"] = self.namespace if "disk/" not in signal else "default"
        self.warnings += 1
        self.deps.metrics.prediction_alert(signal.split("/")[0])
        log.warning("predictive monitoring: %s", message)
        await post_event(self.deps.client, event)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"warnings": self.warnings, "signals": {}}
        for signal, result in sorted(self.forecasts.items()):
            series = self.series.get(signal, Series())
            out["signals"][signal] = {
                "samples": len(series.samples),
                "latest": round(series.samples[-1].value, 3) if series.samples else None,
                "slope_per_hour": round(result.trend.slope * 3600, 3) if result.trend else None,
                "seconds_to_threshold": (
                    None
                    if result.seconds_to_threshold is None
                    else round(result.seconds_to_threshold, 1)
                ),
            }
        return out
