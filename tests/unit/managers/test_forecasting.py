"""Predictive monitoring: sliding windows, the linear trend, time to threshold, deduped alerts."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringrift_operator.managers.forecasting import (
    AlertState,
    Forecast,
    Sample,
    Series,
    add_sample,
    decide_alert,
    failure_rate_percent,
    fit_linear_trend,
    forecast,
)


def series(*points: tuple[float, float]) -> Series:
    return Series(tuple(Sample(t, v) for t, v in points))


def test_window_drops_old_samples_and_ignores_out_of_order_ones() -> None:
    s = Series()
    for t in range(0, 100, 10):
        s = add_sample(s, Sample(float(t), float(t)), window=30)
    assert [x.at for x in s.samples] == [60, 70, 80, 90]
    assert add_sample(s, Sample(50, 1), window=30) == s


@pytest.mark.parametrize(
    ("s", "threshold", "seconds"),
    [
        pytest.param(series((0, 10), (10, 20), (20, 30)), 90, 60.0, id="rising-60s-away"),
        pytest.param(series((0, 30), (10, 20), (20, 10)), 90, None, id="falling"),
        pytest.param(series((0, 50), (10, 50), (20, 50)), 90, None, id="flat"),
        pytest.param(series((0, 10), (10, 95)), 90, 0.0, id="already-above"),
        pytest.param(series((0, 10), (10, 20)), 90, None, id="too-few-samples"),
    ],
)
def test_forecast(s: Series, threshold: float, seconds: float | None) -> None:
    result = forecast(s, threshold=threshold, min_samples=3)
    if seconds is None:
        assert result.seconds_to_threshold is None
    else:
        assert result.seconds_to_threshold == pytest.approx(seconds)


@given(
    slope=st.floats(-10, 10, allow_nan=False), intercept=st.floats(-1e3, 1e3, allow_nan=False),
    times=st.lists(st.integers(0, 10_000), min_size=2, max_size=30, unique=True),
)  # fmt: skip
def test_a_line_is_recovered_exactly(slope: float, intercept: float, times: list[int]) -> None:
    trend = fit_linear_trend([Sample(float(t), intercept + slope * t) for t in sorted(times)])
    assert trend is not None
    assert math.isclose(trend.slope, slope, rel_tol=1e-6, abs_tol=1e-6)
    assert math.isclose(trend.latest, intercept + slope * max(times), rel_tol=1e-6, abs_tol=1e-3)


@given(
    values=st.lists(st.floats(0, 100, allow_nan=False), min_size=3, max_size=20),
    threshold=st.floats(1, 100, allow_nan=False),
)  # fmt: skip
def test_forecast_is_never_negative_and_zero_only_at_or_above(
    values: list[float], threshold: float
) -> None:
    s = series(*((float(i * 10), v) for i, v in enumerate(values)))
    result = forecast(s, threshold=threshold, min_samples=3)
    if result.seconds_to_threshold is not None:
        assert result.seconds_to_threshold >= 0
        if values[-1] < threshold and result.trend is not None:
            assert result.trend.slope > 0


def test_alerts_are_deduplicated_and_reset_when_the_trend_recovers() -> None:
    due, not_due = Forecast(100.0, None), Forecast(None, None)
    warn, state = decide_alert(AlertState(), due, now=0, horizon=3600, realert_after=600)
    assert warn
    assert state.last_alert_at == 0
    warn, state = decide_alert(state, due, now=300, horizon=3600, realert_after=600)
    assert not warn  # within the re-alert period
    warn, state = decide_alert(state, due, now=601, horizon=3600, realert_after=600)
    assert warn
    warn, state = decide_alert(state, not_due, now=700, horizon=3600, realert_after=600)
    assert not warn
    assert state == AlertState()
    warn, _ = decide_alert(state, due, now=701, horizon=3600, realert_after=600)
    assert warn  # a new crossing after recovery warns at once
    warn, _ = decide_alert(AlertState(), Forecast(4000.0, None), now=0, horizon=3600,
                           realert_after=600)  # fmt: skip
    assert not warn  # beyond the horizon


@pytest.mark.parametrize(("failed", "finished", "rate"), [(0, 0, 0.0), (1, 4, 25.0), (3, 3, 100.0)])
def test_failure_rate_percent(failed: int, finished: int, rate: float) -> None:
    assert failure_rate_percent(failed=failed, finished=finished) == rate
