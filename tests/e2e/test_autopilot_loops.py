"""The autopilot's other loops on the sandbox, with no SelfplayJob or TrainingRun created by
hand: training sync creates one TrainingRun for its config once enough games exist (and no
second while it is active), a node going NotReady is handled as HostOffline and, back, as
NodeRecovered, and /status and /metrics list every loop with its runs.

Uses square19_4p, a config no other e2e module uses (the nodes' data directories outlive a
test's namespace).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from operator_support import GROUP, VERSION, OperatorProcess, restart_in_place, start_operator
from ringrift_sandbox.cluster import wait_for
from ringrift_sandbox.simulator import load_rules, rules_path, set_rules
from tests_support import poll

CONFIG = "square19_4p"
MIN_NEW_GAMES = 12
LOOPS = {
    "manifest-collection", "elo-sync", "job-reaper", "idle-detection", "queue-population",
    "self-healing", "predictive-monitoring", "training-sync",
}  # fmt: skip


@pytest.fixture
def pilot(operator: OperatorProcess, sandbox: Any, namespace: str) -> Iterator[OperatorProcess]:
    """The session's operator swapped for one with the autopilot and training sync on; the
    TrainingRuns' pods hang, so a run stays active while games keep coming."""
    path = rules_path(sandbox.directory)
    previous = load_rules(path)
    hang = {"namespace": namespace, "selector": "ringrift.ai/owner-kind=TrainingRun", "hang": True}
    set_rules(sandbox.directory, [hang, *previous])
    operator.stop()
    env = {
        "RINGRIFT_AGENT_TOKEN_FILE": str(sandbox.directory / "agent-token"),
        "RINGRIFT_AUTOPILOT__ENABLED": "true",
        "RINGRIFT_AUTOPILOT__NAMESPACE": namespace,
        "RINGRIFT_AUTOPILOT__ENABLED_CONFIGS": json.dumps([CONFIG]),
        "RINGRIFT_AUTOPILOT__GAMES_PER_JOB": "3",
        "RINGRIFT_AUTOPILOT__MAX_NEW_JOBS_PER_TICK": "4",
        "RINGRIFT_AUTOPILOT__IDLE_INTERVAL_SECONDS": "1",
        "RINGRIFT_AUTOPILOT__REAP_INTERVAL_SECONDS": "1",
        "RINGRIFT_AUTOPILOT__MANIFEST_INTERVAL_SECONDS": "2",
        "RINGRIFT_AUTOPILOT__ELO_SYNC_INTERVAL_SECONDS": "2",
        "RINGRIFT_AUTOPILOT__QUEUE__INTERVAL_SECONDS": "1",
        "RINGRIFT_AUTOPILOT__HEALING__INTERVAL_SECONDS": "1",
        "RINGRIFT_AUTOPILOT__MONITORING__INTERVAL_SECONDS": "1",
        "RINGRIFT_AUTOPILOT__TRAINING__ENABLED": "true",
        "RINGRIFT_AUTOPILOT__TRAINING__INTERVAL_SECONDS": "1",
        "RINGRIFT_AUTOPILOT__TRAINING__SPEC": json.dumps(
            {
                "minNewGames": MIN_NEW_GAMES,
                "cooldownSeconds": 0,
                "gauntlet": {"games": 4, "shards": 1, "opponents": ["random"]},
            }
        ),
    }
    proc = start_operator(sandbox, name="autopilot-loops", env=env)
    try:
        yield proc
    finally:
        proc.stop()
        set_rules(sandbox.directory, previous)
        restart_in_place(operator, sandbox)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        text: str = response.read().decode()
        return text


def test_loops_train_when_data_is_ready_and_handle_a_lost_node(
    pilot: OperatorProcess, api_client: Any, core: Any, sandbox: Any, namespace: str
) -> None:
    custom = client.CustomObjectsApi(api_client)

    def runs() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, "trainingruns"
        )["items"]
        return items

    def games() -> int:
        jobs = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "selfplayjobs")
        return sum(int((j.get("status") or {}).get("gamesCompleted") or 0) for j in jobs["items"])

    # Training sync: nothing until enough games exist, then exactly one run of the config.
    first = poll(runs, until=bool, timeout=60, what=f"a TrainingRun for {CONFIG}")
    assert games() >= MIN_NEW_GAMES
    [run] = first
    assert run["metadata"]["name"] == "auto-train-square19-4p-1"
    assert run["metadata"]["labels"]["ringrift.ai/autopilot"] == "true"
    assert int(run["metadata"]["annotations"]["ringrift.ai/epoch"]) >= 1
    assert (run["spec"]["board"], run["spec"]["players"]) == ("square19", 4)
    assert run["spec"]["minNewGames"] == MIN_NEW_GAMES

    # A node goes NotReady: HostOffline; back: NodeRecovered (Events by this operator).
    node = sandbox.ready_nodes()[0]
    mine = f"-{pilot.process.pid}"

    def reasons() -> set[str]:
        events = core.list_namespaced_event(
            "default", field_selector=f"involvedObject.kind=Node,involvedObject.name={node}"
        ).items
        return {e.reason for e in events if (e.reporting_instance or "").endswith(mine)}

    sandbox.set_node_lost(node)
    try:
        poll(reasons, until=lambda r: "HostOffline" in r, timeout=20,
             what=f"a HostOffline Event for {node}")  # fmt: skip
    finally:
        sandbox.set_node_lost(node, lost=False)
    wait_for(f"{node} Ready again", lambda: node in sandbox.ready_nodes(), timeout=30)
    poll(reasons, until=lambda r: "NodeRecovered" in r, timeout=20,
         what=f"a NodeRecovered Event for {node}")  # fmt: skip

    # Enough new games for a second training, yet no second run while the first is active.
    poll(games, until=lambda n: n >= 3 * MIN_NEW_GAMES, timeout=30,
         what="games for another training")  # fmt: skip
    [run] = runs()
    assert (run.get("status") or {}).get("phase", "Pending") in {"Pending", "Exporting"}

    # /status: every loop by name, each with runs; the autopilot's view of the node and runs.
    status = get_json(f"{pilot.url}/status")
    loops = status["loops"]["loops"]
    assert set(loops) == LOOPS
    for name in LOOPS:
        assert loops[name]["runs"] >= 1, name
        assert loops[name]["health"] == "healthy", (name, loops[name])
    auto = status["autopilot"]
    assert auto["self_healing"]["hosts_offline"] >= 1
    assert auto["self_healing"]["nodes_recovered"] >= 1
    assert auto["training_sync"]["created"] == 1
    assert auto["training_sync"]["configs"][CONFIG] == {"create": False,
                                                        "reason": "1 run(s) active"}  # fmt: skip
    assert auto["manifests"]["nodes"] >= 1
    assert "failure_rate" in auto["predictions"]["signals"]
    metrics = get_text(f"{pilot.url}/metrics")
    for name in LOOPS:
        assert f'ringrift_loop_runs_total{{loop="{name}",result="success"}}' in metrics
    assert 'ringrift_autopilot_created_total{kind="TrainingRun"} 1.0' in metrics
    assert 'ringrift_self_healing_actions_total{action="host_offline"}' in metrics
    assert 'ringrift_prediction_seconds_to_threshold{signal="pending_queue"}' in metrics
