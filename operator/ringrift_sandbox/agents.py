"""Node agents for the sandbox: one ``ringrift-operator agent`` process per simulated node.

In a real cluster the agent is a DaemonSet; here each simulated node gets a local process serving
``sandbox.node_data_dir(node)`` on its own loopback port, authenticated by one shared token
(``<sandbox>/agent-token``, made once), and advertising itself on its Node through the sandbox's
kubeconfig exactly as in a cluster (the ``ringrift.ai/agent-endpoint`` annotation). Logs go to
``<sandbox>/logs/agent-<node>.log``; the processes die with their parent like the control plane.

Wiring (the launcher owns the order)::

    fleet = start_agents(sandbox)          # after the nodes exist; waits for /healthz + annotation
    fleet.urls()                           # {"gpu-h100-0": "http://127.0.0.1:41234", ...}
    fleet.stop()                           # before the API server stops
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ringrift_operator.api.common import ANNOTATION_AGENT_ENDPOINT
from ringrift_sandbox.cluster import Component, Sandbox, SandboxError, free_port, wait_for
from ringrift_sandbox.nodes import parse_node_spec

TOKEN_FILE = "agent-token"
COMPONENT_PREFIX = "agent-"


def ensure_agent_token(directory: Path, *, token: str | None = None) -> Path:
    """``<directory>/agent-token`` (mode 0600), written with ``token`` or, if the file does not
    exist yet, a fresh random one; an existing file is kept when no token is given."""
    path = directory / TOKEN_FILE
    if token is None and path.is_file() and path.read_text().strip():
        return path
    directory.mkdir(parents=True, exist_ok=True)
    value = token or secrets.token_hex(32)
    temp = path.with_name(f".{TOKEN_FILE}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    os.replace(temp, path)
    return path


@dataclass
class AgentProcess:
    """One running agent."""

    node: str
    url: str
    data_dir: Path
    component: Component

    @property
    def process(self) -> subprocess.Popen[bytes]:
        assert self.component.process is not None
        return self.component.process

    def alive(self) -> bool:
        return self.component.alive()


@dataclass
class AgentFleet:
    """The sandbox's agents: iterate for :class:`AgentProcess`, ``urls()``, ``stop()``."""

    agents: list[AgentProcess]
    token_file: Path
    stopped: bool = field(default=False)

    def __iter__(self) -> Iterator[AgentProcess]:
        return iter(self.agents)

    def __len__(self) -> int:
        return len(self.agents)

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    def urls(self) -> dict[str, str]:
        """node -> agent base URL."""
        return {a.node: a.url for a in self.agents}

    def pids(self) -> dict[str, int]:
        """``agent-<node>`` -> pid, for the sandbox's state file (stale-process cleanup)."""
        return {f"{COMPONENT_PREFIX}{a.node}": a.process.pid for a in self.agents}

    def stop(self, *, timeout: float = 10.0) -> None:
        """SIGTERM every agent (they finish in-flight requests), then SIGKILL stragglers."""
        stop_agents(self.agents, timeout=timeout)
        self.stopped = True

    def agent(self, node: str) -> AgentProcess:
        return next(a for a in self.agents if a.node == node)

    def stop_agent(self, node: str, *, timeout: float = 10.0) -> None:
        """Stop one node's agent (its Node keeps the annotation, as after a crash)."""
        stop_agents([self.agent(node)], timeout=timeout)

    def restart_agent(self, node: str, *, timeout: float = 30.0) -> None:
        """Start a stopped agent again with the same port, data directory and token, and wait
        until it answers ``/healthz``."""
        agent = self.agent(node)
        if agent.alive():
            return
        agent.component.start()
        wait_for(f"agent of {node} to answer /healthz", _all_healthy([agent]), timeout=timeout)


def agent_argv(
    *, node: str, data_dir: Path, port: int, kubeconfig: Path | None, token_file: Path
) -> list[str]:
    """The command line of one agent."""
    argv = [
        sys.executable,
        "-m",
        "ringrift_operator.cli",
        "agent",
        f"--node={node}",
        f"--data-dir={data_dir}",
        f"--listen=127.0.0.1:{port}",
        f"--token-file={token_file}",
    ]
    argv.append(f"--kubeconfig={kubeconfig}" if kubeconfig else "--no-advertise")
    return argv


def start_agents(
    sandbox: Sandbox,
    *,
    nodes: Sequence[str] | None = None,
    token: str | None = None,
    advertise: bool = True,
    timeout: float = 30.0,
) -> AgentFleet:
    """Start one agent per node (default: every node of ``sandbox.nodes``) and wait until each
    answers ``/healthz`` and, with ``advertise``, its Node carries its URL. On failure every agent
    started is stopped and :class:`SandboxError` names the one that failed, with its log."""
    names = list(nodes) if nodes is not None else [s.name for s in parse_node_spec(sandbox.nodes)]
    token_file = ensure_agent_token(sandbox.directory, token=token)
    agents: list[AgentProcess] = []
    try:
        for node in names:
            port = free_port()
            data_dir = sandbox.node_data_dir(node)
            data_dir.mkdir(parents=True, exist_ok=True)
            argv = agent_argv(
                node=node,
                data_dir=data_dir,
                port=port,
                kubeconfig=sandbox.kubeconfig if advertise else None,
                token_file=token_file,
            )
            component = Component(
                f"{COMPONENT_PREFIX}{node}", argv, sandbox.log_path(f"{COMPONENT_PREFIX}{node}")
            )
            component.start()
            agents.append(AgentProcess(node, f"http://127.0.0.1:{port}", data_dir, component))
        wait_for(f"{len(agents)} agents to answer /healthz", _all_healthy(agents), timeout=timeout)
        if advertise and agents:
            wait_for(
                "agents to be advertised on their Nodes",
                lambda: _all_advertised(sandbox, agents),
                timeout=timeout,
            )
    except BaseException:
        stop_agents(agents)
        raise
    return AgentFleet(agents=agents, token_file=token_file)


def stop_agents(agents: Sequence[AgentProcess], *, timeout: float = 10.0) -> None:
    for agent in agents:
        if agent.component.process is not None:
            _signal_group(agent.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for agent in agents:
        process = agent.component.process
        if process is None:
            continue
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def _all_healthy(agents: Sequence[AgentProcess]) -> Callable[[], bool]:
    pending = list(agents)

    def check() -> bool:
        for agent in list(pending):
            if not agent.alive():
                raise SandboxError(
                    f"agent of {agent.node} exited; log {agent.component.log_path}:\n"
                    f"{agent.component.log_tail()}"
                )
            if _healthy(agent.url):
                pending.remove(agent)
        return not pending

    return check


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
            status: int = response.status
            return status == 200 and b'"ok"' in response.read()
    except OSError:
        return False


def _all_advertised(sandbox: Sandbox, agents: Sequence[AgentProcess]) -> bool:
    items = sandbox.get("/api/v1/nodes")["items"]
    annotations = {n["metadata"]["name"]: (n["metadata"].get("annotations") or {}) for n in items}
    return all(annotations.get(a.node, {}).get(ANNOTATION_AGENT_ENDPOINT) == a.url for a in agents)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
