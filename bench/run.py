"""``make bench``: the whole benchmark in one run on one sandbox cluster, side by side.

1. Microbenchmarks (no cluster): ranking 5,000 nodes, a sync plan over 1,000,000 files, batched
   history writes (the functions of ``bench/micro_*.py``).
2. A sandbox with N simulated nodes (no workload simulator: pods stay Running, capacity fills)
   and the CRDs.
3. Placement of M one-GPU pods by each placer (``bench/placement.py``: the ceiling client,
   kube-scheduler, the operator), first as a burst, then at a steady rate, each in its own
   namespace, the cluster emptied in between.
4. Settle after restart: R SelfplayJobs that are already Complete; the operator started, stopped
   and started again; the time until its queue is drained and it has reconciled them all.
5. ``bench/results/<timestamp>.json`` (summaries and raw latencies), ``.md`` (the table with
   ratios and targets, printed at the end) and ``.png`` (latency CDF per placer).

    .venv/bin/python -m bench.run                # the default run (~10+ minutes)
    .venv/bin/python -m bench.run --quick        # 100 nodes, 300 jobs, no restart test (< 3 min)
    .venv/bin/python -m bench.run --help         # every knob; BENCH_* variables set defaults
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import placement as pl
from bench import report
from ringrift_operator.kube.client import ApiError, Credentials, KubeClient
from ringrift_sandbox.cluster import Sandbox, free_port
from ringrift_sandbox.nodes import parse_node_spec
from ringrift_sandbox.tools import find_tool

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "support"))  # start_operator: one way to run the operator

from operator_support import OperatorProcess, start_operator, wait_started  # noqa: E402

PARTS = ("micro", "placement", "restart")
MODES = ("burst", "steady")


def _env(name: str, default: Any) -> Any:
    return type(default)(os.environ.get(f"BENCH_{name}", default))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="100 nodes, 300 jobs, no restart test, lighter microbenchmarks",
    )
    p.add_argument(
        "--nodes",
        type=int,
        default=_env("NODES", 500),
        help="simulated nodes (mixed classes, see placement.NODE_MIX), up to ~1,000",
    )
    p.add_argument(
        "--node-spec",
        default=os.environ.get("BENCH_NODE_SPEC", ""),
        help="an explicit sandbox node spec instead of --nodes",
    )
    p.add_argument("--jobs", type=int, default=_env("JOBS", 2000), help="jobs per scenario")
    p.add_argument("--rate", type=float, default=_env("RATE", 20.0), help="steady rate, jobs/s")
    p.add_argument(
        "--parts",
        default=os.environ.get("BENCH_PARTS", ",".join(PARTS)),
        help=f"comma-separated subset of {','.join(PARTS)}",
    )
    p.add_argument("--modes", default=os.environ.get("BENCH_MODES", ",".join(MODES)))
    p.add_argument("--placers", default=os.environ.get("BENCH_PLACERS", ",".join(report.PLACERS)))
    p.add_argument(
        "--restart-jobs",
        type=int,
        default=_env("RESTART_JOBS", 10_000),
        help="Complete SelfplayJobs for the settle-after-restart test",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=_env("CONCURRENCY", 32),
        help="concurrent creates of a burst",
    )
    p.add_argument(
        "--ceiling-concurrency",
        type=int,
        default=_env("CEILING_CONCURRENCY", 96),
        help="concurrent create+bind chains of the ceiling client",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=_env("WORKERS", 0),
        help="RINGRIFT_WORKERS for the operator (0: its default)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=_env("TIMEOUT", 600.0),
        help="seconds a scenario may take before it is cut short",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="record the operator with py-spy during its scenarios (collapsed stacks next to "
        "the results; py-spy must be installed)",
    )
    p.add_argument(
        "--trace",
        action="store_true",
        help="run the operator under bench.optrace: where each placement's time goes",
    )
    p.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    p.add_argument(
        "--sandbox-dir",
        type=Path,
        default=None,
        help="where the sandbox lives (default: a temporary directory, removed)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.nodes, args.jobs = min(args.nodes, 100), min(args.jobs, 300)
        if "BENCH_PARTS" not in os.environ and "--parts" not in (argv or sys.argv):
            args.parts = "micro,placement"
    args.parts = [x for x in args.parts.split(",") if x]
    args.modes = [x for x in args.modes.split(",") if x]
    args.placers = [x for x in report.PLACERS if x in args.placers.split(",")]
    return args


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- microbenchmarks ------------------------------------------------------------------------------


def run_micro(*, quick: bool) -> dict[str, Any]:
    from bench import micro_history, micro_ranking, micro_syncplan

    out: dict[str, Any] = {}
    log("micro: ranking 5,000 nodes")
    mixed = micro_ranking.make_nodes(5000, seed=1)
    healthy = [
        replace(n, ready=True, unschedulable=False, taints=(), recent_failures=0, gpu_in_use=0)
        for n in mixed
    ]
    any_arch = replace(micro_ranking.TRAINING_DEMAND, allowed_archs=frozenset({"amd64", "arm64"}))
    cases: dict[str, Callable[[], object]] = {
        "mixed cluster": lambda: micro_ranking.rank_gpu_nodes(
            mixed, demand=micro_ranking.TRAINING_DEMAND
        ),
        "every node accepted": lambda: micro_ranking.rank_gpu_nodes(healthy, demand=any_arch),
        "every node accepted, best read": lambda: (
            micro_ranking.rank_gpu_nodes(healthy, demand=any_arch).best
        ),
    }
    ranking = {}
    for title, fn in cases.items():
        median, best = micro_ranking.timed(fn, repeat=20 if quick else 50)
        ranking[title] = {"median_ms": median, "best_ms": best}
    # The placement path ranks and reads the best node: the target is judged on that case.
    out["ranking"] = {
        "nodes": 5000,
        "cases": ranking,
        "median_ms": ranking["every node accepted, best read"]["median_ms"],
    }

    log("micro: sync plan over 1,000,000 files (10 nodes x 100,000)")
    targets = ["node-0", "node-1"]
    plans = {}
    for name, build in (
        ("cold", micro_syncplan.build_cold),
        ("steady", micro_syncplan.build_steady),
        ("mixed", micro_syncplan.build_mixed),
    ):
        manifests = build(10, 100_000)
        seconds, plan = micro_syncplan._best_of(
            1 if quick else 2,
            functools.partial(
                micro_syncplan.plan_sync,
                manifests,
                targets=targets,
                now=micro_syncplan.NOW,
                unhealthy={"node-9"},
            ),
        )
        plans[name] = {"seconds": seconds, "transfers": len(plan.transfers)}
        del manifests, plan
    out["syncplan"] = {
        "files": 1_000_000,
        "cases": plans,
        "worst_seconds": max(c["seconds"] for c in plans.values()),
    }

    log("micro: batched history writes (100,000 rows in batches of 1,000)")
    history = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, make in (
            ("metric samples", micro_history.metric),
            ("node events", micro_history.node_event),
        ):
            seconds, rate = asyncio.run(
                micro_history.run(
                    Path(tmp) / f"{label[:6]}.db", rows=100_000, batch=1000, make=make
                )
            )
            history[label] = {"seconds": seconds, "rows_per_second": rate}
    out["history"] = {
        "cases": history,
        "min_rows_per_second": min(c["rows_per_second"] for c in history.values()),
    }
    return out


# --- the cluster ----------------------------------------------------------------------------------


def install_crds(sandbox: Sandbox) -> None:
    kubectl = str(find_tool("kubectl"))
    env = {**os.environ, "KUBECONFIG": str(sandbox.kubeconfig)}
    subprocess.run(
        [kubectl, "apply", "--server-side", "-f", str(REPO / "crds")],
        check=True,
        env=env,
        capture_output=True,
    )
    subprocess.run(
        [
            kubectl,
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/selfplayjobs.ringrift.ai",
        ],
        check=True,
        env=env,
        capture_output=True,
    )


async def poll(
    what: str, check: Callable[[], Any], *, timeout: float, interval: float = 0.25
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check() if asyncio.iscoroutinefunction(check) else check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


async def make_namespace(client: KubeClient, name: str) -> None:
    with contextlib.suppress(ApiError):
        await client.create(
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )

    async def has_sa() -> bool:
        try:
            await client.get(f"/api/v1/namespaces/{name}/serviceaccounts/default")
        except ApiError:
            return False
        return True

    await poll(f"the default ServiceAccount of {name}", has_sa, timeout=60)


async def delete_collection(client: KubeClient, path: str, *, grace: int | None = None) -> None:
    """DELETE a collection; deleting thousands of objects can outlast a request's timeout, in
    which case the server goes on and the caller polls for the result."""
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "propagationPolicy": "Background",
    }
    if grace is not None:
        body["gracePeriodSeconds"] = grace
    with contextlib.suppress(TimeoutError, ApiError):
        await client.request("DELETE", path, body=body, request_timeout=300)


async def empty_namespace(client: KubeClient, name: str, *, jobs: bool) -> None:
    """Delete every SelfplayJob and pod of the namespace (pods at once: grace 0) and wait until
    none is left, so the next scenario starts with every GPU free."""
    paths = [pl.JOBS_PATH.format(ns=name)] if jobs else []
    paths.append(pl.PODS_PATH.format(ns=name))
    for path in paths:
        await delete_collection(client, path, grace=0)

        async def gone(path: str = path) -> bool:
            left = await client.get(path, params={"limit": "1"})
            if left["items"]:
                await delete_collection(client, path, grace=0)
                return False
            return True

        await poll(f"{path} to be empty", gone, timeout=600, interval=1.0)
    with contextlib.suppress(ApiError):
        await client.delete(f"/api/v1/namespaces/{name}")


# --- the operator -------------------------------------------------------------------------------


def operator_env(args: argparse.Namespace, sandbox: Sandbox) -> dict[str, str]:
    token = sandbox.directory / "agent-token"
    if not token.exists():
        token.write_text("bench-agent-token\n")
    env = {"RINGRIFT_RESYNC_SECONDS": "30", "RINGRIFT_AGENT_TOKEN_FILE": str(token)}
    if args.workers:
        env["RINGRIFT_WORKERS"] = str(args.workers)
    return env


def operator_status(proc: OperatorProcess) -> dict[str, Any]:
    status: dict[str, Any] = pl.http_json(f"{proc.url}/status")
    return status


async def settle_operator(proc: OperatorProcess, *, timeout: float = 120) -> dict[str, Any]:
    """Wait until the operator's queue is empty, no status it decided is left to write (the
    writes it defers behind placements count for the job), and its request counts stop moving
    for 1 s."""
    last: dict[str, Any] = {}
    stable_since = time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"operator exited:\n{proc.log()[-2000:]}")
        try:
            status = operator_status(proc)
        except (OSError, ValueError):  # busy writing: its /status may time out or reset
            await asyncio.sleep(0.5)
            continue
        counts = status.get("requests") or {}
        reconciler = status["managers"]["reconciler"]
        queue = reconciler["queue"] + reconciler.get("unwritten", 0)
        if counts != last.get("requests") or queue:
            stable_since = time.monotonic()
        elif time.monotonic() - stable_since >= 1.0:
            return status
        last = status
        await asyncio.sleep(0.25)
    return last


def scheduler_requests(sandbox: Sandbox) -> dict[str, float]:
    url = f"https://127.0.0.1:{sandbox.ports['scheduler']}/metrics"
    text = pl.http_json(url, token=sandbox.pki.admin_token(), insecure=True)
    return pl.parse_rest_client_requests(text)


async def settle_scheduler(sandbox: Sandbox, *, timeout: float = 30) -> dict[str, float]:
    last = scheduler_requests(sandbox)
    stable_since = time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        now = scheduler_requests(sandbox)
        if now != last:
            stable_since, last = time.monotonic(), now
        elif time.monotonic() - stable_since >= 1.0:
            break
    return last


def start_profiler(args: argparse.Namespace, pid: int, name: str) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` (wall clock, idle stacks included) into collapsed stacks."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = args.results_dir / f"{args.stamp}-{name}.folded"
    args.results_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--idle",
         "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def stop_profiler(profiler: subprocess.Popen[bytes]) -> None:
    profiler.send_signal(signal.SIGINT)
    try:
        profiler.wait(timeout=30)
    except subprocess.TimeoutExpired:
        profiler.kill()


def start_traced_operator(
    sandbox: Sandbox, *, name: str, trace: Path, env: dict[str, str]
) -> OperatorProcess:
    """``start_operator``, but through ``bench.optrace`` (it needs the repository as cwd)."""
    directory = sandbox.directory / name
    directory.mkdir(parents=True, exist_ok=True)
    trace.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    environ = {
        **os.environ,
        "RINGRIFT_HISTORY_PATH": str(directory / "history.db"),
        "RINGRIFT_HTTP_PORT": str(port),
        **env,
    }
    log_path = directory / "operator.log"
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.optrace",
                "--out",
                str(trace),
                "run",
                f"--kubeconfig={sandbox.kubeconfig}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environ,
            cwd=REPO,
            start_new_session=True,
        )
    proc = OperatorProcess(process, log_path, port)
    wait_started(proc, timeout=60)
    return proc


def summarize_trace(path: Path, result: pl.ScenarioResult) -> dict[str, Any]:
    """The trace of one scenario as p50/p99 of each step of a first placement (from the job's
    create call on this client) and of each kind of call."""
    for _ in range(50):  # written when the operator exits (after the scenario's stop)
        if path.exists():
            break
        time.sleep(0.1)
    try:
        trace = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    steps = ("observed", "reconcile_started", "place_started", "create_started", "bound")
    spans: dict[str, list[float]] = {}
    for key, times in trace["jobs"].items():
        index = pl.index_of(key.split("/", 1)[1])
        if index is None or index not in result.created_at:
            continue
        previous, at = "created", result.created_at[index]
        for step in steps:
            if step not in times:
                break
            spans.setdefault(f"{previous} → {step}", []).append(times[step] - at)
            previous, at = step, times[step]
    return {
        "steps": {k: report.summarize_latencies(v) for k, v in spans.items()},
        "calls": {k: report.summarize_latencies(v) for k, v in trace["durations"].items()},
        "reconciles_per_job": report.per_job(
            sum(trace["reconciles"].values()), len(trace["reconciles"])
        ),
    }


# --- one placement scenario ---------------------------------------------------------------------


async def run_scenario(
    args: argparse.Namespace,
    sandbox: Sandbox,
    client: KubeClient,
    creds: Credentials,
    *,
    placer: str,
    mode: str,
) -> pl.ScenarioResult:
    rate = None if mode == "burst" else args.rate
    ns = f"bench-{placer}-{mode}"
    result = pl.ScenarioResult(placer=placer, mode=mode, rate=rate, jobs=args.jobs, namespace=ns)
    await make_namespace(client, ns)
    template = pl._operator_pod_template()
    specs = parse_node_spec(sandbox.nodes)
    free = {s.name: s.gpus for s in specs if s.gpus}
    ring = list(free)
    cursor = [0]

    def pick_node() -> str:  # the ceiling's "decision": the next node with a free GPU
        for _ in range(len(ring)):
            node = ring[cursor[0] % len(ring)]
            cursor[0] += 1
            if free[node] > 0:
                free[node] -= 1
                return node
        raise RuntimeError("the ceiling client ran out of GPUs")

    async def make(i: int) -> None:
        name = pl.item_name(placer, i)
        result.created_at[i] = time.monotonic()
        try:
            if placer == report.OURS:
                await pl.create_with_retry(
                    client, pl.JOBS_PATH.format(ns=ns), pl.build_selfplay_job(name)
                )
            elif placer == report.REFERENCE:
                await pl.create_with_retry(
                    client, pl.PODS_PATH.format(ns=ns), pl.build_reference_pod(name, template)
                )
            else:
                await pl.create_with_retry(
                    client, pl.PODS_PATH.format(ns=ns), pl.build_ceiling_pod(name, template)
                )
                await client.bind_pod(namespace=ns, pod=name, node=pick_node())
        except Exception as e:
            result.create_errors += 1
            if result.create_errors <= 3:
                log(f"  {placer}: creating {name} failed: {e}")

    proc: OperatorProcess | None = None
    profiler: subprocess.Popen[bytes] | None = None
    trace_file = Path()
    pids = {name: c.process.pid for name, c in sandbox.components.items() if c.process}
    pids["bench client"] = os.getpid()
    if placer == report.OURS:
        if args.trace:
            trace_file = args.results_dir / f"{args.stamp}-trace-{mode}.json"
            proc = start_traced_operator(
                sandbox, name=f"operator-{mode}", trace=trace_file, env=operator_env(args, sandbox)
            )
        else:
            proc = start_operator(sandbox, name=f"operator-{mode}", env=operator_env(args, sandbox))
        pids["operator"] = proc.process.pid
        before = operator_status(proc).get("requests") or {}
        if args.profile:
            profiler = start_profiler(args, proc.process.pid, f"operator-{mode}")
    elif placer == report.REFERENCE:
        before = scheduler_requests(sandbox)
    concurrency = args.ceiling_concurrency if placer == report.CEILING else args.concurrency
    started = time.monotonic()
    try:
        with pl.ProcessSampler(pids) as sampler:
            with pl.BindWatcher(creds, ns, expected=args.jobs, timeout=args.timeout) as watcher:
                creating = asyncio.create_task(
                    pl.create_all(args.jobs, make, rate=rate, concurrency=concurrency)
                )
                last_report = time.monotonic()
                while watcher.count() < args.jobs and time.monotonic() - started < args.timeout:
                    await asyncio.sleep(0.2)
                    if proc is not None and not proc.alive():
                        tail = proc.log().splitlines()[-3:]
                        log(f"  the operator exited (code {proc.process.returncode}): {tail}")
                        result.extra["operator_exited"] = "\n".join(tail)
                        break
                    if time.monotonic() - last_report > 10:
                        last_report = time.monotonic()
                        log(
                            f"  {placer}/{mode}: {len(result.created_at)} created, "
                            f"{watcher.count()} bound"
                        )
                await creating
            if proc is not None and proc.alive():
                status = await settle_operator(proc)
                result.requests = pl.split_requests(
                    pl.diff_counts(before, status.get("requests") or {})
                )
                metrics = pl.http_json(f"{proc.url}/metrics")
                hist = pl.parse_histogram(metrics, "ringrift_placement_latency_seconds")
                if hist.get("count"):
                    result.extra["operator_placement_seconds_mean"] = hist["sum"] / hist["count"]
                result.extra["operator_reconciles"] = status["managers"]["reconciler"]["reconciles"]
            elif placer == report.REFERENCE:
                result.requests = pl.split_requests(
                    pl.diff_counts(before, await settle_scheduler(sandbox))
                )
    finally:
        if profiler is not None:
            stop_profiler(profiler)
        if proc is not None:
            proc.stop()
    if args.trace and proc is not None:
        result.extra["operator_trace"] = summarize_trace(trace_file, result)
    for pod, (seen_at, bound_at, node, decided_at) in watcher.results.items():
        index = pl.index_of(pod)
        if index is not None:
            result.seen[index] = seen_at
            if bound_at is not None:
                result.bound[index] = (bound_at, node)
            if decided_at:
                result.decided[index] = decided_at
    result.cpu, result.rss = sampler.cpu, sampler.peak_rss
    if proc is not None:
        result.rss["operator (VmHWM)"] = sampler.hwm.get("operator", 0.0)
    log(
        f"  {placer}/{mode}: {len(result.bound)}/{args.jobs} bound in "
        f"{time.monotonic() - started:.1f}s; emptying {ns}"
    )
    await empty_namespace(client, ns, jobs=placer == report.OURS)
    return result


# --- settle after restart -----------------------------------------------------------------------


def complete_status(now: str) -> dict[str, Any]:
    return {
        "status": {
            "observedGeneration": 1,
            "phase": "Complete",
            "attempts": 1,
            "conditions": [
                {
                    "type": "Complete",
                    "status": "True",
                    "reason": "PodSucceeded",
                    "message": "created complete by the benchmark",
                    "lastTransitionTime": now,
                    "observedGeneration": 1,
                }
            ],
        }
    }


async def seed_complete_jobs(client: KubeClient, ns: str, count: int, *, concurrency: int) -> None:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = pl.JOBS_PATH.format(ns=ns)

    async def make(i: int) -> None:
        name = f"done-{i:05d}"
        await pl.create_with_retry(client, path, pl.build_selfplay_job(name))
        for attempt in range(10):
            try:
                await client.patch(f"{path}/{name}/status", complete_status(now))
                return
            except ApiError as e:
                if e.status not in (409, 429, 500, 503) or attempt == 9:
                    raise
            await asyncio.sleep(0.1)

    t0 = time.monotonic()
    await pl.create_all(count, make, rate=None, concurrency=concurrency)
    log(f"  seeded {count} Complete SelfplayJobs in {time.monotonic() - t0:.1f}s")


async def measure_settle(
    args: argparse.Namespace, sandbox: Sandbox, *, count: int, name: str
) -> dict[str, Any]:
    """Start the operator; seconds until it has every job cached, reconciled them all and its
    queue is empty."""
    t0 = time.monotonic()
    proc = start_operator(sandbox, name=name, env=operator_env(args, sandbox), wait=False)
    started_at: float | None = None
    result: dict[str, Any] = {"resources": count}
    try:
        with pl.ProcessSampler({"operator": proc.process.pid}, interval=0.1) as sampler:
            deadline = t0 + args.timeout
            while time.monotonic() < deadline:
                if not proc.alive():
                    raise RuntimeError(f"operator exited:\n{proc.log()[-2000:]}")
                try:
                    status = operator_status(proc)
                except (OSError, ValueError):
                    await asyncio.sleep(0.1)
                    continue
                if status.get("started") and started_at is None:
                    started_at = time.monotonic()
                rec = status["managers"]["reconciler"]
                cached = sum((status.get("resources") or {}).get("SelfplayJob", {}).values())
                if cached >= count and rec["reconciles"] >= count and rec["queue"] == 0:
                    result |= {
                        "settle_seconds": time.monotonic() - t0,
                        "reconciles": rec["reconciles"],
                        "requests": status.get("requests"),
                    }
                    break
                await asyncio.sleep(0.1)
            else:
                result["settle_seconds"] = None
        result |= {
            "started_seconds": None if started_at is None else started_at - t0,
            "cpu_seconds": sampler.cpu.get("operator"),
            "peak_rss_mib": sampler.hwm.get("operator"),
        }
    finally:
        proc.stop()
    return result


async def run_restart(
    args: argparse.Namespace, sandbox: Sandbox, client: KubeClient
) -> dict[str, Any]:
    ns = "bench-restart"
    await make_namespace(client, ns)
    log(f"restart: seeding {args.restart_jobs} Complete SelfplayJobs")
    await seed_complete_jobs(client, ns, args.restart_jobs, concurrency=args.concurrency)
    out = {}
    for which in ("first", "restart"):
        log(f"restart: operator start ({which})")
        out[which] = await measure_settle(
            args, sandbox, count=args.restart_jobs, name="operator-restart"
        )
        log(f"  settled in {out[which].get('settle_seconds')}s")
    return out


# --- the run ----------------------------------------------------------------------------------


async def run_cluster_parts(
    args: argparse.Namespace, sandbox: Sandbox, results: dict[str, Any]
) -> None:
    creds = Credentials(
        server=sandbox.server, token=sandbox.pki.admin_token(), ca_file=str(sandbox.pki.ca_cert)
    )
    specs = parse_node_spec(sandbox.nodes)
    power = pl.node_power(specs)
    gpus = {s.name: s.gpus for s in specs}
    async with await KubeClient.connect(creds, max_connections=128) as client:
        if "placement" in args.parts:
            results["placement"] = []
            for mode in args.modes:
                for placer in args.placers:
                    log(f"placement: {placer}, {mode} ({args.jobs} jobs)")
                    r = await run_scenario(args, sandbox, client, creds, placer=placer, mode=mode)
                    process = {
                        report.OURS: "operator",
                        report.REFERENCE: "kube-scheduler",
                        report.CEILING: "bench client",
                    }[placer]
                    results["placement"].append(
                        r.summary(placer_process=process, power=power, gpus=gpus)
                    )
        if "restart" in args.parts:
            results["restart"] = await run_restart(args, sandbox, client)


def git_describe() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = args.stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    node_spec = args.node_spec or pl.build_node_spec(args.nodes)
    specs = parse_node_spec(node_spec)
    capacity = pl.gpu_capacity(specs)
    if "placement" in args.parts and capacity < args.jobs:
        print(
            f"bench: {capacity} GPUs in {node_spec!r} < {args.jobs} jobs; add nodes",
            file=sys.stderr,
        )
        return 2
    results: dict[str, Any] = {
        "meta": {
            "timestamp": stamp,
            "nodes": len(specs),
            "node_spec": node_spec,
            "gpus": capacity,
            "jobs": args.jobs,
            "rate": args.rate,
            "parts": args.parts,
            "modes": args.modes,
            "placers": args.placers,
            "restart_jobs": args.restart_jobs if "restart" in args.parts else None,
            "concurrency": args.concurrency,
            "ceiling_concurrency": args.ceiling_concurrency,
            "operator_workers": args.workers or "default",
            "cpus": os.cpu_count(),
            "git": git_describe(),
            "python": sys.version.split()[0],
        },
    }
    t0 = time.monotonic()
    if "micro" in args.parts:
        results["micro"] = run_micro(quick=args.quick)
    if {"placement", "restart"} & set(args.parts):
        directory = args.sandbox_dir or Path(tempfile.mkdtemp(prefix="ringrift-bench-"))
        log(f"sandbox: {len(specs)} nodes ({node_spec}), {capacity} GPUs, in {directory}")
        # Kubernetes' default node-monitor grace (50 s), not the e2e sandbox's short one: under a
        # burst, KWOK's lease renewals for hundreds of nodes lag past 20 s, the nodes turn
        # NotReady, and every placer's pods on them would count as lost.
        sandbox = Sandbox(
            directory, nodes=node_spec, simulate_workloads=False, agents=False, start_timeout=300,
            node_monitor_grace_seconds=50,
        )  # fmt: skip
        try:
            sandbox.start()
            log(f"sandbox up in {sandbox.timings['start']:.1f}s")
            install_crds(sandbox)
            asyncio.run(run_cluster_parts(args, sandbox, results))
        except Exception as e:  # keep what was measured so far
            log(f"the run failed: {e!r}")
            results["meta"]["error"] = repr(e)
        finally:
            sandbox.stop()
            if args.sandbox_dir is None:
                shutil.rmtree(directory, ignore_errors=True)
    results["meta"]["wall_seconds"] = time.monotonic() - t0
    args.results_dir.mkdir(parents=True, exist_ok=True)
    base = args.results_dir / stamp
    base.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    markdown = report.render_markdown(results)
    if report.plot_latency_cdf(results, base.with_suffix(".png")):
        markdown += f"\nLatency CDF: `{base.with_suffix('.png').name}`\n"
    base.with_suffix(".md").write_text(markdown)
    print()
    print(markdown)
    print(f"results: {base}.json / .md / .png")
    return 1 if "error" in results["meta"] else 0


if __name__ == "__main__":
    sys.exit(main())
