"""The workload simulator: plays the container for the operator's pods on simulated (KWOK) nodes.

KWOK makes a pod bound to a simulated node Running, and nothing ever completes it. The simulator
watches pods whose ``spec.schedulerName`` is the operator's, and for each one that KWOK has made
Running it runs the sample workload (``ringrift-operator workload``) on this host with the pod's
container environment — the container's ``/data`` mapped to the node's own directory
(``Sandbox.node_data_dir(node)``), ``/tmp`` to a scratch directory — and then completes the pod
as a kubelet would: it patches the status subresource to Succeeded or Failed with the exit code
and the termination message.

Each pod is handled once (tracked by uid across watch restarts). A pod deleted while its workload
runs has the process killed and is not completed; neither is a pod whose node stopped being
KWOK-managed (simulated node loss). Fault injection comes from a rules file
(``<sandbox dir>/simulator-rules.json``, re-read when it changes; see :class:`SimulatorRule`).

Two forms: a process (``python -m ringrift_sandbox.simulator --kubeconfig K --sandbox-dir D``,
what the sandbox starts as a component; :func:`simulator_argv`, :func:`start_simulator`) and
in-process (``WorkloadSimulator(KubePodApi.from_kubeconfig(k), sandbox_dir=d).start()`` /
``.stop()``, a background thread). Either logs one line per pod it handles.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ringrift_operator.api.common import OPERATOR_NAME
from ringrift_operator.api.contract import (
    CONTAINER_DATA_DIR,
    TERMINATION_MESSAGE_MAX_BYTES,
    Env,
)
from ringrift_sandbox.nodes import KWOK_ANNOTATION, KWOK_MANAGED

if TYPE_CHECKING:
    from ringrift_sandbox.cluster import Component, Sandbox

log = logging.getLogger("ringrift.sandbox.simulator")

COMPONENT_NAME = "workload-simulator"
RULES_FILE_NAME = "simulator-rules.json"
READY_FILE_NAME = "simulator.ready"
DEFAULT_WORKERS = 8
DEFAULT_DURATION_MS = 300
FIELD_SELECTOR = f"spec.schedulerName={OPERATOR_NAME}"
CONTAINER_TMP_DIR = "/tmp"
WATCH_SECONDS = 240  # server-side timeout of one watch request; it is then resumed
LOG_TAIL_LINES = 80  # terminationMessagePolicy FallbackToLogsOnError: the kubelet's tail
_SIGNAL_EXIT_BASE = 128  # a container killed by signal N exits 128 + N
# Host variables that must not leak into a workload: the contract's, and cluster credentials.
_CONTRACT_NAMES = frozenset(
    v for k, v in vars(Env).items() if not k.startswith("_") and isinstance(v, str)
)


# ---- rules ---------------------------------------------------------------------------------


class SimulatorRule(BaseModel):
    """One fault-injection rule. Matchers (all given must hold; none given matches every pod)
    select pods; effects say what the simulated container does. First matching rule wins."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    # matchers
    name: str | None = Field(default=None, description="glob on the pod name, e.g. 'spj-*-a1'")
    namespace: str | None = Field(default=None, description="glob on the pod's namespace")
    node: str | None = Field(default=None, description="glob on the node the pod is bound to")
    selector: str | None = Field(
        default=None,
        description="label selector: 'k=v', 'k!=v', 'k', '!k', 'k in (a,b)', 'k notin (a,b)', "
        "comma-separated (all must hold)",
    )
    # effects
    duration_ms: int | None = Field(
        default=None, ge=0, alias="durationMs", description="how long the workload runs"
    )
    exit_code: int | None = Field(
        default=None, ge=0, le=255, alias="exitCode", description="force this exit code"
    )
    hang: bool = Field(default=False, description="never complete: the pod stays Running")
    skip: bool = Field(
        default=False,
        description="run nothing; complete with `message` and `exitCode`, at once or after "
        "`durationMs` (a light stand-in for a workload that takes time)",
    )
    message: dict[str, Any] | str | None = Field(
        default=None, description="skip: the termination message (an object is sent as JSON)"
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="extra container env, e.g. RINGRIFT_SAMPLE_WIN_RATE_..."
    )

    @field_validator("selector")
    @classmethod
    def _valid_selector(cls, value: str | None) -> str | None:
        if value is not None:
            parse_selector(value)
        return value

    @model_validator(mode="after")
    def _one_mode(self) -> SimulatorRule:
        if self.hang and self.skip:
            raise ValueError("a rule cannot both hang and skip")
        return self


class RulesFile(BaseModel):
    """The rules file: ``{"rules": [...]}``, matched in order."""

    model_config = ConfigDict(extra="forbid")

    rules: list[SimulatorRule] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Requirement:
    """One clause of a label selector."""

    key: str
    operator: str  # "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def holds(self, labels: Mapping[str, str]) -> bool:
        match self.operator:
            case "exists":
                return self.key in labels
            case "!exists":
                return self.key not in labels
            case "in":
                return labels.get(self.key) in self.values
            case _:  # notin: also true when the label is absent, as in Kubernetes
                return labels.get(self.key) not in self.values


_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET_CLAUSE = re.compile(rf"^(?P<key>{_KEY})\s+(?P<op>in|notin)\s+\((?P<values>[^()]*)\)$")
_EQ_CLAUSE = re.compile(rf"^(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})$")
_EXISTS_CLAUSE = re.compile(rf"^(?P<neg>!)?\s*(?P<key>{_KEY})$")
_VALUE_ONLY = re.compile(rf"^{_VALUE}$")


def parse_selector(text: str) -> tuple[Requirement, ...]:
    """Parse a Kubernetes label selector (equality- and set-based); ValueError when malformed."""
    clauses: list[str] = []
    depth, start = 0, 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            clauses.append(text[start:index])
            start = index + 1
    clauses.append(text[start:])
    requirements: list[Requirement] = []
    for raw in clauses:
        clause = raw.strip()
        if not clause:
            if text.strip():
                raise ValueError(f"empty clause in selector {text!r}")
            continue
        if m := _SET_CLAUSE.match(clause):
            values = frozenset(v.strip() for v in m["values"].split(","))
            if not all(_VALUE_ONLY.match(v) for v in values):
                raise ValueError(f"bad values in selector clause {clause!r}")
            requirements.append(Requirement(m["key"], m["op"], values))
        elif m := _EQ_CLAUSE.match(clause):
            op = "notin" if m["op"] == "!=" else "in"
            requirements.append(Requirement(m["key"], op, frozenset({m["value"]})))
        elif m := _EXISTS_CLAUSE.match(clause):
            requirements.append(Requirement(m["key"], "!exists" if m["neg"] else "exists"))
        else:
            raise ValueError(f"bad selector clause {clause!r}")
    return tuple(requirements)


def selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy every clause of ``selector`` (an empty selector matches)."""
    return all(r.holds(labels) for r in parse_selector(selector))


def rule_matches(rule: SimulatorRule, pod: Mapping[str, Any]) -> bool:
    """Whether every matcher of ``rule`` holds for ``pod`` (the pod's JSON)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    globs = (
        (rule.name, meta.get("name")),
        (rule.namespace, meta.get("namespace")),
        (rule.node, spec.get("nodeName")),
    )
    for pattern, value in globs:
        if pattern is not None and not fnmatch.fnmatchcase(value or "", pattern):
            return False
    return rule.selector is None or selector_matches(rule.selector, meta.get("labels") or {})


def match_rule(rules: Sequence[SimulatorRule], pod: Mapping[str, Any]) -> SimulatorRule | None:
    """The first rule that matches ``pod`` (the pod's JSON), or None."""
    return next((rule for rule in rules if rule_matches(rule, pod)), None)


def rules_path(sandbox_dir: Path) -> Path:
    """Where the simulator of the sandbox in ``sandbox_dir`` reads its rules."""
    return sandbox_dir / RULES_FILE_NAME


def load_rules(path: Path) -> list[SimulatorRule]:
    """The rules in ``path`` (a rules file or a sandbox directory); [] when there is none.
    Raises ValueError (pydantic's ValidationError) when the file is malformed."""
    file = rules_path(path) if path.is_dir() else path
    try:
        text = file.read_text()
    except FileNotFoundError:
        return []
    return RulesFile.model_validate_json(text).rules


def set_rules(sandbox_dir: Path, rules: Sequence[SimulatorRule | Mapping[str, Any]]) -> None:
    """Replace the rules (atomically: the simulator never reads half a file)."""
    parsed = [r if isinstance(r, SimulatorRule) else SimulatorRule.model_validate(r) for r in rules]
    text = RulesFile(rules=parsed).model_dump_json(by_alias=True, exclude_defaults=True, indent=2)
    target = rules_path(sandbox_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    with os.fdopen(fd, "w") as out:
        out.write(text + "\n")
    os.replace(tmp, target)


def append_rule(
    sandbox_dir: Path, rule: SimulatorRule | Mapping[str, Any], *, first: bool = False
) -> None:
    """Add one rule after the existing ones (or before them, with ``first``)."""
    current: list[SimulatorRule | Mapping[str, Any]] = list(load_rules(sandbox_dir))
    set_rules(sandbox_dir, [rule, *current] if first else [*current, rule])


def clear_rules(sandbox_dir: Path) -> None:
    """Remove every rule."""
    rules_path(sandbox_dir).unlink(missing_ok=True)


@contextlib.contextmanager
def rules_applied(
    sandbox_dir: Path, rules: Sequence[SimulatorRule | Mapping[str, Any]]
) -> Iterator[None]:
    """Put ``rules`` before the existing ones for the duration of the block, then restore."""
    previous = load_rules(sandbox_dir)
    set_rules(sandbox_dir, [*rules, *previous])
    try:
        yield
    finally:
        if previous:
            set_rules(sandbox_dir, previous)
        else:
            clear_rules(sandbox_dir)


class RulesWatcher:
    """The current rules of a file, re-read when the file changes (mtime, inode or size).
    A malformed file is logged and the previous rules are kept."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._key: tuple[int, int, int] | None = None
        self._rules: list[SimulatorRule] = []
        self._lock = threading.Lock()

    def current(self) -> list[SimulatorRule]:
        with self._lock:
            try:
                st = self._path.stat()
                key: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_ino, st.st_size)
            except FileNotFoundError:
                key = None
            if key != self._key:
                self._key = key
                try:
                    self._rules = [] if key is None else load_rules(self._path)
                    log.info("rules from %s: %d rule(s)", self._path, len(self._rules))
                except (OSError, ValueError) as e:
                    log.error("ignoring malformed rules file %s: %s", self._path, e)
            return list(self._rules)


# ---- pure helpers: which pods, what environment, what status ------------------------------


def is_candidate(pod: Mapping[str, Any]) -> bool:
    """A pod the simulator should run: the operator's, bound, made Running by KWOK (it has a pod
    IP), and not being deleted."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    return (
        spec.get("schedulerName") == OPERATOR_NAME
        and bool(spec.get("nodeName"))
        and status.get("phase") == "Running"
        and bool(status.get("podIP"))
        and not meta.get("deletionTimestamp")
        and bool(spec.get("containers"))
    )


def is_kwok_node(node: Mapping[str, Any]) -> bool:
    """A node KWOK simulates (and keeps alive): only there does the simulator play containers."""
    annotations = (node.get("metadata") or {}).get("annotations") or {}
    return bool(annotations.get(KWOK_ANNOTATION) == KWOK_MANAGED)


def to_host_path(value: str, *, mounts: Mapping[str, Path]) -> str:
    """Map one container path (or ``file://`` URI) under a mount to the host; others unchanged."""
    scheme = "file://" if value.startswith("file://") else ""
    path = value.removeprefix(scheme)
    for container, host in sorted(mounts.items(), key=lambda m: -len(m[0])):
        if path == container or path.startswith(container.rstrip("/") + "/"):
            return scheme + str(host) + path[len(container.rstrip("/")) :]
    return value


def to_host_value(value: str, *, mounts: Mapping[str, Path]) -> str:
    """Map every comma-separated item of an env value that is a container path (so model paths
    and the gauntlet's opponent list both work)."""
    return ",".join(to_host_path(item, mounts=mounts) for item in value.split(","))


def to_container_paths(text: str, *, mounts: Mapping[str, Path]) -> str:
    """Rewrite host paths in a termination message back to what the container would have seen
    (e.g. a model URI ``file:///data/models/...``)."""
    for container, host in sorted(mounts.items(), key=lambda m: -len(str(m[1]))):
        text = text.replace(str(host), container.rstrip("/") or "/")
    return text


def host_base_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The host environment a workload inherits (it needs Python's), minus the contract's
    variables and cluster credentials."""
    return {
        k: v
        for k, v in environ.items()
        if k not in _CONTRACT_NAMES and not k.startswith("RINGRIFT_") and k != "KUBECONFIG"
    }


def build_workload_env(
    pod: Mapping[str, Any],
    *,
    mounts: Mapping[str, Path],
    base: Mapping[str, str],
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The workload's environment: ``base``, then the first container's plain ``value`` env
    (``valueFrom`` is not simulated), then ``extra``; container paths mapped to the host."""
    env = dict(base)
    container = ((pod.get("spec") or {}).get("containers") or [{}])[0]
    for item in container.get("env") or []:
        if "value" in item or "valueFrom" not in item:
            env[item["name"]] = to_host_value(str(item.get("value", "")), mounts=mounts)
    for name, value in (extra or {}).items():
        env[name] = to_host_value(value, mounts=mounts)
    return env


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cut_message(text: str, *, limit: int = TERMINATION_MESSAGE_MAX_BYTES) -> str:
    """At most ``limit`` bytes, as the kubelet keeps."""
    data = text.encode()
    return text if len(data) <= limit else data[:limit].decode(errors="ignore")


def log_tail(text: str, *, lines: int = LOG_TAIL_LINES) -> str:
    """FallbackToLogsOnError: the last lines of the log, at most the kubelet's byte limit."""
    tail = "\n".join(text.splitlines()[-lines:]).encode()
    return tail[-TERMINATION_MESSAGE_MAX_BYTES:].decode(errors="ignore")


def build_completion_patch(
    *,
    uid: str,
    container: str,
    exit_code: int,
    message: str,
    started_at: datetime,
    finished_at: datetime,
) -> dict[str, Any]:
    """The strategic-merge patch of the status subresource a kubelet's update amounts to when the
    only container of a ``restartPolicy: Never`` pod exits. ``metadata.uid`` makes it a
    precondition: a pod replaced under the same name is not completed."""
    now = rfc3339(finished_at)
    ok = exit_code == 0
    reason = "PodCompleted" if ok else "PodFailed"
    return {
        "metadata": {"uid": uid},
        "status": {
            "phase": "Succeeded" if ok else "Failed",
            "conditions": [
                {"type": "Ready", "status": "False", "reason": reason, "lastTransitionTime": now},
                {
                    "type": "ContainersReady",
                    "status": "False",
                    "reason": reason,
                    "lastTransitionTime": now,
                },
            ],
            "containerStatuses": [
                {
                    "name": container,
                    "ready": False,
                    "started": False,
                    "state": {
                        "running": None,  # strategic merge: delete KWOK's running state
                        "terminated": {
                            "exitCode": exit_code,
                            "reason": "Completed" if ok else "Error",
                            "message": message,
                            "startedAt": rfc3339(started_at),
                            "finishedAt": now,
                        },
                    },
                }
            ],
        },
    }


def pod_key(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


# ---- the API (raw JSON over the kubernetes client) -----------------------------------------


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


class PodApi(Protocol):
    """What the simulator needs from the API server, on raw JSON (a fake in unit tests)."""

    def list_pods(self) -> tuple[list[dict[str, Any]], str]:
        """The operator's pods and the list's resourceVersion."""
        ...

    def watch_pods(self, resource_version: str) -> Iterator[dict[str, Any]]:
        """Watch events (``{"type", "object"}``) from ``resource_version`` until the server
        ends the request."""
        ...

    def shutdown(self) -> None:
        """Unblock a watch in progress (called from another thread when stopping)."""
        ...

    def read_node(self, name: str) -> dict[str, Any] | None:
        """The node, or None when it does not exist."""
        ...

    def patch_pod_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """Strategic-merge ``patch`` into the pod's status subresource."""
        ...


class KubePodApi:
    """:class:`PodApi` over the (sync) kubernetes client, keeping responses as raw JSON."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self._core: Any = client.CoreV1Api(api_client)  # raw JSON calls: no model types
        self._watch_resp: Any = None
        self._closed = False
        self._lock = threading.Lock()

    def list_pods(self) -> tuple[list[dict[str, Any]], str]:
        resp = self._core.list_pod_for_all_namespaces(
            field_selector=FIELD_SELECTOR, _preload_content=False, _request_timeout=30
        )
        body = json.loads(resp.data)
        return list(body.get("items") or []), str(body["metadata"]["resourceVersion"])

    def watch_pods(self, resource_version: str) -> Iterator[dict[str, Any]]:
        resp = self._core.list_pod_for_all_namespaces(
            field_selector=FIELD_SELECTOR,
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS,
            _preload_content=False,
            _request_timeout=(10, WATCH_SECONDS + 30),
        )
        with self._lock:
            self._watch_resp = resp
            closed = self._closed
        if closed:  # shut down while the request was being made
            resp.shutdown()
        try:
            buffer = b""
            for chunk in resp.stream(decode_content=True):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
        finally:
            with self._lock:
                self._watch_resp = None
            resp.close()  # never back to the pool: a watch left mid-stream has unread data

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            resp = self._watch_resp
        if resp is not None:
            with contextlib.suppress(Exception):
                resp.shutdown()

    def read_node(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            resp = self._core.read_node(name, _preload_content=False, _request_timeout=30)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        node: dict[str, Any] = json.loads(resp.data)
        return node

    def patch_pod_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self._core.patch_namespaced_pod_status(
            name,
            namespace,
            dict(patch),
            _content_type="application/strategic-merge-patch+json",
            _preload_content=False,
            _request_timeout=30,
        )

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path) -> KubePodApi:
        from kubernetes import config

        return cls(config.new_client_from_config(config_file=str(kubeconfig)))  # type: ignore[no-untyped-call]


def _status_of(error: BaseException) -> int | None:
    status = getattr(error, "status", None)
    return status if isinstance(status, int) else None


def _is_gone(error: BaseException) -> bool:
    """The pod was deleted (404) or replaced by one of the same name (the uid precondition in
    the patch fails: 409, or 422 "metadata.uid ... field is immutable")."""
    status = _status_of(error)
    body = str(getattr(error, "body", "") or "")
    return status in (404, 409) or (status == 422 and "metadata.uid" in body)


# ---- the simulator ------------------------------------------------------------------------


@dataclass
class _Run:
    """One pod's workload in flight."""

    pod: dict[str, Any]
    rule: SimulatorRule | None
    cancelled: threading.Event = field(default_factory=threading.Event)
    process: subprocess.Popen[bytes] | None = None


class WorkloadSimulator:
    """Watches the operator's pods on KWOK nodes and plays their container (see the module
    docstring). ``run()`` blocks until ``stop()``; ``start()`` runs it in a background thread.

    ``data_dir_for(node)`` is the host directory behind the node's ``/data`` (default: the
    sandbox's ``node_data_dir``); ``workers`` bounds the workloads running at once."""

    def __init__(
        self,
        api: PodApi,
        *,
        sandbox_dir: Path,
        data_dir_for: Callable[[str], Path] | None = None,
        rules_file: Path | None = None,
        workers: int = DEFAULT_WORKERS,
        default_duration_ms: int = DEFAULT_DURATION_MS,
        ready_file: Path | None = None,
        python: str = sys.executable,
    ) -> None:
        self._api = api
        self._sandbox_dir = sandbox_dir
        self._data_dir_for = data_dir_for or _default_data_dir_for(sandbox_dir)
        self._rules = RulesWatcher(rules_file or rules_path(sandbox_dir))
        self._default_duration_ms = default_duration_ms
        self._ready_file = ready_file
        self._python = python
        self._scratch_root = sandbox_dir / "simulator"
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="simulator")
        self._stopping = threading.Event()
        self.ready = threading.Event()  # set after the first successful list
        self._lock = threading.Lock()
        self._handled: set[str] = set()  # uids seen through to a decision (run, hang, skip)
        self._runs: dict[str, _Run] = {}  # uid -> workload in flight
        self._thread: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Run in a background thread."""
        self._thread = threading.Thread(target=self.run, name="workload-simulator", daemon=True)
        self._thread.start()

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop watching, kill running workloads (their pods stay Running) and wait."""
        self._stopping.set()
        self._api.shutdown()
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.cancelled.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._thread is not None:
            self._thread.join(timeout)
        if self._ready_file is not None:
            self._ready_file.unlink(missing_ok=True)

    def run(self) -> None:
        """List, then watch from the list's resourceVersion; list again after 410 Gone, and after
        any other error with a capped backoff. Returns when stopped."""
        backoff = 0.5
        if self._ready_file is not None:
            self._ready_file.unlink(missing_ok=True)
        log.info("watching pods with %s", FIELD_SELECTOR)
        while not self._stopping.is_set():
            try:
                items, version = self._api.list_pods()
                self._resync(items)
                if not self.ready.is_set():
                    self.ready.set()
                    if self._ready_file is not None:
                        self._ready_file.write_text(str(os.getpid()))
                    log.info("simulator ready (%d pod(s) listed)", len(items))
                backoff = 0.5
                while not self._stopping.is_set():
                    version = self._watch(version)
            except WatchExpired:
                log.info("watch expired (410 Gone); listing again")
            except Exception as e:
                if self._stopping.is_set():
                    break
                if _status_of(e) == 410:  # the watch request itself answered 410 Gone
                    log.info("watch expired (410 Gone); listing again")
                    continue
                log.warning(
                    "API error (%s: %s); listing again in %.1fs", type(e).__name__, e, backoff
                )
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _watch(self, version: str) -> str:
        """One watch request; returns the resourceVersion to resume from."""
        for event in self._api.watch_pods(version):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise WatchExpired
                raise RuntimeError(f"watch error: {obj.get('message') or obj}")
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            if kind == "BOOKMARK":
                continue
            self._on_event(str(kind), obj)
        return version

    def _resync(self, pods: list[dict[str, Any]]) -> None:
        """After a (re)list: forget pods that are gone (cancelling their runs), then treat every
        listed pod as if it had just changed."""
        present = {str(p["metadata"]["uid"]) for p in pods}
        with self._lock:
            self._handled &= present | set(self._runs)
            gone = [run for uid, run in self._runs.items() if uid not in present]
        for run in gone:
            run.cancelled.set()
        for pod in pods:
            self._on_event("MODIFIED", pod)

    def _on_event(self, kind: str, pod: dict[str, Any]) -> None:
        uid = str((pod.get("metadata") or {}).get("uid"))
        if kind == "DELETED" or (pod.get("metadata") or {}).get("deletionTimestamp"):
            with self._lock:
                run = self._runs.get(uid)
                if kind == "DELETED" and run is None:
                    self._handled.discard(uid)
            if run is not None:
                run.cancelled.set()
            return
        with self._lock:
            if uid in self._handled:
                return
        if not is_candidate(pod):
            return
        node_name = str(pod["spec"]["nodeName"])
        node = self._api.read_node(node_name)
        if node is None or not is_kwok_node(node):
            return  # a real node, or a simulated one that was lost: no container to play
        rule = match_rule(self._rules.current(), pod)
        with self._lock:
            self._handled.add(uid)
        if rule is not None and rule.hang:
            log.info("pod %s node=%s hang (left Running by rule)", pod_key(pod), node_name)
            return
        run = _Run(pod=pod, rule=rule)
        with self._lock:
            self._runs[uid] = run
        try:
            self._pool.submit(self._complete, uid, run)
        except RuntimeError:  # the pool is shut down: we are stopping
            with self._lock:
                self._runs.pop(uid, None)

    # ---- one pod -----------------------------------------------------------------------------
    def _complete(self, uid: str, run: _Run) -> None:
        failed = False
        try:
            self._play(uid, run)
        except Exception:
            # The API server went away mid-way, say: like a kubelet, play the pod again when
            # it is next seen (the relist after the watch comes back).
            log.exception("pod %s: simulator error; it is played again when next listed",
                          pod_key(run.pod))  # fmt: skip
            failed = True
        finally:
            with self._lock:
                self._runs.pop(uid, None)
                if failed or run.cancelled.is_set():  # deleted: no later event may need it
                    self._handled.discard(uid)

    def _play(self, uid: str, run: _Run) -> None:
        pod, rule = run.pod, run.rule
        node = str(pod["spec"]["nodeName"])
        if run.cancelled.is_set():
            return
        started = datetime.now(UTC)
        t0 = time.monotonic()
        if rule is not None and rule.skip:
            if rule.duration_ms and run.cancelled.wait(rule.duration_ms / 1000):
                log.info("pod %s node=%s deleted while running; not completed", pod_key(pod), node)
                return
            exit_code = rule.exit_code or 0
            raw = rule.message
            message = json.dumps(raw, separators=(",", ":")) if isinstance(raw, dict) else raw or ""
        else:
            outcome = self._run_workload(run, node=node)
            if outcome is None:
                log.info(
                    "pod %s node=%s deleted while running; workload killed, not completed",
                    pod_key(pod),
                    node,
                )
                return
            exit_code, message = outcome
        message = cut_message(message)
        if run.cancelled.is_set():
            log.info("pod %s node=%s deleted; not completed", pod_key(pod), node)
            return
        current = self._api.read_node(node)
        if current is None or not is_kwok_node(current):
            log.info("pod %s node=%s node lost; not completed", pod_key(pod), node)
            return
        patch = build_completion_patch(
            uid=uid,
            container=str(pod["spec"]["containers"][0]["name"]),
            exit_code=exit_code,
            message=message,
            started_at=started,
            finished_at=datetime.now(UTC),
        )
        if not self._patch(pod, patch):
            return
        log.info(
            "pod %s node=%s exit=%d duration=%.2fs rule=%s message=%s",
            pod_key(pod),
            node,
            exit_code,
            time.monotonic() - t0,
            _describe(rule),
            message,
        )

    def _run_workload(self, run: _Run, *, node: str) -> tuple[int, str] | None:
        """Run the sample workload for the pod; (exit code, termination message), or None when
        the pod was deleted (or the simulator stopped) and the process was killed."""
        rule = run.rule
        data_dir = self._data_dir_for(node)
        data_dir.mkdir(parents=True, exist_ok=True)  # hostPath type DirectoryOrCreate
        self._scratch_root.mkdir(parents=True, exist_ok=True)
        scratch = Path(
            tempfile.mkdtemp(prefix=f"{run.pod['metadata']['name']}-", dir=self._scratch_root)
        )
        try:
            mounts = {CONTAINER_DATA_DIR: data_dir, CONTAINER_TMP_DIR: scratch}
            env = build_workload_env(
                run.pod,
                mounts=mounts,
                base=host_base_env(os.environ),
                extra=rule.env if rule is not None else None,
            )
            termination_log = scratch / "termination-log"
            duration = self._default_duration_ms
            if rule is not None and rule.duration_ms is not None:
                duration = rule.duration_ms
            argv = [self._python, "-m", "ringrift_operator.cli", "workload"]
            argv += ["--termination-log", str(termination_log), "--duration-ms", str(duration)]
            if rule is not None and rule.exit_code:
                argv += ["--exit-code", str(rule.exit_code)]
            output = scratch / "output.log"
            with output.open("wb") as out:
                process = subprocess.Popen(
                    argv,
                    env=env,
                    cwd=scratch,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            run.process = process
            while True:
                try:
                    code = process.wait(timeout=0.05)
                    break
                except subprocess.TimeoutExpired:
                    if run.cancelled.is_set() or self._stopping.is_set():
                        _kill_group(process)
                        return None
            exit_code = code if code >= 0 else _SIGNAL_EXIT_BASE - code
            try:
                message = termination_log.read_text(errors="replace")
            except OSError:
                message = ""
            if not message.strip() and exit_code != 0:
                message = log_tail(output.read_text(errors="replace"))
            return exit_code, to_container_paths(message, mounts=mounts)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _patch(self, pod: Mapping[str, Any], patch: Mapping[str, Any]) -> bool:
        """Patch the pod's status, retrying transient errors; False when the pod is gone."""
        meta = pod["metadata"]
        delay = 0.2
        for attempt in range(1, 8):
            try:
                self._api.patch_pod_status(meta["namespace"], meta["name"], patch)
                return True
            except Exception as e:
                status = _status_of(e)
                if _is_gone(e):
                    log.info("pod %s gone before completion (%s)", pod_key(pod), status)
                    return False
                if status is not None and status < 500 and status != 429:
                    log.error("pod %s: status patch rejected (%s): %s", pod_key(pod), status, e)
                    return False
                log.warning(
                    "pod %s: status patch failed (attempt %d): %s", pod_key(pod), attempt, e
                )
                if self._stopping.wait(delay):
                    return False
                delay = min(delay * 2, 3.0)
        raise RuntimeError(f"pod {pod_key(pod)}: giving up on the status patch")


def _describe(rule: SimulatorRule | None) -> str:
    if rule is None:
        return "-"
    return rule.model_dump_json(by_alias=True, exclude_defaults=True)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _default_data_dir_for(sandbox_dir: Path) -> Callable[[str], Path]:
    from ringrift_sandbox.cluster import Sandbox  # imported late: cluster may import this module

    sandbox = Sandbox(sandbox_dir)
    return sandbox.node_data_dir


# ---- the process form ---------------------------------------------------------------------


def ready_path(sandbox_dir: Path) -> Path:
    """The file the simulator process writes once it is watching (its health check)."""
    return sandbox_dir / READY_FILE_NAME


def running_simulator_pid(sandbox_dir: Path) -> int | None:
    """The pid of the simulator process watching for this sandbox, from its ready file."""
    try:
        pid = int(ready_path(sandbox_dir).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def simulator_argv(
    *,
    kubeconfig: Path,
    sandbox_dir: Path,
    workers: int = DEFAULT_WORKERS,
    default_duration_ms: int = DEFAULT_DURATION_MS,
    ready_file: Path | None = None,
    python: str = sys.executable,
) -> list[str]:
    """The command line of the simulator process (for a sandbox component)."""
    return [
        python,
        "-m",
        "ringrift_sandbox.simulator",
        f"--kubeconfig={kubeconfig}",
        f"--sandbox-dir={sandbox_dir}",
        f"--workers={workers}",
        f"--default-duration-ms={default_duration_ms}",
        f"--ready-file={ready_file or ready_path(sandbox_dir)}",
    ]


@dataclass
class SimulatorProcess:
    """A simulator started as a process by :func:`start_simulator`."""

    component: Component
    ready_file: Path

    @property
    def log_path(self) -> Path:
        return self.component.log_path

    def alive(self) -> bool:
        return self.component.alive()

    def stop(self, *, timeout: float = 10.0) -> None:
        process = self.component.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        finally:
            self.ready_file.unlink(missing_ok=True)


def start_simulator(
    sandbox: Sandbox,
    *,
    name: str = COMPONENT_NAME,
    timeout: float = 30.0,
    workers: int = DEFAULT_WORKERS,
    default_duration_ms: int = DEFAULT_DURATION_MS,
) -> SimulatorProcess:
    """Start the simulator process for ``sandbox`` (logging to ``sandbox.log_path(name)``) and
    wait until it watches; it dies with the calling process."""
    from ringrift_sandbox.cluster import Component, SandboxError, wait_for

    ready = ready_path(sandbox.directory)
    running = running_simulator_pid(sandbox.directory)
    if running is not None:  # two simulators would both complete every pod
        raise SandboxError(
            f"a workload simulator already runs for {sandbox.directory} (pid {running})"
        )
    ready.unlink(missing_ok=True)
    argv = simulator_argv(
        kubeconfig=sandbox.kubeconfig,
        sandbox_dir=sandbox.directory,
        workers=workers,
        default_duration_ms=default_duration_ms,
        ready_file=ready,
    )
    component = Component(name, argv, sandbox.log_path(name))
    component.start()
    handle = SimulatorProcess(component=component, ready_file=ready)

    def up() -> bool:
        if not component.alive():
            raise SandboxError(f"{name} exited; log {component.log_path}:\n{component.log_tail()}")
        return ready.exists()

    try:
        wait_for(f"{name} to watch pods", up, timeout=timeout)
    except BaseException:
        handle.stop()
        raise
    return handle


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ringrift_sandbox.simulator",
        description="Play the container for the operator's pods on the sandbox's KWOK nodes.",
    )
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--sandbox-dir", type=Path, required=True, help="the sandbox directory")
    parser.add_argument(
        "--rules",
        type=Path,
        default=None,
        help=f"rules file (default <sandbox-dir>/{RULES_FILE_NAME})",
    )
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="concurrent workloads")
    parser.add_argument(
        "--default-duration-ms",
        type=int,
        default=DEFAULT_DURATION_MS,
        help="workload duration when no rule sets durationMs",
    )
    parser.add_argument("--ready-file", type=Path, default=None, help="written once watching")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    sandbox_dir: Path = args.sandbox_dir.resolve()
    simulator = WorkloadSimulator(
        KubePodApi.from_kubeconfig(args.kubeconfig),
        sandbox_dir=sandbox_dir,
        rules_file=args.rules,
        workers=max(1, args.workers),
        default_duration_ms=max(0, args.default_duration_ms),
        ready_file=args.ready_file,
    )
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    simulator.start()
    done.wait()
    log.info("stopping")
    simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
