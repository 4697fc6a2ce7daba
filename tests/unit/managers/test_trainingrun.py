"""The TrainingRun decision, as tables: run state + its pods (+ its config before it starts) →
action, pods to start or delete, status and Events. Also the game counts behind readiness."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ringrift_operator.api.contract import JobKind
from ringrift_operator.api.trainingrun import TrainingRun, parse_trainingrun
from ringrift_operator.managers.pods import PodPhase
from ringrift_operator.managers.selfplayjob import NodeState
from ringrift_operator.managers.trainingrun import (
    Action,
    ConfigView,
    Decision,
    JobGames,
    PodRole,
    PodView,
    Record,
    count_games_from_jobs,
    count_games_in_files,
    decide_trainingrun,
    gauntlet_policy,
    placed,
    pod_roles,
    unplaceable,
)

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
CREATED = (NOW - timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
SHA = "a" * 64
MODEL = {"uri": "file:///data/models/hex8_2p/r-tr-1-a1-g1.pt", "sha256": SHA, "generation": 1}


def run(**spec: Any) -> TrainingRun:
    return parse_trainingrun(
        {
            "apiVersion": "ringrift.ai/v1alpha1",
            "kind": "TrainingRun",
            "metadata": {
                "name": "r",
                "namespace": "ns",
                "uid": "u1",
                "generation": 1,
                "creationTimestamp": CREATED,
            },
            "spec": {
                "board": "hex8",
                "players": 2,
                "minNewGames": 20,
                "cooldownSeconds": 300,
                **spec,
            },
        }
    )


def view(**kw: Any) -> ConfigView:
    base: dict[str, Any] = {"total_games": 30, "games_at_last_training": 0, "data_hash": "h1",
                            "fitting_nodes": 4}  # fmt: skip
    return ConfigView(**(base | kw))


def decide(r: TrainingRun, pods: Sequence[PodView] = (), config: ConfigView | None = None,
           now: datetime = NOW) -> Decision:  # fmt: skip
    return decide_trainingrun(r, pods={p.name: p for p in pods}, config=config, now=now)


def advance(r: TrainingRun, d: Decision) -> TrainingRun:
    return r.model_copy(update={"status": d.status})


def started(r: TrainingRun) -> TrainingRun:
    """The run after its gates passed and its export pod was placed on node n1."""
    d = decide(r, config=view())
    d = placed(r, d.status, starts=d.starts, nodes=["n1"], why="", now=NOW)
    return advance(r, d)


def ok(name: str, node: str = "n1", **result: Any) -> PodView:
    return PodView(name=name, node=node, phase=PodPhase.SUCCEEDED, exit_code=0,
                   message=json.dumps(result) if result else None)  # fmt: skip


def failed(name: str, code: int = 1, node: str = "n1") -> PodView:
    return PodView(name=name, node=node, phase=PodPhase.FAILED, exit_code=code,
                   message=json.dumps({"message": "boom"}))  # fmt: skip


def running_pod(name: str, node: str = "n1", state: NodeState = NodeState.READY) -> PodView:
    return PodView(name=name, node=node, phase=PodPhase.RUNNING, node_state=state)


def trained(r: TrainingRun) -> TrainingRun:
    """The run after export and training succeeded and the gauntlet was placed."""
    r = started(r)
    d = decide(r, [ok("r-ex-1")])
    r = advance(r, placed(r, d.status, starts=d.starts, nodes=["n1"], why="", now=NOW))
    d = decide(r, [ok("r-ex-1"), ok("r-tr-1", model=MODEL)])
    assert d.action is Action.EVALUATE
    nodes = [f"g{i}" for i in range(len(d.starts))]
    return advance(r, placed(r, d.status, starts=d.starts, nodes=nodes, why="", now=NOW))


def conditions(d: Decision) -> dict[str, str]:
    return {c.type: c.status.value for c in d.status.conditions}


# --- gates ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "spec", "reason", "action"),
    [
        pytest.param(view(total_games=19), {}, "NotEnoughGames", Action.NONE, id="19-of-20"),
        pytest.param(view(total_games=20), {}, "Exporting", Action.EXPORT, id="exactly-20"),
        pytest.param(
            view(total_games=50, games_at_last_training=40),
            {},
            "NotEnoughGames",
            Action.NONE,
            id="10-new-since-last-training",
        ),
        pytest.param(
            view(total_games=30, games_at_last_training=50),
            {},
            "NotEnoughGames",
            Action.NONE,
            id="pruned-below-baseline",
        ),
        pytest.param(
            view(recent_hashes=frozenset({"h1"})),
            {},
            "DuplicateData",
            Action.NONE,
            id="duplicate-hash",
        ),
        pytest.param(
            view(recent_hashes=frozenset({"h0"})), {}, "Exporting", Action.EXPORT, id="other-hash"
        ),
        pytest.param(
            view(last_started_at=NOW - timedelta(seconds=60)),
            {},
            "Cooldown",
            Action.NONE,
            id="started-60s-ago",
        ),
        pytest.param(
            view(last_started_at=NOW - timedelta(seconds=301)),
            {},
            "Exporting",
            Action.EXPORT,
            id="cooldown-over",
        ),
        pytest.param(
            view(last_started_at=NOW - timedelta(seconds=60)),
            {"cooldownSeconds": 0},
            "Exporting",
            Action.EXPORT,
            id="no-cooldown",
        ),
        pytest.param(view(fitting_nodes=0), {}, "WaitingForNode", Action.NONE, id="no-node"),
        pytest.param(
            view(fitting_nodes=1),
            {"nodes": 2},
            "WaitingForNode",
            Action.NONE,
            id="gang-of-2-one-fits",
        ),
        pytest.param(
            view(fitting_nodes=2), {"nodes": 2}, "Exporting", Action.EXPORT, id="gang-of-2-fits"
        ),
        pytest.param(
            view(total_games=5, recent_hashes=frozenset({"h1"})),
            {},
            "NotEnoughGames",
            Action.NONE,
            id="data-before-dedupe",
        ),
        pytest.param(
            view(recent_hashes=frozenset({"h1"}), fitting_nodes=0),
            {},
            "DuplicateData",
            Action.NONE,
            id="dedupe-before-node",
        ),
        pytest.param(
            view(last_started_at=NOW, fitting_nodes=0),
            {},
            "Cooldown",
            Action.NONE,
            id="cooldown-before-node",
        ),
    ],
)
def test_gates(config: ConfigView, spec: dict[str, Any], reason: str, action: Action) -> None:
    d = decide(run(**spec), config=config)
    assert d.status.reason == reason
    assert d.action is action


@pytest.mark.parametrize(
    ("config", "condition", "phase"),
    [
        (view(total_games=1), "DataReady", "Pending"),
        (view(last_started_at=NOW), "DataReady", "Pending"),
        (view(fitting_nodes=0), "DataReady", "Pending"),
        (view(recent_hashes=frozenset({"h1"})), "Skipped", "Skipped"),
        (view(), "DataReady", "Exporting"),
    ],
    ids=["data", "cooldown", "node", "skipped", "ready"],
)
def test_each_gate_has_its_condition_and_phase(
    config: ConfigView, condition: str, phase: str
) -> None:
    d = decide(run(), config=config)
    assert d.status.phase.value == phase
    assert condition in conditions(d)


def test_passing_the_gates_records_the_start_and_asks_for_the_export() -> None:
    d = decide(run(), config=view(total_games=33, data_hash="abc"))
    assert d.record is Record.STARTED
    assert [(s.name, s.kind, s.attempt) for s in d.starts] == [("r-ex-1", JobKind.EXPORT, 1)]
    assert (d.status.data_hash, d.status.games_used) == ("abc", 33)
    assert d.status.start_time == "2026-11-28T12:00:00Z"
    assert conditions(d) == {"DataReady": "True", "Exported": "False"}
    assert [e.reason for e in d.events] == ["DataReady"]


def test_a_skipped_run_gets_an_event_and_is_terminal() -> None:
    d = decide(run(), config=view(recent_hashes=frozenset({"h1"})))
    assert [e.reason for e in d.events] == ["Skipped"]
    assert d.status.completion_time is not None
    again = decide(advance(run(), d), config=view())
    assert again.action is Action.NONE
    assert again.status == d.status


def test_waiting_events_only_on_transitions() -> None:
    r = run()
    d = decide(r, config=view(total_games=3))
    assert [e.reason for e in d.events] == ["WaitingForData"]
    d2 = decide(advance(r, d), config=view(total_games=4))
    assert d2.events == ()
    d3 = decide(advance(r, d2), config=view(last_started_at=NOW))
    assert [e.reason for e in d3.events] == ["CoolingDown"]


def test_the_waiting_message_says_how_many_games() -> None:
    d = decide(run(), config=view(total_games=12))
    assert "12 new games of hex8_2p" in (d.status.message or "")
    assert "20 needed" in (d.status.message or "")
    assert d.requeue_after is not None


def test_cooldown_requeues_when_it_ends() -> None:
    d = decide(run(), config=view(last_started_at=NOW - timedelta(seconds=200)))
    assert d.requeue_after == pytest.approx(100)


def test_gang_message_names_nodes_needed_and_found() -> None:
    d = decide(run(nodes=3, gpus=2), config=view(fitting_nodes=2))
    assert "needs 3 node(s) with 2 free GPU(s)" in (d.status.message or "")
    assert "found 2" in (d.status.message or "")


def test_no_config_view_yet_waits() -> None:
    d = decide(run())
    assert d.action is Action.NONE
    assert d.status.phase.value == "Pending"


def test_pending_deadline_expires_the_run() -> None:
    d = decide(run(pendingDeadlineSeconds=5), config=view(total_games=1))
    assert d.status.phase.value == "Expired"
    assert [e.reason for e in d.events] == ["Expired"]


# --- export and training -------------------------------------------------------------------------


def test_placing_the_export_records_pod_and_attempts() -> None:
    r = started(run())
    assert r.status.pods == ["r-ex-1"]
    assert r.status.attempts == 1
    assert r.status.phase.value == "Exporting"


@pytest.mark.parametrize(
    ("pods", "action", "reason"),
    [
        pytest.param([], Action.EXPORT, "PodFailed", id="placed-pod-gone-is-a-failure"),
        pytest.param([running_pod("r-ex-1")], Action.NONE, "Exporting", id="running"),
        pytest.param([ok("r-ex-1")], Action.TRAIN, "Training", id="succeeded"),
        pytest.param([failed("r-ex-1")], Action.EXPORT, "PodFailed", id="failed-retry"),
        pytest.param([failed("r-ex-1", code=2)], Action.DELETE, "BadInput", id="bad-input"),
        pytest.param(
            [running_pod("r-ex-1", state=NodeState.NOT_READY)],
            Action.EXPORT,
            "NodeLost",
            id="node-lost",
        ),
    ],
)
def test_export_step(pods: list[PodView], action: Action, reason: str) -> None:
    d = decide(started(run()), pods)
    assert d.action is action
    assert d.status.reason == reason


def test_a_lost_export_pod_is_deleted_and_retried_as_attempt_2() -> None:
    d = decide(started(run()), [running_pod("r-ex-1", state=NodeState.MISSING)])
    assert d.delete == ("r-ex-1",)
    assert [s.name for s in d.starts] == ["r-ex-2"]
    assert "NodeLost" in [e.reason for e in d.events]


def test_export_success_moves_to_training_with_an_event() -> None:
    d = decide(started(run()), [ok("r-ex-1", message="41 samples")])
    assert conditions(d)["Exported"] == "True"
    assert d.status.phase.value == "Training"
    assert [s.name for s in d.starts] == ["r-tr-1"]
    assert [e.reason for e in d.events] == ["Exported"]


def test_distributed_training_starts_every_rank() -> None:
    d = decide(started(run(nodes=3, gpus=1)), [ok("r-ex-1")])
    assert [(s.name, s.shard) for s in d.starts] == [
        ("r-tr-1-0", 0), ("r-tr-1-1", 1), ("r-tr-1-2", 2),
    ]  # fmt: skip


def test_placing_training_records_nodes_in_rank_order() -> None:
    r = started(run(nodes=2, gpus=1))
    d = decide(r, [ok("r-ex-1")])
    p = placed(r, d.status, starts=d.starts, nodes=["a", "b"], why="", now=NOW)
    assert (p.status.node, p.status.nodes, p.status.pods) == ("a", ["a", "b"],
                                                              ["r-tr-1-0", "r-tr-1-1"])  # fmt: skip
    assert p.status.attempts == 3


def training(r: TrainingRun) -> TrainingRun:
    d = decide(r, [ok("r-ex-1")])
    nodes = [f"n{i}" for i in range(len(d.starts))]
    return advance(r, placed(r, d.status, starts=d.starts, nodes=nodes, why="", now=NOW))


def test_training_success_records_the_model_and_starts_the_gauntlet() -> None:
    r = training(started(run(gauntlet={"games": 30, "shards": 3})))
    d = decide(r, [ok("r-ex-1"), ok("r-tr-1", model=MODEL)])
    assert d.status.model is not None
    assert d.status.model.uri == MODEL["uri"]
    assert conditions(d)["Trained"] == "True"
    assert conditions(d)["GauntletPassed"] == "Unknown"
    assert d.status.phase.value == "Evaluating"
    assert [(s.name, s.games) for s in d.starts] == [
        ("r-ga-1-0", 10), ("r-ga-1-1", 10), ("r-ga-1-2", 10),
    ]  # fmt: skip


def test_training_success_without_a_model_is_a_failure() -> None:
    r = training(started(run()))
    d = decide(r, [ok("r-ex-1"), ok("r-tr-1", message="no model")])
    assert d.status.reason == "PodFailed"
    assert [s.name for s in d.starts] == ["r-tr-2"]


def test_one_failed_rank_deletes_the_others_and_retries_the_gang() -> None:
    r = training(started(run(nodes=2, gpus=1)))
    d = decide(r, [ok("r-ex-1"), failed("r-tr-1-1", node="n1"), running_pod("r-tr-1-0")])
    assert d.delete == ("r-tr-1-0",)
    assert [s.name for s in d.starts] == ["r-tr-2-0", "r-tr-2-1"]
    assert d.action is Action.TRAIN


def test_training_in_progress_waits() -> None:
    r = training(started(run()))
    d = decide(r, [ok("r-ex-1"), running_pod("r-tr-1")])
    assert d.action is Action.NONE
    assert d.status.reason == "Training"


@pytest.mark.parametrize(
    ("backoff", "pods", "phase"),
    [
        (0, [failed("r-tr-1")], "Failed"),
        (1, [failed("r-tr-1")], "Training"),
        (1, [failed("r-tr-1"), failed("r-tr-2")], "Failed"),
        (2, [failed("r-tr-1"), failed("r-tr-2")], "Training"),
        (1, [failed("r-tr-2")], "Failed"),  # attempt 2 implies attempt 1 failed
    ],
    ids=["limit-0", "limit-1-first", "limit-1-second", "limit-2-second", "gaps-count"],
)
def test_backoff_limit_counts_failures_across_attempts(
    backoff: int, pods: list[PodView], phase: str
) -> None:
    r = training(started(run(backoffLimit=backoff)))
    d = decide(r, [ok("r-ex-1"), *pods])
    assert d.status.phase.value == phase


def test_export_retries_count_against_the_training_step() -> None:
    r = started(run(backoffLimit=1))
    d = decide(r, [failed("r-ex-1"), ok("r-ex-2")])
    r = advance(r, placed(r, d.status, starts=d.starts, nodes=["n1"], why="", now=NOW))
    d = decide(r, [failed("r-ex-1"), ok("r-ex-2"), failed("r-tr-1")])
    assert d.status.phase.value == "Failed"
    assert d.status.reason == "BackoffLimitExceeded"
    assert "BackoffLimitExceeded" in [e.reason for e in d.events]


def test_bad_input_fails_at_once_whatever_the_backoff_limit() -> None:
    r = training(started(run(backoffLimit=5)))
    d = decide(r, [ok("r-ex-1"), failed("r-tr-1", code=2)])
    assert d.status.phase.value == "Failed"
    assert d.status.reason == "BadInput"


def test_active_deadline_fails_a_started_run_and_deletes_its_pods() -> None:
    r = training(started(run(activeDeadlineSeconds=60)))
    d = decide(r, [ok("r-ex-1"), running_pod("r-tr-1")], now=NOW + timedelta(seconds=61))
    assert d.status.reason == "DeadlineExceeded"
    assert d.delete == ("r-tr-1",)


# --- gauntlet and promotion ----------------------------------------------------------------------


def shard(name: str, w: int, l: int, d: int = 0, node: str = "g0") -> PodView:  # noqa: E741
    return ok(name, node=node, wins=w, losses=l, draws=d)


@pytest.mark.parametrize(
    ("spec", "results", "phase", "reason", "record"),
    [
        pytest.param({}, (80, 20), "Promoted", "Promoted", Record.PROMOTED, id="80-promoted"),
        pytest.param({}, (20, 80), "Complete", "NotPromoted", Record.EVALUATED, id="20-rejected"),
        pytest.param({}, (55, 45), "Promoted", "Promoted", Record.PROMOTED, id="55-at-threshold"),
        pytest.param({}, (54, 46), "Complete", "NotPromoted", Record.EVALUATED, id="54-below"),
        pytest.param(
            {"autoPromote": False},
            (80, 20),
            "Complete",
            "AutoPromoteDisabled",
            Record.EVALUATED,
            id="passed-no-auto-promote",
        ),
        pytest.param(
            {"gauntlet": {"games": 100, "promotionWinRatePercent": 90}},
            (80, 20),
            "Complete",
            "NotPromoted",
            Record.EVALUATED,
            id="threshold-90",
        ),
    ],
)
def test_gauntlet_outcome(spec: dict[str, Any], results: tuple[int, int], phase: str,
                          reason: str, record: Record) -> None:  # fmt: skip
    r = trained(run(**({"gauntlet": {"games": 100}} | spec)))
    d = decide(r, [ok("r-ex-1"), ok("r-tr-1", model=MODEL), shard("r-ga-1", *results)])
    assert d.status.phase.value == phase
    assert d.status.reason == reason
    assert d.record is record
    assert d.status.completion_time is not None


def test_gauntlet_result_is_summed_over_shards_with_elo() -> None:
    r = trained(run(gauntlet={"games": 30, "shards": 3}))
    pods = [ok("r-ex-1"), ok("r-tr-1", model=MODEL), shard("r-ga-1-0", 8, 2),
            shard("r-ga-1-1", 9, 1), shard("r-ga-1-2", 7, 2, 1)]  # fmt: skip
    d = decide(r, pods)
    g = d.status.gauntlet
    assert g is not None
    assert (g.wins, g.losses, g.draws, g.shards_completed) == (24, 5, 1, 3)
    assert g.win_rate_percent == 81
    assert g.elo_delta is not None
    assert g.elo_low is not None
    assert g.elo_high is not None
    assert g.elo_low < g.elo_delta < g.elo_high
    assert conditions(d)["GauntletPassed"] == "True"
    assert [e.reason for e in d.events] == ["Evaluated", "Promoted"]


def test_partial_gauntlet_waits_and_shows_progress() -> None:
    r = trained(run(gauntlet={"games": 30, "shards": 3}))
    pods = [ok("r-ex-1"), ok("r-tr-1", model=MODEL), shard("r-ga-1-0", 8, 2),
            running_pod("r-ga-1-1"), running_pod("r-ga-1-2")]  # fmt: skip
    d = decide(r, pods)
    assert d.action is Action.NONE
    assert d.status.gauntlet is not None
    assert d.status.gauntlet.shards_completed == 1
    assert d.status.phase.value == "Evaluating"


def test_a_failed_shard_is_retried_alone() -> None:
    r = trained(run(gauntlet={"games": 30, "shards": 3}))
    pods = [ok("r-ex-1"), ok("r-tr-1", model=MODEL), shard("r-ga-1-0", 8, 2),
            failed("r-ga-1-1"), running_pod("r-ga-1-2")]  # fmt: skip
    d = decide(r, pods)
    assert d.action is Action.EVALUATE
    assert [(s.name, s.shard, s.games) for s in d.starts] == [("r-ga-2-1", 1, 10)]
    assert d.delete == ()
    assert conditions(d)["GauntletPassed"] == "Unknown"


def test_a_shard_not_placed_yet_is_asked_for_again() -> None:
    r = trained(run(gauntlet={"games": 30, "shards": 3}))
    r = r.model_copy(update={"status": r.status.model_copy(update={"pods": ["r-ga-1-0"]})})
    d = decide(r, [ok("r-ex-1"), ok("r-tr-1", model=MODEL), running_pod("r-ga-1-0")])
    assert [s.name for s in d.starts] == ["r-ga-1-1", "r-ga-1-2"]


def test_gauntlet_pods_accumulate_in_status() -> None:
    r = trained(run(gauntlet={"games": 30, "shards": 3}))
    assert r.status.pods == ["r-ga-1-0", "r-ga-1-1", "r-ga-1-2"]
    d = decide(r, [ok("r-ex-1"), ok("r-tr-1", model=MODEL), failed("r-ga-1-1"),
                   running_pod("r-ga-1-0"), running_pod("r-ga-1-2")])  # fmt: skip
    p = placed(r, d.status, starts=d.starts, nodes=["g3"], why="", now=NOW)
    assert p.status.pods == ["r-ga-1-0", "r-ga-1-1", "r-ga-1-2", "r-ga-2-1"]


def test_a_terminal_run_deletes_its_live_pods_and_nothing_else() -> None:
    r = trained(run())
    d = decide(r, [ok("r-ex-1"), ok("r-tr-1", model=MODEL), shard("r-ga-1", 80, 20)])
    done = advance(r, d)
    again = decide(done, [running_pod("r-ga-9")])
    assert again.action is Action.DELETE
    assert again.delete == ("r-ga-9",)
    assert decide(done, [shard("r-ga-1", 80, 20)]).action is Action.NONE


@pytest.mark.parametrize(("games", "min_games"), [(10, 10), (49, 49), (50, 50), (100, 50)], ids=str)
def test_policy_min_games_never_exceeds_the_runs_gauntlet(games: int, min_games: int) -> None:
    assert gauntlet_policy(run(gauntlet={"games": games})).min_games == min_games


# --- placement results ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "condition", "state"),
    [
        (JobKind.EXPORT, "Exported", "False"),
        (JobKind.TRAINING, "Trained", "False"),
        (JobKind.GAUNTLET, "GauntletPassed", "Unknown"),
    ],
    ids=["export", "training", "gauntlet"],
)
def test_unplaceable_says_which_step_waits(kind: JobKind, condition: str, state: str) -> None:
    r = started(run())
    d = unplaceable(r, r.status, kind=kind, why="no GPUs", now=NOW)
    assert d.status.reason == "WaitingForNode"
    assert conditions(d)[condition] == state
    assert [e.reason for e in d.events] == ["WaitingForNode"]
    again = unplaceable(advance(r, d), d.status, kind=kind, why="no GPUs", now=NOW)
    assert again.events == ()


def test_pod_roles_name_every_pod_of_the_run() -> None:
    roles = pod_roles(run(nodes=2, gpus=1, gauntlet={"games": 4, "shards": 2}, backoffLimit=0))
    assert roles["r-ex-1"] == PodRole(JobKind.EXPORT, 1)
    assert roles["r-tr-2-1"] == PodRole(JobKind.TRAINING, 2, 1)
    assert roles["r-ga-1-1"] == PodRole(JobKind.GAUNTLET, 1, 1)
    assert "r-ex-3" not in roles


# --- game counts ---------------------------------------------------------------------------------


def test_counting_from_jobs_sums_games_per_node() -> None:
    count = count_games_from_jobs([JobGames("a", 10, node="n1"), JobGames("b", 5, node="n1"),
                                   JobGames("c", 7, node="n2"), JobGames("d", 3)])  # fmt: skip
    assert count.total == 25
    assert dict(count.by_node) == {"n1": 15, "n2": 7}


@pytest.mark.parametrize(
    ("files", "jobs", "total", "by_node"),
    [
        pytest.param(
            {"n1": ["games/c/a-a1-0.jsonl"]}, [JobGames("a", 12)], 12, {"n1": 12}, id="one-file"
        ),
        pytest.param(
            {
                "n1": ["games/c/a-a1-0.jsonl", "games/c/a-a1-1.jsonl"],
                "n2": ["games/c/a-a1-1.jsonl"],
            },
            [JobGames("a", 800)],
            800,
            {"n1": 800, "n2": 400},
            id="synced-copy-counts-once",
        ),
        pytest.param(
            {"n1": ["games/c/x-a1-0.jsonl"]},
            [JobGames("a", 12)],
            1,
            {"n1": 1},
            id="unknown-file-is-one-game",
        ),
        pytest.param(
            {"n1": ["games/c/a-a2-0.jsonl"]},
            [JobGames("a", 12, attempt=2)],
            12,
            {"n1": 12},
            id="second-attempt",
        ),
        pytest.param(
            {"n1": ["games/c/a-a1-0.jsonl"]},
            [JobGames("a", 12, attempt=2)],
            1,
            {"n1": 1},
            id="failed-attempt-files-not-the-jobs-games",
        ),
        pytest.param({"n1": []}, [JobGames("a", 12)], 0, {}, id="no-files"),
    ],
)
def test_counting_from_files(files: dict[str, list[str]], jobs: list[JobGames], total: int,
                             by_node: dict[str, int]) -> None:  # fmt: skip
    count = count_games_in_files(files, jobs)
    assert count.total == total
    assert dict(count.by_node) == by_node


def test_an_unsettled_view_changes_nothing_and_looks_again_soon() -> None:
    r = run()
    d = decide(r, config=view(settled=False))
    assert d.status == r.status
    assert d.action is Action.NONE
    assert d.requeue_after == 1.0


def test_jobs_whose_files_the_manifests_do_not_show_are_unseen() -> None:
    count = count_games_in_files(
        {"n1": ["games/c/a-a1-0.jsonl"]}, [JobGames("a", 12), JobGames("b", 8)]
    )
    assert count.unseen == ("b",)
    assert count.total == 12


def test_a_gauntlet_still_waiting_for_nodes_warns_once() -> None:
    r = trained(run(gauntlet={"games": 30, "shards": 3}))
    pods = [ok("r-ex-1"), ok("r-tr-1", model=MODEL)]
    r = r.model_copy(update={"status": r.status.model_copy(update={"pods": []})})
    d = decide(r, pods)
    first = unplaceable(r, d.status, kind=JobKind.GAUNTLET, why="no GPUs", now=NOW)
    assert [e.reason for e in first.events] == ["WaitingForNode"]
    r = advance(r, first)
    d = decide(r, pods)
    assert d.action is Action.EVALUATE
    again = unplaceable(r, d.status, kind=JobKind.GAUNTLET, why="no GPUs", now=NOW)
    assert again.events == ()


@pytest.mark.parametrize(
    ("pods", "avoid"),
    [
        ([failed("r-tr-1", node="bad")], ("bad",)),
        ([running_pod("r-tr-1", node="gone", state=NodeState.MISSING)], ("gone",)),
    ],
    ids=["failed-pod", "lost-node"],
)
def test_a_retry_avoids_the_node_that_failed(pods: list[PodView], avoid: tuple[str, ...]) -> None:
    r = training(started(run()))
    d = decide(r, [ok("r-ex-1"), *pods])
    assert d.avoid == avoid


def test_a_retried_shard_avoids_its_failed_node() -> None:
    r = trained(run(gauntlet={"games": 20, "shards": 2}))
    d = decide(r, [ok("r-ex-1"), ok("r-tr-1", model=MODEL), failed("r-ga-1-0", node="g0"),
                   running_pod("r-ga-1-1", node="g1")])  # fmt: skip
    assert d.avoid == ("g0",)
