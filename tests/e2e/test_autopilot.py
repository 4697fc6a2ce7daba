"""The autopilot: with no SelfplayJob created by hand, idle GPUs fill with self-play whose config
mix follows the configured priorities, and never beyond the free GPUs."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from operator_support import GROUP, VERSION, OperatorProcess, restart_in_place, start_operator
from ringrift_sandbox.simulator import load_rules, rules_path, set_rules
from tests_support import poll

GPU = "nvidia.com/gpu"


@pytest.fixture
def autopilot(operator: OperatorProcess, sandbox: Any, namespace: str) -> Iterator[OperatorProcess]:
    """The session's operator swapped for one with the autopilot on, filling ``namespace``."""
    path = rules_path(sandbox.directory)
    previous = load_rules(path)
    set_rules(sandbox.directory, [{"namespace": namespace, "hang": True}, *previous])
    operator.stop()
    env = {
        "RINGRIFT_AGENT_TOKEN_FILE": str(sandbox.directory / "agent-token"),
        "RINGRIFT_AUTOPILOT__ENABLED": "true",
        "RINGRIFT_AUTOPILOT__NAMESPACE": namespace,
        "RINGRIFT_AUTOPILOT__ENABLED_CONFIGS": json.dumps(["square8_2p", "hex8_2p"]),
        "RINGRIFT_AUTOPILOT__PRIORITIES": json.dumps({"square8_2p": 8, "hex8_2p": 3}),
        "RINGRIFT_AUTOPILOT__IDLE_INTERVAL_SECONDS": "1",
        "RINGRIFT_AUTOPILOT__SEED": "7",
    }
    pilot = start_operator(sandbox, name="autopilot", env=env)
    try:
        yield pilot
    finally:
        pilot.stop()
        set_rules(sandbox.directory, previous)
        restart_in_place(operator, sandbox)


def free_gpus(core: Any) -> int:
    used: Counter[str] = Counter()
    for pod in core.list_pod_for_all_namespaces().items:
        if pod.spec.node_name and pod.status.phase not in ("Succeeded", "Failed"):
            for c in pod.spec.containers:
                used[pod.spec.node_name] += int(((c.resources.requests or {}) if c.resources
                                                 else {}).get(GPU, "0"))  # fmt: skip
    total = 0
    for node in core.list_node().items:
        ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
        if ready and not node.spec.unschedulable:
            total += max(0, int(node.status.allocatable.get(GPU, "0")) - used[node.metadata.name])
    return total


def test_idle_gpus_fill_with_self_play_following_the_priorities(
    autopilot: OperatorProcess, api_client: Any, core: Any, namespace: str
) -> None:
    custom = client.CustomObjectsApi(api_client)
    capacity = free_gpus(core)
    assert capacity > 10

    def jobs() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, "selfplayjobs"
        )["items"]
        return items

    filled = poll(
        jobs,
        until=lambda items: (
            sum((i.get("status") or {}).get("phase") == "Running" for i in items) >= capacity
        ),
        timeout=90,
        what=f"{capacity} idle GPUs filled with autopilot self-play",
    )
    poll(lambda: free_gpus(core), until=lambda free: free == 0, timeout=60,
         what="no idle GPU left")  # fmt: skip
    filled = jobs()
    assert all(i["metadata"]["labels"]["ringrift.ai/autopilot"] == "true" for i in filled)
    # Never more than it can place: a few at most wait for a node.
    pending = [i for i in filled if (i.get("status") or {}).get("phase") == "Pending"]
    assert len(pending) <= 2
    mix = Counter(f"{i['spec']['board']}_{i['spec']['players']}p" for i in filled)
    assert set(mix) <= {"square8_2p", "hex8_2p"}
    assert mix["square8_2p"] > mix["hex8_2p"] > 0  # priority 8 beats priority 3
    assert all(i["spec"]["engineMode"] in {"gumbel-mcts", "nnue-guided", "policy-only",
                                            "nn-descent", "nn-minimax", "mcts", "maxn", "brs",
                                            "heuristic", "random"} for i in filled)  # fmt: skip
