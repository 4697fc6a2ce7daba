"""GPU and CPU power scores: how much work one GPU (or one node's CPUs) can do, as an integer.

Called by ``managers.ranking`` (the NodeSelector) for every node it ranks, and by whoever shows a
node's power (status ``powerScore``, the ``explain`` command). Pure: label values in, scores out.

The seed ranks GPUs by a fixed order, H100 > GH200 > A100 > L40S > RTX 4090 > RTX 3090 > consumer
cards. Products outside that table are scored from the memory and compute capability that GPU
Feature Discovery reports, and are capped strictly below every known product that dominates them
(at least as much memory and at least the same compute capability), so an unfamiliar label never
beats a card that is better on both counts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from types import MappingProxyType

from ringrift_operator.managers.nodes import (
    GIB,
    LABEL_GPU_COMPUTE_MAJOR,
    LABEL_GPU_COMPUTE_MINOR,
    LABEL_GPU_COUNT,
    LABEL_GPU_MEMORY,
    LABEL_GPU_PRODUCT,
    LABEL_GPU_REPLICAS,
)

__all__ = [
    "CLASS_SCORES",
    "KNOWN_PRODUCTS",
    "MIG_SLICES_PER_GPU",
    "GpuClass",
    "GpuPower",
    "KnownProduct",
    "classify_product",
    "meets_gpu_class",
    "parse_gpu_class",
    "score_cpu",
    "score_gpu",
    "score_gpu_spec",
]


class GpuClass(StrEnum):
    """The seed's GPU tiers, strongest first. ``placement.minGpuClass`` takes these values."""

    H100 = "h100"
    GH200 = "gh200"
    A100 = "a100"
    L40S = "l40s"
    RTX_4090 = "rtx4090"
    RTX_3090 = "rtx3090"
    CONSUMER = "consumer"
    UNKNOWN = "unknown"  # not in the table: scored from memory and compute capability

    @property
    def tier(self) -> int | None:
        """1 for the strongest class; None for products outside the table."""
        return _TIERS.get(self)


_TIERS: dict[GpuClass, int] = {
    cls: tier for tier, cls in enumerate((c for c in GpuClass if c is not GpuClass.UNKNOWN), 1)
}

# Score of one whole GPU of each class. H100 = 1000 anchors the scale that unknown products share.
CLASS_SCORES: Mapping[GpuClass, int] = MappingProxyType(
    {
        GpuClass.H100: 1000,
        GpuClass.GH200: 900,
        GpuClass.A100: 700,
        GpuClass.L40S: 500,
        GpuClass.RTX_4090: 400,
        GpuClass.RTX_3090: 300,
        GpuClass.CONSUMER: 150,
    }
)

MIG_SLICES_PER_GPU = 7  # an A100/H100 splits into at most 7 compute slices


@dataclass(frozen=True, slots=True)
class KnownProduct:
    """A product of the tier table with the specs GFD reports for it; the reference for capping."""

    product: str
    memory_mib: int
    compute: tuple[int, int]

    @property
    def gpu_class(self) -> GpuClass:
        return classify_product(self.product)

    @property
    def score(self) -> int:
        return CLASS_SCORES[self.gpu_class]


# Typical specs of the known products (memory in MiB per GPU). An unknown product with no more
# memory and no higher compute capability than one of these scores strictly below it.
KNOWN_PRODUCTS: tuple[KnownProduct, ...] = (
    KnownProduct("NVIDIA-H100-80GB-HBM3", 81559, (9, 0)),
    KnownProduct("NVIDIA-H100-PCIe", 81559, (9, 0)),
    KnownProduct("NVIDIA-H100-NVL", 95830, (9, 0)),
    KnownProduct("NVIDIA-GH200-480GB", 97871, (9, 0)),
    KnownProduct("NVIDIA-A100-SXM4-80GB", 81920, (8, 0)),
    KnownProduct("NVIDIA-A100-SXM4-40GB", 40960, (8, 0)),
    KnownProduct("NVIDIA-A100-80GB-PCIe", 81920, (8, 0)),
    KnownProduct("NVIDIA-A100-PCIE-40GB", 40960, (8, 0)),
    KnownProduct("NVIDIA-L40S", 46068, (8, 9)),
    KnownProduct("NVIDIA-GeForce-RTX-4090", 24564, (8, 9)),
    KnownProduct("NVIDIA-GeForce-RTX-3090", 24576, (8, 6)),
    KnownProduct("NVIDIA-GeForce-RTX-3090-Ti", 24564, (8, 6)),
    KnownProduct("NVIDIA-GeForce-RTX-4080", 16376, (8, 9)),
    KnownProduct("NVIDIA-GeForce-RTX-4070", 12282, (8, 9)),
    KnownProduct("NVIDIA-GeForce-RTX-3080", 10240, (8, 6)),
    KnownProduct("NVIDIA-GeForce-RTX-3070", 8192, (8, 6)),
    KnownProduct("NVIDIA-GeForce-RTX-3060", 12288, (8, 6)),
    KnownProduct("NVIDIA-GeForce-RTX-2080-Ti", 11264, (7, 5)),
    KnownProduct("NVIDIA-GeForce-RTX-2080", 8192, (7, 5)),
)

# Whole-token matches on the product name (split on "-"); a dict lookup, not a regex per node.
_CLASS_BY_TOKEN: dict[str, GpuClass] = {
    "H100": GpuClass.H100,
    "GH200": GpuClass.GH200,
    "A100": GpuClass.A100,
    "L40S": GpuClass.L40S,
}
_GEFORCE_CLASS_BY_MODEL: dict[str, GpuClass] = {
    "4090": GpuClass.RTX_4090,
    "3090": GpuClass.RTX_3090,
}
# GeForce models numbered below this are the seed's "consumer GPUs"; newer generations (5090 …)
# are unknown and scored from their specs rather than lumped below an RTX 3090.
_CONSUMER_MODEL_LIMIT = 5000

_MIG_SUFFIX = re.compile(r"-MIG-(\d+)g\.(\d+)gb$", re.IGNORECASE)
_SHARED_SUFFIX = "-SHARED"


def classify_product(product: str) -> GpuClass:
    """The class of a product label without its MIG/sharing suffix, e.g. ``NVIDIA-L40S`` → L40S."""
    tokens = product.upper().split("-")
    for token in tokens:
        cls = _CLASS_BY_TOKEN.get(token)
        if cls is not None:
            return cls
    if "GEFORCE" in tokens:
        for token in tokens:
            cls = _GEFORCE_CLASS_BY_MODEL.get(token)
            if cls is not None:
                return cls
        for token in tokens:
            if token.isdigit() and int(token) < _CONSUMER_MODEL_LIMIT:
                return GpuClass.CONSUMER
    return GpuClass.UNKNOWN


def parse_gpu_class(text: str) -> GpuClass:
    """Parse a ``minGpuClass`` value leniently: ``A100``, ``rtx-4090``, ``RTX 4090`` all work."""
    key = re.sub(r"[\s_-]", "", text).lower()
    try:
        return GpuClass(key)
    except ValueError:
        known = ", ".join(c.value for c in GpuClass if c is not GpuClass.UNKNOWN)
        raise ValueError(f"unknown GPU class {text!r} (expected one of: {known})") from None


@dataclass(frozen=True, slots=True)
class GpuPower:
    """The power of one schedulable GPU of a node, with the facts that produced it."""

    product: str  # the label as given, suffixes included ("" when the node has no label)
    base_product: str  # without the MIG / time-slicing suffix
    gpu_class: GpuClass
    base_score: int  # one whole GPU of the base product
    score: int  # one schedulable GPU: base_score scaled by the MIG slice or time-slicing share
    mig_slices: int | None = None  # n of "-MIG-<n>g.<m>gb"
    shared_by: tuple[int, int] | None = None  # (gpu.count, gpu.replicas) of "-SHARED"
    capped_by: str | None = None  # the known product an unknown one was capped below

    @property
    def tier(self) -> int | None:
        return self.gpu_class.tier

    def describe(self) -> str:
        """Human-readable, e.g. ``NVIDIA-H100-80GB-HBM3 tier 1`` or ``NVIDIA-L4 (unknown …)``."""
        name = self.product or "unlabelled GPU"
        if self.tier is not None:
            text = f"{name} tier {self.tier}"
        else:
            text = f"{name} (not in the tier table, scored from memory and compute capability"
            text += f", capped below {self.capped_by})" if self.capped_by else ")"
        if self.mig_slices is not None:
            text += f", MIG slice {self.mig_slices}/{MIG_SLICES_PER_GPU}"
        if self.shared_by is not None:
            text += f", time-sliced {self.shared_by[0]}/{self.shared_by[1]}"
        return text


def score_gpu(labels: Mapping[str, str]) -> GpuPower:
    """The power of one schedulable GPU of a node, from its GPU Feature Discovery labels.

    Cached by the tuple of the relevant label values: a cluster has a handful of distinct GPU
    shapes, so ranking thousands of nodes costs one dict lookup per node after the first.
    """
    get = labels.get
    return _score_from_labels(
        get(LABEL_GPU_PRODUCT, ""),
        get(LABEL_GPU_MEMORY, ""),
        get(LABEL_GPU_COMPUTE_MAJOR, ""),
        get(LABEL_GPU_COMPUTE_MINOR, ""),
        get(LABEL_GPU_COUNT, ""),
        get(LABEL_GPU_REPLICAS, ""),
    )


@lru_cache(maxsize=4096)
def _score_from_labels(
    product: str, memory: str, major: str, minor: str, count: str, replicas: str
) -> GpuPower:
    return score_gpu_spec(
        product=product,
        memory_mib=_to_int(memory),
        compute=(_to_int(major), _to_int(minor)),
        count=_to_int(count),
        replicas=_to_int(replicas),
    )


def score_gpu_spec(
    *,
    product: str,
    memory_mib: int = 0,
    compute: tuple[int, int] = (0, 0),
    count: int = 0,
    replicas: int = 0,
) -> GpuPower:
    """Score one GPU from already-parsed label values (0 = the label is absent).

    - ``-MIG-<n>g.<m>gb``: a slice of n of 7 compute units; the score is the base score * n/7.
    - ``-SHARED`` (time-slicing): each schedulable GPU is a share of a physical one; the score is
      scaled by count/replicas when both labels are present (``gpu.replicas`` counting all
      replicas of the node). A ``replicas`` smaller than ``count`` can only be a per-GPU replica
      count, so the share is then 1/replicas.
    - Unknown products: scored from memory and compute capability, capped below dominating known
      products. For a MIG slice the memory label is the slice's, so it is scaled back up by 7/n.
    """
    base = product
    shared = base.upper().endswith(_SHARED_SUFFIX)
    if shared:
        base = base[: -len(_SHARED_SUFFIX)]
    mig_slices: int | None = None
    match = _MIG_SUFFIX.search(base)
    if match is not None:
        mig_slices = max(1, min(MIG_SLICES_PER_GPU, int(match.group(1))))
        base = base[: match.start()]

    gpu_class = classify_product(base)
    capped_by: str | None = None
    if gpu_class is GpuClass.UNKNOWN:
        whole_memory = memory_mib
        if mig_slices is not None:
            whole_memory = memory_mib * MIG_SLICES_PER_GPU // mig_slices
        base_score, capped_by = _score_unknown(memory_mib=whole_memory, compute=compute)
    else:
        base_score = CLASS_SCORES[gpu_class]

    score = base_score
    if mig_slices is not None:
        score = score * mig_slices // MIG_SLICES_PER_GPU
    shared_by: tuple[int, int] | None = None
    if shared and count > 0 and replicas > 0:
        shared_by = (count, replicas)
        score = score * count // replicas if replicas >= count else score // replicas
    return GpuPower(
        product=product,
        base_product=base,
        gpu_class=gpu_class,
        base_score=base_score,
        score=max(1, score),
        mig_slices=mig_slices,
        shared_by=shared_by,
        capped_by=capped_by,
    )


def _score_unknown(*, memory_mib: int, compute: tuple[int, int]) -> tuple[int, str | None]:
    """Score = compute capability (tenths) * sqrt(memory MiB), H100 = 1000 scale."""
    major, minor = compute
    tenths = max(0, major) * 10 + min(max(0, minor), 9)
    raw = max(1, tenths * math.isqrt(max(0, memory_mib)) * 10 // 256)
    cap: KnownProduct | None = None
    for known in KNOWN_PRODUCTS:
        dominates = known.memory_mib >= memory_mib and known.compute >= (major, minor)
        if dominates and (cap is None or known.score < cap.score):
            cap = known
    if cap is not None and raw >= cap.score:
        return cap.score - 1, cap.product
    return raw, None


def meets_gpu_class(power: GpuPower, minimum: GpuClass) -> bool:
    """True when one schedulable GPU is at least as strong as a whole GPU of ``minimum``.

    Compares scores, so an unknown product qualifies when it scores as high as the class, and a
    MIG slice of an H100 does not count as an A100.
    """
    if minimum is GpuClass.UNKNOWN:
        return True
    return power.score >= CLASS_SCORES[minimum]


def score_cpu(*, cpu_millis: int, memory_bytes: int) -> int:
    """CPU power for CPU work (export, heuristic self-play): 10 per core plus 1 per 2 GiB."""
    return max(0, cpu_millis) // 100 + max(0, memory_bytes) // (2 * GIB)


def _to_int(text: str) -> int:
    text = text.strip()
    return int(text) if text.isdigit() else 0
