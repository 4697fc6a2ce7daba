"""The workload simulator plays the container for the operator's pods on the sandbox's KWOK nodes:
it runs the sample workload against the node's data directory and completes the pod with its exit
code and termination message, and its rules file injects failures, hangs and durations. Uses the
session's simulator process (the ``simulator`` fixture in tests/conftest.py)."""

from __future__ import annotations

import itertools
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ringrift_operator.api.common import OPERATOR_NAME
from ringrift_operator.api.contract import CONTAINER_DATA_DIR, Env, parse_result
from ringrift_sandbox.simulator import rules_applied
from tests_support import poll

NODE = "cpu-0"
TERMINAL = ("Succeeded", "Failed")


def _selfplay_env(job: str, *, games: int = 5) -> list[client.V1EnvVar]:
    env = {
        Env.JOB_KIND: "selfplay",
        Env.JOB_NAME: job,
        Env.CONFIG: "square8_2p",
        Env.BOARD: "square8",
        Env.PLAYERS: "2",
        Env.ENGINE_MODE: "heuristic",
        Env.GAMES: str(games),
        Env.MODEL_PATH: "",
        Env.DATA_DIR: CONTAINER_DATA_DIR,
        Env.OUTPUT_DIR: CONTAINER_DATA_DIR,
        Env.EPOCH: "1",
        Env.ATTEMPT: "1",
        Env.SEED: "8412093385",
        "HOME": "/tmp",
    }
    return [client.V1EnvVar(name=k, value=v) for k, v in env.items()]


def _run_pod(core: Any, namespace: str, name: str, *, node: str = NODE) -> None:
    """Create an operator pod (schedulerName ringrift-operator) and bind it, as the operator
    does; KWOK then makes it Running and the simulator takes over."""
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"ringrift.ai/job-kind": "selfplay"}),
        spec=client.V1PodSpec(
            scheduler_name=OPERATOR_NAME,
            restart_policy="Never",
            containers=[client.V1Container(name="main", image="busybox", env=_selfplay_env(name))],
            tolerations=[client.V1Toleration(operator="Exists")],
        ),
    )
    core.create_namespaced_pod(namespace, pod)
    binding = client.V1Binding(
        metadata=client.V1ObjectMeta(name=name),
        target=client.V1ObjectReference(api_version="v1", kind="Node", name=node),
    )
    # The generated client cannot parse the Status a binding returns; the call still binds.
    core.create_namespaced_binding(namespace, binding, _preload_content=False)


def _wait_phase(core: Any, namespace: str, name: str, phases: tuple[str, ...]) -> Any:
    return poll(
        lambda: core.read_namespaced_pod(name, namespace),
        until=lambda p: p.status.phase in phases,
        timeout=20,
        what=f"pod {name} in {phases}",
        interval=0.1,
    )


def _terminated(pod: Any) -> Any:
    return pod.status.container_statuses[0].state.terminated


def test_a_selfplay_pod_succeeds_with_its_games_on_the_node(
    core: Any, namespace: str, sandbox: Any, simulator: Any
) -> None:
    _run_pod(core, namespace, "spj-sim-1")
    pod = _wait_phase(core, namespace, "spj-sim-1", TERMINAL)

    assert pod.status.phase == "Succeeded"
    state = _terminated(pod)
    assert (state.exit_code, state.reason) == (0, "Completed")
    assert state.started_at is not None
    assert state.finished_at >= state.started_at
    assert pod.status.container_statuses[0].ready is False
    assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "False"
    result = parse_result(state.message)
    assert result is not None
    assert result.games_written == 5
    data = sandbox.node_data_dir(NODE)
    assert result.files
    assert all((data / f).is_file() for f in result.files)
    games = data / "games" / "square8_2p"
    assert sorted(p.name for p in games.glob("spj-sim-1-a1-*.jsonl")) == ["spj-sim-1-a1-0.jsonl"]
    assert len((games / "spj-sim-1-a1-0.jsonl").read_text().splitlines()) == 5

    # KWOK must not take the pod back to Running: it stays terminal while another pod goes
    # through KWOK and the simulator, and over consecutive reads.
    _run_pod(core, namespace, "spj-sim-2")
    _wait_phase(core, namespace, "spj-sim-2", ("Succeeded",))
    reads = itertools.count(1)
    again = poll(
        lambda: core.read_namespaced_pod("spj-sim-1", namespace),
        until=lambda p: p.status.phase != "Succeeded" or next(reads) >= 5,
        timeout=10,
        what="five reads of the completed pod",
    )
    assert again.status.phase == "Succeeded"
    assert _terminated(again).exit_code == 0
    assert again.status.container_statuses[0].state.running is None
    assert f"{namespace}/spj-sim-1 node={NODE} exit=0" in simulator.log_path.read_text()


def test_an_exit_code_rule_fails_the_pod_with_that_code(
    core: Any, namespace: str, sandbox: Any, simulator: Any
) -> None:
    with rules_applied(sandbox.directory, [{"namespace": namespace, "exitCode": 3}]):
        _run_pod(core, namespace, "spj-fail")
        pod = _wait_phase(core, namespace, "spj-fail", TERMINAL)

    assert pod.status.phase == "Failed"
    state = _terminated(pod)
    assert (state.exit_code, state.reason) == (3, "Error")
    result = parse_result(state.message)
    assert result is not None
    assert "exit code 3" in result.message
    assert result.games_written is None


def test_a_hang_rule_leaves_the_pod_running(
    core: Any, namespace: str, sandbox: Any, simulator: Any
) -> None:
    with rules_applied(
        sandbox.directory, [{"namespace": namespace, "name": "hang-*", "hang": True}]
    ):
        _run_pod(core, namespace, "hang-1")
        _wait_phase(core, namespace, "hang-1", ("Running",))
        # A pod bound after it is completed, so the simulator has seen (and held) the first.
        _run_pod(core, namespace, "after-1")
        _wait_phase(core, namespace, "after-1", ("Succeeded",))

    pod = core.read_namespaced_pod("hang-1", namespace)
    assert pod.status.phase == "Running"
    assert pod.status.container_statuses[0].state.running is not None
    assert f"{namespace}/hang-1 node={NODE} hang" in simulator.log_path.read_text()


def test_a_pod_deleted_while_its_workload_runs_is_not_completed(
    core: Any, namespace: str, sandbox: Any, simulator: Any
) -> None:
    scratch = sandbox.directory / "simulator"
    with rules_applied(sandbox.directory, [{"namespace": namespace, "durationMs": 60_000}]):
        _run_pod(core, namespace, "slow-1")
        poll(
            lambda: list(scratch.glob("slow-1-*")),
            until=bool,
            timeout=20,
            what="the workload of slow-1 to be running",
            interval=0.1,
        )
        core.delete_namespaced_pod("slow-1", namespace, grace_period_seconds=0)

    poll(
        simulator.log_path.read_text,
        until=lambda text: f"{namespace}/slow-1 node={NODE} deleted while running" in text,
        timeout=20,
        what="the simulator to kill the workload of the deleted pod",
    )
    assert not list(scratch.glob("slow-1-*"))

    def gone() -> bool:
        try:
            core.read_namespaced_pod("slow-1", namespace)
        except ApiException as e:
            return bool(e.status == 404)
        return False

    poll(gone, until=bool, timeout=20, what="slow-1 deleted")
    assert f"{namespace}/slow-1 node={NODE} exit=" not in simulator.log_path.read_text()
