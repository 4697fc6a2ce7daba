"""The benchmark report's arithmetic: percentiles, throughput, ratios, requests per job, the
placement-quality replay, the targets and the markdown table (``bench/report.py``)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def _load_report() -> ModuleType:
    # bench/ is a directory of scripts, not an installed package: load the module by path.
    path = Path(__file__).resolve().parents[3] / "bench" / "report.py"
    spec = importlib.util.spec_from_file_location("bench_report", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


report = _load_report()


# --- percentiles ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        pytest.param([5.0], 99, 5.0, id="one value is every percentile"),
        pytest.param([1.0, 2.0, 3.0, 4.0], 0, 1.0, id="p0 is the minimum"),
        pytest.param([1.0, 2.0, 3.0, 4.0], 100, 4.0, id="p100 is the maximum"),
        pytest.param([1.0, 2.0, 3.0, 4.0], 50, 2.5, id="p50 interpolates between the middle two"),
        pytest.param([4.0, 1.0, 3.0, 2.0], 50, 2.5, id="order of the input does not matter"),
        pytest.param([float(i) for i in range(1, 101)], 99, 99.01, id="p99 of 1..100"),
        pytest.param([0.0, 10.0], 90, 9.0, id="p90 of two values"),
    ],
)
def test_percentile_interpolates_linearly_between_ranks(
    values: list[float], q: float, expected: float
) -> None:
    assert report.percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(report.percentile([], 50))


@pytest.mark.parametrize("q", [-1, 100.5], ids=["below 0", "above 100"])
def test_percentile_outside_0_to_100_is_refused(q: float) -> None:
    with pytest.raises(ValueError, match="outside"):
        report.percentile([1.0], q)


def test_summary_has_count_mean_percentiles_and_max() -> None:
    summary = report.summarize_latencies([0.1, 0.2, 0.3, 0.4, 1.0])
    assert summary["count"] == 5
    assert summary["mean"] == pytest.approx(0.4)
    assert summary["p50"] == pytest.approx(0.3)
    assert summary["max"] == 1.0
    assert summary["p99"] == pytest.approx(0.976)


def test_summary_of_no_latencies_is_nan_not_an_error() -> None:
    summary = report.summarize_latencies([])
    assert summary["count"] == 0
    assert all(math.isnan(summary[k]) for k in ("mean", "p50", "p90", "p99", "max"))


# --- throughput, ratios, requests per job ----------------------------------------------------


@pytest.mark.parametrize(
    ("count", "start", "end", "expected"),
    [
        pytest.param(100, 10.0, 15.0, 20.0, id="100 in 5 s"),
        pytest.param(0, 10.0, 15.0, math.nan, id="nothing placed"),
        pytest.param(5, 10.0, 10.0, math.nan, id="empty interval"),
    ],
)
def test_throughput_is_items_per_second(
    count: int, start: float, end: float, expected: float
) -> None:
    got = report.throughput(count, start=start, end=end)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [
        pytest.param(50.0, 100.0, 0.5, id="half"),
        pytest.param(120.0, 100.0, 1.2, id="more than the reference"),
        pytest.param(50.0, 0.0, None, id="divisor 0"),
        pytest.param(None, 100.0, None, id="no numerator"),
        pytest.param(50.0, None, None, id="no reference"),
        pytest.param(math.nan, 100.0, None, id="NaN numerator"),
    ],
)
def test_ratio_is_none_when_it_would_mean_nothing(
    numerator: float | None, denominator: float | None, expected: float | None
) -> None:
    got = report.ratio(numerator, denominator)
    assert got == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize(
    ("count", "jobs", "expected"),
    [
        pytest.param(1505, 300, 1505 / 300, id="writes per job"),
        pytest.param(None, 300, None, id="no count (the ceiling has no /status)"),
        pytest.param(10, 0, None, id="nothing placed"),
    ],
)
def test_per_job(count: int | None, jobs: int, expected: float | None) -> None:
    assert report.per_job(count, jobs) == expected


# --- placement quality ---------------------------------------------------------------------

# Two classes: h100 (power 100, one node of 2 GPUs) and a100 (power 70, one node of 2 GPUs).
POWER = {"h-0": 100, "a-0": 70, "r-0": 30}
GPUS = {"h-0": 2, "a-0": 2, "r-0": 1, "cpu-0": 0}


@pytest.mark.parametrize(
    ("placements", "optimal", "counted"),
    [
        pytest.param([(1.0, "h-0"), (2.0, "h-0"), (3.0, "a-0")], 3, 3,
                     id="strongest first, then the next class once it is full"),
        pytest.param([(1.0, "a-0"), (2.0, "h-0")], 1, 2,
                     id="a weaker GPU while an H100 was free is not optimal"),
        pytest.param([(2.0, "h-0"), (1.0, "a-0")], 1, 2,
                     id="replayed in time order, not list order"),
        pytest.param([(1.0, "h-0"), (2.0, "h-0"), (3.0, "r-0"), (4.0, "a-0")], 3, 4,
                     id="skipping a whole class counts once"),
        pytest.param([(1.0, "h-0"), (2.0, "elsewhere")], 1, 1,
                     id="nodes outside the model are ignored"),
        pytest.param([], 0, 0, id="nothing placed"),
    ],
)  # fmt: skip
def test_quality_replays_binds_against_the_capacity_model(
    placements: list[tuple[float, str]], optimal: int, counted: int
) -> None:
    quality = report.score_placement_quality(placements, node_power=POWER, node_gpus=GPUS)
    assert (quality.optimal, quality.counted) == (optimal, counted)


def test_quality_share_is_optimal_over_counted() -> None:
    assert report.Quality(optimal=3, counted=4).share == 0.75
    assert math.isnan(report.Quality(optimal=0, counted=0).share)


def test_two_nodes_of_one_class_pool_their_gpus() -> None:
    power = {"h-0": 100, "h-1": 100, "a-0": 70}
    gpus = {"h-0": 1, "h-1": 1, "a-0": 8}
    placements = [(1.0, "h-1"), (2.0, "a-0"), (3.0, "h-0")]
    quality = report.score_placement_quality(placements, node_power=power, node_gpus=gpus)
    assert (quality.optimal, quality.counted) == (2, 3)  # the A100 while h-0 was still free


# --- targets and the table ----------------------------------------------------------------------


def _scenario(placer: str, mode: str, **values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "placer": placer, "mode": mode, "jobs": 100, "placed": 100, "throughput": 50.0,
        "latency": {"p50": 0.1, "p90": 0.2, "p99": 0.5, "max": 0.6},
        "requests": {"writes_per_job": 4.0, "reads_per_job": 0.0},
        "cpu": {"placer_seconds": 1.0}, "rss": {"peak_mib": 100.0},
        "quality": {"share": 1.0, "decision_order_share": 1.0}, "latencies": [0.1, 0.2, 0.5],
    }  # fmt: skip
    base.update(values)
    return base


def _results(**ours: Any) -> dict[str, Any]:
    return {
        "meta": {"timestamp": "T", "jobs": 100, "rate": 20.0},
        "placement": [
            _scenario("ceiling", "burst", throughput=100.0, requests={}),
            _scenario("kube-scheduler", "burst", throughput=40.0),
            _scenario("operator", "burst", **ours),
            _scenario("operator", "steady"),
        ],
        "micro": {
            "ranking": {"median_ms": 4.0},
            "syncplan": {"worst_seconds": 1.5},
            "history": {"min_rows_per_second": 80_000.0},
        },
        "restart": {"restart": {"settle_seconds": 12.0}},
    }


def _targets(results: dict[str, Any]) -> dict[str, Any]:
    return {t.name: t for t in report.evaluate_targets(results)}


def test_targets_met_when_every_figure_is_within_its_goal() -> None:
    targets = _targets(_results(throughput=60.0))
    assert all(t.met for t in targets.values()), [t for t in targets.values() if not t.met]
    assert targets["burst throughput vs kube-scheduler"].value == pytest.approx(1.5)
    assert targets["burst throughput vs ceiling"].value == pytest.approx(0.6)


@pytest.mark.parametrize(
    ("ours", "name"),
    [
        pytest.param({"throughput": 30.0}, "burst throughput vs kube-scheduler", id="slower"),
        pytest.param({"quality": {"share": 0.99}}, "placement quality (ours)", id="quality"),
        pytest.param({"requests": {"writes_per_job": 5.0}}, "API writes per placed job",
                     id="writes"),
        pytest.param({"rss": {"peak_mib": 400.0}}, "operator peak RSS (burst)", id="memory"),
    ],
)  # fmt: skip
def test_a_figure_outside_its_goal_is_not_met(ours: dict[str, Any], name: str) -> None:
    assert _targets(_results(**ours))[name].met is False


def test_targets_without_a_measurement_are_unknown_not_failed() -> None:
    results = {"meta": {}, "placement": [_scenario("operator", "burst")]}
    targets = _targets(results)
    assert targets["burst throughput vs kube-scheduler"].met is None
    assert targets["settle after restart"].met is None
    assert targets["placement quality (ours)"].met is True


def test_markdown_has_a_row_per_scenario_and_the_ratios() -> None:
    text = report.render_markdown(_results(throughput=60.0))
    rows = [line for line in text.splitlines() if line.startswith("| burst |")]
    assert len(rows) == 3 + 1 + 3  # placement rows, one ratio row, time-split rows
    assert "| burst | 1.50 | 0.60 | 1.00 |" in text
    assert "| settle after restart | ≤ 60 s | 12.00 s | yes |" in text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, "—", id="missing"),
        pytest.param(math.nan, "—", id="NaN"),
        pytest.param(0.5, "0.50", id="small"),
        pytest.param(123456.7, "123,457", id="large"),
    ],
)
def test_fmt(value: float | None, expected: str) -> None:
    assert report.fmt(value) == expected


def test_cdf_points_rise_from_1_over_n_to_1() -> None:
    xs, ys = report.cdf_points([3.0, 1.0, 2.0, 4.0])
    assert xs == [1.0, 2.0, 3.0, 4.0]
    assert ys == [0.25, 0.5, 0.75, 1.0]
