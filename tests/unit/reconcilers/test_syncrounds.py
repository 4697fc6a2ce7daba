"""Manifest collection and SyncPlan rounds against real agents served in-process: concurrent
collection where one failing peer never fails the rest, a whole round (plan, pulls, verify), a
round after convergence that moves nothing, cancellation, and the data-plane metrics."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web

from ringrift_operator.agent.scanner import Scanner
from ringrift_operator.agent.server import build_app
from ringrift_operator.api.settings import OperatorSettings
from ringrift_operator.managers.syncplan import RoundPhase, RoundView
from ringrift_operator.managers.syncplanning import SyncSettings
from ringrift_operator.reconcilers.deps import Deps, Metrics
from ringrift_operator.reconcilers.manifests import ManifestStore, agent_endpoints
from ringrift_operator.reconcilers.syncrounds import RoundInputs, SyncRounds
from ringrift_operator.web.metrics import install_data_plane_metrics, render

TOKEN = "0123456789abcdef0123456789abcdef"
CONFIG = "square8_2p"

Serve = Callable[[str], Awaitable[str]]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    """Serve an agent for a node over ``tmp_path/<node>``; returns its URL."""
    runners: list[web.AppRunner] = []

    async def start(node: str) -> str:
        data = tmp_path / node
        data.mkdir(exist_ok=True)
        runner = web.AppRunner(
            build_app(scanner=Scanner(data, node=node), token=TOKEN), shutdown_timeout=1
        )
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def store() -> AsyncIterator[ManifestStore]:
    s = ManifestStore(token=TOKEN)
    yield s
    await s.close()


def write_game(root: Path, node: str, name: str, content: bytes, config: str = CONFIG) -> str:
    path = root / node / "games" / config / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return hashlib.sha256(content).hexdigest()


def held(root: Path, node: str) -> dict[str, str]:
    base = root / node / "games" / CONFIG
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(base.glob("*"))}


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


class RecordingMetrics(Metrics):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.sync_pending = lambda *a: self.calls.append(("pending", a))
        self.sync_moved = lambda *a: self.calls.append(("moved", a))
        self.sync_pull = lambda *a: self.calls.append(("pull", a))


async def run_round(
    rounds: SyncRounds,
    store: ManifestStore,
    endpoints: dict[str, str],
    targets: tuple[str, ...],
    *,
    number: int = 1,
    metrics: Metrics | None = None,
) -> RoundView:
    inputs = RoundInputs(
        namespace="ns",
        name="p",
        uid="u1",
        configs=(CONFIG,),
        settings=SyncSettings(max_files_per_job=2),
        targets=targets,
        endpoints=endpoints,
    )
    view = RoundView(number=number, generation=1, started_at=datetime.now(UTC))
    rounds.start(
        inputs, view, store=store, clock=lambda: datetime.now(UTC), metrics=metrics or Metrics()
    )
    for _ in range(200):
        current = rounds.view("u1")
        assert current is not None
        if current.phase is RoundPhase.DONE:
            return current
        await asyncio.sleep(0.05)
    raise AssertionError("round did not finish")


async def test_collection_skips_a_failing_peer_and_keeps_only_games(
    serve: Serve, store: ManifestStore, tmp_path: Path
) -> None:
    write_game(tmp_path, "a", "g1", b"one")
    (tmp_path / "a" / "models").mkdir()
    (tmp_path / "a" / "models" / "m.pt").write_bytes(b"model")
    endpoints = {"a": await serve("a"), "b": await serve("b"), "down": closed_port_url()}
    got = await store.collect(endpoints, fresher_than=0)
    assert set(got.manifests) == {"a", "b"}
    assert "down" in got.errors
    assert list(got.manifests["a"].files) == [f"games/{CONFIG}/g1.jsonl"]
    assert store.errors() == {"down": got.errors["down"]}
    inventory = store.inventory(CONFIG)
    assert inventory.files_on("a") == 1
    assert inventory.distinct_files == 1
    # Fresh enough: kept, not fetched again; newer wanted: fetched again.
    again = await store.collect({"a": endpoints["a"]}, fresher_than=0)
    assert again.manifests["a"] is got.manifests["a"]
    newer = await store.collect({"a": endpoints["a"]}, fresher_than=store.clock() + 0.001)
    assert newer.manifests["a"] is not got.manifests["a"]


async def test_a_node_served_by_another_nodes_agent_is_an_error(
    serve: Serve, store: ManifestStore
) -> None:
    got = await store.collect({"x": await serve("y")}, fresher_than=0)
    assert "serves node 'y'" in got.errors["x"]


def test_agent_endpoints_come_from_ready_annotated_nodes() -> None:
    def node(ready: str, url: str | None) -> dict[str, Any]:
        annotations = {"ringrift.ai/agent-endpoint": url} if url else {}
        return {
            "metadata": {"annotations": annotations},
            "status": {"conditions": [{"type": "Ready", "status": ready}]},
        }

    nodes = {
        "a": node("True", "http://a:1/"),
        "b": node("False", "http://b:1"),
        "c": node("True", None),
    }
    assert agent_endpoints(nodes) == {"a": "http://a:1"}
    assert agent_endpoints(nodes, ready_only=False) == {"a": "http://a:1", "b": "http://b:1"}


async def test_a_round_brings_every_target_the_games_then_moves_nothing(
    serve: Serve, store: ManifestStore, tmp_path: Path
) -> None:
    for i in range(3):
        write_game(tmp_path, "s1", f"a{i}", f"a{i}".encode() * 100)
    write_game(tmp_path, "s2", "b0", b"b0" * 100)
    write_game(tmp_path, "s2", "other", b"x", config="hex8_2p")
    endpoints = {n: await serve(n) for n in ("s1", "s2", "t1", "t2")}
    rounds, metrics = SyncRounds(), RecordingMetrics()
    view = await run_round(rounds, store, endpoints, ("t1", "t2"), metrics=metrics)
    assert view.outcome is not None
    assert view.outcome.ok, view.outcome.message
    want = held(tmp_path, "s1") | held(tmp_path, "s2")
    assert held(tmp_path, "t1") == want
    assert held(tmp_path, "t2") == want
    assert not (tmp_path / "t1" / "games" / "hex8_2p").exists(), "only spec.configs"
    assert view.files_done == 8
    assert all(t.files <= 2 for t in view.transfers)
    assert ("pending", ("ns", "p", 0, 0)) in metrics.calls
    assert sum(a[2] for k, a in metrics.calls if k == "moved") == 8

    second = await run_round(rounds, store, endpoints, ("t1", "t2"), number=2)
    assert second.outcome is not None
    assert second.outcome.ok
    assert second.transfers == ()
    await rounds.close()


async def test_an_unreachable_peer_makes_the_round_retry_but_the_rest_moves(
    serve: Serve, store: ManifestStore, tmp_path: Path
) -> None:
    write_game(tmp_path, "s1", "a0", b"a0")
    endpoints = {"s1": await serve("s1"), "t1": await serve("t1"), "s2": closed_port_url()}
    view = await run_round(SyncRounds(), store, endpoints, ("t1",))
    assert view.outcome is not None
    assert (view.outcome.ok, view.outcome.reason.value) == (False, "PeerUnreachable")
    assert held(tmp_path, "t1") == held(tmp_path, "s1")
    assert next(p for p in view.peers if p.node == "s2").error


async def test_no_targets_and_no_agents_are_retries_not_failures(store: ManifestStore) -> None:
    no_targets = await run_round(SyncRounds(), store, {}, ())
    assert no_targets.outcome is not None
    assert no_targets.outcome.reason.value == "NoTargets"
    no_agents = await run_round(SyncRounds(), store, {"t1": closed_port_url()}, ("t1",))
    assert no_agents.outcome is not None
    assert no_agents.outcome.reason.value == "NoPeers"


async def test_cancelling_stops_the_round(serve: Serve, store: ManifestStore) -> None:
    gate = asyncio.Event()

    class SlowStore(ManifestStore):
        async def collect(self, *a: Any, **kw: Any) -> Any:
            await gate.wait()
            return await super().collect(*a, **kw)

    slow, rounds = SlowStore(token=TOKEN), SyncRounds()
    inputs = RoundInputs(
        namespace="ns",
        name="p",
        uid="u1",
        configs=(CONFIG,),
        settings=SyncSettings(),
        targets=("t1",),
        endpoints={},
    )
    rounds.start(
        inputs,
        RoundView(number=1, generation=1, started_at=datetime.now(UTC)),
        store=slow,
        clock=lambda: datetime.now(UTC),
        metrics=Metrics(),
    )
    task = rounds._rounds["u1"].task
    assert task is not None
    await asyncio.sleep(0.01)
    rounds.cancel("u1")
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rounds.view("u1") is None
    await slow.close()


def test_the_data_plane_metrics_render_with_units_in_their_names() -> None:
    deps = Deps(
        client=cast(Any, None),
        cache=cast(Any, None),
        settings=OperatorSettings(),
        workload=cast(Any, None),
    )
    install_data_plane_metrics(deps)
    deps.metrics.sync_pending("ns", "p", 3, 300)
    deps.metrics.sync_moved("ns", "p", 2, 200)
    deps.metrics.sync_pull("ns", "p", "succeeded")
    deps.metrics.manifest_error("n1", "refused")
    text = render(deps.registry).decode()
    for line in (
        'ringrift_syncplan_pending_files{namespace="ns",syncplan="p"} 3.0',
        'ringrift_syncplan_pending_bytes{namespace="ns",syncplan="p"} 300.0',
        'ringrift_syncplan_synced_files_total{namespace="ns",syncplan="p"} 2.0',
        'ringrift_syncplan_synced_bytes_total{namespace="ns",syncplan="p"} 200.0',
        'ringrift_syncplan_pulls_total{namespace="ns",outcome="succeeded",syncplan="p"} 1.0',
        'ringrift_agent_manifest_errors_total{node="n1"} 1.0',
    ):
        assert line in text
    assert "ringrift_agent_manifest_age_seconds" in text
    deps.metrics.sync_forget("ns", "p")
    assert 'syncplan="p"' not in render(deps.registry).decode()
    assert deps.store.token_file == Path("/var/run/ringrift/agent-token")
