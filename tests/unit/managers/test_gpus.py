"""GPU and CPU power scores (managers.gpus): the seed's tier order, MIG and time-slicing, unknown
products scored from their specs and capped below the known products that dominate them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringrift_operator.managers.gpus import (
    CLASS_SCORES,
    KNOWN_PRODUCTS,
    GpuClass,
    GpuPower,
    classify_product,
    meets_gpu_class,
    parse_gpu_class,
    score_cpu,
    score_gpu,
    score_gpu_spec,
)
from ringrift_operator.managers.nodes import (
    GIB,
    LABEL_GPU_COMPUTE_MAJOR,
    LABEL_GPU_COMPUTE_MINOR,
    LABEL_GPU_COUNT,
    LABEL_GPU_MEMORY,
    LABEL_GPU_PRODUCT,
    LABEL_GPU_REPLICAS,
)

# Typical GPU Feature Discovery values (product, memory MiB, compute capability).
Product = tuple[str, int, tuple[int, int]]
H100 = ("NVIDIA-H100-80GB-HBM3", 81559, (9, 0))
GH200 = ("NVIDIA-GH200-480GB", 97871, (9, 0))
A100_80 = ("NVIDIA-A100-SXM4-80GB", 81920, (8, 0))
A100_40 = ("NVIDIA-A100-SXM4-40GB", 40960, (8, 0))
L40S = ("NVIDIA-L40S", 46068, (8, 9))
RTX4090 = ("NVIDIA-GeForce-RTX-4090", 24564, (8, 9))
RTX3090 = ("NVIDIA-GeForce-RTX-3090", 24576, (8, 6))
RTX3060 = ("NVIDIA-GeForce-RTX-3060", 12288, (8, 6))
L4 = ("NVIDIA-L4", 23034, (8, 9))
T4 = ("Tesla-T4", 15360, (7, 5))
V100 = ("Tesla-V100-SXM2-16GB", 16384, (7, 0))
H200 = ("NVIDIA-H200", 143771, (9, 0))
B200 = ("NVIDIA-B200", 183359, (10, 0))

TIER_ORDER = [H100, GH200, A100_80, L40S, RTX4090, RTX3090, RTX3060]


def spec(product: Product, *, suffix: str = "", **kwargs: int) -> GpuPower:
    name, memory, compute = product
    return score_gpu_spec(
        product=name + suffix,
        memory_mib=kwargs.pop("memory_mib", memory),
        compute=compute,
        **kwargs,
    )


def labels_of(
    product: str, *, memory: str = "", major: str = "", minor: str = "", **extra: str
) -> dict[str, str]:
    out = {LABEL_GPU_PRODUCT: product}
    for key, value in (
        (LABEL_GPU_MEMORY, memory),
        (LABEL_GPU_COMPUTE_MAJOR, major),
        (LABEL_GPU_COMPUTE_MINOR, minor),
        (LABEL_GPU_COUNT, extra.get("count", "")),
        (LABEL_GPU_REPLICAS, extra.get("replicas", "")),
    ):
        if value:
            out[key] = value
    return out


class TestClassifyProduct:
    @pytest.mark.parametrize(
        ("product", "expected"),
        [
            pytest.param("NVIDIA-H100-80GB-HBM3", GpuClass.H100, id="h100-sxm-hbm3"),
            pytest.param("NVIDIA-H100-PCIe", GpuClass.H100, id="h100-pcie"),
            pytest.param("NVIDIA-H100-NVL", GpuClass.H100, id="h100-nvl"),
            pytest.param("NVIDIA-GH200-480GB", GpuClass.GH200, id="gh200"),
            pytest.param("NVIDIA-A100-SXM4-80GB", GpuClass.A100, id="a100-sxm4-80"),
            pytest.param("NVIDIA-A100-SXM4-40GB", GpuClass.A100, id="a100-sxm4-40"),
            pytest.param("NVIDIA-A100-80GB-PCIe", GpuClass.A100, id="a100-pcie-80"),
            pytest.param("NVIDIA-A100-PCIE-40GB", GpuClass.A100, id="a100-pcie-40"),
            pytest.param("NVIDIA-L40S", GpuClass.L40S, id="l40s"),
            pytest.param("NVIDIA-GeForce-RTX-4090", GpuClass.RTX_4090, id="rtx4090"),
            pytest.param("NVIDIA-GeForce-RTX-3090", GpuClass.RTX_3090, id="rtx3090"),
            pytest.param("NVIDIA-GeForce-RTX-3090-Ti", GpuClass.RTX_3090, id="rtx3090-ti"),
            pytest.param("NVIDIA-GeForce-RTX-3080", GpuClass.CONSUMER, id="rtx3080-consumer"),
            pytest.param("NVIDIA-GeForce-RTX-3070", GpuClass.CONSUMER, id="rtx3070-consumer"),
            pytest.param("NVIDIA-GeForce-RTX-3060", GpuClass.CONSUMER, id="rtx3060-consumer"),
            pytest.param("NVIDIA-GeForce-RTX-2080-Ti", GpuClass.CONSUMER, id="rtx2080ti-consumer"),
            pytest.param("NVIDIA-GeForce-GTX-1080", GpuClass.CONSUMER, id="gtx1080-consumer"),
            pytest.param("nvidia-h100-80gb-hbm3", GpuClass.H100, id="lowercase"),
            pytest.param("NVIDIA-GeForce-RTX-5090", GpuClass.UNKNOWN, id="rtx5090-newer-unknown"),
            pytest.param("NVIDIA-L40", GpuClass.UNKNOWN, id="l40-is-not-l40s"),
            pytest.param("NVIDIA-A10", GpuClass.UNKNOWN, id="a10-is-not-a100"),
            pytest.param("NVIDIA-L4", GpuClass.UNKNOWN, id="l4"),
            pytest.param("Tesla-T4", GpuClass.UNKNOWN, id="t4"),
            pytest.param("Tesla-V100-SXM2-16GB", GpuClass.UNKNOWN, id="v100"),
            pytest.param("NVIDIA-H200", GpuClass.UNKNOWN, id="h200"),
            pytest.param("NVIDIA-B200", GpuClass.UNKNOWN, id="b200"),
            pytest.param("NVIDIA-RTX-6000-Ada-Generation", GpuClass.UNKNOWN, id="workstation"),
            pytest.param("", GpuClass.UNKNOWN, id="empty"),
        ],
    )
    def test_class(self, product: str, expected: GpuClass) -> None:
        assert classify_product(product) is expected

    def test_tiers_follow_the_seed_order(self) -> None:
        tiers = [c.tier for c in GpuClass]
        assert tiers == [1, 2, 3, 4, 5, 6, 7, None]


class TestKnownScores:
    def test_scores_strictly_decrease_with_tier(self) -> None:
        scores = [spec(p).score for p in TIER_ORDER]
        assert scores == sorted(scores, reverse=True)
        assert len(set(scores)) == len(scores)

    def test_h100_anchors_the_scale_at_1000(self) -> None:
        assert spec(H100).score == 1000

    @pytest.mark.parametrize("product", [A100_80, A100_40], ids=["a100-80gb", "a100-40gb"])
    def test_every_a100_variant_scores_alike(self, product: Product) -> None:
        assert spec(product).score == CLASS_SCORES[GpuClass.A100]

    def test_known_products_ignore_memory_labels(self) -> None:
        assert spec(H100, memory_mib=1).score == spec(H100).score

    def test_reference_table_classifies_as_known(self) -> None:
        assert all(k.gpu_class is not GpuClass.UNKNOWN for k in KNOWN_PRODUCTS)


class TestMig:
    @pytest.mark.parametrize(
        ("suffix", "expected"),
        [
            pytest.param("-MIG-1g.10gb", 1000 * 1 // 7, id="1g-slice"),
            pytest.param("-MIG-2g.20gb", 1000 * 2 // 7, id="2g-slice"),
            pytest.param("-MIG-3g.40gb", 1000 * 3 // 7, id="3g-slice"),
            pytest.param("-MIG-4g.40gb", 1000 * 4 // 7, id="4g-slice"),
            pytest.param("-MIG-7g.80gb", 1000, id="7g-whole-gpu"),
            pytest.param("-mig-1g.10gb", 1000 // 7, id="lowercase-suffix"),
        ],
    )
    def test_slice_scales_by_n_over_7(self, suffix: str, expected: int) -> None:
        power = spec(H100, suffix=suffix)
        assert power.score == expected
        assert power.base_score == 1000
        assert power.base_product == H100[0]
        assert power.gpu_class is GpuClass.H100

    def test_a100_slice_from_the_testdata(self) -> None:
        power = score_gpu_spec(
            product="NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", memory_mib=4864, compute=(8, 0)
        )
        assert (power.gpu_class, power.mig_slices, power.score) == (GpuClass.A100, 1, 100)

    def test_unknown_slice_scales_memory_back_to_the_whole_gpu(self) -> None:
        whole = spec(H200)
        slice_ = score_gpu_spec(
            product="NVIDIA-H200-MIG-7g.141gb", memory_mib=H200[1], compute=(9, 0)
        )
        small = score_gpu_spec(
            product="NVIDIA-H200-MIG-1g.18gb", memory_mib=H200[1] // 7, compute=(9, 0)
        )
        assert slice_.score == whole.score
        assert small.score == pytest.approx(whole.score / 7, abs=3)


class TestTimeSlicing:
    @pytest.mark.parametrize(
        ("count", "replicas", "expected"),
        [
            pytest.param(1, 4, 125, id="1-gpu-4-replicas"),
            pytest.param(2, 8, 125, id="2-gpus-8-replicas-total"),
            pytest.param(4, 4, 500, id="no-oversubscription"),
            pytest.param(8, 4, 125, id="replicas-per-gpu"),
            pytest.param(0, 4, 500, id="count-label-missing"),
            pytest.param(1, 0, 500, id="replicas-label-missing"),
        ],
    )
    def test_shared_scales_by_count_over_replicas(
        self, count: int, replicas: int, expected: int
    ) -> None:
        power = spec(L40S, suffix="-SHARED", count=count, replicas=replicas)
        assert power.score == expected
        assert power.gpu_class is GpuClass.L40S

    def test_mig_and_shared_combine(self) -> None:
        power = spec(A100_40, suffix="-MIG-1g.5gb-SHARED", count=1, replicas=2)
        assert (power.mig_slices, power.shared_by, power.score) == (1, (1, 2), 700 // 7 // 2)

    def test_a_share_never_scores_zero(self) -> None:
        assert spec(RTX3060, suffix="-SHARED", count=1, replicas=1000).score == 1


class TestUnknownProducts:
    @pytest.mark.parametrize(
        ("product", "below"),
        [
            pytest.param(L4, RTX4090, id="l4-below-rtx4090"),
            pytest.param(T4, RTX3090, id="t4-below-rtx3090"),
            pytest.param(V100, RTX3090, id="v100-below-rtx3090"),
            pytest.param(("NVIDIA-A10", 23028, (8, 6)), RTX3090, id="a10-below-rtx3090"),
        ],
    )
    def test_capped_below_a_dominating_known_product(
        self,
        product: Product,
        below: Product,
    ) -> None:
        assert spec(product).score < spec(below).score

    @pytest.mark.parametrize("product", [H200, B200], ids=["h200", "b200"])
    def test_undominated_products_may_score_above_h100(self, product: Product) -> None:
        power = spec(product)
        assert power.score > spec(H100).score
        assert power.capped_by is None

    def test_capped_product_says_so(self) -> None:
        text = spec(L4).describe()
        assert "not in the tier table" in text
        assert "capped below" in text

    def test_missing_labels_still_count_as_a_gpu(self) -> None:
        power = score_gpu_spec(product="Mystery-GPU")
        assert power.gpu_class is GpuClass.UNKNOWN
        assert 1 <= power.score < CLASS_SCORES[GpuClass.CONSUMER]

    @given(
        memory=st.integers(min_value=0, max_value=300_000),
        major=st.integers(min_value=0, max_value=12),
        minor=st.integers(min_value=0, max_value=9),
    )
    def test_never_reaches_a_known_product_that_dominates_it(
        self, memory: int, major: int, minor: int
    ) -> None:
        power = score_gpu_spec(product="Acme-X1", memory_mib=memory, compute=(major, minor))
        for known in KNOWN_PRODUCTS:
            if known.memory_mib >= memory and known.compute >= (major, minor):
                assert power.score < known.score, known.product

    @given(
        memory=st.integers(min_value=0, max_value=300_000),
        more_memory=st.integers(min_value=0, max_value=100_000),
        major=st.integers(min_value=0, max_value=12),
        minor=st.integers(min_value=0, max_value=9),
        more_major=st.integers(min_value=0, max_value=2),
    )
    def test_more_memory_or_compute_never_scores_lower(
        self, memory: int, more_memory: int, major: int, minor: int, more_major: int
    ) -> None:
        weaker = score_gpu_spec(product="Acme-X1", memory_mib=memory, compute=(major, minor))
        stronger = score_gpu_spec(
            product="Acme-X2",
            memory_mib=memory + more_memory,
            compute=(major + more_major, minor),
        )
        assert stronger.score >= weaker.score


class TestScoreFromLabels:
    def test_labels_and_spec_agree(self) -> None:
        labels = labels_of("NVIDIA-L4", memory="23034", major="8", minor="9")
        assert score_gpu(labels) == spec(L4)

    def test_shared_labels_are_read(self) -> None:
        labels = labels_of("NVIDIA-L40S-SHARED", count="1", replicas="4")
        assert score_gpu(labels).score == 125

    @pytest.mark.parametrize(
        "memory", ["", "lots", "-5", "23034MiB"], ids=["absent", "text", "negative", "unit"]
    )
    def test_malformed_numbers_count_as_absent(self, memory: str) -> None:
        labels = labels_of("NVIDIA-L4", memory=memory, major="8", minor="9")
        assert score_gpu(labels) == score_gpu_spec(product="NVIDIA-L4", compute=(8, 9))

    def test_no_product_label(self) -> None:
        power = score_gpu({})
        assert (power.product, power.gpu_class) == ("", GpuClass.UNKNOWN)
        assert power.describe().startswith("unlabelled GPU")


class TestDescribe:
    @pytest.mark.parametrize(
        ("power", "text"),
        [
            pytest.param(spec(H100), "NVIDIA-H100-80GB-HBM3 tier 1", id="known"),
            pytest.param(
                spec(A100_40, suffix="-MIG-2g.10gb"),
                "NVIDIA-A100-SXM4-40GB-MIG-2g.10gb tier 3, MIG slice 2/7",
                id="mig",
            ),
            pytest.param(
                spec(L40S, suffix="-SHARED", count=1, replicas=4),
                "NVIDIA-L40S-SHARED tier 4, time-sliced 1/4",
                id="shared",
            ),
        ],
    )
    def test_text(self, power: GpuPower, text: str) -> None:
        assert power.describe() == text


class TestGpuClassThreshold:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            pytest.param("a100", GpuClass.A100, id="lower"),
            pytest.param("A100", GpuClass.A100, id="upper"),
            pytest.param("RTX 4090", GpuClass.RTX_4090, id="space"),
            pytest.param("rtx-3090", GpuClass.RTX_3090, id="dash"),
            pytest.param("consumer", GpuClass.CONSUMER, id="consumer"),
        ],
    )
    def test_parse(self, text: str, expected: GpuClass) -> None:
        assert parse_gpu_class(text) is expected

    def test_parse_rejects_unknown_names_listing_the_valid_ones(self) -> None:
        with pytest.raises(ValueError, match="h100, gh200, a100"):
            parse_gpu_class("tpu")

    @pytest.mark.parametrize(
        ("power", "minimum", "expected"),
        [
            pytest.param(spec(H100), GpuClass.A100, True, id="h100-meets-a100"),
            pytest.param(spec(A100_40), GpuClass.A100, True, id="a100-meets-a100"),
            pytest.param(spec(L40S), GpuClass.A100, False, id="l40s-below-a100"),
            pytest.param(spec(H200), GpuClass.H100, True, id="strong-unknown-meets-h100"),
            pytest.param(spec(L4), GpuClass.RTX_4090, False, id="capped-unknown-below"),
            pytest.param(
                spec(H100, suffix="-MIG-1g.10gb"), GpuClass.A100, False, id="slice-not-a100"
            ),
            pytest.param(spec(RTX3060), GpuClass.CONSUMER, True, id="consumer-meets-consumer"),
            pytest.param(spec(T4), GpuClass.UNKNOWN, True, id="unknown-minimum-any-gpu"),
        ],
    )
    def test_meets(self, power: GpuPower, minimum: GpuClass, expected: bool) -> None:
        assert meets_gpu_class(power, minimum) is expected


class TestCpuScore:
    @pytest.mark.parametrize(
        ("cpu_millis", "memory_bytes", "expected"),
        [
            pytest.param(0, 0, 0, id="nothing"),
            pytest.param(1000, 0, 10, id="one-core"),
            pytest.param(64_000, 256 * GIB, 640 + 128, id="big-node"),
            pytest.param(500, GIB, 5, id="half-core-1gib"),
            pytest.param(-1000, -GIB, 0, id="overcommitted-clamps"),
        ],
    )
    def test_score(self, cpu_millis: int, memory_bytes: int, expected: int) -> None:
        assert score_cpu(cpu_millis=cpu_millis, memory_bytes=memory_bytes) == expected

    def test_cores_weigh_more_than_memory(self) -> None:
        more_cores = score_cpu(cpu_millis=16_000, memory_bytes=32 * GIB)
        more_memory = score_cpu(cpu_millis=8_000, memory_bytes=64 * GIB)
        assert more_cores > more_memory
