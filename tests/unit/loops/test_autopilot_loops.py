"""The autopilot loops' ticks over a fake API client: training sync creates one run per ready
config even when a tick is repeated before the watch shows its run, self-healing posts
HostOffline / NodeRecovered and moves the reputation, and every loop is registered by name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from ringrift_operator.api.settings import (
    AutopilotSettings,
    MonitoringSettings,
    OperatorSettings,
    SelfHealingSettings,
    TrainingSyncSettings,
)
from ringrift_operator.kube.cache import ClusterCache
from ringrift_operator.kube.client import ApiError, KubeClient
from ringrift_operator.loops.autopilot import Autopilot
from ringrift_operator.loops.monitoring import Monitoring
from ringrift_operator.loops.selfhealing import SelfHealing
from ringrift_operator.loops.trainingsync import TrainingSync
from ringrift_operator.reconcilers.deps import Deps, workload_settings
from ringrift_operator.state.history import HistoryStore
from ringrift_operator.state.rows import EloRating, ModelRecord

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class FakeClient:
    """Creates, deletes and Events as an API server would answer them (names unique)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.deleted: list[str] = []

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path.endswith("/events"):
            self.events.append(body)
            return body
        key = f"{path}/{body['metadata']['name']}"
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", key)
        self.objects[key] = body
        return body

    async def delete(self, path: str, **_: Any) -> dict[str, Any]:
        self.deleted.append(path)
        return {}


def make_deps(client: FakeClient, autopilot: AutopilotSettings) -> Deps:
    settings = OperatorSettings(autopilot=autopilot)
    return Deps(client=cast(KubeClient, client), cache=ClusterCache(), settings=settings,
                workload=workload_settings(settings), clock=lambda: NOW)  # fmt: skip


def selfplayjob(name: str, games: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "games", "uid": f"uid-{name}"},
        "spec": {"board": "hex8", "players": 2},
        "status": {"phase": "Complete", "gamesCompleted": games, "node": "n1",
                   "completionTime": "2026-01-01T11:00:00Z"},
    }  # fmt: skip


SYNC = AutopilotSettings(
    enabled=True, namespace="games", enabled_configs=["hex8_2p", "square8_2p"],
    training=TrainingSyncSettings(enabled=True, spec={"minNewGames": 30, "cooldownSeconds": 0,
                                                      "gauntlet": {"games": 4}}),
)  # fmt: skip


def runs(client: FakeClient) -> list[dict[str, Any]]:
    return [o for k, o in client.objects.items() if "/trainingruns/" in k]


async def test_training_sync_creates_one_run_per_ready_config() -> None:
    client = FakeClient()
    deps = make_deps(client, SYNC)
    deps.resources[("SelfplayJob", "games", "a")] = selfplayjob("a", 20)
    sync = TrainingSync(deps, SYNC)
    await sync.sync()
    assert runs(client) == []  # 20 of 30 games
    assert "20 new games" in sync.verdicts["hex8_2p"].reason
    deps.resources[("SelfplayJob", "games", "b")] = selfplayjob("b", 15)
    await sync.sync()
    await sync.sync()  # the watch has not shown the run yet: it counts as active
    [run] = runs(client)
    assert run["metadata"]["name"] == "auto-train-hex8-2p-1"
    assert run["metadata"]["labels"]["ringrift.ai/autopilot"] == "true"
    assert run["metadata"]["annotations"]["ringrift.ai/epoch"] == "0"
    assert run["spec"] == {"board": "hex8", "players": 2, "minNewGames": 30,
                           "cooldownSeconds": 0, "gauntlet": {"games": 4}}  # fmt: skip
    # A tick interrupted after its create, run again by a new leader that has not seen the run:
    # same name, AlreadyExists, still one run.
    again = TrainingSync(deps, SYNC)
    await again.sync()
    assert len(runs(client)) == 1
    assert again.created == 0


async def test_training_sync_waits_for_the_active_run_then_names_the_next() -> None:
    client = FakeClient()
    deps = make_deps(client, SYNC)
    deps.resources[("SelfplayJob", "games", "a")] = selfplayjob("a", 40)
    active = {"metadata": {"name": "auto-train-hex8-2p-3", "namespace": "games",
                           "labels": {"ringrift.ai/autopilot": "true"}},
              "spec": {"board": "hex8", "players": 2}, "status": {"phase": "Training"}}  # fmt: skip
    deps.resources[("TrainingRun", "games", "auto-train-hex8-2p-3")] = active
    sync = TrainingSync(deps, SYNC)
    await sync.sync()
    assert runs(client) == []
    assert sync.verdicts["hex8_2p"].reason == "1 run(s) active"
    active["status"] = {"phase": "Complete", "gamesUsed": 10, "completionTime": "x"}
    await sync.sync()
    assert [r["metadata"]["name"] for r in runs(client)] == ["auto-train-hex8-2p-4"]


def node(name: str, ready: bool) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "labels": {}},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                   "allocatable": {"cpu": "8", "memory": "32Gi"}},
    }  # fmt: skip


async def test_self_healing_handles_host_offline_and_recovery() -> None:
    client = FakeClient()
    settings = SelfHealingSettings(host_offline_penalty=3, recovery_forgiveness=2)
    deps = make_deps(client, AutopilotSettings(healing=settings))
    healing = SelfHealing(deps, settings)
    deps.cache.upsert_node(node("n1", True))
    await healing.heal()
    assert client.events == []
    deps.cache.upsert_node(node("n1", False))
    await healing.heal()
    await healing.heal()  # still offline: nothing new
    [offline] = client.events
    assert (offline["reason"], offline["type"]) == ("HostOffline", "Warning")
    assert offline["involvedObject"] == {"apiVersion": "v1", "kind": "Node", "name": "n1",
                                         "uid": "uid-n1"}  # fmt: skip
    assert deps.cache.recent_failures("n1") == 3
    deps.cache.upsert_node(node("n1", True))
    await healing.heal()
    assert [e["reason"] for e in client.events] == ["HostOffline", "NodeRecovered"]
    assert deps.cache.recent_failures("n1") == 1
    assert healing.status()["nodes_recovered"] == 1


@pytest.mark.parametrize("enabled", [True, False])
def test_every_loop_is_registered_by_name(enabled: bool) -> None:
    deps = make_deps(FakeClient(), AutopilotSettings(enabled=enabled))
    loops = {spec.name: spec for spec in Autopilot(deps, deps.settings.autopilot).loops()}
    assert set(loops) == {
        "manifest-collection", "elo-sync", "job-reaper", "idle-detection", "queue-population",
        "self-healing", "predictive-monitoring", "training-sync",
    }  # fmt: skip
    assert loops["idle-detection"].enabled is enabled
    assert loops["self-healing"].enabled
    assert not loops["training-sync"].enabled  # training sync is off by default


def operator_pod(name: str, *, created: str, phase: str, started: str | None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "games", "uid": f"uid-{name}",
                     "creationTimestamp": created,
                     "labels": {"app.kubernetes.io/managed-by": "ringrift-operator",
                                "ringrift.ai/owner-kind": "SelfplayJob",
                                "ringrift.ai/owner-name": "job"},
                     "ownerReferences": [{"uid": "uid-job", "controller": True}]},
        "spec": {"nodeName": "n1", "containers": []},
        "status": {"phase": phase, **({"startTime": started} if started else {})},
    }  # fmt: skip


async def test_self_healing_deletes_stuck_pods_with_an_event_on_the_owner() -> None:
    client = FakeClient()
    settings = SelfHealingSettings(pending_pod_deadline_seconds=600,
                                   running_pod_deadline_seconds=3600)  # fmt: skip
    deps = make_deps(client, AutopilotSettings(healing=settings))
    for pod in (
        operator_pod("stuck", created="2026-01-01T11:00:00Z", phase="Pending",
                     started="2026-01-01T11:00:01Z"),  # pulling its image for an hour
        operator_pod("fine", created="2026-01-01T11:55:00Z", phase="Pending", started=None),
        operator_pod("hung", created="2026-01-01T10:00:00Z", phase="Running",
                     started="2026-01-01T10:00:05Z"),
        operator_pod("busy", created="2026-01-01T11:30:00Z", phase="Running",
                     started="2026-01-01T11:30:05Z"),
    ):  # fmt: skip
        deps.cache.upsert_pod(pod)
    await SelfHealing(deps, settings).heal()
    assert sorted(client.deleted) == [
        "/api/v1/namespaces/games/pods/hung", "/api/v1/namespaces/games/pods/stuck",
    ]  # fmt: skip
    assert {e["reason"] for e in client.events} == {"StuckPodDeleted"}
    assert {e["involvedObject"]["uid"] for e in client.events} == {"uid-job"}
    assert any("PodNeverStarted" in e["message"] for e in client.events)
    assert any("PodNoProgress" in e["message"] for e in client.events)


async def test_monitoring_warns_once_before_the_pending_queue_crosses_its_threshold() -> None:
    client = FakeClient()
    settings = MonitoringSettings(min_samples=3, horizon_seconds=600, realert_seconds=3600,
                                  pending_jobs_threshold=20)  # fmt: skip
    deps = make_deps(client, AutopilotSettings(monitoring=settings))
    seen: dict[str, float | None] = {}
    deps.metrics.prediction = lambda signal, seconds: seen.__setitem__(signal, seconds)
    clock = [NOW]
    deps.clock = lambda: clock[0]
    monitoring = Monitoring(deps, settings, "games")
    for tick in range(6):  # two more Pending jobs a minute: 20 reached in ~5 more minutes
        for i in range(2):
            deps.resources[("SelfplayJob", "games", f"j{tick}-{i}")] = {"status": {}}
        clock[0] = NOW + timedelta(minutes=tick)
        await monitoring.monitor()
    [event] = client.events
    assert (event["reason"], event["type"]) == ("PredictedThresholdCrossing", "Warning")
    assert event["involvedObject"]["kind"] == "Namespace"
    assert "pending_queue" in event["message"]
    assert seen["pending_queue"] is not None
    assert 0 < seen["pending_queue"] <= 600
    assert seen["failure_rate"] is None  # nothing finished: flat at 0
    assert monitoring.status()["signals"]["pending_queue"]["samples"] == 6


async def test_elo_sync_reads_the_history_store_into_the_scheduler_weights(tmp_path: Path) -> None:
    now = NOW.timestamp()
    settings = AutopilotSettings(
        enabled_configs=["hex8_2p", "square8_2p"], elo_stagnation_window_seconds=3600
    )
    deps = make_deps(FakeClient(), settings)
    store = await HistoryStore.open(tmp_path / "history.db")
    try:
        deps.history = store
        await store.record_many([
            ModelRecord("old", "hex8_2p", 1, "s3://m/old.pt", "ab" * 32, now - 7200),
            EloRating("old", "hex8_2p", 1300.0, 40, now - 5000),
            EloRating("old", "hex8_2p", 1310.0, 80, now - 60),  # +10 in the window: stagnating
            EloRating("best", "square8_2p", 1700.0, 40, now - 60),
        ])  # fmt: skip
        await store.promote_model(model_id="old", now=now - 100)
        pilot = Autopilot(deps, deps.settings.autopilot)
        before = {w.config: w.elo_boost for w in pilot.weights()}
        await pilot.elo_sync.sync()
    finally:
        await store.close()
    assert pilot.ratings["hex8_2p"].rating == 1310.0
    assert pilot.ratings["hex8_2p"].recent_gain == 10.0
    assert pilot.ratings["square8_2p"].recent_gain is None  # rated too recently to judge
    assert pilot.elo_sync.status()["ratings"]["hex8_2p"]["model"] == "old"
    after = {w.config: w.elo_boost for w in pilot.weights()}
    assert before["hex8_2p"] == before["square8_2p"]  # unrated alike
    assert after["hex8_2p"] > after["square8_2p"]  # lagging and stagnating: more self-play
