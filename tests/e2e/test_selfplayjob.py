"""The SelfplayJob reconciler on the real API server: GPU pods placed by power score, never
over-committed, retried elsewhere, expired, suspended, completed and cleaned up."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections import defaultdict
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from chaos_support import record
from operator_support import GROUP, VERSION, events_of, spj, wait_for_status
from ringrift_operator.api.contract import parse_result
from ringrift_sandbox.cluster import wait_for
from ringrift_sandbox.nodes import KWOK_ANNOTATION, KWOK_MANAGED
from ringrift_sandbox.simulator import load_rules, rules_path, set_rules
from tests_support import poll

pytestmark = pytest.mark.usefixtures("operator")
GPU = "nvidia.com/gpu"
PLURAL = "selfplayjobs"


@pytest.fixture(scope="module")
def custom(api_client: Any) -> Any:
    return client.CustomObjectsApi(api_client)


@pytest.fixture
def rules(sandbox: Any, namespace: str) -> Any:
    """Add simulator rules scoped to this test's namespace; removed afterwards."""
    path = rules_path(sandbox.directory)

    def add(**rule: Any) -> None:
        current = [r.model_dump(by_alias=True, exclude_none=True) for r in load_rules(path)]
        set_rules(sandbox.directory, [{"namespace": namespace, **rule}, *current])

    yield add
    remaining = [r for r in load_rules(path) if r.namespace != namespace]
    set_rules(sandbox.directory, remaining)


def create(custom: Any, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )
    return obj


def phase_is(*phases: str) -> Any:
    return lambda s: s.get("phase") in phases


def gpu_nodes(core: Any) -> dict[str, Any]:
    return {
        n.metadata.name: n
        for n in core.list_node().items
        if int(n.status.allocatable.get(GPU, "0")) > 0
        and n.metadata.annotations.get(KWOK_ANNOTATION) == KWOK_MANAGED
    }


def gpus_in_use(core: Any) -> dict[str, int]:
    used: dict[str, int] = defaultdict(int)
    for pod in core.list_pod_for_all_namespaces().items:
        if not pod.spec.node_name or pod.status.phase in ("Succeeded", "Failed"):
            continue
        for c in pod.spec.containers:
            req = (c.resources.requests or {}) if c.resources else {}
            used[pod.spec.node_name] += int(req.get(GPU, "0"))
    return used


def test_a_job_runs_on_the_most_powerful_free_gpu_and_completes(
    custom: Any, core: Any, namespace: str, sandbox: Any
) -> None:
    create(custom, namespace, spj("first", games=7))
    obj = wait_for_status(custom, namespace, "first", phase_is("Complete"), timeout=60)
    status = obj["status"]
    assert status["node"].startswith("gpu-h100-")
    assert status["powerScore"] == 1000
    assert status["gamesCompleted"] == 7
    assert status["attempts"] == 1
    assert status["config"] == "square8_2p"
    assert status["observedGeneration"] == 1
    types = {c["type"]: c["status"] for c in status["conditions"]}
    assert types["Scheduled"] == "True"
    assert types["Complete"] == "True"
    pod = core.read_namespaced_pod(status["pod"], namespace)
    assert pod.spec.scheduler_name == "ringrift-operator"
    assert pod.metadata.owner_references[0].uid == obj["metadata"]["uid"]
    result = parse_result(pod.status.container_statuses[0].state.terminated.message)
    assert result is not None
    assert result.games_written == 7
    games = list((sandbox.node_data_dir(status["node"]) / "games" / "square8_2p").glob("*.jsonl"))
    assert games, "the workload wrote its games on the node it ran on"
    events = events_of(core, namespace, "first", including={"Scheduled", "Completed"})
    scheduled = next(e for e in events if e.reason == "Scheduled")
    assert "power score 1000" in scheduled.message


def test_a_burst_never_over_commits_gpus_and_waits_for_capacity(
    custom: Any, core: Any, namespace: str, rules: Any
) -> None:
    rules(hang=True)
    nodes = gpu_nodes(core)
    capacity = {n: int(node.status.allocatable[GPU]) for n, node in nodes.items()}
    slots = sum(c // 2 for c in capacity.values())
    jobs = slots + 4
    for i in range(jobs):
        create(custom, namespace, spj(f"burst-{i}", gpus=2))

    def states() -> dict[str, str]:
        items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
        return {o["metadata"]["name"]: (o.get("status") or {}).get("phase", "") for o in items}

    settled = poll(
        states,
        until=lambda s: (
            sum(p == "Running" for p in s.values()) == slots
            and sum(p == "Pending" for p in s.values()) == jobs - slots
        ),
        timeout=90,
        what=f"{slots} jobs Running and {jobs - slots} Pending",
    )
    used = gpus_in_use(core)
    for node, cap in capacity.items():
        assert used.get(node, 0) <= cap, f"{node} over-committed: {used[node]} > {cap}"
    waiting = next(n for n, p in settled.items() if p == "Pending")
    status = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, waiting)[
        "status"
    ]
    scheduled = next(c for c in status["conditions"] if c["type"] == "Scheduled")
    assert scheduled["status"] == "False"
    assert scheduled["reason"] == "WaitingForNode"

    # Capacity frees: a waiting job is placed without anybody touching it.
    running = sorted(n for n, p in settled.items() if p == "Running")[:2]
    for name in running:
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    wait_for_status(custom, namespace, waiting, phase_is("Running"), timeout=60,
                    what="a waiting job placed once capacity freed")  # fmt: skip
    used = gpus_in_use(core)
    assert all(used.get(n, 0) <= c for n, c in capacity.items())


def test_a_failed_attempt_is_retried_on_another_node(
    custom: Any, namespace: str, rules: Any
) -> None:
    rules(name="retry-sp-1", exitCode=1, durationMs=50)
    create(custom, namespace, spj("retry", backoffLimit=2))
    status = wait_for_status(custom, namespace, "retry", phase_is("Complete"), timeout=60)["status"]
    attempts = status["recentAttempts"]
    assert [a["result"] for a in attempts] == ["Failed", "Succeeded"]
    assert attempts[0]["node"] != attempts[1]["node"]
    assert status["attempts"] == 2
    assert status["failedAttempts"] == 1


def test_backoff_limit_then_failed(custom: Any, namespace: str, rules: Any) -> None:
    rules(exitCode=1, durationMs=20)
    create(custom, namespace, spj("doomed", backoffLimit=1))
    status = wait_for_status(custom, namespace, "doomed", phase_is("Failed"), timeout=60)["status"]
    assert status["reason"] == "BackoffLimitExceeded"
    assert status["attempts"] == 2
    assert status["failedAttempts"] == 2


def test_bad_input_fails_without_retry(custom: Any, namespace: str, rules: Any) -> None:
    rules(exitCode=2, durationMs=20)
    create(custom, namespace, spj("bad-input", backoffLimit=3))
    status = wait_for_status(custom, namespace, "bad-input", phase_is("Failed"), timeout=60)[
        "status"
    ]
    assert status["reason"] == "BadInput"
    assert status["attempts"] == 1


def test_a_job_no_node_can_take_expires(custom: Any, namespace: str) -> None:
    body = spj("nowhere", dispatchTimeoutSeconds=3,
               placement={"nodeSelector": {"example.com/does-not-exist": "x"}})  # fmt: skip
    create(custom, namespace, body)
    pending = wait_for_status(custom, namespace, "nowhere", phase_is("Pending"), timeout=30)
    assert pending["status"]["reason"] == "WaitingForNode"
    status = wait_for_status(custom, namespace, "nowhere", phase_is("Expired"), timeout=30)[
        "status"
    ]
    assert status["reason"] == "DispatchTimeout"
    assert "pod" not in status


def test_suspend_removes_the_pod_and_resume_starts_a_new_attempt(
    custom: Any, core: Any, namespace: str, rules: Any
) -> None:
    rules(hang=True)
    create(custom, namespace, spj("pausable"))
    first = wait_for_status(custom, namespace, "pausable", phase_is("Running"))["status"]["pod"]
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "pausable", {"spec": {"suspend": True}}
    )
    wait_for_status(custom, namespace, "pausable", phase_is("Suspended"))

    def gone() -> bool:
        try:
            core.read_namespaced_pod(first, namespace)
        except ApiException as e:
            return e.status == 404
        return False

    wait_for("the suspended job's pod to be deleted", gone, timeout=30)
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "pausable", {"spec": {"suspend": False}}
    )
    status = wait_for_status(
        custom, namespace, "pausable", lambda s: s.get("phase") == "Running" and s["pod"] != first
    )["status"]
    assert status["attempts"] == 2
    assert status["failedAttempts"] == 0  # a suspension is not a failure


def test_deleting_the_job_removes_its_pods(
    custom: Any, core: Any, namespace: str, rules: Any
) -> None:
    rules(hang=True)
    create(custom, namespace, spj("short-lived"))
    pod = wait_for_status(custom, namespace, "short-lived", phase_is("Running"))["status"]["pod"]
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "short-lived")
    poll(
        lambda: [p.metadata.name for p in core.list_namespaced_pod(namespace).items],
        until=lambda names: pod not in names,
        timeout=30,
        what="the deleted job's pod to go",
    )


RETRY_SECONDS = 60  # a lost node's job runs elsewhere within this
RUNNING_OR_DONE = ("Running", "Complete")


def operator_status(operator: Any) -> dict[str, Any]:
    with urllib.request.urlopen(operator.url + "/status", timeout=5) as resp:
        doc: dict[str, Any] = json.loads(resp.read())
        return doc


def node_failures_metric(operator: Any, node: str) -> float:
    with urllib.request.urlopen(operator.url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    found = re.search(rf'^ringrift_node_recent_failures{{node="{node}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_losing_the_node_retries_the_job_elsewhere(
    custom: Any, core: Any, namespace: str, rules: Any, sandbox: Any, operator: Any
) -> None:
    rules(name="lost-sp-1", hang=True)
    create(custom, namespace, spj("lost", gpus=4))
    status = wait_for_status(custom, namespace, "lost", phase_is("Running"))["status"]
    node = status["node"]
    failures_before = operator_status(operator)["managers"]["node_selector"]["recent_failures"]
    lost_at = time.monotonic()
    sandbox.set_node_lost(node)
    recovered = False
    try:
        moved = wait_for_status(
            custom, namespace, "lost",
            lambda s: s.get("node") not in (None, node) and s.get("phase") in RUNNING_OR_DONE,
            timeout=RETRY_SECONDS, what="the job running elsewhere after its node went NotReady",
        )["status"]  # fmt: skip
        retry_s = time.monotonic() - lost_at
        done = wait_for_status(
            custom, namespace, "lost", phase_is("Complete"), timeout=120,
            what="the job retried after its node went NotReady",
        )["status"]  # fmt: skip
        attempts = done["recentAttempts"]
        assert attempts[0]["result"] == "Lost"
        assert attempts[0]["node"] == node
        assert attempts[1]["node"] != node
        assert attempts[1]["result"] == "Succeeded"
        events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=lost")
        assert any(e.reason == "NodeLost" for e in events.items)
        # Its reputation dropped, visible in /status and /metrics; it is seen NotReady.
        selector = operator_status(operator)["managers"]["node_selector"]
        assert selector["recent_failures"].get(node, 0) > failures_before.get(node, 0)
        assert node in selector["not_ready"]
        assert node_failures_metric(operator, node) >= 1
        # Back: seen Ready again (the reputation stays lowered for its window).
        sandbox.set_node_lost(node, lost=False)
        back_at = time.monotonic()
        poll(lambda: operator_status(operator)["managers"]["node_selector"]["not_ready"],
             until=lambda names: node not in names, timeout=30,
             what=f"the operator seeing {node} Ready again")  # fmt: skip
        recovered_s = time.monotonic() - back_at
        recovered = True
        assert f"node {node} recovered" in operator.log()
        record("node-loss", node=node, bound_seconds=RETRY_SECONDS,
               retry_elsewhere_seconds=round(retry_s, 1), moved_to=moved["node"],
               recent_failures=selector["recent_failures"].get(node, 0),
               recovery_seen_seconds=round(recovered_s, 1))  # fmt: skip
        assert retry_s <= RETRY_SECONDS
    finally:
        if not recovered:
            sandbox.set_node_lost(node, lost=False)
        wait_for(f"{node} Ready again", lambda: node in sandbox.ready_nodes(), timeout=60)


def test_kubectl_get_shows_the_columns(custom: Any, namespace: str, kubectl: Any) -> None:
    create(custom, namespace, spj("columns", games=3))
    wait_for_status(custom, namespace, "columns", phase_is("Complete"))
    out = kubectl.run("get", "spj", "-n", namespace, "-o", "wide").stdout
    header, row = out.splitlines()[:2]
    for column in ("PHASE", "NODE", "SCORE", "GAMES", "ATTEMPTS"):
        assert column in header
    assert "Complete" in row
    assert "gpu-h100-" in row
    listed = json.loads(kubectl.run("get", "ringrift", "-n", namespace, "-o", "json").stdout)
    assert [i["kind"] for i in listed["items"]] == ["SelfplayJob"]
