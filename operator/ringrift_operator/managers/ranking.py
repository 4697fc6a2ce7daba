"""The NodeSelector: which nodes may run a job, and in what order of preference.

Called by the JobManager's placement step (to choose the node it binds a pod to), the
TrainingCoordinator (best training node, gauntlet node), the SyncPlanner ("top N training nodes"
as sync targets), status writers and the ``explain`` command (scores and rejection reasons).
Pure: a snapshot of ``NodeInfo`` and a ``Demand`` in, a ``Ranking`` out.

Ordering of GPU work. The primary key is the per-GPU power of a node that has enough free GPUs:
nodes without them are rejected first, so for a 1-GPU job the first node is always the
highest-power node with a free GPU. Then, for nodes of equal per-GPU power: fewer penalty points
(untolerated PreferNoSchedule taints, recent failures below the exclusion threshold), more free
GPUs, more GPUs in total, fewer running jobs, and finally the name, so the order is deterministic.
Penalties therefore never rank a stronger GPU below a weaker one; a node that fails too often is
excluded instead.

Ordering of CPU work: CPU power of the free CPU and memory, then penalties, then nodes without free
GPUs first (keep GPU nodes for GPU work), then fewer running jobs, then the name.

Speed (5,000 nodes in a few ms, see bench/micro_ranking.py): the ranking runs every filter as one
cheap expression per node and sorts plain tuples; GPU scores are cached per label tuple; reasons
(``judge_node``) and result objects are built only when read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from itertools import islice

from ringrift_operator.managers.gpus import (
    GpuClass,
    GpuPower,
    meets_gpu_class,
    score_cpu,
    score_gpu,
)
from ringrift_operator.managers.nodes import (
    GIB,
    GPU_RESOURCE,
    LABEL_ARCH,
    NodeInfo,
    Taint,
    TaintEffect,
    Toleration,
)

__all__ = [
    "DEFAULT_CACHE_TTL_SECONDS",
    "DEFAULT_FAILURE_THRESHOLD",
    "EXPORT_DEMAND",
    "GAUNTLET_DEMAND",
    "GPU_TOLERATION",
    "PENALTY_PER_FAILURE",
    "PENALTY_PER_PREFER_NO_SCHEDULE",
    "TRAINING_DEMAND",
    "TRAINING_LIST_DEMAND",
    "TRAINING_MIN_MEMORY_GIB",
    "Demand",
    "RankedNode",
    "Ranking",
    "RankingCache",
    "Rejection",
    "Selection",
    "Verdict",
    "WorkKind",
    "best_cpu_node_for_export",
    "best_gpu_node_for_training",
    "best_node_for_gauntlet",
    "best_node_for_selfplay",
    "describe_alternatives",
    "is_tolerated",
    "judge_node",
    "rank_cpu_nodes",
    "rank_gpu_nodes",
    "rank_nodes",
    "rank_nodes_cached",
    "rank_training_nodes",
    "top_training_nodes",
]

TRAINING_MIN_MEMORY_GIB = 8  # the seed's floor for a training node
DEFAULT_FAILURE_THRESHOLD = 3  # recent failures at which a node is excluded
PENALTY_PER_FAILURE = 10  # penalty points per recent failure below the threshold
PENALTY_PER_PREFER_NO_SCHEDULE = 5  # penalty points per untolerated PreferNoSchedule taint
DEFAULT_CACHE_TTL_SECONDS = 10  # the seed caches rankings for 10 s

# Every GPU pod the operator builds carries this toleration (GPU nodes are commonly tainted so that
# only GPU work lands there); ranking assumes it for GPU demands so placement and pods agree.
GPU_TOLERATION = Toleration(key=GPU_RESOURCE, operator="Exists", effect=TaintEffect.NO_SCHEDULE)

# ``RankedNode.score`` packs the ordering into one integer: components after the first are
# clamped to 0..999 and each weighs 1000 times the next.
_FIELD = 1000


class WorkKind(StrEnum):
    """Which ordering a ranking used."""

    GPU = "gpu"
    CPU = "cpu"


@dataclass(frozen=True, slots=True)
class Demand:
    """What a job needs from a node. Every filter of the NodeSelector reads one field.

    Compared with ``==`` (the ranking cache does), not hashed: ``node_selector`` is a mapping.
    """

    gpus: int = 1  # free GPUs needed; 0 = none (CPU work, or listing GPU nodes regardless)
    cpu_millis: int = 0  # free CPU needed
    min_memory_gib: int = 0  # allocatable node memory needed (training: 8)
    allowed_archs: frozenset[str] = frozenset({"amd64"})
    tolerations: tuple[Toleration, ...] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    min_gpu_class: GpuClass | None = None  # placement.minGpuClass: that class or better
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD  # recent failures that exclude a node

    @property
    def effective_tolerations(self) -> tuple[Toleration, ...]:
        """The job's tolerations plus, for GPU work, the toleration every GPU pod carries."""
        if self.gpus > 0 and GPU_TOLERATION not in self.tolerations:
            return (*self.tolerations, GPU_TOLERATION)
        return self.tolerations


# The default demands of the queries below (each query takes its own ``demand`` to override).
TRAINING_LIST_DEMAND = Demand(gpus=0, min_memory_gib=TRAINING_MIN_MEMORY_GIB)  # busy nodes too
TRAINING_DEMAND = Demand(gpus=1, min_memory_gib=TRAINING_MIN_MEMORY_GIB)
GAUNTLET_DEMAND = Demand(gpus=1)
EXPORT_DEMAND = Demand(gpus=0, cpu_millis=1000)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the filters say about one node for one demand."""

    rejections: tuple[str, ...]  # empty when the node may run the job
    penalty: int  # points that lower the node within its power class
    penalty_reasons: tuple[str, ...]

    @property
    def accepted(self) -> bool:
        return not self.rejections


@dataclass(frozen=True, slots=True)
class RankedNode:
    """One accepted node: its place, the components of its score, and (on demand) why."""

    node: NodeInfo
    rank: int  # 1 = best
    kind: WorkKind
    gpu: GpuPower
    penalty: int  # points from PreferNoSchedule taints and recent failures
    score: int  # one integer that orders like the ranking; larger is better
    demand: Demand

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def gpu_power(self) -> int:
        """Per-GPU power (0 for a node without GPUs): the ``powerScore`` shown in status."""
        return self.gpu.score if self.node.has_gpu else 0

    @property
    def cpu_power(self) -> int:
        """CPU power of the node's free CPU and memory (the primary key of CPU work)."""
        node = self.node
        return score_cpu(
            cpu_millis=node.cpu_millis - node.cpu_in_use_millis,
            memory_bytes=node.memory_bytes - node.memory_in_use_bytes,
        )

    @property
    def penalty_reasons(self) -> tuple[str, ...]:
        return judge_node(self.node, demand=self.demand, kind=self.kind).penalty_reasons

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why this node is where it is, e.g. ``NVIDIA-H100-80GB-HBM3 tier 1, 2/8 GPUs free,
        power 1000``. Built when asked: ranking thousands of nodes formats no strings."""
        node = self.node
        if node.has_gpu:
            first = (
                f"{self.gpu.describe()}, {node.gpu_free}/{node.gpu_allocatable} GPUs free, "
                f"power {self.gpu.score}"
            )
        else:
            first = "no GPUs"
        if self.kind is WorkKind.CPU:
            free_cores = max(0, node.cpu_millis - node.cpu_in_use_millis) / 1000
            free_mem = max(0, node.memory_bytes - node.memory_in_use_bytes) // GIB
            cpu = f"cpu power {self.cpu_power} ({free_cores:g} cores, {free_mem} GiB free)"
            first = f"{cpu}; {first}"
        return (first, *self.penalty_reasons)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A node that may not run the job. Its reasons (every one, not only the first) are built
    when asked, so that ranking thousands of nodes formats no strings."""

    node: NodeInfo
    demand: Demand
    kind: WorkKind

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def reasons(self) -> tuple[str, ...]:
        return judge_node(self.node, demand=self.demand, kind=self.kind).rejections

    def describe(self) -> str:
        return f"{self.name}: {'; '.join(self.reasons)}"


# An accepted node as the ranking stores it: (-score, name, input position, node, gpu, penalty).
# Plain tuples sort fast and cost little; RankedNode objects are made only for what is read.
_Scored = tuple[int, str, int, NodeInfo, GpuPower, int]


@dataclass(frozen=True, slots=True)
class Ranking:
    """Accepted nodes best first, and rejected nodes in input order.

    Read it through ``best``, ``top(n)``, ``ranked`` and ``rejected``; they build their objects
    when asked, so choosing the best of 5,000 nodes builds one RankedNode, not 5,000.
    """

    kind: WorkKind
    demand: Demand
    scored: tuple[_Scored, ...]  # accepted nodes, best first
    rejected_nodes: tuple[NodeInfo, ...]

    @property
    def candidates(self) -> int:
        """How many nodes were accepted."""
        return len(self.scored)

    def iter_ranked(self) -> Iterator[RankedNode]:
        for rank, (neg_score, _, _, node, gpu, penalty) in enumerate(self.scored, 1):
            yield RankedNode(
                node=node,
                rank=rank,
                kind=self.kind,
                gpu=gpu,
                penalty=penalty,
                score=-neg_score,
                demand=self.demand,
            )

    @property
    def ranked(self) -> tuple[RankedNode, ...]:
        return tuple(self.iter_ranked())

    @property
    def best(self) -> RankedNode | None:
        return next(self.iter_ranked(), None)

    def top(self, count: int) -> tuple[RankedNode, ...]:
        return tuple(islice(self.iter_ranked(), max(0, count)))

    @property
    def rejected(self) -> tuple[Rejection, ...]:
        """The rejected nodes; each builds its reasons when asked."""
        return tuple(
            Rejection(node=n, demand=self.demand, kind=self.kind) for n in self.rejected_nodes
        )

    def explain(self) -> list[str]:
        """Lines for the ``explain`` command and Events: every node and why. Rejected nodes come
        closest first (fewest reasons), so a summary cut short still names what keeps the
        likeliest nodes out, e.g. the one node a nodeSelector allows."""
        lines = [
            f"#{r.rank} {r.name} score {r.score}: {'; '.join(r.reasons)}"
            for r in self.iter_ranked()
        ]
        judged = [(r.name, r.reasons) for r in self.rejected]
        judged.sort(key=lambda pair: len(pair[1]))
        lines += [f"rejected {name}: {'; '.join(reasons)}" for name, reasons in judged]
        return lines


@dataclass(frozen=True, slots=True)
class Selection:
    """The answer to "which node?": the chosen node (or None), with the ranking behind it."""

    chosen: RankedNode | None
    ranking: Ranking

    @classmethod
    def from_ranking(cls, ranking: Ranking) -> Selection:
        return cls(chosen=ranking.best, ranking=ranking)

    @property
    def candidates(self) -> int:
        """Accepted nodes, the chosen one included."""
        return self.ranking.candidates

    @property
    def rejected(self) -> tuple[Rejection, ...]:
        return self.ranking.rejected

    @property
    def message(self) -> str:
        """One line for a condition message or an Event."""
        rejected = self.ranking.rejected_nodes
        if self.chosen is not None:
            return (
                f"chose {self.chosen.name} ({'; '.join(self.chosen.reasons)}) "
                f"of {self.candidates} candidate(s), {len(rejected)} rejected"
            )
        if not rejected:
            return "no nodes"
        shown = "; ".join(rej.describe() for rej in self.rejected[:5])
        more = f" (+{len(rejected) - 5} more)" if len(rejected) > 5 else ""
        return f"no node fits: {shown}{more}"


def describe_alternatives(ranking: Ranking) -> str:
    """What the chosen (best) node was chosen over, in one short clause for a condition
    message: ``3 candidate(s), 9 rejected; runner-up a100-0 (power 700)``."""
    text = f"{ranking.candidates} candidate(s), {len(ranking.rejected_nodes)} rejected"
    second = ranking.top(2)[1:]
    if second:
        r = second[0]
        power = r.gpu_power if ranking.kind is WorkKind.GPU else r.cpu_power
        text += f"; runner-up {r.name} (power {power})"
    return text


def is_tolerated(taint: Taint, tolerations: Iterable[Toleration]) -> bool:
    """Kubernetes toleration matching: effect (None = any), key (empty + Exists = any), value."""
    for tol in tolerations:
        if tol.effect is not None and tol.effect != taint.effect:
            continue
        if tol.operator == "Exists":
            if not tol.key or tol.key == taint.key:
                return True
        elif tol.key == taint.key and tol.value == taint.value:
            return True
    return False


def rank_nodes(nodes: Iterable[NodeInfo], *, demand: Demand) -> Ranking:
    """Rank for a job: GPU ordering when it needs GPUs, CPU ordering otherwise."""
    if demand.gpus > 0:
        return rank_gpu_nodes(nodes, demand=demand)
    return rank_cpu_nodes(nodes, demand=demand)


def rank_for_placement(
    nodes: Iterable[NodeInfo], *, demand: Demand, avoid: Iterable[str] = ()
) -> Ranking:
    """The ranking a placement decides on. Preferences relax, in this order, until some node
    fits: first the nodes of the job's failed attempts (``avoid``) are left out and nodes with
    too many recent failures excluded; then the avoided nodes come back; then the nodes over the
    failure threshold (ranked below every healthy node by their penalty). Retry history and
    reputation steer a job; they never strand one that a Ready node could run, such as a job
    pinned to one node by its nodeSelector. With nothing relaxed fitting, the first ranking
    (its rejections explain the wait)."""
    pool = list(nodes)
    skip = set(avoid)
    first = rank_nodes([n for n in pool if n.name not in skip] if skip else pool, demand=demand)
    if first.best is not None:
        return first
    if skip:
        again = rank_nodes(pool, demand=demand)
        if again.best is not None:
            return again
    if any(n.recent_failures >= demand.failure_threshold for n in pool):
        lenient = rank_nodes(pool, demand=replace(demand, failure_threshold=_NO_THRESHOLD))
        if lenient.best is not None:
            return lenient
    return first


_NO_THRESHOLD = 1 << 30


def rank_gpu_nodes(nodes: Iterable[NodeInfo], *, demand: Demand) -> Ranking:
    """Nodes with GPUs that pass every filter, by per-GPU power first (see the module docstring).

    With ``demand.gpus == 0`` busy GPU nodes are kept: that is the list of training nodes.
    """
    return _rank(nodes, demand=demand, kind=WorkKind.GPU)


def rank_cpu_nodes(nodes: Iterable[NodeInfo], *, demand: Demand) -> Ranking:
    """Nodes that pass every filter, by the CPU power of their free CPU and memory."""
    return _rank(nodes, demand=demand, kind=WorkKind.CPU)


def rank_training_nodes(
    nodes: Iterable[NodeInfo],
    *,
    demand: Demand = TRAINING_LIST_DEMAND,
) -> Ranking:
    """All nodes fit to train, strongest GPUs first, busy or not (the seed's
    ``get_training_nodes_ranked``): the targets that training data should be synced to."""
    return rank_gpu_nodes(nodes, demand=demand)


def top_training_nodes(
    nodes: Iterable[NodeInfo],
    *,
    count: int,
    demand: Demand = TRAINING_LIST_DEMAND,
) -> tuple[RankedNode, ...]:
    """The first ``count`` of :func:`rank_training_nodes` (``get_training_primary_nodes``)."""
    return rank_training_nodes(nodes, demand=demand).top(count)


def best_gpu_node_for_training(
    nodes: Iterable[NodeInfo],
    *,
    demand: Demand = TRAINING_DEMAND,
) -> Selection:
    """The node to run a training job on now: enough free GPUs and at least 8 GiB of memory."""
    return Selection.from_ranking(rank_gpu_nodes(nodes, demand=demand))


def best_node_for_gauntlet(
    nodes: Iterable[NodeInfo],
    *,
    demand: Demand = GAUNTLET_DEMAND,
    avoid: frozenset[str] = frozenset(),
) -> Selection:
    """The node to play a gauntlet on: the strongest free GPU, preferring nodes not in ``avoid``
    (e.g. the node still training), which are used only when nothing else fits."""
    ranking = rank_gpu_nodes(nodes, demand=demand)
    preferred = next((r for r in ranking.iter_ranked() if r.name not in avoid), None)
    return Selection(chosen=preferred or ranking.best, ranking=ranking)


def best_cpu_node_for_export(
    nodes: Iterable[NodeInfo],
    *,
    demand: Demand = EXPORT_DEMAND,
) -> Selection:
    """The node to export training data on: the most free CPU power."""
    return Selection.from_ranking(rank_cpu_nodes(nodes, demand=demand))


def best_node_for_selfplay(nodes: Iterable[NodeInfo], *, demand: Demand) -> Selection:
    """The node for one self-play pod: GPU ordering for GPU and hybrid pods, CPU ordering for
    CPU (heuristic) pods."""
    return Selection.from_ranking(rank_nodes(nodes, demand=demand))


@dataclass(frozen=True, slots=True)
class RankingCache:
    """A ranking and when it was computed; the seed reuses rankings for 10 s."""

    ranking: Ranking
    computed_at: float
    ttl_seconds: int = DEFAULT_CACHE_TTL_SECONDS

    def is_fresh(self, *, now: float) -> bool:
        """Younger than the TTL. A clock that went backwards makes the entry stale, not eternal."""
        return 0 <= now - self.computed_at < self.ttl_seconds

    def serves(self, *, demand: Demand, now: float) -> bool:
        return self.is_fresh(now=now) and self.ranking.demand == demand


def rank_nodes_cached(
    nodes: Iterable[NodeInfo],
    *,
    demand: Demand,
    cache: RankingCache | None,
    now: float,
    ttl_seconds: int = DEFAULT_CACHE_TTL_SECONDS,
) -> RankingCache:
    """The cached ranking when it is fresh and for the same demand, else a new one."""
    if cache is not None and cache.serves(demand=demand, now=now):
        return cache
    return RankingCache(
        ranking=rank_nodes(nodes, demand=demand), computed_at=now, ttl_seconds=ttl_seconds
    )


def judge_node(node: NodeInfo, *, demand: Demand, kind: WorkKind | None = None) -> Verdict:
    """Every filter with its reason: for status, Events and ``explain`` ("why not node X?").

    ``kind`` defaults to what :func:`rank_nodes` would use for the demand. The ranking itself
    uses a fast path that must agree with this function (a property test checks that it does).
    """
    if kind is None:
        kind = WorkKind.GPU if demand.gpus > 0 else WorkKind.CPU
    gpu = score_gpu(node.labels)
    reasons: list[str] = []
    penalty_reasons: list[str] = []
    penalty = 0
    if not node.ready:
        reasons.append("not Ready")
    if node.unschedulable:
        reasons.append("cordoned (unschedulable)")
    for taint in node.taints:
        if is_tolerated(taint, demand.effective_tolerations):
            continue
        text = f"taint {taint.key}{'=' + taint.value if taint.value else ''}:{taint.effect.value}"
        if taint.effect is TaintEffect.PREFER_NO_SCHEDULE:
            penalty += PENALTY_PER_PREFER_NO_SCHEDULE
            penalty_reasons.append(f"{text} not tolerated (-{PENALTY_PER_PREFER_NO_SCHEDULE})")
        else:
            reasons.append(f"{text} not tolerated")
    if node.arch not in demand.allowed_archs:
        allowed = ", ".join(sorted(demand.allowed_archs))
        reasons.append(f"architecture {node.arch} not allowed (allowed: {allowed})")
    if kind is WorkKind.GPU and not node.has_gpu:
        reasons.append("no GPUs")
    elif node.gpu_free < demand.gpus:
        reasons.append(f"{node.gpu_free}/{node.gpu_allocatable} GPUs free, {demand.gpus} needed")
    if demand.min_gpu_class is not None and not (
        node.has_gpu and meets_gpu_class(gpu, demand.min_gpu_class)
    ):
        what = f"{gpu.describe()} (power {gpu.score})" if node.has_gpu else "no GPUs"
        reasons.append(f"{what} is below GPU class {demand.min_gpu_class.value}")
    free_cpu = node.cpu_millis - node.cpu_in_use_millis
    if demand.cpu_millis > 0 and free_cpu < demand.cpu_millis:
        reasons.append(f"{max(free_cpu, 0)}m CPU free, {demand.cpu_millis}m needed")
    if node.memory_bytes < demand.min_memory_gib * GIB:
        reasons.append(
            f"memory {node.memory_bytes // GIB} GiB < {demand.min_memory_gib} GiB minimum"
        )
    if node.recent_failures >= demand.failure_threshold:
        reasons.append(
            f"{node.recent_failures} recent failures (excluded at {demand.failure_threshold})"
        )
    elif node.recent_failures > 0:
        points = node.recent_failures * PENALTY_PER_FAILURE
        penalty += points
        penalty_reasons.append(f"{node.recent_failures} recent failure(s) (-{points})")
    for key, value in demand.node_selector.items():
        actual = node.labels.get(key)
        if actual != value:
            shown = "absent" if actual is None else repr(actual)
            reasons.append(f"nodeSelector {key}={value} does not match ({shown})")
    return Verdict(
        rejections=tuple(reasons), penalty=penalty, penalty_reasons=tuple(penalty_reasons)
    )


def _rank(nodes: Iterable[NodeInfo], *, demand: Demand, kind: WorkKind) -> Ranking:
    """The filters of :func:`judge_node` as one cheap expression per node, then one sort.

    Ranking 5,000 nodes must stay within a few milliseconds, so this loop avoids properties,
    string formatting and per-node allocations beyond the result objects.
    """
    gpu_work = kind is WorkKind.GPU
    tolerations = demand.effective_tolerations
    archs = demand.allowed_archs
    need_gpus = demand.gpus
    need_cpu = demand.cpu_millis
    min_memory = demand.min_memory_gib * GIB
    threshold = demand.failure_threshold
    min_class = demand.min_gpu_class
    selector = tuple(demand.node_selector.items())
    top = _FIELD - 1
    accepted: list[_Scored] = []
    rejected: list[NodeInfo] = []
    for node in nodes:
        labels = node.labels
        allocatable = node.gpu_allocatable
        free = allocatable - node.gpu_in_use
        if free < 0:
            free = 0
        failures = node.recent_failures
        if (
            not node.ready
            or node.unschedulable
            or labels.get(LABEL_ARCH, "amd64") not in archs
            or free < need_gpus
            or (gpu_work and allocatable <= 0)
            or node.memory_bytes < min_memory
            or failures >= threshold
            or (need_cpu > 0 and node.cpu_millis - node.cpu_in_use_millis < need_cpu)
            or (selector and any(labels.get(k) != v for k, v in selector))
        ):
            rejected.append(node)
            continue
        gpu = score_gpu(labels)
        if min_class is not None and (allocatable <= 0 or not meets_gpu_class(gpu, min_class)):
            rejected.append(node)
            continue
        penalty = failures * PENALTY_PER_FAILURE if failures > 0 else 0
        if node.taints:
            taint_penalty = _taint_penalty(node.taints, tolerations)
            if taint_penalty is None:
                rejected.append(node)
                continue
            penalty += taint_penalty
        # One integer encodes the whole ordering of the module docstring: each component after
        # the first is clamped to 0..999 and weighs 1000 times the next; larger is better.
        kept = top - penalty if penalty < top else 0
        jobs = node.running_jobs
        fewer_jobs = top - jobs if 0 <= jobs < top else (top if jobs < 0 else 0)
        if gpu_work:
            score = gpu.score
            score = score * _FIELD + kept
            score = score * _FIELD + (free if free < top else top)
            score = score * _FIELD + (allocatable if allocatable < top else top)
        else:
            score = score_cpu(
                cpu_millis=node.cpu_millis - node.cpu_in_use_millis,
                memory_bytes=node.memory_bytes - node.memory_in_use_bytes,
            )
            score = score * _FIELD + kept
            score = score * _FIELD + (0 if free else 1)
        score = score * _FIELD + fewer_jobs
        accepted.append((-score, node.name, len(accepted), node, gpu, penalty))
    accepted.sort()
    return Ranking(kind=kind, demand=demand, scored=tuple(accepted), rejected_nodes=tuple(rejected))


def _taint_penalty(taints: Iterable[Taint], tolerations: tuple[Toleration, ...]) -> int | None:
    """Penalty points of untolerated PreferNoSchedule taints; None when a hard taint is not
    tolerated (NoSchedule, NoExecute)."""
    points = 0
    for taint in taints:
        if is_tolerated(taint, tolerations):
            continue
        if taint.effect is not TaintEffect.PREFER_NO_SCHEDULE:
            return None
        points += PENALTY_PER_PREFER_NO_SCHEDULE
    return points
