"""The TrainingRun reconciler on the real API server: gated by new games, cooldown, duplicate
data and capacity; export then training where the games are; distributed training placed as a
gang or not at all; a gauntlet over several nodes; promotion into the registry, which the next
SelfplayJob of the config then plays with; retries and failure.

Every test uses a board config no other e2e module uses: the nodes' data directories outlive a
test's namespace, and games of a config from elsewhere would count towards its readiness.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from operator_support import GROUP, VERSION, events_of, spj
from ringrift_sandbox.simulator import load_rules, rules_path, set_rules
from tests_support import poll

pytestmark = pytest.mark.usefixtures("operator")
PLURAL = "trainingruns"
WIN_RATE = "RINGRIFT_SAMPLE_WIN_RATE_PERCENT"


@pytest.fixture(scope="module")
def custom(api_client: Any) -> Any:
    return client.CustomObjectsApi(api_client)


@pytest.fixture
def rules(sandbox: Any, namespace: str) -> Iterator[Any]:
    """Add simulator rules scoped to this test's namespace; removed afterwards."""
    path = rules_path(sandbox.directory)

    def add(**rule: Any) -> None:
        current = [r.model_dump(by_alias=True, exclude_none=True) for r in load_rules(path)]
        set_rules(sandbox.directory, [{"namespace": namespace, **rule}, *current])

    yield add
    set_rules(sandbox.directory, [r for r in load_rules(path) if r.namespace != namespace])


def tr(name: str, board: str, players: int, **spec: Any) -> dict[str, Any]:
    """A TrainingRun body: 20 new games, no cooldown, a 10-game gauntlet on one pod."""
    gauntlet = {"games": 10, "shards": 1, "opponents": ["heuristic", "random"],
                **spec.pop("gauntlet", {})}  # fmt: skip
    body_spec = {"board": board, "players": players, "minNewGames": 20, "cooldownSeconds": 0,
                 "gauntlet": gauntlet, **spec}  # fmt: skip
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingRun",
            "metadata": {"name": name}, "spec": body_spec}  # fmt: skip


def create(custom: Any, namespace: str, plural: str, body: dict[str, Any]) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)


def selfplay(custom: Any, namespace: str, name: str, board: str, players: int, **spec: Any) -> None:
    create(custom, namespace, "selfplayjobs", spj(name, board=board, players=players, **spec))


def status_of(custom: Any, namespace: str, name: str, plural: str = PLURAL) -> dict[str, Any]:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    return dict(obj.get("status") or {})


def wait_run(custom: Any, namespace: str, name: str, until: Any, *, timeout: float = 60,
             what: str = "", plural: str = PLURAL) -> dict[str, Any]:  # fmt: skip
    return poll(lambda: status_of(custom, namespace, name, plural), until=until, timeout=timeout,
                what=what or f"{plural} {namespace}/{name}")  # fmt: skip


def phase(*phases: str) -> Any:
    return lambda s: s.get("phase") in phases


def condition(status: dict[str, Any], type: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions", []) if c["type"] == type)


def pods_by_kind(core: Any, namespace: str, run: str) -> dict[str, list[Any]]:
    pods = core.list_namespaced_pod(
        namespace, label_selector=f"ringrift.ai/owner-name={run},ringrift.ai/owner-kind=TrainingRun"
    ).items
    kinds: dict[str, list[Any]] = {}
    for pod in sorted(pods, key=lambda p: p.metadata.name):
        kinds.setdefault(pod.metadata.labels["ringrift.ai/job-kind"], []).append(pod)
    return kinds


def env_of(pod: Any) -> dict[str, str]:
    return {e.name: e.value for e in pod.spec.containers[0].env}


def history(sandbox: Any, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    with sqlite3.connect(sandbox.directory / "operator" / "history.db") as db:
        return list(db.execute(sql, params))


def test_waits_for_games_exports_trains_where_they_are_and_promotes(
    custom: Any, core: Any, namespace: str, rules: Any, sandbox: Any
) -> None:
    rules(selector="ringrift.ai/job-kind=gauntlet", env={WIN_RATE: "80"})
    create(custom, namespace, PLURAL, tr("promote", "square8", 4, minMemoryGiB=8))
    pending = wait_run(custom, namespace, "promote",
                       lambda s: s.get("reason") == "NotEnoughGames")  # fmt: skip
    assert pending["phase"] == "Pending"
    assert condition(pending, "DataReady")["status"] == "False"
    assert not pods_by_kind(core, namespace, "promote")

    selfplay(custom, namespace, "games-a", "square8", 4, games=12)
    done = wait_run(custom, namespace, "games-a", phase("Complete"), plural="selfplayjobs")
    still = wait_run(custom, namespace, "promote", lambda s: "12 new games" in s.get("message", ""))
    assert still["phase"] == "Pending", "12 of 20 games is not enough"

    selfplay(custom, namespace, "games-b", "square8", 4, games=12)
    status = wait_run(custom, namespace, "promote", phase("Promoted", "Complete", "Failed"),
                      timeout=90)  # fmt: skip
    assert status["phase"] == "Promoted", status
    assert status["gamesUsed"] == 24
    assert status["gauntlet"]["winRatePercent"] == 80
    assert status["gauntlet"]["eloDelta"] > 0
    assert status["model"]["uri"].startswith("file:///data/models/square8_4p/")
    # Training ran where the games are (self-play chose the most powerful node), never 'small'.
    assert status["node"] == done["node"]
    kinds = pods_by_kind(core, namespace, "promote")
    export, training = kinds["export"][0], kinds["training"][0]
    assert export.spec.node_name == status["node"]
    assert all(p.spec.node_name != "small-0" for ps in kinds.values() for p in ps)
    export_end = export.status.container_statuses[0].state.terminated.finished_at
    assert training.metadata.creation_timestamp >= export_end, "training starts after export"
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    for type in ("DataReady", "Exported", "Trained", "GauntletPassed", "Promoted"):
        assert conditions[type] == "True", type
    events_of(core, namespace, "promote",
              including={"DataReady", "Exported", "Trained", "Evaluated", "Promoted"})  # fmt: skip

    # The registry and the A/B record, in the history store.
    promoted = poll(
        lambda: history(sandbox, "SELECT uri FROM models WHERE config = ? AND promoted = 1",
                        ("square8_4p",)),
        until=bool, timeout=10, what="the promoted model in the registry",
    )  # fmt: skip
    assert promoted == [(status["model"]["uri"],)]
    games = history(
        sandbox,
        "SELECT result, COUNT(*) FROM ab_test_games g JOIN ab_tests t "
        "USING (test_id) WHERE t.config = ? GROUP BY result",
        ("square8_4p",),
    )
    assert dict(games) == {"win": 8, "loss": 2}
    elo = history(sandbox, "SELECT rating FROM elo_ratings WHERE config = ?", ("square8_4p",))
    assert elo
    assert elo[0][0] > 1500

    # The next SelfplayJob of the config plays with the promoted model.
    selfplay(custom, namespace, "games-c", "square8", 4, games=5)
    pod = wait_run(custom, namespace, "games-c", lambda s: s.get("pod"), plural="selfplayjobs")
    env = env_of(core.read_namespaced_pod(pod["pod"], namespace))
    assert env["RINGRIFT_MODEL_PATH"] == status["model"]["uri"]


def test_a_rejected_run_completes_after_a_gauntlet_over_three_nodes(
    custom: Any, core: Any, namespace: str, rules: Any
) -> None:
    rules(selector="ringrift.ai/job-kind=gauntlet", env={WIN_RATE: "20"})
    selfplay(custom, namespace, "games", "square19", 2, games=20)
    create(custom, namespace, PLURAL,
           tr("reject", "square19", 2, gauntlet={"games": 30, "shards": 3}))  # fmt: skip
    status = wait_run(custom, namespace, "reject", phase("Promoted", "Complete", "Failed"),
                      timeout=90)  # fmt: skip
    assert status["phase"] == "Complete", status
    assert status["reason"] == "NotPromoted"
    assert condition(status, "GauntletPassed")["status"] == "False"
    assert status["gauntlet"]["wins"] == 6
    assert status["gauntlet"]["losses"] == 24
    assert status["gauntlet"]["shardsCompleted"] == 3
    gauntlet = pods_by_kind(core, namespace, "reject")["gauntlet"]
    assert len(gauntlet) == 3
    assert len({p.spec.node_name for p in gauntlet}) == 3, "shards on different nodes"
    assert sorted(int(env_of(p)["RINGRIFT_GAMES"]) for p in gauntlet) == [10, 10, 10]


def test_duplicate_data_is_skipped_and_cooldown_holds_the_next_run(
    custom: Any, core: Any, namespace: str, rules: Any
) -> None:
    rules(name="first-tr-*", hang=True)  # the first run stays in training
    selfplay(custom, namespace, "games-a", "hexagonal", 3, games=20)
    wait_run(custom, namespace, "games-a", phase("Complete"), plural="selfplayjobs")
    create(custom, namespace, PLURAL, tr("first", "hexagonal", 3))
    first = wait_run(custom, namespace, "first", phase("Training"), timeout=60)

    create(custom, namespace, PLURAL, tr("second", "hexagonal", 3))
    second = wait_run(custom, namespace, "second", phase("Skipped"))
    assert second["reason"] == "DuplicateData"
    assert second["dataHash"] == first["dataHash"]
    assert not pods_by_kind(core, namespace, "second")
    events_of(core, namespace, "second", including={"Skipped"})

    selfplay(custom, namespace, "games-b", "hexagonal", 3, games=20)
    wait_run(custom, namespace, "games-b", phase("Complete"), plural="selfplayjobs")
    create(custom, namespace, PLURAL, tr("third", "hexagonal", 3, cooldownSeconds=600))
    third = wait_run(custom, namespace, "third", lambda s: s.get("reason") == "Cooldown")
    assert third["phase"] == "Pending"
    assert condition(third, "DataReady")["reason"] == "Cooldown"
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "third",
                                          {"spec": {"cooldownSeconds": 0}})  # fmt: skip
    wait_run(custom, namespace, "third", phase("Exporting", "Training", "Evaluating",
                                               "Complete", "Promoted"))  # fmt: skip


def test_distributed_training_is_placed_as_a_gang_or_not_at_all(
    custom: Any, core: Any, namespace: str, rules: Any
) -> None:
    rules(selector="ringrift.ai/job-kind=training", hang=True)
    # Two self-play jobs that each take a whole 8-GPU node for ~2 s: their games land on two
    # nodes (whichever the ranking picks; earlier tests may have hurt some nodes' reputation).
    rules(selector="ringrift.ai/job-kind=selfplay", durationMs=2000)
    for i in range(2):
        selfplay(custom, namespace, f"games-{i}", "square19", 3, games=10, gpus=8)
    holders = {
        wait_run(custom, namespace, f"games-{i}", phase("Complete"), plural="selfplayjobs")["node"]
        for i in range(2)
    }
    assert len(holders) == 2

    # Three ranks, but the games are on two nodes: nothing is placed, nothing is held.
    create(custom, namespace, PLURAL, tr("too-big", "square19", 3, nodes=3, gpus=2))
    waiting = wait_run(custom, namespace, "too-big",
                       lambda s: s.get("reason") == "WaitingForNode")  # fmt: skip
    assert waiting["phase"] == "Pending"
    assert "needs 3 node(s) with 2 free GPU(s)" in waiting["message"]
    assert "found 2" in waiting["message"]
    assert not pods_by_kind(core, namespace, "too-big")
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "too-big")

    # Memory counts too: no node has 2 TiB, so this one waits as well.
    create(custom, namespace, PLURAL, tr("too-hungry", "square19", 3, minMemoryGiB=2048))
    hungry = wait_run(
        custom, namespace, "too-hungry", lambda s: s.get("reason") == "WaitingForNode"
    )
    assert "< 2048 GiB minimum" in hungry["message"]
    assert not pods_by_kind(core, namespace, "too-hungry")
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "too-hungry")

    create(custom, namespace, PLURAL, tr("gang", "square19", 3, nodes=2, gpus=2))
    training = poll(lambda: pods_by_kind(core, namespace, "gang").get("training", []),
                    until=lambda ps: len(ps) == 2 and all(p.spec.node_name for p in ps),
                    timeout=60, what="both training ranks bound")  # fmt: skip
    assert {p.spec.node_name for p in training} == holders
    rank0 = next(p for p in training if env_of(p)["NODE_RANK"] == "0")
    service = core.read_namespaced_service("gang", namespace)
    assert service.spec.cluster_ip == "None"
    for pod in training:
        env = env_of(pod)
        assert env["WORLD_SIZE"] == "2"
        assert env["MASTER_ADDR"] == f"{rank0.metadata.name}.gang"
        assert pod.spec.subdomain == "gang"
    status = wait_run(custom, namespace, "gang", lambda s: len(s.get("nodes", [])) == 2)
    assert status["phase"] == "Training"


def test_a_failing_training_is_retried_then_the_run_fails(
    custom: Any, core: Any, namespace: str, rules: Any
) -> None:
    rules(selector="ringrift.ai/job-kind=training", exitCode=1, durationMs=50)
    selfplay(custom, namespace, "games", "hexagonal", 2, games=20)
    create(custom, namespace, PLURAL, tr("doomed", "hexagonal", 2, backoffLimit=1))
    status = wait_run(custom, namespace, "doomed", phase("Failed", "Complete", "Promoted"),
                      timeout=90)  # fmt: skip
    assert status["phase"] == "Failed"
    assert status["reason"] == "BackoffLimitExceeded"
    training = pods_by_kind(core, namespace, "doomed")["training"]
    assert [p.metadata.labels["ringrift.ai/attempt"] for p in training] == ["1", "2"]
    assert all(p.status.phase == "Failed" for p in training)
    events_of(core, namespace, "doomed", including={"AttemptFailed", "BackoffLimitExceeded"})
