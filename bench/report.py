"""The benchmark's arithmetic and its report: percentiles, throughput, ratios, placement quality
(an offline replay of the bind order against a capacity model), the targets of the "Benchmarks"
issue, the markdown table and the latency CDF plot.

Pure functions over plain data (the dicts ``bench/run.py`` writes to ``bench/results/*.json``),
except :func:`plot_latency_cdf`, which writes a PNG with matplotlib (the ``bench`` extra).
Called by ``bench/run.py``; unit-tested in ``tests/unit/bench/test_report.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OURS = "operator"
REFERENCE = "kube-scheduler"
CEILING = "ceiling"
PLACERS = (CEILING, REFERENCE, OURS)  # the order of the table and the plot


# --- numbers ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks (numpy's
    default); NaN for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize_latencies(values: Sequence[float]) -> dict[str, float | int]:
    """count, mean, p50, p90, p99 and max of latencies in seconds."""
    return {
        "count": len(values),
        "mean": sum(values) / len(values) if values else math.nan,
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else math.nan,
    }


def throughput(count: int, *, start: float, end: float) -> float:
    """Items per second over ``[start, end]``; NaN when the interval is empty."""
    span = end - start
    return count / span if span > 0 and count else math.nan


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is missing, NaN or the divisor is 0."""
    if numerator is None or denominator is None:
        return None
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return None
    return numerator / denominator


def per_job(count: int | None, jobs: int) -> float | None:
    """API requests per placed job (None without a count or without placed jobs)."""
    return None if count is None or jobs <= 0 else count / jobs


# --- placement quality ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Quality:
    """How many placements went to the strongest GPU class that had a free GPU at that moment."""

    optimal: int
    counted: int  # placements on nodes of the capacity model (others are ignored)

    @property
    def share(self) -> float:
        return self.optimal / self.counted if self.counted else math.nan


def score_placement_quality(
    placements: Iterable[tuple[float, str]],
    *,
    node_power: Mapping[str, int],
    node_gpus: Mapping[str, int],
) -> Quality:
    """Replay placements in time order against a capacity model that starts empty (every GPU
    free).

    ``placements`` are ``(time, node)`` pairs of 1-GPU pods — the decision time where the placer
    records one (the operator), else the bind time; ``node_power`` the power of each GPU node's
    class (higher is stronger); ``node_gpus`` its GPU count. A placement is optimal when no node
    of a strictly more powerful class had a free GPU at that time. Replayed in bind order, two
    decisions that cross at a class boundary (concurrent binds committed in the other order) are
    counted against whichever bind was observed second.
    """
    free: dict[int, int] = {}
    for node, gpus in node_gpus.items():
        if node in node_power:
            free[node_power[node]] = free.get(node_power[node], 0) + gpus
    optimal = counted = 0
    for _, node in sorted(placements):
        power = node_power.get(node)
        if power is None:
            continue
        counted += 1
        if not any(n > 0 for p, n in free.items() if p > power):
            optimal += 1
        free[power] = free.get(power, 0) - 1
    return Quality(optimal=optimal, counted=counted)


# --- targets ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """One goal of the issue, what was measured and whether it was met (None: not measured)."""

    name: str
    goal: str
    value: float | None
    unit: str
    met: bool | None


def _scenario(results: Mapping[str, Any], placer: str, mode: str) -> Mapping[str, Any] | None:
    for s in results.get("placement") or []:
        if s["placer"] == placer and s["mode"] == mode:
            return s  # type: ignore[no-any-return]
    return None


def _get(s: Mapping[str, Any] | None, *path: str) -> float | None:
    value: Any = s
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def _at_least(value: float | None, goal: float) -> bool | None:
    return None if value is None else value >= goal


def _at_most(value: float | None, goal: float) -> bool | None:
    return None if value is None else value <= goal


def evaluate_targets(results: Mapping[str, Any]) -> list[Target]:
    """The issue's targets against ``results`` (the JSON document of one run)."""
    ours_burst = _scenario(results, OURS, "burst")
    ours_steady = _scenario(results, OURS, "steady")
    ref_burst = _scenario(results, REFERENCE, "burst")
    ceiling_burst = _scenario(results, CEILING, "burst")
    vs_ref = ratio(_get(ours_burst, "throughput"), _get(ref_burst, "throughput"))
    vs_ceiling = ratio(_get(ours_burst, "throughput"), _get(ceiling_burst, "throughput"))
    p99 = _get(ours_steady, "latency", "p99")
    # The measure: the replay at decision time (the order of the operator's decisions,
    # from the time each pod is stamped with); a run without decision times falls back on the
    # bind order, the stricter proxy, which is also reported.
    by_bind = [
        q for s in (ours_burst, ours_steady) if (q := _get(s, "quality", "share")) is not None
    ]
    quality = [
        q
        for s in (ours_burst, ours_steady)
        if (q := _get(s, "quality", "decision_order_share") or _get(s, "quality", "share"))
        is not None
    ]
    writes = [w for s in (ours_burst, ours_steady) if (w := _get(s, "requests", "writes_per_job"))]
    rss = _get(ours_burst, "rss", "peak_mib")
    micro = results.get("micro") or {}
    restart = results.get("restart") or {}
    ranking = _get(micro, "ranking", "median_ms")
    syncplan = _get(micro, "syncplan", "worst_seconds")
    history = _get(micro, "history", "min_rows_per_second")
    settle = _get(restart, "restart", "settle_seconds")
    return [
        Target("burst throughput vs kube-scheduler", "≥ 1.0x", vs_ref, "x", _at_least(vs_ref, 1.0)),
        Target("p99 creation → bound at steady rate", "≤ 1 s", p99, "s", _at_most(p99, 1.0)),
        Target(
            "burst throughput vs ceiling", "≥ 0.5x", vs_ceiling, "x", _at_least(vs_ceiling, 0.5)
        ),
        Target(
            "placement quality (ours)",
            "100 %",
            min(quality) * 100 if quality else None,
            "%",
            _at_least(min(quality), 1.0) if quality else None,
        ),
        Target(
            "placement quality (ours, bind order)",
            "100 %",
            min(by_bind) * 100 if by_bind else None,
            "%",
            _at_least(min(by_bind), 1.0) if by_bind else None,
        ),
        Target(
            "API writes per placed job",
            "≤ 4",
            max(writes) if writes else None,
            "",
            _at_most(max(writes), 4.0) if writes else None,
        ),
        Target("operator peak RSS (burst)", "≤ 300 MiB", rss, "MiB", _at_most(rss, 300)),
        Target("rank 5,000 nodes", "≤ 10 ms", ranking, "ms", _at_most(ranking, 10)),
        Target("sync plan over 1,000,000 files", "≤ 2 s", syncplan, "s", _at_most(syncplan, 2)),
        Target("history writes", "≥ 50,000 rows/s", history, "rows/s", _at_least(history, 50_000)),
        Target("settle after restart", "≤ 60 s", settle, "s", _at_most(settle, 60)),
    ]


# --- markdown -----------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 2, *, unit: str = "") -> str:
    """A number for a table: '—' when missing; thousands separators for large values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"
    return f"{text} {unit}".rstrip()


def _ms(value: float | None) -> str:
    return fmt(None if value is None else value * 1000, 0)


def render_markdown(results: Mapping[str, Any]) -> str:
    """The run as a short markdown report: parameters, placement table, ratios, micro, targets."""
    meta = results.get("meta") or {}
    lines = [
        f"# Benchmark run {meta.get('timestamp', '')}",
        "",
        f"{meta.get('nodes', '?')} simulated nodes ({meta.get('node_spec', '')}; "
        f"{meta.get('gpus', '?')} GPUs), {meta.get('jobs', '?')} jobs per scenario, steady rate "
        f"{meta.get('rate', '?')}/s; machine: {meta.get('cpus', '?')} CPUs, "
        f"git {meta.get('git', '?')}.",
        "",
        "## Placement (creation → bound)",
        "",
        "| mode | placer | placed | p50 ms | p90 ms | p99 ms | max ms | bound/s "
        "| writes/job | reads/job | placer CPU s | placer peak RSS MiB "
        "| quality (bind / decision order) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in results.get("placement") or []:
        lat = s.get("latency") or {}
        req = s.get("requests") or {}
        q = _get(s, "quality", "share")
        qd = _get(s, "quality", "decision_order_share")
        lines.append(
            f"| {s['mode']} | {s['placer']} | {s['placed']}/{s['jobs']} | {_ms(lat.get('p50'))} "
            f"| {_ms(lat.get('p90'))} | {_ms(lat.get('p99'))} | {_ms(lat.get('max'))} "
            f"| {fmt(_get(s, 'throughput'), 1)} | {fmt(req.get('writes_per_job'))} "
            f"| {fmt(req.get('reads_per_job'))} | {fmt(_get(s, 'cpu', 'placer_seconds'), 1)} "
            f"| {fmt(_get(s, 'rss', 'peak_mib'), 0)} "
            f"| {fmt(None if q is None else q * 100, 1, unit='%')} / "
            f"{fmt(None if qd is None else qd * 100, 1, unit='%')} |"
        )
    lines += [
        "",
        "## Ratios",
        "",
        "| mode | ours ÷ kube-scheduler (bound/s) "
        "| ours ÷ ceiling (bound/s) | ours ÷ kube-scheduler (p99) |",
        "|---|---:|---:|---:|",
    ]
    for mode in ("burst", "steady"):
        ours, ref, ceil = (_scenario(results, p, mode) for p in (OURS, REFERENCE, CEILING))
        if ours is None:
            continue
        lines.append(
            f"| {mode} | {fmt(ratio(_get(ours, 'throughput'), _get(ref, 'throughput')))} "
            f"| {fmt(ratio(_get(ours, 'throughput'), _get(ceil, 'throughput')))} "
            f"| {fmt(ratio(_get(ours, 'latency', 'p99'), _get(ref, 'latency', 'p99')))} |"
        )
    lines += [
        "",
        "## Where the time goes (p50 / p99 ms)",
        "",
        "| mode | placer | creation → pod seen | pod seen → bound |",
        "|---|---|---:|---:|",
    ]
    for s in results.get("placement") or []:
        phases = s.get("phases") or {}
        cells = [
            f"{_ms(_get(phases, k, 'p50'))} / {_ms(_get(phases, k, 'p99'))}"
            for k in ("created_to_pod_seen", "pod_seen_to_bound")
        ]
        lines.append(f"| {s['mode']} | {s['placer']} | {cells[0]} | {cells[1]} |")
    restart = results.get("restart") or {}
    if restart:
        lines += [
            "",
            "## Settle after restart",
            "",
            "| start | resources | settle s | reconciles | CPU s | peak RSS MiB |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for which in ("first", "restart"):
            r = restart.get(which)
            if r:
                lines.append(
                    f"| {which} | {r.get('resources')} | {fmt(r.get('settle_seconds'))} "
                    f"| {r.get('reconciles')} | {fmt(r.get('cpu_seconds'), 1)} "
                    f"| {fmt(r.get('peak_rss_mib'), 0)} |"
                )
    lines += ["", "## Targets", "", "| target | goal | measured | met |", "|---|---|---:|:-:|"]
    for t in evaluate_targets(results):
        met = "—" if t.met is None else ("yes" if t.met else "**no**")
        lines.append(f"| {t.name} | {t.goal} | {fmt(t.value, unit=t.unit)} | {met} |")
    return "\n".join(lines) + "\n"


# --- plot ---------------------------------------------------------------------------------------


def cdf_points(values: Sequence[float]) -> tuple[list[float], list[float]]:
    """(sorted values, cumulative share 1/n … 1) for a step plot."""
    ordered = sorted(values)
    n = len(ordered)
    return ordered, [(i + 1) / n for i in range(n)]


def plot_latency_cdf(results: Mapping[str, Any], path: Path) -> bool:
    """One panel per mode, one CDF line per placer; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    scenarios = [s for s in results.get("placement") or [] if s.get("latencies")]
    modes = [m for m in ("burst", "steady") if any(s["mode"] == m for s in scenarios)]
    if not modes:
        return False
    fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4.2), squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=True):
        for placer in PLACERS:
            s = _scenario(results, placer, mode)
            if s is None or not s.get("latencies"):
                continue
            xs, ys = cdf_points(s["latencies"])
            ax.step(xs, ys, where="post", label=f"{placer} (p99 {s['latency']['p99']:.2f} s)")
        ax.set_xscale("log")
        ax.set_xlabel("creation → bound (s, log)")
        ax.set_ylabel("share of jobs")
        rate = "as fast as possible" if mode == "burst" else f"{results['meta']['rate']}/s"
        ax.set_title(f"{mode}: {results['meta']['jobs']} jobs, {rate}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
