"""Predictive monitoring (the seed's PredictiveMonitoringLoop): trends over a sliding window of
samples, a least-squares line through them, and when it will cross a threshold.

``loops.monitoring`` samples its signals every tick (data on each node as a share of its
storage, the failure rate of finished SelfplayJobs, the pending queue), keeps each signal's
:class:`Series`, and asks :func:`forecast` when it will cross its threshold;
:func:`decide_alert` says whether to warn now (once per signal per re-alert period, and again
after the trend recovered).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # seconds (any fixed origin)
    value: float


@dataclass(frozen=True, slots=True)
class Series:
    """The samples of one signal within the window, oldest first."""

    samples: tuple[Sample, ...] = ()


def add_sample(series: Series, sample: Sample, *, window: float) -> Series:
    """``series`` with ``sample`` appended and samples older than ``window`` before it dropped
    (a sample dated before the newest one replaces nothing: it is ignored)."""
    if series.samples and sample.at < series.samples[-1].at:
        return series
    kept = tuple(s for s in series.samples if sample.at - s.at <= window)
    return Series((*kept, sample))


@dataclass(frozen=True, slots=True)
class Trend:
    slope: float  # units per second
    intercept: float  # value at time 0 of the samples' clock
    latest: float  # the fitted value at the newest sample


def fit_linear_trend(samples: Sequence[Sample]) -> Trend | None:
    """The least-squares line through ``samples``; None with fewer than two distinct times."""
    n = len(samples)
    if n < 2:
        return None
    mean_t = sum(s.at for s in samples) / n
    mean_v = sum(s.value for s in samples) / n
    var = sum((s.at - mean_t) ** 2 for s in samples)
    if var <= 0:
        return None
    slope = sum((s.at - mean_t) * (s.value - mean_v) for s in samples) / var
    intercept = mean_v - slope * mean_t
    newest = max(s.at for s in samples)
    return Trend(slope=slope, intercept=intercept, latest=intercept + slope * newest)


@dataclass(frozen=True, slots=True)
class Forecast:
    """When the signal reaches ``threshold``: 0 = already there; None = not on this trend."""

    seconds_to_threshold: float | None
    trend: Trend | None


def forecast(series: Series, *, threshold: float, min_samples: int) -> Forecast:
    """Seconds from the newest sample until the fitted line reaches ``threshold`` (rising
    signals). A signal whose newest sample is at or above it is already there."""
    samples = series.samples
    if samples and samples[-1].value >= threshold:
        return Forecast(0.0, fit_linear_trend(samples))
    if len(samples) < min_samples:
        return Forecast(None, None)
    trend = fit_linear_trend(samples)
    if trend is None or trend.slope <= 0:
        return Forecast(None, trend)
    return Forecast(max(0.0, (threshold - trend.latest) / trend.slope), trend)


@dataclass(frozen=True, slots=True)
class AlertState:
    last_alert_at: float | None = None


def decide_alert(
    state: AlertState, result: Forecast, *, now: float, horizon: float, realert_after: float
) -> tuple[bool, AlertState]:
    """Whether to warn now, and the new state: a crossing within ``horizon`` warns once, then
    again only after ``realert_after`` seconds; a trend that no longer crosses resets it."""
    due = result.seconds_to_threshold is not None and result.seconds_to_threshold <= horizon
    if not due:
        return False, AlertState()
    if state.last_alert_at is not None and now - state.last_alert_at < realert_after:
        return False, state
    return True, AlertState(last_alert_at=now)


def failure_rate_percent(*, failed: int, finished: int) -> float:
    """Failed of finished, in percent (0 with nothing finished)."""
    return 100.0 * failed / finished if finished > 0 else 0.0
