"""The NodeSelector (managers.ranking): filters with their reasons, the power-first ordering, the
queries the other managers ask, and the 10 s ranking cache."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringrift_operator.managers.gpus import KNOWN_PRODUCTS, GpuClass
from ringrift_operator.managers.nodes import (
    GIB,
    LABEL_ARCH,
    LABEL_GPU_COMPUTE_MAJOR,
    LABEL_GPU_COMPUTE_MINOR,
    LABEL_GPU_MEMORY,
    LABEL_GPU_PRODUCT,
    NodeInfo,
    Taint,
    TaintEffect,
    Toleration,
)
from ringrift_operator.managers.ranking import (
    GPU_TOLERATION,
    PENALTY_PER_FAILURE,
    PENALTY_PER_PREFER_NO_SCHEDULE,
    TRAINING_DEMAND,
    Demand,
    Ranking,
    RankingCache,
    Selection,
    WorkKind,
    best_cpu_node_for_export,
    best_gpu_node_for_training,
    best_node_for_gauntlet,
    best_node_for_selfplay,
    describe_alternatives,
    is_tolerated,
    judge_node,
    rank_cpu_nodes,
    rank_for_placement,
    rank_gpu_nodes,
    rank_nodes,
    rank_nodes_cached,
    rank_training_nodes,
    top_training_nodes,
)

# product → (memory MiB, compute, arch), as GPU Feature Discovery reports them.
PRODUCTS: dict[str, tuple[int, tuple[int, int], str]] = {
    "NVIDIA-H100-80GB-HBM3": (81559, (9, 0), "amd64"),
    "NVIDIA-GH200-480GB": (97871, (9, 0), "arm64"),
    "NVIDIA-A100-SXM4-80GB": (81920, (8, 0), "amd64"),
    "NVIDIA-L40S": (46068, (8, 9), "amd64"),
    "NVIDIA-GeForce-RTX-4090": (24564, (8, 9), "amd64"),
    "NVIDIA-GeForce-RTX-3090": (24576, (8, 6), "amd64"),
    "NVIDIA-GeForce-RTX-3060": (12288, (8, 6), "amd64"),
    "NVIDIA-L4": (23034, (8, 9), "amd64"),
    "Tesla-T4": (15360, (7, 5), "amd64"),
}
H100, GH200, A100, L40S = (
    "NVIDIA-H100-80GB-HBM3",
    "NVIDIA-GH200-480GB",
    "NVIDIA-A100-SXM4-80GB",
    "NVIDIA-L40S",
)
RTX4090, RTX3090, RTX3060 = (
    "NVIDIA-GeForce-RTX-4090",
    "NVIDIA-GeForce-RTX-3090",
    "NVIDIA-GeForce-RTX-3060",
)
ANY_ARCH = frozenset({"amd64", "arm64"})
ONE_GPU = Demand(gpus=1)


def gpu_labels(
    product: str, *, memory: int | None = None, compute: tuple[int, int] | None = None
) -> dict[str, str]:
    known_memory, known_compute, arch = PRODUCTS.get(product, (0, (0, 0), "amd64"))
    major, minor = compute or known_compute
    return {
        LABEL_GPU_PRODUCT: product,
        LABEL_GPU_MEMORY: str(known_memory if memory is None else memory),
        LABEL_GPU_COMPUTE_MAJOR: str(major),
        LABEL_GPU_COMPUTE_MINOR: str(minor),
        LABEL_ARCH: arch,
    }


def gpu_node(
    name: str,
    product: str = H100,
    *,
    gpus: int = 8,
    used: int = 0,
    labels: Mapping[str, str] | None = None,
    **fields: Any,
) -> NodeInfo:
    """A healthy GPU node with 64 cores and 512 GiB; override any NodeInfo field."""
    node = NodeInfo(
        name=name,
        labels={**gpu_labels(product), **(labels or {})},
        gpu_allocatable=gpus,
        gpu_in_use=used,
        cpu_millis=64_000,
        memory_bytes=512 * GIB,
    )
    return replace(node, **fields)


def cpu_node(name: str, *, cores: int = 32, memory_gib: int = 128, **fields: Any) -> NodeInfo:
    node = NodeInfo(
        name=name,
        labels={LABEL_ARCH: "amd64"},
        cpu_millis=cores * 1000,
        memory_bytes=memory_gib * GIB,
    )
    return replace(node, **fields)


def names(ranking: Ranking) -> list[str]:
    return [r.name for r in ranking.ranked]


def chosen_name(selection: Selection) -> str | None:
    return selection.chosen.name if selection.chosen is not None else None


def only_reasons(node: NodeInfo, demand: Demand = ONE_GPU) -> tuple[str, ...]:
    ranking = rank_nodes([node], demand=demand)
    assert not ranking.ranked, "expected the node to be rejected"
    (rejection,) = ranking.rejected
    return rejection.reasons


class TestFilters:
    @pytest.mark.parametrize(
        ("node", "demand", "reason"),
        [
            pytest.param(gpu_node("n", ready=False), ONE_GPU, "not Ready", id="not-ready"),
            pytest.param(gpu_node("n", unschedulable=True), ONE_GPU, "cordoned", id="cordoned"),
            pytest.param(
                gpu_node("n", taints=(Taint("dedicated", TaintEffect.NO_SCHEDULE, "infra"),)),
                ONE_GPU,
                "taint dedicated=infra:NoSchedule not tolerated",
                id="noschedule-taint",
            ),
            pytest.param(
                gpu_node("n", taints=(Taint("maintenance", TaintEffect.NO_EXECUTE),)),
                ONE_GPU,
                "taint maintenance:NoExecute not tolerated",
                id="noexecute-taint",
            ),
            pytest.param(
                gpu_node("n", GH200, gpus=1),
                ONE_GPU,
                "architecture arm64 not allowed (allowed: amd64)",
                id="gh200-is-arm64",
            ),
            pytest.param(
                gpu_node("n", used=8), ONE_GPU, "0/8 GPUs free, 1 needed", id="no-free-gpu"
            ),
            pytest.param(
                gpu_node("n", used=7),
                Demand(gpus=2),
                "1/8 GPUs free, 2 needed",
                id="too-few-free-gpus",
            ),
            pytest.param(cpu_node("n"), ONE_GPU, "no GPUs", id="cpu-node-for-gpu-work"),
            pytest.param(
                gpu_node("n", memory_bytes=4 * GIB),
                TRAINING_DEMAND,
                "memory 4 GiB < 8 GiB minimum",
                id="training-needs-8gib",
            ),
            pytest.param(
                gpu_node("n", recent_failures=3),
                ONE_GPU,
                "3 recent failures (excluded at 3)",
                id="reputation-at-threshold",
            ),
            pytest.param(
                gpu_node("n", recent_failures=1),
                Demand(gpus=1, failure_threshold=1),
                "1 recent failures (excluded at 1)",
                id="reputation-custom-threshold",
            ),
            pytest.param(
                gpu_node("n", L40S),
                Demand(gpus=1, min_gpu_class=GpuClass.A100),
                "is below GPU class a100",
                id="min-gpu-class",
            ),
            pytest.param(
                cpu_node("n"),
                Demand(gpus=0, min_gpu_class=GpuClass.CONSUMER),
                "no GPUs is below GPU class consumer",
                id="min-gpu-class-needs-a-gpu",
            ),
            pytest.param(
                gpu_node("n", labels={"pool": "infer"}),
                Demand(gpus=1, node_selector={"pool": "train"}),
                "nodeSelector pool=train does not match ('infer')",
                id="node-selector-mismatch",
            ),
            pytest.param(
                gpu_node("n"),
                Demand(gpus=1, node_selector={"pool": "train"}),
                "nodeSelector pool=train does not match (absent)",
                id="node-selector-absent",
            ),
            pytest.param(
                cpu_node("n", cores=4, cpu_in_use_millis=3500),
                Demand(gpus=0, cpu_millis=1000),
                "500m CPU free, 1000m needed",
                id="cpu-needed",
            ),
        ],
    )
    def test_rejection_reason(self, node: NodeInfo, demand: Demand, reason: str) -> None:
        assert any(reason in r for r in only_reasons(node, demand)), only_reasons(node, demand)

    def test_every_reason_is_reported_not_only_the_first(self) -> None:
        node = gpu_node("n", ready=False, unschedulable=True, used=8, recent_failures=5)
        assert len(only_reasons(node)) == 4

    @pytest.mark.parametrize(
        ("node", "demand"),
        [
            pytest.param(
                gpu_node("n", GH200, gpus=1),
                Demand(gpus=1, allowed_archs=ANY_ARCH),
                id="arm64-allowed",
            ),
            pytest.param(
                gpu_node("n", taints=(Taint("nvidia.com/gpu", TaintEffect.NO_SCHEDULE),)),
                ONE_GPU,
                id="gpu-taint-tolerated-by-gpu-work",
            ),
            pytest.param(
                gpu_node("n", taints=(Taint("dedicated", TaintEffect.NO_SCHEDULE, "ml"),)),
                Demand(gpus=1, tolerations=(Toleration("dedicated", "Equal", "ml"),)),
                id="equal-toleration",
            ),
            pytest.param(
                gpu_node("n", taints=(Taint("dedicated", TaintEffect.NO_EXECUTE, "x"),)),
                Demand(gpus=1, tolerations=(Toleration("dedicated", "Exists"),)),
                id="exists-toleration",
            ),
            pytest.param(
                gpu_node("n", taints=(Taint("anything", TaintEffect.NO_SCHEDULE),)),
                Demand(gpus=1, tolerations=(Toleration(operator="Exists"),)),
                id="wildcard-toleration",
            ),
            pytest.param(
                gpu_node("n", memory_bytes=8 * GIB), TRAINING_DEMAND, id="exactly-8gib-trains"
            ),
            pytest.param(
                gpu_node("n", labels={"pool": "train"}),
                Demand(gpus=1, node_selector={"pool": "train"}),
                id="node-selector-match",
            ),
            pytest.param(
                gpu_node("n", H100),
                Demand(gpus=1, min_gpu_class=GpuClass.A100),
                id="better-than-min-class",
            ),
            pytest.param(gpu_node("n", used=8), Demand(gpus=0), id="busy-gpu-node-for-cpu-work"),
        ],
    )
    def test_accepted(self, node: NodeInfo, demand: Demand) -> None:
        assert names(rank_nodes([node], demand=demand)) == ["n"]

    def test_gpu_taint_blocks_cpu_work(self) -> None:
        node = gpu_node("n", taints=(Taint("nvidia.com/gpu", TaintEffect.NO_SCHEDULE),))
        assert "taint nvidia.com/gpu:NoSchedule not tolerated" in only_reasons(node, Demand(gpus=0))

    def test_gpu_demand_adds_the_gpu_toleration_once(self) -> None:
        demand = Demand(gpus=1, tolerations=(GPU_TOLERATION,))
        assert demand.effective_tolerations == (GPU_TOLERATION,)
        assert Demand(gpus=0).effective_tolerations == ()


class TestTolerations:
    @pytest.mark.parametrize(
        ("taint", "toleration", "expected"),
        [
            pytest.param(
                Taint("k", TaintEffect.NO_SCHEDULE, "v"),
                Toleration("k", "Equal", "v"),
                True,
                id="equal-match",
            ),
            pytest.param(
                Taint("k", TaintEffect.NO_SCHEDULE, "v"),
                Toleration("k", "Equal", "w"),
                False,
                id="equal-wrong-value",
            ),
            pytest.param(
                Taint("k", TaintEffect.NO_SCHEDULE, "v"),
                Toleration("k", "Exists"),
                True,
                id="exists-any-value",
            ),
            pytest.param(
                Taint("k", TaintEffect.NO_SCHEDULE),
                Toleration("other", "Exists"),
                False,
                id="exists-other-key",
            ),
            pytest.param(
                Taint("k", TaintEffect.NO_EXECUTE),
                Toleration("k", "Exists", effect=TaintEffect.NO_SCHEDULE),
                False,
                id="wrong-effect",
            ),
            pytest.param(
                Taint("k", TaintEffect.NO_EXECUTE),
                Toleration("k", "Exists", effect=TaintEffect.NO_EXECUTE),
                True,
                id="same-effect",
            ),
            pytest.param(
                Taint("k", TaintEffect.NO_EXECUTE),
                Toleration(None, "Exists"),
                True,
                id="empty-key-exists-tolerates-all",
            ),
            pytest.param(
                Taint("k", TaintEffect.NO_EXECUTE),
                Toleration(None, "Equal"),
                False,
                id="empty-key-equal-tolerates-nothing",
            ),
        ],
    )
    def test_is_tolerated(self, taint: Taint, toleration: Toleration, expected: bool) -> None:
        assert is_tolerated(taint, [toleration]) is expected


class TestPenalties:
    def test_prefer_no_schedule_lowers_the_score_only(self) -> None:
        taint = Taint("spot", TaintEffect.PREFER_NO_SCHEDULE)
        ranking = rank_gpu_nodes(
            [gpu_node("tainted", taints=(taint,)), gpu_node("clean")], demand=ONE_GPU
        )
        assert names(ranking) == ["clean", "tainted"]
        tainted = ranking.ranked[1]
        assert tainted.penalty == PENALTY_PER_PREFER_NO_SCHEDULE
        assert "taint spot:PreferNoSchedule not tolerated (-5)" in tainted.reasons

    def test_recent_failures_below_threshold_lower_the_score(self) -> None:
        ranking = rank_gpu_nodes(
            [gpu_node("flaky", recent_failures=2), gpu_node("steady")], demand=ONE_GPU
        )
        assert names(ranking) == ["steady", "flaky"]
        assert ranking.ranked[1].penalty == 2 * PENALTY_PER_FAILURE
        assert "2 recent failure(s) (-20)" in ranking.ranked[1].reasons

    def test_penalties_never_put_a_stronger_gpu_below_a_weaker_one(self) -> None:
        flaky_h100 = gpu_node(
            "flaky-h100",
            recent_failures=2,
            taints=(Taint("spot", TaintEffect.PREFER_NO_SCHEDULE),),
        )
        ranking = rank_gpu_nodes([gpu_node("clean-a100", A100), flaky_h100], demand=ONE_GPU)
        assert names(ranking) == ["flaky-h100", "clean-a100"]


class TestOrdering:
    def test_seed_power_order(self) -> None:
        order = [H100, GH200, A100, L40S, RTX4090, RTX3090, RTX3060]
        nodes = [gpu_node(f"n-{i}", p, gpus=1) for i, p in enumerate(reversed(order))]
        demand = Demand(gpus=1, allowed_archs=ANY_ARCH)
        ranking = rank_gpu_nodes(nodes, demand=demand)
        assert [r.node.labels[LABEL_GPU_PRODUCT] for r in ranking.ranked] == order

    def test_highest_power_node_with_a_free_gpu_comes_first(self) -> None:
        nodes = [gpu_node("busy-h100", used=8), gpu_node("free-a100", A100, used=7)]
        assert rank_gpu_nodes(nodes, demand=ONE_GPU).best is not None
        assert names(rank_gpu_nodes(nodes, demand=ONE_GPU)) == ["free-a100"]

    @pytest.mark.parametrize(
        ("first", "second"),
        [
            pytest.param(gpu_node("a", used=2), gpu_node("b", used=6), id="more-free-gpus"),
            pytest.param(
                gpu_node("a", gpus=8, used=4), gpu_node("b", gpus=4, used=0), id="more-gpus"
            ),
            pytest.param(
                gpu_node("a", running_jobs=1), gpu_node("b", running_jobs=3), id="fewer-jobs"
            ),
            pytest.param(gpu_node("a"), gpu_node("b"), id="name-breaks-ties"),
        ],
    )
    def test_tie_breakers_within_equal_power(self, first: NodeInfo, second: NodeInfo) -> None:
        for nodes in ([first, second], [second, first]):
            assert names(rank_gpu_nodes(nodes, demand=ONE_GPU)) == ["a", "b"]

    def test_score_orders_like_the_ranking(self) -> None:
        nodes = [
            gpu_node("h100", used=6),
            gpu_node("a100", A100),
            gpu_node("h100-flaky", recent_failures=1),
            gpu_node("l40s", L40S, gpus=2),
        ]
        ranked = rank_gpu_nodes(nodes, demand=ONE_GPU).ranked
        assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
        assert [r.rank for r in ranked] == [1, 2, 3, 4]

    def test_unknown_product_ranks_below_the_known_product_that_dominates_it(self) -> None:
        nodes = [gpu_node("l4", "NVIDIA-L4", gpus=1), gpu_node("rtx4090", RTX4090, gpus=1)]
        assert names(rank_gpu_nodes(nodes, demand=ONE_GPU)) == ["rtx4090", "l4"]

    def test_mig_slice_ranks_below_whole_gpus(self) -> None:
        mig = gpu_node(
            "mig", labels={LABEL_GPU_PRODUCT: "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb"}, gpus=56
        )
        nodes = [mig, gpu_node("rtx3090", RTX3090, gpus=1)]
        assert names(rank_gpu_nodes(nodes, demand=ONE_GPU)) == ["rtx3090", "mig"]

    def test_reasons_text(self) -> None:
        best = rank_gpu_nodes([gpu_node("n", used=6)], demand=ONE_GPU).best
        assert best is not None
        assert best.reasons == ("NVIDIA-H100-80GB-HBM3 tier 1, 2/8 GPUs free, power 1000",)
        assert best.gpu_power == 1000

    def test_cpu_ranking_reasons_lead_with_cpu_power(self) -> None:
        best = rank_cpu_nodes([cpu_node("c", cores=8, memory_gib=16)], demand=Demand(gpus=0))
        assert best.ranked[0].reasons == ("cpu power 88 (8 cores, 16 GiB free); no GPUs",)
        assert best.ranked[0].gpu_power == 0


class TestCpuOrdering:
    def test_more_free_cpu_power_first(self) -> None:
        nodes = [
            cpu_node("small", cores=8),
            cpu_node("big", cores=64),
            cpu_node("big-but-busy", cores=64, cpu_in_use_millis=60_000),
        ]
        assert names(rank_cpu_nodes(nodes, demand=Demand(gpus=0))) == [
            "big",
            "small",
            "big-but-busy",
        ]

    def test_nodes_without_free_gpus_first_at_equal_cpu_power(self) -> None:
        gpu = gpu_node("a-gpu", cpu_millis=32_000, memory_bytes=128 * GIB)
        nodes = [gpu, cpu_node("b-cpu", cores=32, memory_gib=128)]
        assert names(rank_cpu_nodes(nodes, demand=Demand(gpus=0))) == ["b-cpu", "a-gpu"]

    def test_rank_nodes_uses_cpu_ordering_for_cpu_work(self) -> None:
        assert rank_nodes([cpu_node("c")], demand=Demand(gpus=0)).kind is WorkKind.CPU
        assert rank_nodes([gpu_node("g")], demand=ONE_GPU).kind is WorkKind.GPU


class TestQueries:
    NODES = (
        gpu_node("h100-busy", used=8),
        gpu_node("h100-free", used=4),
        gpu_node("a100", A100),
        gpu_node("rtx3060-small", RTX3060, gpus=1, memory_bytes=4 * GIB),
        gpu_node("gh200", GH200, gpus=1),
        cpu_node("cpu-big", cores=96, memory_gib=384),
        cpu_node("cpu-small", cores=8),
    )

    def test_training_nodes_ranked_include_busy_nodes(self) -> None:
        ranking = rank_training_nodes(self.NODES)
        assert names(ranking) == ["h100-free", "h100-busy", "a100"]

    def test_training_nodes_list_rejects_small_memory_and_cpu_nodes(self) -> None:
        rejected = {r.name for r in rank_training_nodes(self.NODES).rejected}
        assert rejected == {"rtx3060-small", "gh200", "cpu-big", "cpu-small"}

    @pytest.mark.parametrize(
        ("count", "expected"),
        [
            pytest.param(1, ["h100-free"], id="top-1"),
            pytest.param(2, ["h100-free", "h100-busy"], id="top-2"),
            pytest.param(10, ["h100-free", "h100-busy", "a100"], id="more-than-there-are"),
            pytest.param(0, [], id="none"),
        ],
    )
    def test_top_training_nodes(self, count: int, expected: list[str]) -> None:
        assert [r.name for r in top_training_nodes(self.NODES, count=count)] == expected

    def test_best_gpu_node_for_training(self) -> None:
        selection = best_gpu_node_for_training(self.NODES)
        assert chosen_name(selection) == "h100-free"
        assert selection.candidates == 2
        assert "chose h100-free (NVIDIA-H100-80GB-HBM3 tier 1, 4/8 GPUs free" in selection.message

    def test_best_gpu_node_for_training_with_arm64_image(self) -> None:
        demand = replace(TRAINING_DEMAND, allowed_archs=ANY_ARCH, gpus=1)
        nodes = [n for n in self.NODES if n.name in {"gh200", "a100"}]
        assert chosen_name(best_gpu_node_for_training(nodes, demand=demand)) == "gh200"

    def test_best_node_for_gauntlet_avoids_the_training_node(self) -> None:
        selection = best_node_for_gauntlet(self.NODES, avoid=frozenset({"h100-free"}))
        assert chosen_name(selection) == "a100"

    def test_best_node_for_gauntlet_uses_an_avoided_node_when_nothing_else_fits(self) -> None:
        nodes = [gpu_node("only")]
        selection = best_node_for_gauntlet(nodes, avoid=frozenset({"only"}))
        assert chosen_name(selection) == "only"

    def test_best_cpu_node_for_export(self) -> None:
        selection = best_cpu_node_for_export(self.NODES)
        assert chosen_name(selection) == "cpu-big"

    @pytest.mark.parametrize(
        ("demand", "expected"),
        [
            pytest.param(Demand(gpus=1), "h100-free", id="gpu-selfplay"),
            pytest.param(Demand(gpus=1, cpu_millis=8000), "h100-free", id="hybrid-selfplay"),
            pytest.param(Demand(gpus=0, cpu_millis=4000), "cpu-big", id="cpu-selfplay"),
            pytest.param(
                Demand(gpus=1, min_gpu_class=GpuClass.H100), "h100-free", id="min-class-h100"
            ),
        ],
    )
    def test_best_node_for_selfplay(self, demand: Demand, expected: str) -> None:
        assert chosen_name(best_node_for_selfplay(self.NODES, demand=demand)) == expected

    def test_no_node_fits_lists_the_rejections(self) -> None:
        selection = best_gpu_node_for_training([cpu_node("c1"), gpu_node("g", ready=False)])
        assert selection.chosen is None
        assert selection.message.startswith("no node fits: c1: no GPUs; g: not Ready")

    def test_no_node_fits_message_is_bounded(self) -> None:
        selection = best_gpu_node_for_training([cpu_node(f"c{i}") for i in range(8)])
        assert selection.message.endswith("(+3 more)")

    def test_no_nodes_at_all(self) -> None:
        selection = best_gpu_node_for_training([])
        assert (selection.chosen, selection.candidates, selection.message) == (None, 0, "no nodes")

    def test_explain_lists_every_node(self) -> None:
        lines = rank_gpu_nodes([gpu_node("g"), cpu_node("c")], demand=ONE_GPU).explain()
        assert lines[0].startswith("#1 g score ")
        assert lines[1] == "rejected c: no GPUs"

    def test_explain_lists_the_closest_rejected_nodes_first(self) -> None:
        # The job may run only on "pinned", which is full: its one reason comes before the
        # two of every other node, so a summary cut at four lines still names it.
        pool = {"pool": "train"}
        nodes = [cpu_node(f"a{i}") for i in range(5)] + [gpu_node("pinned", used=8, labels=pool)]
        demand = Demand(gpus=1, node_selector=pool)
        lines = rank_gpu_nodes(nodes, demand=demand).explain()
        assert lines[0].startswith("rejected pinned: ")
        assert "does not match" not in lines[0]
        assert all(line.startswith("rejected a") for line in lines[1:])


class TestCache:
    @pytest.mark.parametrize(
        ("age", "fresh"),
        [
            pytest.param(0.0, True, id="just-computed"),
            pytest.param(9.9, True, id="within-10s"),
            pytest.param(10.0, False, id="at-10s"),
            pytest.param(60.0, False, id="old"),
            pytest.param(-1.0, False, id="clock-went-backwards"),
        ],
    )
    def test_is_fresh(self, age: float, fresh: bool) -> None:
        cache = RankingCache(ranking=rank_nodes([], demand=ONE_GPU), computed_at=1000.0)
        assert cache.is_fresh(now=1000.0 + age) is fresh

    def test_fresh_cache_is_reused(self) -> None:
        first = rank_nodes_cached([gpu_node("a")], demand=ONE_GPU, cache=None, now=100.0)
        again = rank_nodes_cached([gpu_node("b")], demand=ONE_GPU, cache=first, now=105.0)
        assert again is first

    def test_stale_cache_is_recomputed(self) -> None:
        first = rank_nodes_cached([gpu_node("a")], demand=ONE_GPU, cache=None, now=100.0)
        later = rank_nodes_cached([gpu_node("b")], demand=ONE_GPU, cache=first, now=111.0)
        assert names(later.ranking) == ["b"]
        assert later.computed_at == 111.0

    def test_other_demand_is_recomputed(self) -> None:
        first = rank_nodes_cached([gpu_node("a")], demand=ONE_GPU, cache=None, now=100.0)
        other = rank_nodes_cached([gpu_node("a")], demand=Demand(gpus=2), cache=first, now=101.0)
        assert other is not first
        assert other.ranking.demand == Demand(gpus=2)


# --- Properties -------------------------------------------------------------------------------

known_products = st.sampled_from(sorted(PRODUCTS))


@st.composite
def nodes_strategy(draw: st.DrawFn) -> NodeInfo:
    gpus = draw(st.integers(min_value=0, max_value=8))  # 0: GPU labels, no device plugin
    return gpu_node(
        f"n{draw(st.integers(min_value=0, max_value=10_000))}",
        draw(known_products),
        gpus=gpus,
        used=draw(st.integers(min_value=0, max_value=gpus)),
        ready=draw(st.booleans()),
        unschedulable=draw(st.booleans()),
        recent_failures=draw(st.integers(min_value=0, max_value=4)),
        running_jobs=draw(st.integers(min_value=0, max_value=5)),
        memory_bytes=draw(st.sampled_from([4, 8, 64])) * GIB,
        cpu_in_use_millis=draw(st.integers(min_value=0, max_value=64_000)),
        taints=tuple(
            draw(
                st.lists(
                    st.builds(
                        Taint,
                        key=st.sampled_from(["nvidia.com/gpu", "spot", "dedicated"]),
                        effect=st.sampled_from(list(TaintEffect)),
                    ),
                    max_size=2,
                )
            )
        ),
        labels={"pool": draw(st.sampled_from(["train", "infer"]))},
    )


demands = st.builds(
    Demand,
    gpus=st.integers(min_value=0, max_value=3),
    cpu_millis=st.sampled_from([0, 1000, 32_000]),
    min_memory_gib=st.sampled_from([0, 8]),
    allowed_archs=st.sampled_from([frozenset({"amd64"}), ANY_ARCH]),
    tolerations=st.sampled_from([(), (Toleration("spot", "Exists"),)]),
    node_selector=st.sampled_from([{}, {"pool": "train"}]),
    min_gpu_class=st.sampled_from([None, GpuClass.A100, GpuClass.RTX_3090]),
)


class TestProperties:
    @given(nodes=st.lists(nodes_strategy(), max_size=12))
    def test_a_stronger_free_gpu_is_never_ranked_below_a_weaker_one(
        self, nodes: list[NodeInfo]
    ) -> None:
        demand = Demand(gpus=1, allowed_archs=ANY_ARCH)
        ranked = rank_gpu_nodes(nodes, demand=demand).ranked
        powers = [r.gpu_power for r in ranked]
        assert powers == sorted(powers, reverse=True)
        assert all(r.node.gpu_free >= 1 for r in ranked)

    @given(nodes=st.lists(nodes_strategy(), max_size=12), demand=demands)
    def test_fast_path_agrees_with_judge_node(self, nodes: list[NodeInfo], demand: Demand) -> None:
        for kind in WorkKind:
            ranking = (
                rank_gpu_nodes(nodes, demand=demand)
                if kind is WorkKind.GPU
                else (rank_cpu_nodes(nodes, demand=demand))
            )
            for ranked in ranking.ranked:
                verdict = judge_node(ranked.node, demand=demand, kind=kind)
                assert verdict.accepted
                assert verdict.penalty == ranked.penalty
            for rejection in ranking.rejected:
                assert rejection.reasons, rejection.name

    @given(nodes=st.lists(nodes_strategy(), max_size=12), demand=demands)
    def test_score_and_rank_agree(self, nodes: list[NodeInfo], demand: Demand) -> None:
        ranked = rank_nodes(nodes, demand=demand).ranked
        keys = [(-r.score, r.name) for r in ranked]
        assert keys == sorted(keys)
        assert len(ranked) + len(rank_nodes(nodes, demand=demand).rejected) == len(nodes)

    @given(
        known=st.sampled_from([k for k in KNOWN_PRODUCTS if k.product in PRODUCTS]),
        memory_cut=st.integers(min_value=0, max_value=80_000),
        compute_cut=st.integers(min_value=0, max_value=30),
    )
    def test_unknown_product_never_outranks_a_dominating_known_one(
        self, known: Any, memory_cut: int, compute_cut: int
    ) -> None:
        major, minor = known.compute
        tenths = max(0, major * 10 + minor - compute_cut)
        unknown = gpu_node(
            "a-unknown",
            "Acme-Accelerator",
            gpus=1,
            labels=gpu_labels(
                "Acme-Accelerator",
                memory=max(0, known.memory_mib - memory_cut),
                compute=(tenths // 10, tenths % 10),
            ),
        )
        reference = gpu_node("z-known", known.product, gpus=1)
        demand = Demand(gpus=1, allowed_archs=ANY_ARCH)
        assert names(rank_gpu_nodes([unknown, reference], demand=demand))[0] == "z-known"


def test_alternatives_name_the_counts_and_the_runner_up() -> None:
    nodes = [gpu_node("h"), gpu_node("a", A100), gpu_node("full", used=8), cpu_node("c")]
    ranking = rank_nodes(nodes, demand=ONE_GPU)
    runner_up = ranking.top(2)[1]
    assert describe_alternatives(ranking) == (
        f"2 candidate(s), 2 rejected; runner-up a (power {runner_up.gpu_power})"
    )
    alone = rank_nodes([gpu_node("h")], demand=ONE_GPU)
    assert describe_alternatives(alone) == "1 candidate(s), 0 rejected"


class TestRankForPlacement:
    """Retry history and reputation steer a placement; they never strand a job a Ready node
    could run."""

    def test_avoided_and_failing_nodes_lose_to_a_healthy_one(self) -> None:
        nodes = [gpu_node("failed-here"), gpu_node("flaky", recent_failures=5),
                 gpu_node("healthy", A100)]  # fmt: skip
        ranking = rank_for_placement(nodes, demand=ONE_GPU, avoid=["failed-here"])
        assert ranking.best is not None
        assert ranking.best.name == "healthy"

    def test_an_avoided_node_is_used_when_it_is_the_only_one(self) -> None:
        ranking = rank_for_placement([gpu_node("failed-here")], demand=ONE_GPU,
                                     avoid=["failed-here"])  # fmt: skip
        assert ranking.best is not None
        assert ranking.best.name == "failed-here"

    def test_a_pinned_job_runs_on_its_node_despite_recent_failures(self) -> None:
        pin = {"kubernetes.io/hostname": "flaky"}
        nodes = [gpu_node("flaky", labels=pin, recent_failures=4), gpu_node("other")]
        demand = Demand(gpus=1, node_selector=pin)
        assert rank_nodes(nodes, demand=demand).best is None  # the strict ranking strands it
        ranking = rank_for_placement(nodes, demand=demand)
        assert ranking.best is not None
        assert ranking.best.name == "flaky"
        # Ranked with its penalty, among the failing nodes only when nothing healthy fits.
        healthy_too = [*nodes, gpu_node("twin", labels=pin)]
        best = rank_for_placement(healthy_too, demand=demand).best
        assert best is not None
        assert best.name == "twin"

    def test_nothing_fits_explains_with_the_strict_ranking(self) -> None:
        nodes = [gpu_node("full", used=8), gpu_node("flaky", used=8, recent_failures=3)]
        ranking = rank_for_placement(nodes, demand=ONE_GPU)
        assert ranking.best is None
        assert any("recent failures" in line for line in ranking.explain())
