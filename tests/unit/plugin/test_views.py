"""The plugin's views: aggregations over plain objects, checked with small fixture builders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ringrift_operator.api.common import LABEL_MANAGED_BY, LABEL_OWNER_KIND, LABEL_OWNER_NAME
from ringrift_operator.api.settings import AutopilotSettings
from ringrift_operator.plugin import views
from ringrift_operator.plugin.views import ClusterObjects

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

PRODUCTS = {
    "h100": ("NVIDIA-H100-80GB-HBM3", 81559),
    "a100": ("NVIDIA-A100-SXM4-80GB", 81920),
    "l40s": ("NVIDIA-L40S", 46068),
    "rtx3090": ("NVIDIA-GeForce-RTX-3090", 24576),
}


def ts(seconds_ago: float = 0) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def node(
    name: str, gpu: str | None = None, *, gpus: int = 4, ready: bool = True, arch: str = "amd64",
    taints: list[dict[str, str]] | None = None,
) -> dict[str, Any]:  # fmt: skip
    labels = {"kubernetes.io/arch": arch}
    capacity = {"cpu": "32", "memory": "128Gi"}
    if gpu:
        product, memory = PRODUCTS[gpu]
        labels |= {"nvidia.com/gpu.product": product, "nvidia.com/gpu.memory": str(memory),
                   "nvidia.com/gpu.count": str(gpus)}  # fmt: skip
        capacity["nvidia.com/gpu"] = str(gpus)
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints or []},
        "status": {
            "allocatable": capacity,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def pod(name: str, node_name: str, *, gpus: int = 1, phase: str = "Running",
        owner: str = "", ns: str = "ns") -> dict[str, Any]:  # fmt: skip
    labels = {}
    if owner:
        labels = {LABEL_MANAGED_BY: "ringrift-operator", LABEL_OWNER_KIND: "SelfplayJob",
                  LABEL_OWNER_NAME: owner}  # fmt: skip
    resources = {"requests": {"nvidia.com/gpu": str(gpus)}} if gpus else {}
    return {
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": labels,
            "creationTimestamp": ts(60),
        },
        "spec": {"nodeName": node_name, "containers": [{"name": "w", "resources": resources}]},
        "status": {"phase": phase},
    }


def spj(name: str, *, phase: str | None = None, board: str = "square8", players: int = 2,
        engine: str = "heuristic", games: int = 0, age: float = 60,
        status: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    st = dict(status or {})
    if phase:
        st["phase"] = phase
    if games:
        st["gamesCompleted"] = games
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "creationTimestamp": ts(age),
        },
        "spec": {
            "board": board,
            "players": players,
            "engineMode": engine,
            "games": 10,
            "gpus": 1,
        },
        "status": st,
    }


def tr(name: str, *, config: str = "square8_2p", phase: str = "Pending", age: float = 60,
       generation: int | None = None, elo_delta: int | None = None, done: float | None = None,
       ready: tuple[str, str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    board, players = config.rsplit("_", 1)
    status: dict[str, Any] = {"phase": phase, "config": config}
    if generation is not None:
        status["model"] = {"uri": f"file:///m/{generation}", "sha256": "a" * 64,
                           "generation": generation}  # fmt: skip
    if elo_delta is not None:
        status["gauntlet"] = {"wins": 6, "losses": 4, "draws": 0, "eloDelta": elo_delta}
    if done is not None:
        status["completionTime"] = ts(done)
    if ready is not None:
        s, reason, message = ready
        status["conditions"] = [{"type": "DataReady", "status": s, "reason": reason,
                                 "message": message}]  # fmt: skip
    return {
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": ts(age)},
        "spec": {"board": board, "players": int(players[:-1])},
        "status": status,
    }


def lease(name: str = "ringrift-operator", *, holder: str = "op-1", renewed_ago: float = 2,
          transitions: int = 3, ns: str = "ringrift-system") -> dict[str, Any]:  # fmt: skip
    renew = (NOW - timedelta(seconds=renewed_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 15,
            "renewTime": renew,
            "leaseTransitions": transitions,
        },
    }


# --- nodes --------------------------------------------------------------------------------------


def test_nodes_are_ranked_by_gpu_power_then_cpu_nodes_last() -> None:
    objs = ClusterObjects(
        nodes=[
            node("cpu-0"),
            node("l40s-0", "l40s"),
            node("h100-0", "h100", gpus=8),
            node("a100-0", "a100"),
        ],
    )
    rows = views.nodes_view(objs)
    assert [r["name"] for r in rows] == ["h100-0", "a100-0", "l40s-0", "cpu-0"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    powers = [r["powerScore"] for r in rows]
    assert powers[0] > powers[1] > powers[2] > powers[3] == 0
    assert rows[0]["tier"] == 1
    assert rows[3]["tier"] is None


def test_busy_nodes_keep_their_power_rank_and_say_why_they_take_no_job() -> None:
    objs = ClusterObjects(
        nodes=[node("h100-0", "h100", gpus=2), node("a100-0", "a100", gpus=2)],
        pods=[
            pod("p1", "h100-0", owner="j1"),
            pod("p2", "h100-0", owner="j2"),
            pod("done", "a100-0", phase="Succeeded", owner="j3"),
        ],
    )
    h100, a100 = views.nodes_view(objs)
    assert (h100["name"], h100["gpusFree"], h100["jobs"], h100["accepts"]) == (
        "h100-0",
        0,
        2,
        False,
    )
    assert "0/2 GPUs free, 1 needed" in h100["why"]
    # A finished pod holds nothing.
    assert (a100["gpusFree"], a100["jobs"], a100["accepts"], a100["why"]) == (2, 0, True, "")


def test_a_not_ready_node_is_listed_and_rejected() -> None:
    (row,) = views.nodes_view(ClusterObjects(nodes=[node("h100-0", "h100", ready=False)]))
    assert row["ready"] is False
    assert row["accepts"] is False
    assert "not Ready" in row["why"]


def test_gpu_usage_counts_ready_nodes_only() -> None:
    objs = ClusterObjects(
        nodes=[node("a", "h100", gpus=8), node("b", "a100", gpus=4, ready=False), node("c")],
        pods=[
            pod("p1", "a", gpus=3, owner="j"),
            pod("p2", "a", gpus=1),
            pod("p3", "b", gpus=2),
        ],
    )
    usage = views.gpu_usage(objs)
    assert usage | {} == {"nodes": 3, "readyNodes": 2, "gpuNodes": 1, "total": 8, "busy": 4,
                          "idle": 4, "operatorPods": 1}  # fmt: skip


# --- status -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leases", "name", "expected"),
    [
        pytest.param([lease("other")], None, None, id="no-operator-lease"),
        pytest.param([lease(), lease("other")], None, "ringrift-operator", id="by-name-hint"),
        pytest.param([lease("x", ns="a"), lease("x", ns="b")], "b/x", "b/x", id="explicit"),
        pytest.param([lease("x", ns="a")], "b/x", None, id="explicit-missing"),
    ],
)
def test_the_operator_lease_is_found(leases: list[Any], name: str | None,
                                     expected: str | None) -> None:  # fmt: skip
    found = views.find_operator_lease(leases, name=name)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        meta = found["metadata"]
        assert expected in (meta["name"], f"{meta['namespace']}/{meta['name']}")


def test_of_two_operator_leases_the_one_renewed_last_wins() -> None:
    old = lease("a-ringrift-operator", holder="old", renewed_ago=600)
    new = lease("b-ringrift-operator", holder="new", renewed_ago=1)
    assert views.find_operator_lease([new, old])["spec"]["holderIdentity"] == "new"  # type: ignore[index]


def test_leader_epoch_and_expiry_come_from_the_lease() -> None:
    live = views.leader_view(lease(transitions=4, renewed_ago=2), now=NOW)
    assert (live["leader"], live["epoch"], live["expired"], live["renewedAgo"]) == (
        "op-1",
        4,
        False,
        2.0,
    )
    assert views.leader_view(lease(renewed_ago=60), now=NOW)["expired"] is True
    assert views.leader_view(None, now=NOW)["leader"] is None


def test_status_counts_jobs_by_phase_in_the_api_order() -> None:
    objs = ClusterObjects(
        selfplayjobs=[
            spj("a", phase="Running"),
            spj("b", phase="Complete"),
            spj("c", phase="Complete"),
            spj("d"),
        ],
        leases=[lease()],
    )
    view = views.status_view(objs, now=NOW)
    assert list(view["selfplayJobs"]) == [
        "Pending", "Running", "Suspended", "Complete", "Failed", "Expired"]  # fmt: skip
    assert view["selfplayJobs"]["Pending"] == 1  # no status yet counts as Pending
    assert view["selfplayJobs"]["Complete"] == 2
    assert view["leadership"]["leader"] == "op-1"


def test_training_readiness_per_config_uses_the_newest_run_and_the_games_made() -> None:
    objs = ClusterObjects(
        selfplayjobs=[
            spj("a", phase="Complete", games=300),
            spj("b", phase="Complete", games=200),
            spj("c", board="hex8", phase="Complete", games=50),
        ],
        trainingruns=[
            tr("old", phase="Promoted", age=900, ready=("True", "DataReady", "500 new games")),
            tr("new", age=10, ready=("False", "NotEnoughGames", "120/500 new games")),
        ],
    )
    rows = {r["config"]: r for r in views.training_readiness(objs)}
    assert list(rows) == ["square8_2p", "hex8_2p"]
    sq = rows["square8_2p"]
    assert (sq["gamesProduced"], sq["trainingRun"], sq["dataReady"], sq["reason"]) == (
        500, "ns/new", "False", "NotEnoughGames")  # fmt: skip
    assert rows["hex8_2p"]["trainingRun"] is None
    assert rows["hex8_2p"]["gamesProduced"] == 50


def test_sync_backlog_sums_missing_files() -> None:
    plans = [
        {"metadata": {"name": "b", "namespace": "ns"},
         "status": {"state": "Syncing", "missingFiles": 7}},
        {"metadata": {"name": "a", "namespace": "ns"}, "status": {}},
    ]  # fmt: skip
    backlog = views.sync_backlog(ClusterObjects(syncplans=plans))
    assert backlog["missingFiles"] == 7
    states = [(p["syncPlan"], p["state"]) for p in backlog["plans"]]
    assert states == [("ns/a", "Idle"), ("ns/b", "Syncing")]


# --- Elo and configs ----------------------------------------------------------------------------


def test_elo_replays_the_ratings_the_operator_gives() -> None:
    runs = [
        tr("g2", phase="Complete", generation=2, elo_delta=-30, done=50),  # not promoted
        tr("g1", phase="Promoted", generation=1, elo_delta=100, done=100),
        tr("g3", phase="Promoted", generation=3, elo_delta=40, done=10),
        tr("h1", config="hex8_2p", phase="Promoted", generation=1, elo_delta=20, done=5),
        tr("waiting"),  # no gauntlet: no point
    ]
    points = views.elo_points(runs)
    sq = [
        (p["generation"], p["rating"], p["promoted"]) for p in points if p["config"] == "square8_2p"
    ]
    # g1 is rated from 1500; g2 from g1 (the promoted baseline); g3 too, since g2 was not promoted.
    assert sq == [(1, 1600.0, True), (2, 1570.0, False), (3, 1640.0, True)]
    current = views.current_elo(points)
    assert current["square8_2p"].rating == 1640.0
    assert current["square8_2p"].recent_gain == 40.0
    assert current["hex8_2p"].rating == 1520.0


def test_configs_show_the_weight_components_and_shares() -> None:
    settings = AutopilotSettings(
        priorities={"hex8_2p": 8}, board_overrides={"hex8_2p": 2},
        enabled_configs=["square8_2p", "hex8_2p"],
    )  # fmt: skip
    jobs = [spj(f"s{i}", age=100 - i) for i in range(3)] + [spj("h", board="hex8", age=1)]
    runs = [tr("g1", phase="Promoted", generation=1, elo_delta=50, done=1)]
    view = views.configs_view(ClusterObjects(selfplayjobs=jobs, trainingruns=runs),
                              settings=settings)  # fmt: skip
    rows = {r["config"]: r for r in view["configs"]}
    assert list(rows) == ["square8_2p", "hex8_2p"]
    sq, hx = rows["square8_2p"], rows["hex8_2p"]
    assert (sq["priority"], sq["elo"], sq["eloBoost"]) == (8, 1550, 0.0)
    # hex8 has no rated model: the scheduler's +2 for unrated configs.
    assert (hx["priority"], hx["override"], hx["eloBoost"], hx["elo"]) == (8, 2, 2.0, None)
    assert hx["weight"] == 12.0
    assert sq["weight"] == 8.0
    assert sq["sharePercent"] + hx["sharePercent"] == pytest.approx(100.0, abs=0.2)
    assert (sq["recentJobs"], hx["recentJobs"], sq["recentSharePercent"]) == (3, 1, 75.0)
    assert view["diversity"]["windowJobs"] == 4
    assert view["diversity"]["mostPicked"] == "square8_2p"
    assert view["diversity"]["byEngineMode"] == {"heuristic": 4}


def test_recent_picks_keep_the_newest_within_the_window() -> None:
    jobs = [spj(f"j{i}", board="hex8" if i >= 8 else "square8", age=100 - i) for i in range(10)]
    metrics = views.recent_picks(jobs, window=2)
    assert [p.config for p in metrics.recent] == ["hex8_2p", "hex8_2p"]
    assert metrics.total_picks == 10


# --- explain ------------------------------------------------------------------------------------


def test_explain_shows_the_recorded_decision_and_the_ranking_now() -> None:
    job = spj("j", phase="Running", status={
        "node": "h100-0", "powerScore": 1000, "attempts": 2,
        "conditions": [{"type": "Scheduled", "status": "True", "reason": "NodeSelected",
                        "message": "attempt 2: pod j-sp-2 bound to h100-0 (power score 1000): "
                                   "…; 2 candidate(s), 1 rejected; runner-up a100-0 (power 700)",
                        "lastTransitionTime": ts(30)}],
        "recentAttempts": [{"attempt": 1, "node": "l40s-0", "pod": "j-sp-1", "result": "Failed",
                            "reason": "PodFailed"},
                           {"attempt": 2, "node": "h100-0", "pod": "j-sp-2",
                            "result": "Running"}],
    })  # fmt: skip
    objs = ClusterObjects(
        nodes=[node("h100-0", "h100", gpus=1), node("a100-0", "a100"), node("cpu-0")],
        pods=[pod("j-sp-2", "h100-0", owner="j")],  # the job's own pod holds the only H100
    )
    events = [
        {"type": "Normal", "reason": "Scheduled", "message": "bound", "lastTimestamp": ts(30)},
        {"type": "Warning", "reason": "AttemptFailed", "message": "x", "lastTimestamp": ts(90)},
    ]
    view = views.explain_view(job, events=events, objs=objs)
    assert view["decision"]["reason"] == "NodeSelected"
    assert "runner-up a100-0" in view["decision"]["message"]
    assert [a["node"] for a in view["history"]] == ["l40s-0", "h100-0"]
    assert [e["reason"] for e in view["events"]] == ["AttemptFailed", "Scheduled"]  # by time
    # Its own pod does not count against it: its node is still the first choice.
    assert view["now"]["nodeRank"] == 1
    assert [r["node"] for r in view["now"]["top"]] == ["h100-0", "a100-0"]
    assert view["now"]["rejected"] == 1  # the CPU node: no GPUs


def test_explain_names_why_the_node_would_be_rejected_now() -> None:
    job = spj("j", phase="Running", status={"node": "h100-0"})
    objs = ClusterObjects(nodes=[node("h100-0", "h100", ready=False), node("a100-0", "a100")])
    view = views.explain_view(job, events=[], objs=objs)
    assert view["now"]["nodeRank"] is None
    assert "not Ready" in view["now"]["nodeRejectedBecause"]


def test_the_job_demand_follows_its_placement() -> None:
    job = spj("j")
    job["spec"]["placement"] = {
        "minGpuClass": "a100", "nodeSelector": {"zone": "x"},
        "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
    }  # fmt: skip
    demand = views.job_demand(job)
    assert demand.min_gpu_class is not None
    assert demand.min_gpu_class.value == "a100"
    assert dict(demand.node_selector) == {"zone": "x"}
    assert demand.tolerations[0].key == "k"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (119, "119s"), (120, "2m"), (7199, "119m"), (7200, "2h"), (172800, "2d")],
)
def test_human_age(seconds: float, text: str) -> None:
    assert views.human_age(seconds) == text
