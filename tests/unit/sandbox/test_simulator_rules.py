"""The workload simulator's pure parts — rule matching, the rules file, the container environment
and the completion patch — and its event handling over a fake API (no cluster, no workload
process: the rules used here skip or hang)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ringrift_operator.api.common import OPERATOR_NAME
from ringrift_operator.api.contract import Env
from ringrift_sandbox.nodes import KWOK_ANNOTATION, KWOK_MANAGED, KWOK_RELEASED
from ringrift_sandbox.simulator import (
    RulesWatcher,
    SimulatorRule,
    WorkloadSimulator,
    append_rule,
    build_completion_patch,
    build_workload_env,
    clear_rules,
    cut_message,
    host_base_env,
    is_candidate,
    load_rules,
    match_rule,
    parse_selector,
    rules_applied,
    rules_path,
    selector_matches,
    set_rules,
    to_container_paths,
    to_host_value,
)
from tests_support import poll


def make_pod(
    name: str = "spj-sq8-1-a1",
    *,
    namespace: str = "ringrift",
    node: str | None = "gpu-h100-0",
    labels: Mapping[str, str] | None = None,
    phase: str = "Running",
    pod_ip: str | None = "10.244.0.7",
    uid: str | None = None,
    env: list[dict[str, Any]] | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": uid or f"uid-{name}",
        "labels": dict(labels or {}),
        "resourceVersion": "1",
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    spec: dict[str, Any] = {
        "schedulerName": OPERATOR_NAME,
        "containers": [{"name": "main", "image": "x", "env": env or []}],
    }
    if node:
        spec["nodeName"] = node
    status: dict[str, Any] = {"phase": phase}
    if pod_ip:
        status["podIP"] = pod_ip
    return {"metadata": meta, "spec": spec, "status": status}


# ---- matching ------------------------------------------------------------------------------

POD = make_pod(
    "spj-sq8-1-a2",
    namespace="team-a",
    node="gpu-a100-1",
    labels={"ringrift.ai/job-kind": "selfplay", "ringrift.ai/attempt": "2"},
)


@pytest.mark.parametrize(
    ("rule", "matches"),
    [
        pytest.param({}, True, id="empty-rule-matches-everything"),
        pytest.param({"name": "spj-*"}, True, id="name-glob"),
        pytest.param({"name": "spj-*-a1"}, False, id="name-glob-miss"),
        pytest.param({"name": "SPJ-*"}, False, id="name-glob-is-case-sensitive"),
        pytest.param({"namespace": "team-a"}, True, id="namespace"),
        pytest.param({"namespace": "team-*"}, True, id="namespace-glob"),
        pytest.param({"namespace": "team-b"}, False, id="namespace-miss"),
        pytest.param({"node": "gpu-a100-*"}, True, id="node-glob"),
        pytest.param({"node": "cpu-*"}, False, id="node-miss"),
        pytest.param({"selector": "ringrift.ai/job-kind=selfplay"}, True, id="selector-eq"),
        pytest.param({"selector": "ringrift.ai/job-kind==selfplay"}, True, id="selector-eqeq"),
        pytest.param({"selector": "ringrift.ai/job-kind!=selfplay"}, False, id="selector-neq"),
        pytest.param({"selector": "ringrift.ai/attempt in (1,2)"}, True, id="selector-in"),
        pytest.param({"selector": "ringrift.ai/attempt notin (1, 2)"}, False, id="selector-notin"),
        pytest.param({"selector": "ringrift.ai/attempt"}, True, id="selector-exists"),
        pytest.param({"selector": "!ringrift.ai/attempt"}, False, id="selector-not-exists"),
        pytest.param({"selector": "missing!=x"}, True, id="selector-neq-absent-label"),
        pytest.param(
            {"selector": "ringrift.ai/job-kind=selfplay,ringrift.ai/attempt=1"},
            False,
            id="selector-all-clauses",
        ),
        pytest.param(
            {"name": "spj-*", "namespace": "team-a", "node": "cpu-*"}, False, id="all-matchers"
        ),
    ],
)
def test_a_rule_matches_by_name_namespace_node_and_labels(
    rule: dict[str, Any], matches: bool
) -> None:
    parsed = SimulatorRule.model_validate(rule)
    assert (match_rule([parsed], POD) is parsed) is matches


def test_the_first_matching_rule_wins() -> None:
    rules = [
        SimulatorRule(name="tr-*", exit_code=1),
        SimulatorRule(namespace="team-a", exit_code=3),
        SimulatorRule(exit_code=4),
    ]
    assert match_rule(rules, POD) is rules[1]
    assert match_rule(rules[:1], POD) is None
    assert match_rule([], POD) is None


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ("", {}, True),
        ("a=1, b = 2", {"a": "1", "b": "2"}, True),
        ("a in (x, y),b notin (z)", {"a": "y"}, True),
        ("a=", {"a": ""}, True),
        ("a in (x,y)", {}, False),
    ],
)
def test_selectors(selector: str, labels: dict[str, str], matches: bool) -> None:
    assert selector_matches(selector, labels) is matches


@pytest.mark.parametrize("selector", ["a=1,,b=2", "a in x", "a ~ b", "=x", "a=(1)", "a in (x y)"])
def test_a_malformed_selector_is_rejected(selector: str) -> None:
    with pytest.raises(ValueError, match="selector"):
        parse_selector(selector)
    with pytest.raises(ValidationError):
        SimulatorRule(selector=selector)


# ---- the rule model and the rules file ----------------------------------------------------


def test_rules_use_the_wire_names_and_reject_unknown_keys() -> None:
    rule = SimulatorRule.model_validate(
        {"name": "x-*", "durationMs": 50, "exitCode": 3, "env": {"A": "1"}}
    )
    assert (rule.duration_ms, rule.exit_code, rule.env) == (50, 3, {"A": "1"})
    with pytest.raises(ValidationError):
        SimulatorRule.model_validate({"exit_cod": 3})
    with pytest.raises(ValidationError):
        SimulatorRule.model_validate({"exitCode": 256})
    with pytest.raises(ValidationError, match="hang and skip"):
        SimulatorRule(hang=True, skip=True)


def test_set_append_clear_and_apply_rules(tmp_path: Path) -> None:
    assert load_rules(tmp_path) == []
    set_rules(tmp_path, [{"name": "a-*", "exitCode": 3}])
    append_rule(tmp_path, SimulatorRule(hang=True))
    append_rule(tmp_path, {"skip": True, "message": {"gamesWritten": 1}}, first=True)
    rules = load_rules(tmp_path)
    assert [(r.name, r.exit_code, r.hang, r.skip) for r in rules] == [
        (None, None, False, True),
        ("a-*", 3, False, False),
        (None, None, True, False),
    ]
    assert load_rules(rules_path(tmp_path)) == rules
    assert '"exitCode": 3' in rules_path(tmp_path).read_text()  # wire names on disk

    with rules_applied(tmp_path, [{"namespace": "t-1", "hang": True}]):
        assert [r.namespace for r in load_rules(tmp_path)] == ["t-1", None, None, None]
    assert load_rules(tmp_path) == rules

    clear_rules(tmp_path)
    assert load_rules(tmp_path) == []
    with rules_applied(tmp_path, [{"hang": True}]):
        assert len(load_rules(tmp_path)) == 1
    assert not rules_path(tmp_path).exists()
    assert not list(tmp_path.glob(".*.tmp"))  # writes are atomic renames


def test_the_watcher_rereads_a_changed_file_and_keeps_the_rules_of_a_broken_one(
    tmp_path: Path,
) -> None:
    watcher = RulesWatcher(rules_path(tmp_path))
    assert watcher.current() == []
    set_rules(tmp_path, [{"exitCode": 3}])
    assert [r.exit_code for r in watcher.current()] == [3]
    set_rules(tmp_path, [{"exitCode": 4}, {"hang": True}])
    assert [r.exit_code for r in watcher.current()] == [4, None]
    rules_path(tmp_path).write_text('{"rules": [{"exitCode": "three"}]}')
    assert [r.exit_code for r in watcher.current()] == [4, None]
    clear_rules(tmp_path)
    assert watcher.current() == []


# ---- which pods, what environment, what status ------------------------------------------


@pytest.mark.parametrize(
    ("pod", "candidate"),
    [
        pytest.param(make_pod(), True, id="running-on-a-node"),
        pytest.param(make_pod(phase="Pending"), False, id="pending"),
        pytest.param(make_pod(phase="Succeeded"), False, id="succeeded"),
        pytest.param(make_pod(pod_ip=None), False, id="no-pod-ip-yet"),
        pytest.param(make_pod(node=None), False, id="unbound"),
        pytest.param(make_pod(deleting=True), False, id="being-deleted"),
    ],
)
def test_candidates_are_running_bound_pods_not_being_deleted(
    pod: dict[str, Any], candidate: bool
) -> None:
    assert is_candidate(pod) is candidate


def test_another_schedulers_pod_is_no_candidate() -> None:
    pod = make_pod()
    pod["spec"]["schedulerName"] = "default-scheduler"
    assert not is_candidate(pod)


def test_the_workload_env_maps_container_paths_to_the_node_directory(tmp_path: Path) -> None:
    data, scratch = tmp_path / "nodes" / "n1" / "data", tmp_path / "scratch"
    mounts = {"/data": data, "/tmp": scratch}
    env: list[dict[str, Any]] = [
        {"name": Env.DATA_DIR, "value": "/data"},
        {"name": Env.OUTPUT_DIR, "value": "/data/games/square8_2p"},
        {"name": Env.MODEL_PATH, "value": "file:///data/models/square8_2p/tr-a1-g3.pt"},
        {"name": Env.OPPONENTS, "value": "promoted,/data/models/x.pt,heuristic"},
        {"name": Env.CONFIG, "value": "square8_2p"},
        {"name": "HOME", "value": "/tmp"},
        {"name": "ELSEWHERE", "value": "/database"},
        {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        {"name": "EMPTY"},
    ]
    base = host_base_env(
        {
            "PATH": "/usr/bin",
            Env.GAMES: "99",
            "RINGRIFT_X": "1",
            "KUBECONFIG": "/k",
            "WORLD_SIZE": "8",
        }
    )
    assert base == {"PATH": "/usr/bin"}
    result = build_workload_env(
        make_pod(env=env),
        mounts=mounts,
        base=base,
        extra={"RINGRIFT_SAMPLE_WIN_RATE_PERCENT": "80", "PATH": "/opt/bin"},
    )
    assert result == {
        "PATH": "/opt/bin",
        Env.DATA_DIR: str(data),
        Env.OUTPUT_DIR: f"{data}/games/square8_2p",
        Env.MODEL_PATH: f"file://{data}/models/square8_2p/tr-a1-g3.pt",
        Env.OPPONENTS: f"promoted,{data}/models/x.pt,heuristic",
        Env.CONFIG: "square8_2p",
        "HOME": str(scratch),
        "ELSEWHERE": "/database",
        "EMPTY": "",
        "RINGRIFT_SAMPLE_WIN_RATE_PERCENT": "80",
    }
    assert to_host_value("", mounts=mounts) == ""


def test_the_termination_message_speaks_in_container_paths(tmp_path: Path) -> None:
    data = tmp_path / "nodes" / "n1" / "data"
    text = f'{{"model":{{"uri":"file://{data}/models/m.pt"}}}}'
    assert to_container_paths(text, mounts={"/data": data, "/tmp": tmp_path / "s"}) == (
        '{"model":{"uri":"file:///data/models/m.pt"}}'
    )


def test_a_message_is_cut_to_the_kubelets_limit() -> None:
    assert cut_message("é" * 3000).encode() == ("é" * 2048).encode()
    assert cut_message("ok") == "ok"


@pytest.mark.parametrize(
    ("code", "phase", "reason"), [(0, "Succeeded", "Completed"), (3, "Failed", "Error")]
)
def test_the_completion_patch_terminates_the_container(code: int, phase: str, reason: str) -> None:
    started = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    finished = datetime(2026, 1, 1, 12, 0, 2, 500_000, tzinfo=UTC)
    patch = build_completion_patch(
        uid="u1",
        container="main",
        exit_code=code,
        message="{}",
        started_at=started,
        finished_at=finished,
    )
    assert patch["metadata"] == {"uid": "u1"}
    status = patch["status"]
    assert status["phase"] == phase
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "False",
        "ContainersReady": "False",
    }
    [container] = status["containerStatuses"]
    assert (container["name"], container["ready"]) == ("main", False)
    assert container["state"]["running"] is None
    assert container["state"]["terminated"] == {
        "exitCode": code,
        "reason": reason,
        "message": "{}",
        "startedAt": "2026-01-01T12:00:00Z",
        "finishedAt": "2026-01-01T12:00:02Z",
    }


# ---- the simulator over a fake API -------------------------------------------------------


class FakeApi:
    """Serves scripted lists and watches; records status patches."""

    def __init__(self, *, lists: list[list[dict[str, Any]]], watches: list[list[dict[str, Any]]]):
        self.lists = lists
        self.watches = watches
        self.nodes: dict[str, dict[str, Any]] = {}
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.list_calls = 0
        self._stopped = threading.Event()
        self._lock = threading.Lock()

    def node(self, name: str, annotation: str = KWOK_MANAGED) -> None:
        self.nodes[name] = {
            "metadata": {"name": name, "annotations": {KWOK_ANNOTATION: annotation}}
        }

    def list_pods(self) -> tuple[list[dict[str, Any]], str]:
        self.list_calls += 1
        return (self.lists.pop(0) if self.lists else []), "10"

    def watch_pods(self, resource_version: str) -> Iterator[dict[str, Any]]:
        if self.watches:
            yield from self.watches.pop(0)
            return
        self._stopped.wait(5)  # like a quiet watch that the server ends
        if self._stopped.is_set():
            raise ConnectionError("watch shut down")

    def shutdown(self) -> None:
        self._stopped.set()

    def read_node(self, name: str) -> dict[str, Any] | None:
        return self.nodes.get(name)

    def patch_pod_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        with self._lock:
            self.patches.append((f"{namespace}/{name}", dict(patch)))

    def patched(self) -> list[str]:
        with self._lock:
            return [name for name, _ in self.patches]


@pytest.fixture
def run_simulator(tmp_path: Path) -> Iterator[Any]:
    started: list[WorkloadSimulator] = []

    def start(api: FakeApi, rules: list[dict[str, Any]]) -> WorkloadSimulator:
        set_rules(tmp_path, rules)
        simulator = WorkloadSimulator(
            api, sandbox_dir=tmp_path, data_dir_for=lambda node: tmp_path / node, workers=1
        )
        simulator.start()
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        simulator.stop()


def _event(kind: str, pod: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": pod}


SKIP_ALL = [{"skip": True, "message": {"gamesWritten": 7}}]


def test_each_pod_is_completed_once_across_a_410_and_a_relist(run_simulator: Any) -> None:
    first, second = make_pod("first"), make_pod("second")
    api = FakeApi(
        lists=[[first], [first]],
        watches=[
            [_event("MODIFIED", first), {"type": "ERROR", "object": {"code": 410}}],
            [_event("MODIFIED", first), _event("ADDED", second)],
        ],
    )
    api.node("gpu-h100-0")
    run_simulator(api, SKIP_ALL)
    # One worker completes pods in order, so a second completion of `first` would come first.
    poll(api.patched, until=lambda p: "ringrift/second" in p, timeout=10, what="second completed")
    assert api.patched() == ["ringrift/first", "ringrift/second"]
    assert api.list_calls == 2
    _, patch = api.patches[0]
    assert patch["metadata"]["uid"] == "uid-first"
    terminated = patch["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["message"]) == (0, '{"gamesWritten":7}')


def test_pods_that_hang_are_deleted_or_on_a_lost_or_real_node_are_not_completed(
    run_simulator: Any,
) -> None:
    pods = [
        make_pod("hang-1"),
        make_pod("gone", deleting=True),
        make_pod("lost", node="cpu-9"),
        make_pod("real", node="real-node"),
        make_pod("pending", phase="Pending", pod_ip=None),
        make_pod("last"),
    ]
    api = FakeApi(lists=[pods[:2]], watches=[[_event("ADDED", p) for p in pods[2:]]])
    api.node("gpu-h100-0")
    api.node("cpu-9", annotation=KWOK_RELEASED)
    api.nodes["real-node"] = {"metadata": {"name": "real-node"}}
    run_simulator(api, [{"name": "hang-*", "hang": True}, *SKIP_ALL])
    poll(api.patched, until=lambda p: "ringrift/last" in p, timeout=10, what="last completed")
    assert api.patched() == ["ringrift/last"]


def test_a_skip_rule_completes_with_its_exit_code_and_text_message(run_simulator: Any) -> None:
    api = FakeApi(lists=[[make_pod("bad")]], watches=[])
    api.node("gpu-h100-0")
    run_simulator(api, [{"skip": True, "exitCode": 2, "message": "RINGRIFT_GAMES is not set"}])
    poll(api.patched, until=bool, timeout=10, what="bad completed")
    status = api.patches[0][1]["status"]
    assert status["phase"] == "Failed"
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["message"]) == (2, "RINGRIFT_GAMES is not set")
