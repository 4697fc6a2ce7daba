"""Running the operator as a process against the sandbox, and small helpers for e2e tests of
the resources it reconciles."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ringrift_sandbox.cluster import die_with_parent, free_port
from tests_support import poll

GROUP, VERSION = "ringrift.ai", "v1alpha1"


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0  # /healthz, /readyz, /metrics, /status
    env: dict[str, str] | None = None  # the extra environment it was started with
    log_offset: int = 0  # where this process's output starts in log_path (appended to)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        """This process's output (not that of earlier processes logging to the same file)."""
        with self.log_path.open("rb") as f:
            f.seek(self.log_offset)
            return f.read().decode(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


LIVE: list[OperatorProcess] = []
"""Operators started by the tests (the session's, replicas …), so a module can pause them."""


def restart_in_place(proc: OperatorProcess, sandbox: Any, *, name: str = "operator") -> None:
    """Start ``proc`` again (it was stopped), keeping the same object for its fixture's users."""
    fresh = start_operator(sandbox, name=name, env=proc.env)
    LIVE.remove(fresh)
    proc.process, proc.log_path, proc.port = fresh.process, fresh.log_path, fresh.port
    proc.log_offset = fresh.log_offset


def start_operator(
    sandbox: Any,
    *,
    name: str,
    env: dict[str, str] | None = None,
    wait: bool = True,
    args: tuple[str, ...] = (),
) -> OperatorProcess:
    directory = sandbox.directory / name
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "operator.log"
    offset = log_path.stat().st_size if log_path.exists() else 0
    port = free_port()
    environ = {
        **os.environ,
        "RINGRIFT_HISTORY_PATH": str(directory / "history.db"),
        "RINGRIFT_RESYNC_SECONDS": "5",
        "RINGRIFT_HTTP_PORT": str(port),
        **(env or {}),
    }
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ringrift_operator.cli", "run",
             f"--kubeconfig={sandbox.kubeconfig}", *args],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=environ,
            start_new_session=True, preexec_fn=die_with_parent,
        )  # fmt: skip
    proc = OperatorProcess(process, log_path, port, env, offset)
    LIVE.append(proc)
    if wait:
        wait_started(proc, timeout=60)
    return proc


def wait_started(proc: OperatorProcess, *, timeout: float) -> None:
    """Until the operator logs that its controller runs; fails at once if it exits."""
    deadline = time.monotonic() + timeout
    while "controller started" not in proc.log():
        if not proc.alive():
            raise AssertionError(f"operator exited:\n{proc.log()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"operator not started after {timeout}s:\n{proc.log()[-3000:]}")
        time.sleep(0.2)


def spj(name: str, **spec: Any) -> dict[str, Any]:
    """A SelfplayJob body with sensible defaults (square8, 2 players, heuristic, 10 games)."""
    body_spec = {"board": "square8", "players": 2, "engineMode": "heuristic", "games": 10,
                 "gpus": 1, **spec}  # fmt: skip
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SelfplayJob",
        "metadata": {"name": name},
        "spec": body_spec,
    }


def wait_for_status(
    custom: Any, namespace: str, name: str, until: Any, *, timeout: float = 60, what: str = ""
) -> dict[str, Any]:
    def fetch() -> dict[str, Any]:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "selfplayjobs", name
        )
        return obj

    return poll(
        fetch,
        until=lambda o: bool(until(o.get("status") or {})),
        timeout=timeout,
        what=what or f"SelfplayJob {namespace}/{name} status",
    )


def elapsed(start: float) -> float:
    return time.monotonic() - start


def events_of(
    core: Any, namespace: str, name: str, *, including: set[str], timeout: float = 20
) -> list[Any]:
    """The Events of object ``name`` once their reasons include ``including``: a reconcile
    writes the status first and posts its Events after, so a test that has just seen the status
    waits for them here instead of racing the operator."""
    items: list[Any] = poll(
        lambda: (
            core.list_namespaced_event(
                namespace, field_selector=f"involvedObject.name={name}"
            ).items
        ),
        until=lambda items: including <= {e.reason for e in items},
        timeout=timeout,
        what=f"Events {sorted(including)} of {namespace}/{name}",
    )
    return items


def delete_namespace_and_wait(core: Any, name: str, *, timeout: float = 90) -> None:
    """Delete a test namespace and wait until it is gone, pods included, so that the next test
    starts with the capacity back."""
    from kubernetes.client.rest import ApiException

    core.delete_namespace(name)

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as e:
            return e.status == 404
        return False

    poll(gone, until=bool, timeout=timeout, what=f"namespace {name} deleted")
