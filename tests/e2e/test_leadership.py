"""Leadership and endpoints: one replica acts, standbys wait; a killed leader hands over within
the lease duration + 15 s; a paused leader that wakes after losing its lease writes nothing (the
API server's audit log shows no write request from it after the freeze); /metrics and /status
answer with their documented content. The handover figures go to the chaos results."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from chaos_support import audit_writes, by_agent, record
from operator_support import (
    GROUP,
    VERSION,
    OperatorProcess,
    restart_in_place,
    spj,
    start_operator,
    wait_for_status,
)
from tests_support import poll

LEASE_SECONDS = 6


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def status_of(proc: OperatorProcess) -> dict[str, Any]:
    code, body = get(proc.url + "/status")
    assert code == 200
    doc: dict[str, Any] = json.loads(body)
    return doc


def test_metrics_and_status_answer(operator: OperatorProcess, namespace: str,
                                   api_client: Any) -> None:  # fmt: skip
    custom = client.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "selfplayjobs", spj("m"))
    wait_for_status(custom, namespace, "m", lambda s: s.get("phase") == "Complete")
    assert get(operator.url + "/healthz") == (200, "ok")
    assert get(operator.url + "/readyz")[0] == 200
    code, metrics = get(operator.url + "/metrics")
    assert code == 200
    for name in (
        "ringrift_placement_latency_seconds_bucket",
        "ringrift_reconcile_duration_seconds_count",
        'ringrift_gpus{state="allocatable"}',
        "ringrift_api_requests_total",
        'ringrift_jobs_total{kind="SelfplayJob",outcome="Complete"}',
        'ringrift_games_total{config="',
    ):
        assert name in metrics, name
    doc = status_of(operator)
    assert doc["role"] == "leader"
    assert doc["epoch"] >= 1
    assert doc["leader"] == doc["identity"]
    assert set(doc["managers"]) >= {"node_selector", "job_manager", "reconciler", "state_manager"}
    assert doc["managers"]["job_manager"]["gpus_total"] > 0


@pytest.fixture
def replicas(operator: OperatorProcess, sandbox: Any) -> Iterator[list[OperatorProcess]]:
    """Two fresh replicas with a short lease, with the session's operator stopped meanwhile
    (it would be a third, competing replica) and started again afterwards."""
    operator.stop()
    env = {"RINGRIFT_LEASE_DURATION_SECONDS": str(LEASE_SECONDS)}
    started: list[OperatorProcess] = []
    try:
        first = start_operator(sandbox, name=f"replica-a-{time.time_ns()}", env=env)
        started.append(first)
        second = start_operator(sandbox, name=f"replica-b-{time.time_ns()}", env=env, wait=False)
        started.append(second)
        yield started
    finally:
        for proc in started:
            if proc.alive():
                os.kill(proc.process.pid, signal.SIGCONT)
            proc.stop()
        restart_in_place(operator, sandbox)


def pods_epochs(core: Any, namespace: str) -> set[str]:
    return {
        p.metadata.annotations.get("ringrift.ai/epoch", "")
        for p in core.list_namespaced_pod(namespace).items
    }


def test_one_replica_acts_and_a_killed_leader_hands_over(
    replicas: list[OperatorProcess], api_client: Any, core: Any, namespace: str
) -> None:
    leader, standby = replicas
    custom = client.CustomObjectsApi(api_client)
    poll(lambda: status_of(standby), until=lambda d: d["role"] == "standby", timeout=30,
         what="the second replica standing by")  # fmt: skip
    assert "controller started" not in standby.log()
    epoch = status_of(leader)["epoch"]
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "selfplayjobs", spj("one"))
    first = wait_for_status(custom, namespace, "one", lambda s: s.get("phase") == "Complete")
    assert first["status"]["epoch"] == epoch
    assert pods_epochs(core, namespace) == {str(epoch)}

    killed_at = time.monotonic()
    leader.process.send_signal(signal.SIGKILL)
    doc = poll(lambda: status_of(standby), until=lambda d: d["role"] == "leader",
               timeout=LEASE_SECONDS + 15, what="the standby taking over")  # fmt: skip
    handover = time.monotonic() - killed_at
    assert doc["epoch"] == epoch + 1
    assert handover <= LEASE_SECONDS + 15
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "selfplayjobs", spj("two"))
    second = wait_for_status(custom, namespace, "two", lambda s: s.get("phase") == "Complete")
    assert second["status"]["epoch"] == epoch + 1
    record("leader-killed", lease_seconds=LEASE_SECONDS, bound_seconds=LEASE_SECONDS + 15,
           handover_seconds=round(handover, 1), epochs=[epoch, epoch + 1])  # fmt: skip


def test_a_paused_leader_that_lost_its_lease_writes_nothing(
    replicas: list[OperatorProcess], api_client: Any, core: Any, namespace: str, sandbox: Any
) -> None:
    leader, standby = replicas
    custom = client.CustomObjectsApi(api_client)
    poll(lambda: status_of(standby), until=lambda d: d["role"] == "standby", timeout=30,
         what="the second replica standing by")  # fmt: skip
    old = status_of(leader)
    old_epoch = old["epoch"]
    stale = f"ringrift-operator/{old['identity']}"  # its User-Agent, in the audit log
    poll(lambda: by_agent(audit_writes(sandbox), stale), until=bool, timeout=LEASE_SECONDS,
         what="the leader's own writes audited (its Lease renewals)")  # fmt: skip

    frozen_wall, frozen = time.time(), time.monotonic()
    os.kill(leader.process.pid, signal.SIGSTOP)
    doc = poll(lambda: status_of(standby), until=lambda d: d["role"] == "leader",
               timeout=LEASE_SECONDS + 15, what="the standby taking over")  # fmt: skip
    handover = time.monotonic() - frozen
    new_epoch = doc["epoch"]
    assert new_epoch == old_epoch + 1
    assert handover <= LEASE_SECONDS + 15
    # Work arrives while the old leader sleeps; it sees the same watch events when it wakes.
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "selfplayjobs", spj("p"))
    wait_for_status(custom, namespace, "p", lambda s: s.get("phase") == "Complete")

    paused = time.monotonic() - frozen
    os.kill(leader.process.pid, signal.SIGCONT)
    poll(lambda: leader.alive(), until=lambda alive: not alive, timeout=20,
         what="the woken stale leader to exit")  # fmt: skip
    assert leader.process.returncode == 3
    assert "leadership lost" in leader.log()
    assert pods_epochs(core, namespace) == {str(new_epoch)}
    job = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "selfplayjobs", "p")
    assert job["status"]["epoch"] == new_epoch
    # The API server's own record: not one write request from the stale leader since its
    # freeze (creates, updates, patches, deletes — the Lease included), while the new one wrote.
    since = audit_writes(sandbox, since=frozen_wall)
    stale_writes = by_agent(since, stale)
    fresh_writes = by_agent(since, f"ringrift-operator/{doc['identity']}")
    record("leader-frozen", lease_seconds=LEASE_SECONDS, bound_seconds=LEASE_SECONDS + 15,
           handover_seconds=round(handover, 1), paused_seconds=round(paused, 1),
           stale_leader_writes=len(stale_writes), new_leader_writes=len(fresh_writes),
           epochs=[old_epoch, new_epoch])  # fmt: skip
    assert not stale_writes, [(e["verb"], e["objectRef"]) for e in stale_writes]
    assert fresh_writes
