"""The placement benchmark's harness: one scenario = one placer placing M one-GPU pods in its own
namespace of a running sandbox, at full speed ("burst") or at a steady rate, measured from the
client side.

Placers:

- ``operator``: M SelfplayJobs; the operator (a ``ringrift-operator run`` process started for the
  scenario) creates each job's pod and binds it to the most powerful node with a free GPU.
- ``kube-scheduler``: M plain pods identical to the operator's, with a preferred node affinity
  on ``nvidia.com/gpu.product`` that mirrors the power ranking; kube-scheduler places them.
- ``ceiling``: this client creates each pod and binds it (``pods/binding``) round-robin over nodes
  with a free GPU, no decision at all: the fastest any placer gets through this API server.

Latency is creation → bound: from just before the create call (of the job or the pod) to when a
pod watch in a separate process (so the creating loop cannot delay it) first sees ``spec.nodeName``,
both on this machine's monotonic clock. CPU time and peak RSS of the placer come from ``/proc``;
API requests from the operator's ``/status`` and kube-scheduler's ``rest_client_requests_total``.

Called by ``bench/run.py``; the arithmetic lives in ``bench/report.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import re
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

from bench import report
from ringrift_operator.api.common import ANNOTATION_DECIDED_AT, EngineMode
from ringrift_operator.api.settings import OperatorSettings
from ringrift_operator.kube.client import ApiError, Credentials, KubeClient
from ringrift_operator.managers.jobs import Attempt, OwnerRef, build_selfplay_pod
from ringrift_operator.reconcilers.deps import workload_settings
from ringrift_sandbox.nodes import NODE_CLASSES, NodeSpec

GROUP_VERSION = "ringrift.ai/v1alpha1"
JOBS_PATH = "/apis/ringrift.ai/v1alpha1/namespaces/{ns}/selfplayjobs"
PODS_PATH = "/api/v1/namespaces/{ns}/pods"
GPU = "nvidia.com/gpu"
PRODUCT_LABEL = "nvidia.com/gpu.product"
CEILING_SCHEDULER = "bench-ceiling"  # nobody schedules these: the ceiling client binds them

# Preference weights of the kube-scheduler reference, by node class (the power ranking's order);
# the quality replay ranks node classes by the same numbers.
CLASS_WEIGHTS: dict[str, int] = {
    "h100": 100,
    "gh200": 90,
    "a100": 70,
    "l40s": 50,
    "rtx4090": 40,
    "rtx3090": 30,
}

# The default cluster: shares of the node count per class (GPUs per node from nodes.py: H100 and
# A100 8, L40S 4, RTX 4090/3090 2). 500 nodes → 2,150 GPUs.
NODE_MIX: tuple[tuple[str, int], ...] = (
    ("h100", 15),
    ("a100", 20),
    ("l40s", 20),
    ("rtx4090", 20),
    ("rtx3090", 15),
    ("cpu", 10),
)


def build_node_spec(nodes: int) -> str:
    """A sandbox node spec of ``nodes`` nodes in the proportions of :data:`NODE_MIX`."""
    total = sum(share for _, share in NODE_MIX)
    counts = {cls: nodes * share // total for cls, share in NODE_MIX}
    counts[NODE_MIX[1][0]] += nodes - sum(counts.values())  # the rounding remainder: A100s
    return ",".join(f"{cls}:{n}" for cls, n in counts.items() if n)


def gpu_capacity(specs: list[NodeSpec]) -> int:
    return sum(s.gpus for s in specs)


def node_power(specs: list[NodeSpec]) -> dict[str, int]:
    """The class weight of every GPU node (the quality replay's model)."""
    return {
        s.name: CLASS_WEIGHTS[s.node_class.name]
        for s in specs
        if s.gpus and s.node_class.name in CLASS_WEIGHTS
    }


# --- manifests ----------------------------------------------------------------------------------


def build_selfplay_job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "SelfplayJob",
        "metadata": {"name": name},
        "spec": {
            "board": "square8",
            "players": 2,
            "engineMode": "heuristic",
            "games": 10,
            "gpus": 1,
        },
    }


def _operator_pod_template() -> dict[str, Any]:
    """The pod the operator would build for one of the benchmark's SelfplayJobs, unowned."""
    attempt = Attempt(
        owner=OwnerRef(api_version=GROUP_VERSION, kind="SelfplayJob", name="bench", uid="bench"),
        namespace="bench",
        config="square8_2p",
        number=1,
        epoch=0,
    )
    pod = build_selfplay_pod(
        attempt=attempt,
        settings=workload_settings(OperatorSettings()),
        engine_mode=EngineMode.HEURISTIC,
        games=10,
        gpus=1,
    )
    pod["metadata"] = {"labels": {"app.kubernetes.io/part-of": "ringrift-bench"}}
    return pod


def build_reference_pod(name: str, template: dict[str, Any]) -> dict[str, Any]:
    """The operator's pod, placed by kube-scheduler with a preference that mirrors the ranking."""
    pod = json.loads(json.dumps(template))
    pod["metadata"]["name"] = name
    pod["spec"]["schedulerName"] = "default-scheduler"
    pod["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] = [
        {
            "weight": weight,
            "preference": {
                "matchExpressions": [
                    {"key": PRODUCT_LABEL, "operator": "In", "values": [NODE_CLASSES[cls].product]}
                ]
            },
        }
        for cls, weight in CLASS_WEIGHTS.items()
    ]
    return pod


def build_ceiling_pod(name: str, template: dict[str, Any]) -> dict[str, Any]:
    pod = json.loads(json.dumps(template))
    pod["metadata"]["name"] = name
    pod["spec"]["schedulerName"] = CEILING_SCHEDULER
    return pod


def item_name(placer: str, index: int) -> str:
    return f"{placer[0]}-{index:05d}"


_INDEX = re.compile(r"^[a-z]-(\d{5})")


def index_of(pod_name: str) -> int | None:
    """The item index of a pod: ``k-00042`` and the operator's ``o-00042-sp-1`` are 42."""
    m = _INDEX.match(pod_name)
    return int(m[1]) if m else None


# --- /proc sampling -----------------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, in seconds (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a process in MiB."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


class ProcessSampler:
    """CPU seconds between start and stop and the peak RSS seen (polled) of named processes."""

    def __init__(self, pids: dict[str, int], *, interval: float = 0.2) -> None:
        self.pids = pids
        self.interval = interval
        self.cpu_start: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.peak_rss: dict[str, float] = {}
        self.hwm: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProcessSampler:
        for name, pid in self.pids.items():
            self.cpu_start[name] = cpu_seconds(pid) or 0.0
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        for name, pid in self.pids.items():
            end = cpu_seconds(pid)
            if end is not None:
                self.cpu[name] = end - self.cpu_start[name]
            self.hwm[name] = memory_mib(pid).get("VmHWM", 0.0)

    def _sample(self) -> None:
        for name, pid in self.pids.items():
            rss = memory_mib(pid).get("VmRSS", 0.0)
            self.peak_rss[name] = max(self.peak_rss.get(name, 0.0), rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()


# --- the pod watcher (a separate process) ------------------------------------------------------


@dataclass(frozen=True)
class WatchRequest:
    credentials: Credentials
    namespace: str
    expected: int
    deadline: float  # monotonic


def watch_binds(
    request: WatchRequest,
    ready: MpEvent,
    stop: MpEvent,
    seen: Synchronized,  # type: ignore[type-arg]
    out: Connection,
) -> None:
    """Process entry: record when each pod of the namespace is first seen with a node; send
    ``{pod: [first seen, first seen bound, node, decided at]}`` (monotonic times; the bound time
    and node None while unbound; decided at: the operator's ``decided-at`` annotation, else None)
    through ``out`` when all are bound, stopped or late."""
    bound: dict[str, list[Any]] = {}
    try:
        asyncio.run(_watch_binds(request, ready, stop, seen, bound))
    finally:
        out.send(bound)
        out.close()


async def _watch_binds(
    request: WatchRequest,
    ready: MpEvent,
    stop: MpEvent,
    seen: Synchronized,  # type: ignore[type-arg]
    bound: dict[str, list[Any]],
) -> None:
    path = PODS_PATH.format(ns=request.namespace)
    async with await KubeClient.connect(request.credentials, max_connections=4) as client:

        async def follow() -> None:
            listing = await client.list_all(path)
            for pod in listing["items"]:
                _note(pod, bound, seen)
            rv = listing["metadata"]["resourceVersion"]
            ready.set()
            while seen.value < request.expected:
                try:
                    async for event in client.watch(path, resource_version=rv, timeout_seconds=600):
                        obj = event["object"]
                        rv = obj["metadata"]["resourceVersion"]
                        if event["type"] in ("ADDED", "MODIFIED"):
                            _note(obj, bound, seen)
                            if seen.value >= request.expected:
                                return
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # 410 Gone, or a stream the loaded API server broke
                    if isinstance(e, ApiError) and not e.gone:
                        raise
                    await asyncio.sleep(0.2)
                    listing = await client.list_all(path)
                    for pod in listing["items"]:
                        _note(pod, bound, seen)
                    rv = listing["metadata"]["resourceVersion"]

        task = asyncio.create_task(follow())
        while not task.done():
            if stop.is_set() or time.monotonic() > request.deadline:
                task.cancel()
                break
            await asyncio.wait({task}, timeout=0.2)
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _note(pod: dict[str, Any], pods: dict[str, list[Any]], seen: Any) -> None:
    now = time.monotonic()
    node = (pod.get("spec") or {}).get("nodeName")
    meta = pod["metadata"]
    record = pods.setdefault(meta["name"], [now, None, None, None])
    if node and record[1] is None:
        record[1], record[2] = now, node
        record[3] = (meta.get("annotations") or {}).get(ANNOTATION_DECIDED_AT)
        seen.value += 1


class BindWatcher:
    """:func:`watch_binds` in a spawned process for the duration of a ``with`` block.

    ``count()`` is how many pods are bound so far; ``results`` (after the block) maps each pod
    seen to ``[first seen, first seen bound, node]``."""

    def __init__(
        self, credentials: Credentials, namespace: str, *, expected: int, timeout: float
    ) -> None:
        ctx = mp.get_context("spawn")
        self._ready, self._stop = ctx.Event(), ctx.Event()
        self._seen = ctx.Value("i", 0)
        self._recv, send = ctx.Pipe(duplex=False)
        request = WatchRequest(credentials, namespace, expected, time.monotonic() + timeout)
        self._proc = ctx.Process(
            target=watch_binds,
            args=(request, self._ready, self._stop, self._seen, send),
            daemon=True,
            name=f"watch-{namespace}",
        )
        self.namespace = namespace
        self.results: dict[str, list[Any]] = {}

    def count(self) -> int:
        return int(self._seen.value)

    def __enter__(self) -> BindWatcher:
        self._proc.start()
        if not self._ready.wait(60):
            self._proc.kill()
            raise RuntimeError(f"the pod watcher of {self.namespace} did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._recv.poll(30):
            self.results = self._recv.recv()
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()


# --- creating at a rate ---------------------------------------------------------------------------


async def create_all(
    count: int,
    make: Callable[[int], Awaitable[None]],
    *,
    rate: float | None,
    concurrency: int,
) -> None:
    """Run ``make(i)`` for i in 0..count-1: as fast as ``concurrency`` allows (rate None), or
    started at ``rate`` per second on a fixed schedule (never waiting for earlier ones)."""
    if rate is None:
        it = iter(range(count))

        async def worker() -> None:
            for i in it:
                await make(i)

        await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
        return
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks = []
    for i in range(count):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(make(i)))
    await asyncio.gather(*tasks)


async def create_with_retry(client: KubeClient, path: str, body: dict[str, Any]) -> None:
    """Create; a 429/5xx (the API server's flow control under a burst) is retried, a 409 is
    taken as done."""
    for attempt in range(20):
        try:
            await client.create(path, body)
            return
        except ApiError as e:
            if e.conflict:
                return
            if e.status not in (429, 500, 503, 504) or attempt == 19:
                raise
        await asyncio.sleep(0.05 * (attempt + 1))


# --- one scenario -------------------------------------------------------------------------------


@dataclass
class ScenarioResult:
    placer: str
    mode: str  # burst | steady
    rate: float | None
    jobs: int
    namespace: str
    created_at: dict[int, float] = field(default_factory=dict)
    bound: dict[int, tuple[float, str]] = field(default_factory=dict)  # (bound at, node)
    seen: dict[int, float] = field(default_factory=dict)  # the pod first seen by the watch
    # The placer's decision time, where it records one (the operator's decided-at annotation).
    decided: dict[int, str] = field(default_factory=dict)
    create_errors: int = 0
    requests: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    rss: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(
        self, *, placer_process: str, power: dict[str, int], gpus: dict[str, int]
    ) -> dict[str, Any]:
        latencies = [
            self.bound[i][0] - self.created_at[i] for i in self.bound if i in self.created_at
        ]
        start = min(self.created_at.values()) if self.created_at else 0.0
        end = max((t for t, _ in self.bound.values()), default=start)
        placed = len(latencies)
        quality = report.score_placement_quality(
            self.bound.values(), node_power=power, node_gpus=gpus
        )
        # The measure is "the highest-power node with a free GPU at decision time". The
        # operator stamps each pod with the time of its decision (taken under its placement
        # lock, so the stamps are the order of its decisions), and the replay in that order is
        # the measure proper; concurrent creates may commit in another order, which the bind
        # order counts against it. kube-scheduler and the ceiling record no decision time:
        # their bind order stands in (both decide just before they bind).
        if self.placer == report.OURS and self.decided:
            decided = [
                (_microseconds(self.decided[i]), node)
                for i, (_, node) in self.bound.items()
                if i in self.decided
            ]
        else:
            decided = list(self.bound.values())
        by_decision = report.score_placement_quality(decided, node_power=power, node_gpus=gpus)
        # Where the time goes: creation → the pod exists (for the operator: the job's watch event,
        # queue, decision and pod create) and pod seen → bound (the placer's decision and bind).
        to_pod = [self.seen[i] - self.created_at[i] for i in self.seen if i in self.created_at]
        to_bind = [self.bound[i][0] - self.seen[i] for i in self.bound if i in self.seen]
        req = dict(self.requests)
        req["writes_per_job"] = report.per_job(req.get("writes"), placed)
        req["reads_per_job"] = report.per_job(req.get("reads"), placed)
        return {
            "placer": self.placer,
            "mode": self.mode,
            "rate": self.rate,
            "jobs": self.jobs,
            "placed": placed,
            "create_errors": self.create_errors,
            "duration_seconds": end - start,
            "throughput": report.throughput(placed, start=start, end=end),
            "latency": report.summarize_latencies(latencies),
            "latencies": [round(x, 4) for x in latencies],
            "phases": {
                "created_to_pod_seen": report.summarize_latencies(to_pod),
                "pod_seen_to_bound": report.summarize_latencies(to_bind),
            },
            "placements": sorted((round(t - start, 4), node) for t, node in self.bound.values()),
            "requests": req,
            "cpu": {
                "placer_seconds": self.cpu.get(placer_process),
                "by_process": {k: round(v, 2) for k, v in self.cpu.items()},
            },
            "rss": {
                "peak_mib": self.rss.get(placer_process),
                "by_process": {k: round(v, 1) for k, v in self.rss.items()},
            },
            "quality": {
                "share": quality.share,
                "optimal": quality.optimal,
                "counted": quality.counted,
                "decision_order_share": by_decision.share,
            },
            **self.extra,
        }


def _microseconds(stamp: str) -> int:
    """An RFC 3339 time as integer microseconds since the epoch (exact, unlike a float)."""
    return (datetime.fromisoformat(stamp) - EPOCH) // timedelta(microseconds=1)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def http_json(url: str, *, token: str | None = None, insecure: bool = False) -> Any:
    import ssl

    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    ctx = None
    if insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # a component's self-signed serving cert, on loopback
    with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
        raw = resp.read()
    return json.loads(raw) if raw[:1] in (b"{", b"[") else raw.decode()


WRITES = ("POST", "PUT", "PATCH", "DELETE")


def split_requests(counts: dict[str, float]) -> dict[str, Any]:
    """``{"POST pods": n, …}`` → writes, reads (GET/LIST), watches and the counts themselves."""
    writes = sum(n for k, n in counts.items() if k.split()[0] in WRITES)
    watches = sum(n for k, n in counts.items() if k.split()[0] == "WATCH")
    reads = sum(n for k, n in counts.items() if k.split()[0] in ("GET", "LIST"))
    return {"writes": writes, "reads": reads, "watches": watches, "by_verb": counts}


def diff_counts(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}


_REST_CLIENT = re.compile(r"^rest_client_requests_total\{([^}]*)\}\s+([0-9.e+]+)$", re.M)


def parse_rest_client_requests(text: str) -> dict[str, float]:
    """client-go's ``rest_client_requests_total`` by method, from Prometheus text (no resource
    label there: GETs include watch (re)starts)."""
    out: dict[str, float] = {}
    for labels, value in _REST_CLIENT.findall(text):
        method = re.search(r'method="([A-Z]+)"', labels)
        if method:
            key = f"{method[1]} all"
            out[key] = out.get(key, 0) + float(value)
    return out


def parse_histogram(text: str, name: str) -> dict[str, float]:
    """``_sum`` and ``_count`` of a Prometheus histogram without labels."""
    out = {}
    for suffix in ("sum", "count"):
        m = re.search(rf"^{name}_{suffix}\s+([0-9.e+-]+)$", text, re.M)
        if m:
            out[suffix] = float(m[1])
    return out
