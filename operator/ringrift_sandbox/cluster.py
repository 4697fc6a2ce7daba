"""The sandbox cluster: a real control plane started as local processes.

etcd → kube-apiserver (TLS, RBAC, service-account keys, static admin token) →
kube-controller-manager → kube-scheduler → KWOK, each waited for, each logging to
``<dir>/logs/<name>.log``; then simulated GPU nodes (``nodes.py``) that KWOK keeps Ready.

Children are started with PR_SET_PDEATHSIG so they die with the process that owns the sandbox
(a pytest session, or the ``ringrift-sandbox serve`` supervisor behind ``make sandbox-up``), and
``stop()`` terminates every process group and waits until the ports are free. A state file
(``<dir>/sandbox.json``) lets a later run clean up what an earlier, killed run left behind.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ringrift_sandbox.kwokstages import kwok_config_yaml
from ringrift_sandbox.nodes import LOST_ANNOTATION, build_node, parse_node_spec
from ringrift_sandbox.pki import Pki, ensure_pki
from ringrift_sandbox.tools import find_tool

log = logging.getLogger("ringrift.sandbox")

DEFAULT_NODES = "h100:2,gh200:1,a100:4,l40s:2,rtx4090:4,rtx3090:2,cpu:2"
KUBE_VERSION = "v1.36.3"
SERVICE_CIDR = "10.96.0.0/12"
START_ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
_PR_SET_PDEATHSIG = 1
# Writes only, metadata only, one event per request (when it completed).
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [
        {"level": "Metadata", "verbs": ["create", "update", "patch", "delete", "deletecollection"]},
        {"level": "None"},
    ],
}


class SandboxError(RuntimeError):
    """The sandbox could not be started; the message names the component and its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    # SIGKILL, not SIGTERM: every child gets it at once, and an API server whose etcd is going
    # away at the same moment hangs in its graceful shutdown.
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def wait_for(
    what: str, check: Callable[[], bool], *, timeout: float, interval: float = 0.2
) -> None:
    """Poll ``check`` until it is true or ``timeout`` seconds pass (then SandboxError)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except SandboxError:
            raise
        except Exception as e:  # a component not up yet answers with all sorts of errors
            last = e
        time.sleep(interval)
    raise SandboxError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last})")


@dataclass
class Component:
    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, *, env: dict[str, str] | None = None, tie_to_parent: bool = True) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent if tie_to_parent else None,
                env=env,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class Sandbox:
    """One sandbox cluster rooted at ``directory``. Use as a context manager or start()/stop()."""

    directory: Path
    nodes: str = DEFAULT_NODES
    node_monitor_grace_seconds: int = 20
    start_timeout: float = 120.0
    simulate_workloads: bool = True  # run the workload simulator (completes operator pods)
    agents: bool = True  # run one node agent per simulated node (the data plane)
    simulator: Any = None  # SimulatorProcess while running
    agent_fleet: Any = None  # AgentFleet while running
    audit: bool = False  # kube-apiserver writes an audit log of every write (audit_log_path)
    components: dict[str, Component] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    started_at: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    # ---- paths -----------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def state_file(self) -> Path:
        return self.directory / "sandbox.json"

    @property
    def pki(self) -> Pki:
        return Pki(self.directory / "pki")

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    def log_path(self, name: str) -> Path:
        return self.directory / "logs" / f"{name}.log"

    @property
    def audit_log_path(self) -> Path:
        return self.directory / "logs" / "audit.jsonl"

    def audit_events(self) -> list[dict[str, Any]]:
        """The API server's audit events so far (with ``audit=True``): one per write request,
        with verb, objectRef, userAgent and timestamps."""
        try:
            lines = self.audit_log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        events = []
        for line in lines:
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return events

    def node_data_dir(self, node: str) -> Path:
        return self.directory / "nodes" / node / "data"

    # ---- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        t0 = time.monotonic()
        self.directory.mkdir(parents=True, exist_ok=True)
        cleanup_stale(self.directory)
        # A fresh cluster every time: state from an earlier run would only confuse.
        for stale in ("etcd", "nodes"):
            shutil.rmtree(self.directory / stale, ignore_errors=True)
        node_specs = parse_node_spec(self.nodes)
        pki = ensure_pki(self.directory / "pki")
        self.ports = {
            name: free_port()
            for name in ("etcd", "etcd-peer", "apiserver", "kcm", "scheduler", "kwok")
        }
        self._write_kubeconfig(pki)
        self.started_at = time.time()
        try:
            self._start_etcd()
            self._start_apiserver(pki)
            self._start_controller_manager(pki)
            self._start_scheduler()
            self._start_kwok()
            self._write_state()
            self._create_nodes([build_node(s) for s in node_specs])
            self._wait_ready(len(node_specs))
            self._start_data_plane()
            self._write_state()
        except BaseException:
            self.stop()
            raise
        self.timings["start"] = time.monotonic() - t0
        log.info("sandbox up in %.1fs: %s", self.timings["start"], self.kubeconfig)

    def _start_data_plane(self) -> None:
        from ringrift_sandbox.agents import start_agents
        from ringrift_sandbox.simulator import start_simulator

        t0 = time.monotonic()
        if self.simulate_workloads:
            self.simulator = start_simulator(self)
        if self.agents:
            self.agent_fleet = start_agents(self)
        self.timings["data-plane"] = time.monotonic() - t0

    def agent_token(self) -> str:
        """The shared token the node agents require (the operator presents it too)."""
        return (self.directory / "agent-token").read_text().strip()

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate every component in reverse start order — the API server before etcd, or it
        hangs on shutdown — then make sure the ports are free."""
        if self.agent_fleet is not None:
            self.agent_fleet.stop()
            self.agent_fleet = None
        if self.simulator is not None:
            self.simulator.stop()
            self.simulator = None
        for name in reversed(START_ORDER):
            comp = self.components.get(name)
            if not comp or not comp.process:
                continue
            _signal_group(comp.process.pid, signal.SIGTERM)
            try:
                comp.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs; killing it", name, timeout)
                _signal_group(comp.process.pid, signal.SIGKILL)
                comp.process.wait(timeout=5)
            _signal_group(comp.process.pid, signal.SIGKILL)  # stragglers in its group
        with contextlib.suppress(SandboxError):
            wait_for(
                "ports to be released",
                lambda: all(port_is_free(p) for p in self.ports.values()),
                timeout=10,
            )
        self.components.clear()
        self.state_file.unlink(missing_ok=True)

    # ---- faults ------------------------------------------------------------------------------
    def stop_apiserver(self, *, graceful: bool = False, timeout: float = 30.0) -> None:
        """Take kube-apiserver away (chaos tests): SIGKILL by default, a crash whose
        connections simply break; ``graceful`` sends SIGTERM and waits for its shutdown. Every
        other component stays up and has to cope."""
        comp = self.components["kube-apiserver"]
        assert comp.process is not None
        _signal_group(comp.process.pid, signal.SIGTERM if graceful else signal.SIGKILL)
        try:
            comp.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(comp.process.pid, signal.SIGKILL)
            comp.process.wait(timeout=5)
        wait_for("the API server port to be released",
                 lambda: port_is_free(self.ports["apiserver"]), timeout=timeout)  # fmt: skip

    def start_apiserver(self, *, timeout: float = 90.0) -> float:
        """Start kube-apiserver again, same flags and port (the kubeconfig stays valid), and
        wait until it is ready; returns the seconds that took."""
        comp = self.components["kube-apiserver"]
        if comp.alive():
            raise SandboxError("kube-apiserver is already running")
        t0 = time.monotonic()
        comp.start()
        self._expect_healthy("kube-apiserver", lambda: self.get("/readyz") == b"ok", timeout)
        self._write_state()
        return time.monotonic() - t0

    # ---- components --------------------------------------------------------------------------
    def _add(self, name: str, argv: list[str]) -> Component:
        comp = Component(name, argv, self.log_path(name))
        self.components[name] = comp
        comp.start()
        return comp

    def _expect_healthy(self, name: str, check: Callable[[], bool], timeout: float) -> None:
        comp = self.components[name]
        t0 = time.monotonic()

        def alive_and(check: Callable[[], bool] = check) -> bool:
            if not comp.alive():
                raise SandboxError(f"{name} exited; log {comp.log_path}:\n{comp.log_tail()}")
            return check()

        try:
            wait_for(f"{name} to be healthy", alive_and, timeout=timeout)
        except SandboxError as e:
            raise SandboxError(f"{e}\n--- {comp.log_path} ---\n{comp.log_tail()}") from None
        self.timings[name] = time.monotonic() - t0

    def _start_etcd(self) -> None:
        p = self.ports
        url = f"http://127.0.0.1:{p['etcd']}"
        peer = f"http://127.0.0.1:{p['etcd-peer']}"
        self._add(
            "etcd",
            [
                str(find_tool("etcd")),
                "--name=sandbox",
                f"--data-dir={self.directory / 'etcd'}",
                f"--listen-client-urls={url}",
                f"--advertise-client-urls={url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=sandbox={peer}",
                "--unsafe-no-fsync",  # a throwaway cluster: speed over durability
                "--quota-backend-bytes=4294967296",
                "--log-level=warn",
            ],
        )
        self._expect_healthy(
            "etcd", lambda: b'"health":"true"' in _http_get(f"{url}/health"), timeout=30
        )

    def _start_apiserver(self, pki: Pki) -> None:
        p = self.ports
        self._add(
            "kube-apiserver",
            [
                str(find_tool("kube-apiserver")),
                f"--etcd-servers=http://127.0.0.1:{p['etcd']}",
                f"--secure-port={p['apiserver']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--cert-dir={self.directory / 'apiserver-certs'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--token-auth-file={pki.tokens}",
                "--authorization-mode=RBAC",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--allow-privileged=true",
                "--max-requests-inflight=800",
                "--max-mutating-requests-inflight=400",
                "--profiling=false",
                "--v=1",
                *self._audit_flags(),
            ],
        )
        self._expect_healthy("kube-apiserver", lambda: self.get("/readyz") == b"ok", timeout=90)

    def _audit_flags(self) -> list[str]:
        if not self.audit:
            return []
        policy = self.directory / "audit-policy.json"
        policy.write_text(json.dumps(AUDIT_POLICY))
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log_path}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",  # an event is on disk when its request has returned
            "--audit-log-maxsize=0",
        ]

    def _start_controller_manager(self, pki: Pki) -> None:
        kc = str(self.kubeconfig)
        self._add(
            "kube-controller-manager",
            [
                str(find_tool("kube-controller-manager")),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                f"--secure-port={self.ports['kcm']}",
                "--bind-address=127.0.0.1",
                "--leader-elect=false",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_cert}",
                f"--cluster-signing-cert-file={pki.ca_cert}",
                f"--cluster-signing-key-file={pki.ca_key}",
                "--use-service-account-credentials=false",
                f"--node-monitor-grace-period={self.node_monitor_grace_seconds}s",
                "--node-monitor-period=2s",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--concurrent-gc-syncs=20",
                "--v=1",
            ],
        )
        self._expect_healthy(
            "kube-controller-manager",
            lambda: _https_get_insecure(f"https://127.0.0.1:{self.ports['kcm']}/healthz") == b"ok",
            timeout=60,
        )

    def _start_scheduler(self) -> None:
        kc = str(self.kubeconfig)
        self._add(
            "kube-scheduler",
            [
                str(find_tool("kube-scheduler")),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                f"--secure-port={self.ports['scheduler']}",
                "--bind-address=127.0.0.1",
                "--leader-elect=false",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--v=1",
            ],
        )
        self._expect_healthy(
            "kube-scheduler",
            lambda: (
                _https_get_insecure(f"https://127.0.0.1:{self.ports['scheduler']}/healthz") == b"ok"
            ),
            timeout=60,
        )

    def _start_kwok(self) -> None:
        config = self.directory / "kwok.yaml"
        config.write_text(kwok_config_yaml())
        self._add(
            "kwok",
            [
                str(find_tool("kwok")),
                f"--kubeconfig={self.kubeconfig}",
                f"--config={config}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--cidr=10.244.0.0/16",
                "--node-ip=10.0.0.1",
                "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{self.ports['kwok']}",
            ],
        )
        self._expect_healthy(
            "kwok",
            lambda: _http_get(f"http://127.0.0.1:{self.ports['kwok']}/healthz").strip() == b"ok",
            timeout=30,
        )

    # ---- API helpers (plain HTTPS with the admin token; the tests use real clients) ---------
    def _ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.pki.ca_cert))

    def request(self, method: str, path: str, body: Any = None, *, content_type: str = "") -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.pki.admin_token()}")
        if data is not None:
            req.add_header("Content-Type", content_type or "application/json")
        with urllib.request.urlopen(req, context=self._ssl(), timeout=30) as resp:
            raw = resp.read()
        return json.loads(raw) if raw[:1] in (b"{", b"[") else raw

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def _create_nodes(self, nodes: list[dict[str, Any]]) -> None:
        for node in nodes:
            try:
                self.request("POST", "/api/v1/nodes", node)
            except urllib.error.HTTPError as e:
                if e.code != 409:
                    raise SandboxError(f"creating node {node['metadata']['name']}: {e}") from e

    def set_node_lost(self, name: str, lost: bool = True) -> None:
        """Simulate losing a node (its kubelet stops: Ready=False, as the node lifecycle
        controller would report it) or getting it back. KWOK keeps renewing node leases
        whatever we do, so the condition is set directly and the heartbeat stage skips it."""
        annotations = {LOST_ANNOTATION: "true" if lost else None}
        self.request("PATCH", f"/api/v1/nodes/{name}", {"metadata": {"annotations": annotations}},
                     content_type="application/merge-patch+json")  # fmt: skip
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        ready = {
            "type": "Ready",
            "status": "False" if lost else "True",
            "reason": "KubeletStopped" if lost else "KubeletReady",
            "message": "simulated node loss" if lost else "kubelet is posting ready status",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
        self.request("PATCH", f"/api/v1/nodes/{name}/status", {"status": {"conditions": [ready]}},
                     content_type="application/strategic-merge-patch+json")  # fmt: skip

    def ready_nodes(self) -> list[str]:
        items = self.get("/api/v1/nodes")["items"]
        return [
            n["metadata"]["name"]
            for n in items
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        ]

    def _wait_ready(self, node_count: int) -> None:
        t0 = time.monotonic()
        wait_for(
            f"{node_count} nodes Ready", lambda: len(self.ready_nodes()) >= node_count, timeout=60
        )
        # Pods in a namespace need its default ServiceAccount (made by the controller-manager).
        wait_for(
            "the default ServiceAccount",
            lambda: bool(self.get("/api/v1/namespaces/default/serviceaccounts/default")),
            timeout=60,
        )
        self.timings["nodes"] = time.monotonic() - t0

    # ---- files -------------------------------------------------------------------------------
    def _write_kubeconfig(self, pki: Pki) -> None:
        ca = base64.b64encode(pki.ca_cert.read_bytes()).decode()
        server = f"https://127.0.0.1:{self.ports['apiserver']}"
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "ringrift-sandbox",
                            "cluster": {"server": server, "certificate-authority-data": ca},
                        }
                    ],
                    "users": [{"name": "admin", "user": {"token": pki.admin_token()}}],
                    "contexts": [
                        {
                            "name": "ringrift-sandbox",
                            "context": {
                                "cluster": "ringrift-sandbox",
                                "user": "admin",
                                "namespace": "default",
                            },
                        }
                    ],
                    "current-context": "ringrift-sandbox",
                },
                indent=2,
            )
        )
        self.kubeconfig.chmod(0o600)

    def _write_state(self) -> None:
        self.state_file.write_text(
            json.dumps(
                {
                    "owner": os.getpid(),
                    "kubeconfig": str(self.kubeconfig),
                    "server": self.server,
                    "ports": self.ports,
                    "pids": {n: c.process.pid for n, c in self.components.items() if c.process},
                    "nodes": self.nodes,
                },
                indent=2,
            )
        )


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_state(directory: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((directory / "sandbox.json").read_text())
    except (OSError, ValueError):
        return None
    return state


def cleanup_stale(directory: Path) -> None:
    """Kill what a previous sandbox in ``directory`` left running (its owner died)."""
    state = read_state(directory)
    if state is None:
        return
    owner = int(state.get("owner", 0))
    if owner and owner != os.getpid() and _pid_alive(owner):
        raise SandboxError(
            f"a sandbox is already running in {directory} (pid {owner}); "
            "stop it first (make sandbox-down)"
        )
    for pid in state.get("pids", {}).values():
        if _pid_alive(int(pid)) and _is_ours(int(pid), directory):
            _signal_group(int(pid), signal.SIGKILL)
    (directory / "sandbox.json").unlink(missing_ok=True)


def _is_ours(pid: int, directory: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return str(directory).encode() in cmdline


def _http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as resp:
        body: bytes = resp.read()
        return body


def _https_get_insecure(url: str) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the components' self-signed serving certs; loopback only
    with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
        body: bytes = resp.read()
        return body


@contextlib.contextmanager
def running_sandbox(directory: Path, **kwargs: Any) -> Iterator[Sandbox]:
    sandbox = Sandbox(directory, **kwargs)
    with sandbox:
        yield sandbox
