"""Chaos on the sandbox: process and infrastructure faults, each scenario asserting its bound and
reporting its figures (printed, and appended to bench/results/chaos-faults.json).

- the operator ``kill -9``-ed at random moments during a 300-job burst (3 times here, 20 in the
  ``chaos`` variant): no duplicate pod for any job attempt, none lost or stuck, convergence
  within 60 s of the last restart;
- kube-apiserver killed and started again mid-burst: the operator (same process) resumes
  placing within 70 s; frozen (SIGSTOP): every watch of the operator notices the silence and
  restarts instead of waiting forever;
- SIGTERM while the API server is down: the operator exits within its shutdown deadline.

Leader changes are in test_leadership.py, node and agent loss in test_selfplayjob.py and
test_syncplan.py, with their bounds and figures.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from chaos_support import (
    TERMINAL,
    create_burst,
    phases,
    pod_creations,
    pods_per_attempt,
    record,
    terminal_count,
)
from operator_support import (
    GROUP,
    LIVE,
    VERSION,
    OperatorProcess,
    restart_in_place,
    spj,
    start_operator,
    wait_for_status,
)
from ringrift_sandbox.simulator import load_rules, rules_path, set_rules
from tests_support import poll

BURST = 300  # jobs in the long variant's burst (the short one: 120)
CONVERGE_SECONDS = 60  # after the last restart
RESUME_SECONDS = 70  # after the API server is back
KILL_LEASE_SECONDS = 10  # a killed leader's Lease expires soon: the next process takes over


@pytest.fixture(scope="module")
def custom(api_client: Any) -> Any:
    return client.CustomObjectsApi(api_client)


@pytest.fixture
def skip_rule(sandbox: Any, namespace: str) -> Iterator[Callable[[int], None]]:
    """Simulator rule for this test's namespace: pods complete after ``ms`` without running
    the workload (300 real workloads would starve the machine), then removed."""
    path = rules_path(sandbox.directory)

    def add(ms: int) -> None:
        current = [r.model_dump(by_alias=True, exclude_none=True) for r in load_rules(path)]
        rule = {"namespace": namespace, "skip": True, "durationMs": ms,
                "message": {"gamesWritten": 4}}  # fmt: skip
        set_rules(sandbox.directory, [rule, *current])

    yield add
    set_rules(sandbox.directory, [r for r in load_rules(path) if r.namespace != namespace])


@pytest.fixture
def solo(operator: OperatorProcess, sandbox: Any) -> Iterator[Callable[..., OperatorProcess]]:
    """Start operators of the test's own (the session's operator is stopped meanwhile: it would
    compete for the Lease); all stopped afterwards and the session's operator started again."""
    operator.stop()
    started: list[OperatorProcess] = []
    suffix = time.time_ns()

    def spawn(name: str, env: dict[str, str], *, wait: bool = True) -> OperatorProcess:
        # The same name again: the same directory, so a restart keeps its history store.
        proc = start_operator(sandbox, name=f"{name}-{suffix}", env=env, wait=wait)
        started.append(proc)
        return proc

    try:
        yield spawn
    finally:
        for proc in started:
            if proc.alive():
                os.kill(proc.process.pid, signal.SIGCONT)
            proc.stop(timeout=20)
            if proc in LIVE:
                LIVE.remove(proc)
        restart_in_place(operator, sandbox)


def status_of(proc: OperatorProcess) -> dict[str, Any]:
    with urllib.request.urlopen(proc.url + "/status", timeout=5) as resp:
        doc: dict[str, Any] = json.loads(resp.read())
        return doc


# --- 1. the operator killed during a burst ---------------------------------------------------


@pytest.mark.parametrize(
    ("kills", "jobs", "pod_ms"),
    [
        # Pods long enough that the burst outlasts the first kill even when placement is fast.
        pytest.param(3, 120, 4000, id="3-kills"),
        pytest.param(20, BURST, 1500, id="20-kills", marks=pytest.mark.chaos),
    ],
)
def test_operator_killed_at_random_moments_during_a_burst(
    kills: int, jobs: int, pod_ms: int, solo: Any, skip_rule: Any, custom: Any, core: Any,
    namespace: str, sandbox: Any,
) -> None:  # fmt: skip
    skip_rule(pod_ms)
    seed = int(os.environ.get("RINGRIFT_CHAOS_SEED") or time.time_ns() % 2**32)
    rng = random.Random(seed)
    env = {"RINGRIFT_LEASE_DURATION_SECONDS": str(KILL_LEASE_SECONDS)}
    current = [solo("killed", env)]
    last_start = [time.monotonic()]
    self_exits: list[int] = []

    def supervise() -> OperatorProcess:
        """Like a Deployment: an operator that exited on its own (a leader that could not
        renew its Lease in time exits by design) is started again."""
        if not current[0].alive():
            self_exits.append(current[0].process.returncode)
            current[0] = solo("killed", env, wait=False)
            last_start[0] = time.monotonic()
        return current[0]

    t0 = time.monotonic()
    create_burst(custom, namespace, jobs)
    created_s = time.monotonic() - t0
    moments: list[dict[str, Any]] = []
    for _ in range(kills):
        proc = supervise()
        if rng.random() < 0.25:  # anywhere: standing by for the Lease, starting, syncing …
            at = last_start[0] + rng.uniform(1.0, KILL_LEASE_SECONDS + 3.0)
        else:  # … or while placing at full speed
            poll(lambda: "controller started" in supervise().log(), until=bool,
                 timeout=KILL_LEASE_SECONDS + 60, what="the operator acting")  # fmt: skip
            proc = current[0]
            at = time.monotonic() + rng.uniform(0.2, 5.0)
        while time.monotonic() < at and proc.alive():
            time.sleep(0.05)
        proc = supervise()
        started = "controller started" in proc.log()
        done = terminal_count(custom, namespace)
        proc.process.send_signal(signal.SIGKILL)
        proc.process.wait(timeout=10)
        moments.append({"after_s": round(time.monotonic() - last_start[0], 1),
                        "acting": started, "terminal_jobs": done})  # fmt: skip
        current[0] = solo("killed", env, wait=False)
        last_start[0] = time.monotonic()

    def settled() -> dict[str, str]:
        supervise()
        return phases(custom, namespace)

    final = poll(
        settled,
        until=lambda ph: len(ph) == jobs and all(p in TERMINAL for p in ph.values()),
        timeout=CONVERGE_SECONDS + 30,
        interval=1.0,
        what=f"all {jobs} jobs terminal after the last restart",
    )
    converge_s = time.monotonic() - last_start[0]
    creations = pod_creations(sandbox, namespace)
    per_attempt = pods_per_attempt(core, namespace)
    duplicates = sorted(n for n, c in creations.items() if c > 1)
    duplicates += sorted(f"{o}#{a}" for (o, a), c in per_attempt.items() if c > 1)
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "selfplayjobs")
    attempts = sum(len((o.get("status") or {}).get("recentAttempts") or [])
                   for o in listed["items"])  # fmt: skip
    figures = record(
        "operator-kill", variant=f"{kills}-kills", seed=seed, jobs=jobs, kills=kills,
        kills_during_burst=sum(1 for m in moments if m["terminal_jobs"] < jobs),
        kills_while_acting=sum(1 for m in moments if m["acting"]),
        self_exits=len(self_exits), self_exit_codes=self_exits, duplicates=len(duplicates),
        pods_created=sum(creations.values()), attempts=attempts,
        complete=sum(1 for p in final.values() if p == "Complete"),
        failed=sum(1 for p in final.values() if p == "Failed"),
        converge_seconds=round(converge_s, 1), create_seconds=round(created_s, 1),
        moments=moments,
    )  # fmt: skip
    assert not duplicates, f"duplicate pods for a job attempt: {duplicates[:10]}"
    assert figures["complete"] == jobs, "no job lost, stuck or failed"
    assert converge_s <= CONVERGE_SECONDS
    assert figures["kills_during_burst"] >= 1, "the kills must hit work in flight"


# --- 3. the API server restarted, frozen, and gone at shutdown ---------------------------------


def test_api_server_restart_mid_burst_the_same_operator_resumes(
    solo: Any, skip_rule: Any, custom: Any, namespace: str, sandbox: Any
) -> None:
    skip_rule(300)
    # A Lease longer than the outage: the leader may keep it (the API server was away for
    # everyone); with a shorter one it would exit by design and be restarted as a standby.
    proc = solo("apiserver", {"RINGRIFT_LEASE_DURATION_SECONDS": "60"})
    pid = proc.process.pid
    create_burst(custom, namespace, 60, prefix="before")
    poll(lambda: terminal_count(custom, namespace), until=lambda n: n >= 10, timeout=60,
         what="the burst under way")  # fmt: skip
    down_at = terminal_count(custom, namespace)
    t_down = time.monotonic()
    sandbox.stop_apiserver()
    time.sleep(3)  # the outage: every connection refused
    restart_s = sandbox.start_apiserver()
    back = time.monotonic()
    create_burst(custom, namespace, 10, prefix="after")
    first = poll(
        lambda: phases(custom, namespace),
        until=lambda ph: any(
            p in ("Running", *TERMINAL) for n, p in ph.items() if n.startswith("after")
        ),
        timeout=RESUME_SECONDS,
        interval=0.5,
        what="a job created after the restart placed",
    )
    resume_s = time.monotonic() - back
    final = poll(
        lambda: phases(custom, namespace),
        until=lambda ph: len(ph) == 70 and all(p == "Complete" for p in ph.values()),
        timeout=RESUME_SECONDS,
        interval=1.0,
        what="every job complete after the restart",
    )
    converge_s = time.monotonic() - back
    duplicates = [n for n, c in pod_creations(sandbox, namespace).items() if c > 1]
    assert first
    assert final
    record(
        "apiserver-restart", outage_seconds=round(back - t_down, 1),
        apiserver_start_seconds=round(restart_s, 1), terminal_when_killed=down_at,
        resume_placing_seconds=round(resume_s, 1), converge_seconds=round(converge_s, 1),
        same_pid=proc.process.pid == pid and proc.alive(), duplicates=len(duplicates),
        watches=status_of(proc)["watches"],
    )  # fmt: skip
    assert proc.alive(), "recovered without a restart of its own"
    assert proc.process.pid == pid
    assert resume_s <= RESUME_SECONDS
    assert not duplicates


def test_a_frozen_api_server_stalls_no_watch_for_good(
    solo: Any, custom: Any, namespace: str, sandbox: Any
) -> None:
    """SIGSTOP: connections stay open, nothing arrives — the case only a stall timeout sees."""
    stall = 5
    proc = solo("stall", {"RINGRIFT_LEASE_DURATION_SECONDS": "60",
                          "RINGRIFT_WATCH_STALL_SECONDS": str(stall)})  # fmt: skip
    before = status_of(proc)["watches"]
    apiserver = sandbox.components["kube-apiserver"].process
    os.kill(apiserver.pid, signal.SIGSTOP)
    frozen = time.monotonic()
    try:
        stalled = poll(
            lambda: status_of(proc)["watches"],
            until=lambda w: all(w[k]["stalls"] > before[k]["stalls"] for k in w),
            timeout=stall * 3,
            interval=0.5,
            what="every reflector to notice the silent stream",
        )
        detected_s = time.monotonic() - frozen
    finally:
        os.kill(apiserver.pid, signal.SIGCONT)
    woke = time.monotonic()
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "selfplayjobs",
                                           spj("after-freeze"))  # fmt: skip
    wait_for_status(custom, namespace, "after-freeze", lambda s: s.get("phase") == "Complete",
                    timeout=RESUME_SECONDS)  # fmt: skip
    record("apiserver-freeze", stall_bound_seconds=stall, detected_seconds=round(detected_s, 1),
           resume_seconds=round(time.monotonic() - woke, 1), watches=stalled)  # fmt: skip
    assert detected_s <= stall * 3
    assert proc.alive()


@pytest.mark.parametrize("outage", ["killed", "frozen"])
def test_sigterm_with_the_api_server_down_exits_within_the_deadline(
    outage: str, solo: Any, sandbox: Any
) -> None:
    """Killed: connections are refused at once. Frozen (SIGSTOP, like a network partition):
    connections hang, and a graceful shutdown waits on every one of them."""
    deadline = 5
    proc = solo("sigterm", {"RINGRIFT_SHUTDOWN_TIMEOUT_SECONDS": str(deadline)})
    apiserver = sandbox.components["kube-apiserver"].process
    if outage == "killed":
        sandbox.stop_apiserver()
    else:
        os.kill(apiserver.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        proc.process.send_signal(signal.SIGTERM)
        try:
            code = proc.process.wait(timeout=deadline + 25)
        except Exception:
            proc.process.kill()
            raise
        exit_s = time.monotonic() - t0
    finally:
        if outage == "killed":
            sandbox.start_apiserver()
        else:
            os.kill(apiserver.pid, signal.SIGCONT)
    record("sigterm-apiserver-down", outage=outage, deadline_seconds=deadline,
           exit_seconds=round(exit_s, 1), exit_code=code)  # fmt: skip
    assert exit_s <= deadline + 2, proc.log()[-3000:]
