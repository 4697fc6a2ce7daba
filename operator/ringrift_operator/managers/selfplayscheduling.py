"""Which board config and engine the next self-play job runs, and how many jobs a node should hold.

The seed's SelfplayScheduler as pure functions. The idle-GPU autopilot loop calls
:func:`compute_config_weights` (cached for 60 s with :class:`WeightCache`), :func:`pick_config`,
:func:`pick_engine_mode` and :func:`plan_job_targets`, and folds every pick into
:class:`DiversityMetrics`; the ``configs`` command prints the weight breakdowns and
:func:`summarize_diversity`.

A config's weight is the sum of four visible components, floored at :data:`MIN_CONFIG_WEIGHT` so
that no enabled config starves:

- static priority, 3..8 per config (:data:`DEFAULT_STATIC_PRIORITIES`, overridable);
- Elo boost, 0..+3 (:func:`score_elo_boost`): weaker than the others or a target, or stagnating;
- curriculum weight, -2..+3, clamped;
- board override, 0..+6, clamped.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from ringrift_operator.api.common import (
    ALL_CONFIG_KEYS,
    GPU_ENGINE_MODES,
    EngineMode,
    parse_config_key,
)
from ringrift_operator.managers.nodes import GIB, LABEL_GPU_MEMORY, NodeInfo

_T = TypeVar("_T")

# --- Weights -------------------------------------------------------------------------------------

STATIC_PRIORITY_MIN, STATIC_PRIORITY_MAX = 3, 8
ELO_BOOST_MIN, ELO_BOOST_MAX = 0.0, 3.0
CURRICULUM_MIN, CURRICULUM_MAX = -2.0, 3.0
OVERRIDE_MIN, OVERRIDE_MAX = 0, 6
MIN_CONFIG_WEIGHT = 0.5  # floor of a config's weight: every enabled config keeps a chance

# The small, fast 2-player boards first: they give the most games per GPU-hour and are the
# configs players play most; more players and larger boards follow.
DEFAULT_STATIC_PRIORITIES: Mapping[str, int] = MappingProxyType(
    {
        "square8_2p": 8,
        "hex8_2p": 7,
        "square8_3p": 6,
        "hex8_3p": 5,
        "square8_4p": 5,
        "hex8_4p": 4,
        "square19_2p": 5,
        "hexagonal_2p": 5,
        "square19_3p": 4,
        "hexagonal_3p": 4,
        "square19_4p": 3,
        "hexagonal_4p": 3,
    }
)

# Elo boost rules (see score_elo_boost).
ELO_POINTS_PER_BOOST = 100.0  # each 100 Elo below the reference adds +1 ...
ELO_DEFICIT_BOOST_MAX = 2.0  # ... up to +2
STAGNATION_MAX_GAIN = 20.0  # a recent gain below this many Elo points is stagnation ...
STAGNATION_BOOST = 1.0  # ... and adds +1
UNRATED_ELO_BOOST = 2.0  # no model rated yet: treated as far below the others

# Engine mixes: relative weights. GPU jobs use a network; CPU jobs never need one.
DEFAULT_GPU_ENGINE_MIX: Mapping[EngineMode, int] = MappingProxyType(
    {
        EngineMode.GUMBEL_MCTS: 40,
        EngineMode.NNUE_GUIDED: 25,
        EngineMode.POLICY_ONLY: 15,
        EngineMode.NN_DESCENT: 10,
        EngineMode.NN_MINIMAX: 10,
    }
)
DEFAULT_CPU_ENGINE_MIX: Mapping[EngineMode, int] = MappingProxyType(
    {
        EngineMode.HEURISTIC: 40,
        EngineMode.MAXN: 20,
        EngineMode.BRS: 20,
        EngineMode.MCTS: 10,
        EngineMode.RANDOM: 10,
    }
)


@dataclass(frozen=True, slots=True)
class ConfigElo:
    """The Elo summary of one config's current model.

    ``recent_gain`` is its rating change over the Elo-sync loop's stagnation window; ``None`` when
    unknown (no stagnation signal then).
    """

    rating: float
    recent_gain: float | None = None


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    """How the scheduler weighs configs and engines. Maps hold only deviations from the defaults.

    - ``static_priorities``: per config, replaces :data:`DEFAULT_STATIC_PRIORITIES` (clamped 3..8).
    - ``curriculum_weights``: per config, -2..+3 (clamped); absent = 0.
    - ``board_overrides``: per config, 0..+6 (clamped); absent = 0.
    - ``enabled_configs``: the configs that may be picked, in a stable order.
    - ``gpu_engine_mix`` / ``cpu_engine_mix``: relative weights of engine modes for jobs that get a
      GPU / run on CPU only. GPU mixes hold GPU engine modes only, CPU mixes none of them.
    - ``target_elo``: a rating every config should reach; ``None`` = compare with the others only.
    """

    static_priorities: Mapping[str, int] = field(default_factory=dict)
    curriculum_weights: Mapping[str, float] = field(default_factory=dict)
    board_overrides: Mapping[str, int] = field(default_factory=dict)
    enabled_configs: tuple[str, ...] = ALL_CONFIG_KEYS
    gpu_engine_mix: Mapping[EngineMode, int] = field(default_factory=lambda: DEFAULT_GPU_ENGINE_MIX)
    cpu_engine_mix: Mapping[EngineMode, int] = field(default_factory=lambda: DEFAULT_CPU_ENGINE_MIX)
    target_elo: float | None = None

    def __post_init__(self) -> None:
        for name, keys in (
            ("static_priorities", self.static_priorities),
            ("curriculum_weights", self.curriculum_weights),
            ("board_overrides", self.board_overrides),
            ("enabled_configs", self.enabled_configs),
        ):
            for key in keys:
                parse_config_key(key)  # raises ValueError naming the key
                if key not in ALL_CONFIG_KEYS:
                    raise ValueError(f"{name}: unknown config {key!r}")
        if len(set(self.enabled_configs)) != len(self.enabled_configs):
            raise ValueError("enabled_configs: duplicate config")
        _check_mix("gpu_engine_mix", self.gpu_engine_mix, gpu=True)
        _check_mix("cpu_engine_mix", self.cpu_engine_mix, gpu=False)

    def static_priority(self, config: str) -> int:
        value = self.static_priorities.get(config, DEFAULT_STATIC_PRIORITIES[config])
        return _clamp_int(value, STATIC_PRIORITY_MIN, STATIC_PRIORITY_MAX)


def _check_mix(name: str, mix: Mapping[EngineMode, int], *, gpu: bool) -> None:
    if any(weight < 0 for weight in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError(f"{name}: weights must be >= 0 with at least one > 0")
    wrong = {m for m in mix if (EngineMode(m) in GPU_ENGINE_MODES) != gpu}
    if wrong:
        kind = "GPU" if gpu else "CPU"
        raise ValueError(f"{name}: not {kind} engine modes: {sorted(wrong)}")


def _clamp_int(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


@dataclass(frozen=True, slots=True)
class ConfigWeight:
    """One config's weight with every component visible (the ``configs`` command prints these)."""

    config: str
    static_priority: int
    elo_boost: float
    curriculum: float
    override: int

    @property
    def raw(self) -> float:
        return self.static_priority + self.elo_boost + self.curriculum + self.override

    @property
    def weight(self) -> float:
        """The weight :func:`pick_config` uses: the raw sum, floored at MIN_CONFIG_WEIGHT."""
        return max(MIN_CONFIG_WEIGHT, self.raw)


def score_elo_boost(
    *, config: str, elo: Mapping[str, ConfigElo], target_elo: float | None = None
) -> float:
    """Elo boost of ``config``, 0..+3: more self-play where the model lags or stalls.

    - Deficit: how far the config's rating lies below the reference — the larger of the mean
      rating of all rated configs in ``elo`` and ``target_elo`` — adds +1 per 100 points, at
      most +2.
    - Stagnation: a known recent gain below 20 Elo adds +1.
    - A config without a rating gets +2 (no model yet: it needs data most).
    The sum is clamped to 0..+3.
    """
    own = elo.get(config)
    if own is None:
        return UNRATED_ELO_BOOST
    reference = sum(e.rating for e in elo.values()) / len(elo)
    if target_elo is not None:
        reference = max(reference, target_elo)
    deficit = max(0.0, reference - own.rating)
    boost = min(ELO_DEFICIT_BOOST_MAX, deficit / ELO_POINTS_PER_BOOST)
    if own.recent_gain is not None and own.recent_gain < STAGNATION_MAX_GAIN:
        boost += STAGNATION_BOOST
    return _clamp(boost, ELO_BOOST_MIN, ELO_BOOST_MAX)


def compute_config_weights(
    *, settings: SchedulerSettings, elo: Mapping[str, ConfigElo] | None = None
) -> tuple[ConfigWeight, ...]:
    """Weight breakdowns of the enabled configs, in ``settings.enabled_configs`` order.

    ``elo`` holds the ratings of the enabled configs' current models (others are ignored, so a
    disabled config cannot skew the mean).
    """
    ratings = {k: v for k, v in (elo or {}).items() if k in settings.enabled_configs}
    return tuple(
        ConfigWeight(
            config=config,
            static_priority=settings.static_priority(config),
            elo_boost=score_elo_boost(config=config, elo=ratings, target_elo=settings.target_elo),
            curriculum=_clamp(
                settings.curriculum_weights.get(config, 0.0), CURRICULUM_MIN, CURRICULUM_MAX
            ),
            override=_clamp_int(
                settings.board_overrides.get(config, 0), OVERRIDE_MIN, OVERRIDE_MAX
            ),
        )
        for config in settings.enabled_configs
    )


def pick_config(weights: Sequence[ConfigWeight], *, rng: random.Random) -> str:
    """Draw a config with probability proportional to its weight; reproducible for a seeded rng."""
    return _weighted_choice([(w.config, w.weight) for w in weights], rng=rng)


def _weighted_choice(items: Sequence[tuple[_T, float]], *, rng: random.Random) -> _T:
    total = sum(weight for _, weight in items)
    if not items or total <= 0:
        raise ValueError("nothing to choose from: no item with a positive weight")
    point = rng.random() * total
    for item, weight in items:
        point -= weight
        if point < 0:
            return item
    return next(item for item, weight in reversed(items) if weight > 0)  # float rounding


@dataclass(frozen=True, slots=True)
class WeightCache:
    """Config weights computed at ``computed_at``; recomputed once older than the TTL (60 s)."""

    weights: tuple[ConfigWeight, ...]
    computed_at: float
    ttl_seconds: float = 60.0

    def is_fresh(self, *, now: float) -> bool:
        """Fresh while younger than the TTL; a clock that went backwards makes it stale."""
        return 0.0 <= now - self.computed_at < self.ttl_seconds


# --- Engines -------------------------------------------------------------------------------------


def is_gpu_job(*, node: NodeInfo, cpu_only: bool = False) -> bool:
    """Whether a new self-play job on ``node`` gets a GPU: the node has a free one, unless the
    job is one of the hybrid CPU-side jobs (``cpu_only``)."""
    return node.gpu_free > 0 and not cpu_only


def pick_engine_mode(
    *, node: NodeInfo, settings: SchedulerSettings, rng: random.Random, cpu_only: bool = False
) -> EngineMode:
    """Draw an engine mode from the GPU mix for GPU jobs, from the CPU mix otherwise."""
    gpu = is_gpu_job(node=node, cpu_only=cpu_only)
    mix = settings.gpu_engine_mix if gpu else settings.cpu_engine_mix
    return _weighted_choice([(EngineMode(m), float(w)) for m, w in mix.items()], rng=rng)


# --- Job targets ---------------------------------------------------------------------------------

SYSTEM_RESERVED_MILLIS = 1000  # kept free for the kubelet, the node agent and the OS
SYSTEM_RESERVED_BYTES = 2 * GIB
CPU_MILLIS_PER_GPU_JOB = 2000  # host cores a GPU self-play job needs to feed its GPU
MEMORY_BYTES_PER_GPU_JOB = 4 * GIB
CPU_MILLIS_PER_CPU_JOB = 1000  # CPU engines are single-threaded
MEMORY_BYTES_PER_CPU_JOB = 2 * GIB
MAX_CPU_JOBS_PER_NODE = 32
HYBRID_CPU_SHARE = 0.5  # GPU nodes give at most half their spare cores to CPU-side jobs ...
HYBRID_MAX_CPU_JOBS = 8  # ... and at most this many: they also train and export
MIN_GPU_MEMORY_MIB_FOR_SELFPLAY = 8 * 1024  # smaller GPUs cannot hold a model plus a batch
# Concurrent self-play jobs per GPU by GPU memory (MiB per GPU, from GPU Feature Discovery).
JOBS_PER_GPU_BY_MEMORY_MIB: tuple[tuple[int, int], ...] = (
    (64 * 1024, 4),  # H100, GH200, A100-80GB
    (32 * 1024, 3),  # A100-40GB, L40S, A6000
    (16 * 1024, 2),  # RTX 4090, RTX 3090
    (0, 1),
)
# Busy nodes get fewer jobs: (utilisation percent at least, factor). Below 60 %: all of them.
UTILISATION_FACTORS: tuple[tuple[int, float], ...] = ((95, 0.0), (80, 0.5), (60, 0.75))


@dataclass(frozen=True, slots=True)
class JobTargets:
    """How many self-play jobs a node should run: GPU jobs, and CPU jobs (hybrid on GPU nodes)."""

    gpu_jobs: int
    cpu_jobs: int

    @property
    def total(self) -> int:
        return self.gpu_jobs + self.cpu_jobs


def gpu_memory_mib(node: NodeInfo) -> int | None:
    """Memory per GPU from the GPU Feature Discovery label; ``None`` when absent or malformed."""
    value = node.labels.get(LABEL_GPU_MEMORY, "")
    return int(value) if value.isdigit() else None


def jobs_per_gpu(*, memory_mib: int | None) -> int:
    """Concurrent self-play jobs one GPU holds; an unknown memory size gets the minimum, 1."""
    if memory_mib is None:
        return 1
    return next(jobs for floor, jobs in JOBS_PER_GPU_BY_MEMORY_MIB if memory_mib >= floor)


def utilisation_factor(percent: int | None) -> float:
    """The share of the hardware target kept at this utilisation (``None`` = unknown = idle)."""
    if percent is None:
        return 1.0
    return next((f for floor, f in UTILISATION_FACTORS if percent >= floor), 1.0)


def _scale(jobs: int, factor: float) -> int:
    # Round down, but a node that is not saturated keeps at least one job.
    if jobs <= 0 or factor <= 0:
        return 0
    return max(1, math.floor(jobs * factor))


def _has_selfplay_gpu(node: NodeInfo) -> bool:
    memory = gpu_memory_mib(node)
    return node.gpu_allocatable > 0 and (
        memory is None or memory >= MIN_GPU_MEMORY_MIB_FOR_SELFPLAY
    )


def plan_job_targets(
    *, node: NodeInfo, gpu_util_percent: int | None = None, cpu_util_percent: int | None = None
) -> JobTargets:
    """Target self-play jobs for ``node`` from its hardware, reduced when it is busy.

    GPU jobs: allocatable GPUs times :func:`jobs_per_gpu`, limited by the cores and memory each
    needs (after the system reserve), then scaled by :func:`utilisation_factor` of the busier of
    GPU and CPU. CPU jobs: what the remaining cores and memory hold — on GPU nodes (hybrid jobs) at
    most half the spare cores and :data:`HYBRID_MAX_CPU_JOBS`, elsewhere at most
    :data:`MAX_CPU_JOBS_PER_NODE` — scaled by the CPU utilisation factor.
    """
    millis = max(0, node.cpu_millis - SYSTEM_RESERVED_MILLIS)
    memory = max(0, node.memory_bytes - SYSTEM_RESERVED_BYTES)
    gpu_jobs = 0
    if _has_selfplay_gpu(node):
        by_hardware = min(
            node.gpu_allocatable * jobs_per_gpu(memory_mib=gpu_memory_mib(node)),
            millis // CPU_MILLIS_PER_GPU_JOB,
            memory // MEMORY_BYTES_PER_GPU_JOB,
        )
        busiest = max(
            (p for p in (gpu_util_percent, cpu_util_percent) if p is not None), default=None
        )
        gpu_jobs = _scale(by_hardware, utilisation_factor(busiest))
        millis -= by_hardware * CPU_MILLIS_PER_GPU_JOB  # reserve for the full GPU target
        memory -= by_hardware * MEMORY_BYTES_PER_GPU_JOB
        cpu_cap = min(
            HYBRID_MAX_CPU_JOBS, math.floor(millis * HYBRID_CPU_SHARE) // CPU_MILLIS_PER_CPU_JOB
        )
    else:
        cpu_cap = MAX_CPU_JOBS_PER_NODE
    by_cpu = min(millis // CPU_MILLIS_PER_CPU_JOB, memory // MEMORY_BYTES_PER_CPU_JOB, cpu_cap)
    return JobTargets(
        gpu_jobs=gpu_jobs, cpu_jobs=_scale(by_cpu, utilisation_factor(cpu_util_percent))
    )


def should_spawn_cpu_only_jobs(*, node: NodeInfo, cpu_util_percent: int | None = None) -> bool:
    """Whether ``node`` should run CPU-only self-play: it has no GPU fit for self-play (none, or
    less than 8 GiB each) and room for at least one CPU job at its utilisation."""
    if _has_selfplay_gpu(node):
        return False
    return plan_job_targets(node=node, cpu_util_percent=cpu_util_percent).cpu_jobs > 0


# --- Diversity -----------------------------------------------------------------------------------

DIVERSITY_WINDOW = 1000  # picks remembered
DEFAULT_DIFFICULTY = "standard"


@dataclass(frozen=True, slots=True)
class Pick:
    """One scheduling decision, as diversity tracking sees it."""

    config: str
    engine_mode: EngineMode
    difficulty: str = DEFAULT_DIFFICULTY


@dataclass(frozen=True, slots=True)
class DiversityMetrics:
    """The last ``window`` picks (oldest first) and the number of picks ever tracked."""

    recent: tuple[Pick, ...] = ()
    total_picks: int = 0
    window: int = DIVERSITY_WINDOW


def track_pick(metrics: DiversityMetrics, pick: Pick) -> DiversityMetrics:
    """Fold one pick into ``metrics``, forgetting the oldest beyond the window."""
    recent = (*metrics.recent, pick)[-metrics.window :]
    return DiversityMetrics(
        recent=recent, total_picks=metrics.total_picks + 1, window=metrics.window
    )


@dataclass(frozen=True, slots=True)
class DimensionSummary:
    """Pick counts along one dimension, their Shannon entropy (bits) and evenness (0..1).

    Evenness is entropy / log2(categories): 1 for a uniform spread, 1 with fewer than two
    categories. Ties for most/least picked go to the name first in sort order.
    """

    counts: Mapping[str, int]
    entropy_bits: float
    evenness: float
    most_picked: str | None
    least_picked: str | None


@dataclass(frozen=True, slots=True)
class DiversitySummary:
    window_picks: int
    total_picks: int
    by_config: DimensionSummary
    by_engine_mode: DimensionSummary
    by_difficulty: DimensionSummary


def shannon_entropy_bits(counts: Sequence[int]) -> float:
    """Entropy of the distribution the counts describe, in bits; 0 for no picks."""
    total = sum(counts)
    if total <= 0:
        return 0.0
    return -sum(c / total * math.log2(c / total) for c in counts if c > 0)


def _summarize(values: Sequence[str], *, known: Sequence[str] = ()) -> DimensionSummary:
    counter = Counter({k: 0 for k in known})
    counter.update(values)
    counts = dict(sorted(counter.items()))
    entropy = shannon_entropy_bits(list(counts.values()))
    evenness = entropy / math.log2(len(counts)) if len(counts) > 1 else 1.0
    names = list(counts)
    return DimensionSummary(
        counts=counts,
        entropy_bits=entropy,
        evenness=evenness,
        most_picked=min(names, key=lambda n: (-counts[n], n)) if names else None,
        least_picked=min(names, key=lambda n: (counts[n], n)) if names else None,
    )


def summarize_diversity(
    metrics: DiversityMetrics, *, configs: Sequence[str] = ()
) -> DiversitySummary:
    """Counts, entropy and evenness by config, engine mode and difficulty over the window.

    ``configs`` lists configs to count even when never picked (the enabled ones), so a starving
    config shows up as least picked with 0.
    """
    return DiversitySummary(
        window_picks=len(metrics.recent),
        total_picks=metrics.total_picks,
        by_config=_summarize([p.config for p in metrics.recent], known=configs),
        by_engine_mode=_summarize([p.engine_mode.value for p in metrics.recent]),
        by_difficulty=_summarize([p.difficulty for p in metrics.recent]),
    )
