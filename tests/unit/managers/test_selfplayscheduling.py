"""SelfplayScheduler: config weights and picks, engine modes, job targets, diversity, the cache."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringrift_operator.api.common import (
    ALL_CONFIG_KEYS,
    GPU_ENGINE_MODES,
    EngineMode,
)
from ringrift_operator.managers.nodes import GIB, LABEL_GPU_MEMORY, NodeInfo
from ringrift_operator.managers.selfplayscheduling import (
    DEFAULT_STATIC_PRIORITIES,
    MIN_CONFIG_WEIGHT,
    ConfigElo,
    ConfigWeight,
    DiversityMetrics,
    JobTargets,
    Pick,
    SchedulerSettings,
    WeightCache,
    compute_config_weights,
    pick_config,
    pick_engine_mode,
    plan_job_targets,
    score_elo_boost,
    shannon_entropy_bits,
    should_spawn_cpu_only_jobs,
    summarize_diversity,
    track_pick,
    utilisation_factor,
)

H100_MIB = 81559
A100_40_MIB = 40960
RTX4090_MIB = 24564


def make_node(
    *,
    gpus: int = 0,
    gpus_in_use: int = 0,
    gpu_memory_mib: int | None = None,
    cores: int = 16,
    memory_gib: int = 64,
) -> NodeInfo:
    labels = {} if gpu_memory_mib is None else {LABEL_GPU_MEMORY: str(gpu_memory_mib)}
    return NodeInfo(
        name="node-a",
        labels=labels,
        gpu_allocatable=gpus,
        gpu_in_use=gpus_in_use,
        cpu_millis=cores * 1000,
        memory_bytes=memory_gib * GIB,
    )


def weights_by_config(weights: tuple[ConfigWeight, ...]) -> dict[str, ConfigWeight]:
    return {w.config: w for w in weights}


# --- Settings and defaults -----------------------------------------------------------------------


class TestDefaults:
    @pytest.mark.parametrize("config", ALL_CONFIG_KEYS)
    def test_every_config_has_a_static_priority_in_range(self, config: str) -> None:
        assert 3 <= DEFAULT_STATIC_PRIORITIES[config] <= 8

    def test_square8_2p_is_the_highest(self) -> None:
        top = max(DEFAULT_STATIC_PRIORITIES, key=lambda k: DEFAULT_STATIC_PRIORITIES[k])
        assert top == "square8_2p"
        assert DEFAULT_STATIC_PRIORITIES["square8_2p"] == 8

    def test_default_settings_enable_every_config(self) -> None:
        weights = compute_config_weights(settings=SchedulerSettings())
        assert tuple(w.config for w in weights) == ALL_CONFIG_KEYS


class TestSettingsValidation:
    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            pytest.param({"static_priorities": {"chess_2p": 5}}, "chess", id="unknown-board"),
            pytest.param({"board_overrides": {"square8": 1}}, "config key", id="malformed-key"),
            pytest.param({"curriculum_weights": {"square8_5p": 1}}, "range", id="too-many-players"),
            pytest.param(
                {"enabled_configs": ("hex8_2p", "hex8_2p")}, "duplicate", id="duplicate-enabled"
            ),
            pytest.param(
                {"gpu_engine_mix": {EngineMode.HEURISTIC: 1}}, "GPU", id="cpu-mode-in-gpu-mix"
            ),
            pytest.param(
                {"cpu_engine_mix": {EngineMode.GUMBEL_MCTS: 1}}, "CPU", id="gpu-mode-in-cpu-mix"
            ),
            pytest.param({"cpu_engine_mix": {EngineMode.RANDOM: 0}}, "weights", id="all-zero-mix"),
            pytest.param(
                {"cpu_engine_mix": {EngineMode.RANDOM: 2, EngineMode.BRS: -1}},
                "weights",
                id="negative-weight",
            ),
        ],
    )
    def test_rejects(self, kwargs: dict[str, object], match: str) -> None:
        with pytest.raises(ValueError, match=match):
            SchedulerSettings(**kwargs)  # type: ignore[arg-type]


# --- Weights -------------------------------------------------------------------------------------


class TestComponents:
    @pytest.mark.parametrize(
        ("settings_kwargs", "component", "expected"),
        [
            pytest.param({}, "static_priority", 8, id="static-default"),
            pytest.param(
                {"static_priorities": {"square8_2p": 4}}, "static_priority", 4, id="static-set"
            ),
            pytest.param(
                {"static_priorities": {"square8_2p": 12}}, "static_priority", 8, id="static-max-8"
            ),
            pytest.param(
                {"static_priorities": {"square8_2p": 1}}, "static_priority", 3, id="static-min-3"
            ),
            pytest.param({}, "curriculum", 0.0, id="curriculum-default-0"),
            pytest.param(
                {"curriculum_weights": {"square8_2p": 1.5}}, "curriculum", 1.5, id="curriculum-set"
            ),
            pytest.param(
                {"curriculum_weights": {"square8_2p": 9}}, "curriculum", 3.0, id="curriculum-max"
            ),
            pytest.param(
                {"curriculum_weights": {"square8_2p": -9}}, "curriculum", -2.0, id="curriculum-min"
            ),
            pytest.param({}, "override", 0, id="override-default-0"),
            pytest.param({"board_overrides": {"square8_2p": 4}}, "override", 4, id="override-set"),
            pytest.param(
                {"board_overrides": {"square8_2p": 10}}, "override", 6, id="override-max-6"
            ),
            pytest.param(
                {"board_overrides": {"square8_2p": -3}}, "override", 0, id="override-min-0"
            ),
        ],
    )
    def test_component_of_square8_2p(
        self, settings_kwargs: dict[str, object], component: str, expected: float
    ) -> None:
        settings = SchedulerSettings(**settings_kwargs)  # type: ignore[arg-type]
        weight = weights_by_config(compute_config_weights(settings=settings))["square8_2p"]
        assert getattr(weight, component) == expected

    def test_weight_is_the_sum_of_the_components(self) -> None:
        settings = SchedulerSettings(
            curriculum_weights={"hex8_3p": -1.5}, board_overrides={"hex8_3p": 2}
        )
        elo = {"hex8_3p": ConfigElo(rating=1500)}
        weight = weights_by_config(compute_config_weights(settings=settings, elo=elo))["hex8_3p"]
        assert weight.raw == 5 + 0.0 - 1.5 + 2
        assert weight.weight == weight.raw

    def test_weight_is_floored_so_no_config_starves(self) -> None:
        weight = ConfigWeight(
            config="hex8_4p", static_priority=0, elo_boost=0.0, curriculum=-2.0, override=0
        )
        assert weight.weight == MIN_CONFIG_WEIGHT

    def test_only_enabled_configs_in_their_order(self) -> None:
        settings = SchedulerSettings(enabled_configs=("hex8_2p", "square8_2p"))
        weights = compute_config_weights(settings=settings)
        assert [w.config for w in weights] == ["hex8_2p", "square8_2p"]

    def test_disabled_configs_do_not_skew_the_elo_mean(self) -> None:
        settings = SchedulerSettings(enabled_configs=("hex8_2p", "square8_2p"))
        elo = {
            "hex8_2p": ConfigElo(rating=1500),
            "square8_2p": ConfigElo(rating=1500),
            "square19_4p": ConfigElo(rating=3000),  # disabled
        }
        weights = compute_config_weights(settings=settings, elo=elo)
        assert [w.elo_boost for w in weights] == [0.0, 0.0]


class TestEloBoost:
    @pytest.mark.parametrize(
        ("own", "others", "target", "expected"),
        [
            pytest.param(None, [1500.0], None, 2.0, id="unrated-gets-2"),
            pytest.param(ConfigElo(1500, 50), [1500.0], None, 0.0, id="at-mean-improving-0"),
            pytest.param(ConfigElo(1700, 50), [1500.0], None, 0.0, id="above-mean-0"),
            pytest.param(ConfigElo(1400, 50), [1600.0], None, 1.0, id="100-below-mean-1"),
            pytest.param(
                ConfigElo(1450, 50), [1550.0, 1550.0], None, 2 / 3 * 1.0, id="mean-incl-self"
            ),
            pytest.param(ConfigElo(1000, 50), [1800.0], None, 2.0, id="far-below-capped-2"),
            pytest.param(ConfigElo(1500, 5), [1500.0], None, 1.0, id="stagnating-1"),
            pytest.param(ConfigElo(1500, 20), [1500.0], None, 0.0, id="gain-20-not-stagnating"),
            pytest.param(ConfigElo(1500, None), [1500.0], None, 0.0, id="unknown-gain-no-signal"),
            pytest.param(ConfigElo(1000, -10), [1800.0], None, 3.0, id="far-below-and-stuck-3"),
            pytest.param(ConfigElo(1500, 50), [1500.0], 1650.0, 1.5, id="below-target"),
            pytest.param(ConfigElo(1500, 50), [1500.0], 1400.0, 0.0, id="above-target-0"),
        ],
    )
    def test_boost(
        self, own: ConfigElo | None, others: list[float], target: float | None, expected: float
    ) -> None:
        elo = {f"other_{i}": ConfigElo(rating=r) for i, r in enumerate(others)}
        if own is not None:
            elo["hex8_2p"] = own
        boost = score_elo_boost(config="hex8_2p", elo=elo, target_elo=target)
        assert boost == pytest.approx(expected)

    @given(
        st.floats(0, 4000),
        st.one_of(st.none(), st.floats(-500, 500)),
        st.lists(st.floats(0, 4000), max_size=11),
        st.one_of(st.none(), st.floats(0, 4000)),
    )
    def test_always_within_0_and_3(
        self, rating: float, gain: float | None, others: list[float], target: float | None
    ) -> None:
        elo = {f"other_{i}": ConfigElo(rating=r) for i, r in enumerate(others)}
        elo["hex8_2p"] = ConfigElo(rating=rating, recent_gain=gain)
        assert 0.0 <= score_elo_boost(config="hex8_2p", elo=elo, target_elo=target) <= 3.0

    def test_weaker_config_weighs_more_than_its_equal_peer(self) -> None:
        settings = SchedulerSettings(static_priorities={"hex8_2p": 7, "square8_2p": 7})
        elo = {"hex8_2p": ConfigElo(rating=1300), "square8_2p": ConfigElo(rating=1700)}
        weights = weights_by_config(compute_config_weights(settings=settings, elo=elo))
        assert weights["hex8_2p"].weight > weights["square8_2p"].weight


# --- Picking -------------------------------------------------------------------------------------


class TestPickConfig:
    def test_same_seed_same_sequence(self) -> None:
        weights = compute_config_weights(settings=SchedulerSettings())
        rng_a, rng_b = random.Random(42), random.Random(42)
        first = [pick_config(weights, rng=rng_a) for _ in range(50)]
        assert first == [pick_config(weights, rng=rng_b) for _ in range(50)]
        assert len(set(first)) > 1

    def test_single_config_always_picked(self) -> None:
        weights = compute_config_weights(settings=SchedulerSettings(enabled_configs=("hex8_4p",)))
        rng = random.Random(0)
        assert {pick_config(weights, rng=rng) for _ in range(20)} == {"hex8_4p"}

    def test_nothing_to_pick_raises(self) -> None:
        with pytest.raises(ValueError, match="nothing to choose"):
            pick_config((), rng=random.Random(0))

    @settings(max_examples=25, deadline=None)
    @given(
        st.lists(st.integers(3, 8), min_size=2, max_size=12),
        st.integers(0, 2**32 - 1),
    )
    def test_frequencies_follow_weights(self, priorities: list[int], seed: int) -> None:
        configs = ALL_CONFIG_KEYS[: len(priorities)]
        settings_ = SchedulerSettings(
            enabled_configs=configs, static_priorities=dict(zip(configs, priorities, strict=True))
        )
        weights = compute_config_weights(settings=settings_)
        rng = random.Random(seed)
        draws = 6000
        counts = Counter(pick_config(weights, rng=rng) for _ in range(draws))
        total = sum(w.weight for w in weights)
        for w in weights:
            # 5 standard deviations of a frequency over 6000 draws is at most 0.033.
            assert abs(counts[w.config] / draws - w.weight / total) < 0.035


class TestPickEngineMode:
    @pytest.mark.parametrize(
        ("node", "cpu_only", "gpu_expected"),
        [
            pytest.param(make_node(gpus=2, gpu_memory_mib=H100_MIB), False, True, id="free-gpu"),
            pytest.param(
                make_node(gpus=2, gpus_in_use=2, gpu_memory_mib=H100_MIB),
                False,
                False,
                id="all-gpus-busy-cpu-mode",
            ),
            pytest.param(
                make_node(gpus=2, gpu_memory_mib=H100_MIB), True, False, id="hybrid-cpu-side-job"
            ),
            pytest.param(make_node(gpus=0), False, False, id="cpu-node"),
        ],
    )
    def test_mode_matches_the_node(
        self, node: NodeInfo, cpu_only: bool, gpu_expected: bool
    ) -> None:
        rng = random.Random(3)
        modes = {
            pick_engine_mode(node=node, settings=SchedulerSettings(), rng=rng, cpu_only=cpu_only)
            for _ in range(200)
        }
        assert all((m in GPU_ENGINE_MODES) == gpu_expected for m in modes)
        assert len(modes) > 1  # the default mixes do mix

    def test_configured_mix_with_zero_weights(self) -> None:
        settings_ = SchedulerSettings(
            gpu_engine_mix={EngineMode.NNUE_GUIDED: 1, EngineMode.GUMBEL_MCTS: 0}
        )
        rng = random.Random(5)
        node = make_node(gpus=1)
        modes = {pick_engine_mode(node=node, settings=settings_, rng=rng) for _ in range(100)}
        assert modes == {EngineMode.NNUE_GUIDED}

    def test_cpu_mix_frequencies_follow_weights(self) -> None:
        settings_ = SchedulerSettings(
            cpu_engine_mix={EngineMode.HEURISTIC: 3, EngineMode.RANDOM: 1}
        )
        rng = random.Random(11)
        node = make_node()
        counts = Counter(
            pick_engine_mode(node=node, settings=settings_, rng=rng) for _ in range(4000)
        )
        assert abs(counts[EngineMode.HEURISTIC] / 4000 - 0.75) < 0.035


# --- Job targets ---------------------------------------------------------------------------------


class TestPlanJobTargets:
    @pytest.mark.parametrize(
        ("node", "expected"),
        [
            pytest.param(make_node(cores=16, memory_gib=64), JobTargets(0, 15), id="cpu-node"),
            pytest.param(
                make_node(cores=64, memory_gib=256), JobTargets(0, 32), id="cpu-node-capped-32"
            ),
            pytest.param(
                make_node(cores=16, memory_gib=8), JobTargets(0, 3), id="cpu-node-memory-bound"
            ),
            pytest.param(make_node(cores=0, memory_gib=0), JobTargets(0, 0), id="empty-node"),
            pytest.param(
                make_node(gpus=8, gpu_memory_mib=H100_MIB, cores=128, memory_gib=1024),
                JobTargets(32, 8),
                id="8xh100-4-per-gpu-hybrid-capped",
            ),
            pytest.param(
                make_node(gpus=1, gpu_memory_mib=A100_40_MIB, cores=32, memory_gib=128),
                JobTargets(3, 8),
                id="a100-40gb-3-per-gpu",
            ),
            pytest.param(
                make_node(gpus=1, gpu_memory_mib=RTX4090_MIB, cores=16, memory_gib=64),
                JobTargets(2, 5),
                id="rtx4090-2-per-gpu-hybrid-half-spare-cores",
            ),
            pytest.param(
                make_node(gpus=2, cores=32, memory_gib=128),
                JobTargets(2, 8),
                id="unknown-gpu-memory-1-per-gpu",
            ),
            pytest.param(
                make_node(gpus=4, gpu_memory_mib=H100_MIB, cores=8, memory_gib=512),
                JobTargets(3, 0),
                id="gpu-node-core-bound",
            ),
            pytest.param(
                make_node(gpus=4, gpu_memory_mib=H100_MIB, cores=64, memory_gib=14),
                JobTargets(3, 0),
                id="gpu-node-memory-bound",
            ),
            pytest.param(
                make_node(gpus=1, gpu_memory_mib=4096, cores=8, memory_gib=32),
                JobTargets(0, 7),
                id="gpu-too-small-runs-cpu-jobs",
            ),
        ],
    )
    def test_hardware(self, node: NodeInfo, expected: JobTargets) -> None:
        assert plan_job_targets(node=node) == expected

    @pytest.mark.parametrize(
        ("gpu_util", "cpu_util", "expected"),
        [
            pytest.param(None, None, JobTargets(4, 8), id="unknown-is-idle"),
            pytest.param(50, 10, JobTargets(4, 8), id="light-load"),
            pytest.param(70, None, JobTargets(3, 8), id="gpu-60-80-three-quarters"),
            pytest.param(85, None, JobTargets(2, 8), id="gpu-busy-halves-gpu-jobs"),
            pytest.param(None, 85, JobTargets(2, 4), id="cpu-busy-halves-both"),
            pytest.param(99, None, JobTargets(0, 8), id="gpu-saturated-no-gpu-jobs"),
            pytest.param(10, 97, JobTargets(0, 0), id="cpu-saturated-nothing"),
        ],
    )
    def test_utilisation(
        self, gpu_util: int | None, cpu_util: int | None, expected: JobTargets
    ) -> None:
        node = make_node(gpus=1, gpu_memory_mib=H100_MIB, cores=64, memory_gib=256)
        targets = plan_job_targets(node=node, gpu_util_percent=gpu_util, cpu_util_percent=cpu_util)
        assert targets == expected

    def test_a_busy_node_keeps_at_least_one_job(self) -> None:
        node = make_node(gpus=1, gpu_memory_mib=4096 * 2, cores=8, memory_gib=32)
        assert plan_job_targets(node=node, gpu_util_percent=90).gpu_jobs == 1

    @pytest.mark.parametrize(
        ("percent", "factor"),
        [
            pytest.param(None, 1.0, id="unknown"),
            pytest.param(0, 1.0, id="idle"),
            pytest.param(59, 1.0, id="59"),
            pytest.param(60, 0.75, id="60"),
            pytest.param(79, 0.75, id="79"),
            pytest.param(80, 0.5, id="80"),
            pytest.param(94, 0.5, id="94"),
            pytest.param(95, 0.0, id="95"),
            pytest.param(100, 0.0, id="100"),
        ],
    )
    def test_utilisation_factor(self, percent: int | None, factor: float) -> None:
        assert utilisation_factor(percent) == factor

    @given(
        st.integers(0, 8),
        st.integers(0, 128),
        st.integers(0, 512),
        st.integers(0, 100),
        st.integers(0, 100),
    )
    def test_busier_never_means_more_jobs(
        self, gpus: int, cores: int, memory_gib: int, util: int, extra: int
    ) -> None:
        node = make_node(gpus=gpus, gpu_memory_mib=H100_MIB, cores=cores, memory_gib=memory_gib)
        less = plan_job_targets(node=node, gpu_util_percent=util, cpu_util_percent=util)
        busier = min(100, util + extra)
        more = plan_job_targets(node=node, gpu_util_percent=busier, cpu_util_percent=busier)
        assert more.gpu_jobs <= less.gpu_jobs
        assert more.cpu_jobs <= less.cpu_jobs
        assert less.total >= 0


class TestShouldSpawnCpuOnlyJobs:
    @pytest.mark.parametrize(
        ("node", "cpu_util", "expected"),
        [
            pytest.param(make_node(cores=16), None, True, id="cpu-node"),
            pytest.param(make_node(gpus=1, gpu_memory_mib=H100_MIB), None, False, id="gpu-node"),
            pytest.param(make_node(gpus=1, gpu_memory_mib=4096), None, True, id="tiny-gpu"),
            pytest.param(make_node(cores=1), None, False, id="reserve-eats-the-only-core"),
            pytest.param(make_node(cores=16), 99, False, id="cpu-saturated"),
            pytest.param(make_node(cores=16), 85, True, id="cpu-busy-still-some"),
        ],
    )
    def test_decision(self, node: NodeInfo, cpu_util: int | None, expected: bool) -> None:
        assert should_spawn_cpu_only_jobs(node=node, cpu_util_percent=cpu_util) is expected


# --- Diversity -----------------------------------------------------------------------------------


def fold(*picks: Pick, window: int = 1000) -> DiversityMetrics:
    metrics = DiversityMetrics(window=window)
    for pick in picks:
        metrics = track_pick(metrics, pick)
    return metrics


class TestDiversity:
    def test_track_pick_is_a_pure_fold(self) -> None:
        empty = DiversityMetrics()
        one = track_pick(empty, Pick("hex8_2p", EngineMode.MAXN))
        assert empty.recent == ()
        assert one.recent == (Pick("hex8_2p", EngineMode.MAXN),)
        assert one.total_picks == 1

    def test_window_forgets_the_oldest(self) -> None:
        picks = [Pick(c, EngineMode.BRS) for c in ("hex8_2p", "hex8_3p", "hex8_4p", "square8_2p")]
        metrics = fold(*picks, window=3)
        assert metrics.recent == tuple(picks[1:])
        assert metrics.total_picks == 4

    def test_default_window_is_1000(self) -> None:
        metrics = fold(*[Pick("hex8_2p", EngineMode.BRS)] * 1005)
        assert len(metrics.recent) == 1000
        assert summarize_diversity(metrics).total_picks == 1005

    def test_counts_by_every_dimension(self) -> None:
        metrics = fold(
            Pick("hex8_2p", EngineMode.MAXN, "easy"),
            Pick("hex8_2p", EngineMode.GUMBEL_MCTS, "hard"),
            Pick("square8_2p", EngineMode.GUMBEL_MCTS, "hard"),
        )
        summary = summarize_diversity(metrics)
        assert summary.by_config.counts == {"hex8_2p": 2, "square8_2p": 1}
        assert summary.by_engine_mode.counts == {"gumbel-mcts": 2, "maxn": 1}
        assert summary.by_difficulty.counts == {"easy": 1, "hard": 2}
        assert summary.by_config.most_picked == "hex8_2p"
        assert summary.by_config.least_picked == "square8_2p"
        assert summary.window_picks == 3

    def test_uniform_spread_is_perfectly_even(self) -> None:
        metrics = fold(*[Pick(c, EngineMode.BRS) for c in ALL_CONFIG_KEYS[:4]])
        summary = summarize_diversity(metrics).by_config
        assert summary.entropy_bits == pytest.approx(2.0)
        assert summary.evenness == pytest.approx(1.0)

    def test_single_category_has_no_entropy(self) -> None:
        summary = summarize_diversity(fold(Pick("hex8_2p", EngineMode.BRS))).by_engine_mode
        assert (summary.entropy_bits, summary.evenness) == (0.0, 1.0)

    def test_never_picked_configs_show_as_least_picked(self) -> None:
        metrics = fold(Pick("hex8_2p", EngineMode.BRS), Pick("square8_2p", EngineMode.BRS))
        summary = summarize_diversity(metrics, configs=("hex8_2p", "square8_2p", "hex8_4p"))
        assert summary.by_config.counts["hex8_4p"] == 0
        assert summary.by_config.least_picked == "hex8_4p"
        assert summary.by_config.evenness < 1.0

    def test_empty_window(self) -> None:
        summary = summarize_diversity(DiversityMetrics())
        assert summary.by_config.most_picked is None
        assert summary.by_config.least_picked is None
        assert summary.by_config.entropy_bits == 0.0

    def test_ties_go_to_the_first_name(self) -> None:
        metrics = fold(Pick("square8_2p", EngineMode.BRS), Pick("hex8_2p", EngineMode.BRS))
        summary = summarize_diversity(metrics).by_config
        assert (summary.most_picked, summary.least_picked) == ("hex8_2p", "hex8_2p")

    @given(st.lists(st.integers(0, 50), max_size=12))
    def test_entropy_bounds(self, counts: list[int]) -> None:
        entropy = shannon_entropy_bits(counts)
        categories = sum(1 for c in counts if c > 0)
        assert entropy >= -1e-9
        if categories:
            assert entropy <= math.log2(categories) + 1e-9


# --- Weight cache --------------------------------------------------------------------------------


class TestWeightCache:
    @pytest.mark.parametrize(
        ("now", "fresh"),
        [
            pytest.param(100.0, True, id="just-computed"),
            pytest.param(159.9, True, id="under-60s"),
            pytest.param(160.0, False, id="at-60s-stale"),
            pytest.param(1000.0, False, id="long-ago"),
            pytest.param(99.0, False, id="clock-went-backwards"),
        ],
    )
    def test_is_fresh(self, now: float, fresh: bool) -> None:
        cache = WeightCache(weights=(), computed_at=100.0)
        assert cache.is_fresh(now=now) is fresh
